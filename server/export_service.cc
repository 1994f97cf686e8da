#include "server/export_service.h"

#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/catalog.h"
#include "common/logging.h"
#include "common/str_cat.h"
#include "server/download_reactor.h"
#include "server/grpc_status.h"

namespace exportd {

using exportjobs::v1::ExportJobEvent;

ExportServiceImpl::ExportServiceImpl(JobManager* jobs, ProgressHub* hub, const JobStore* store,
                                     const BlobStore* blobs, Executor* readers, Executor* io,
                                     const Clock* clock, CreateLimits create_limits,
                                     WatchLimits watch_limits, const Authenticator* auth)
    : jobs_(jobs),
      hub_(hub),
      store_(store),
      blobs_(blobs),
      readers_(readers),
      io_(io),
      clock_(clock),
      create_limits_(create_limits),
      watch_limits_(watch_limits),
      auth_(auth),
      create_rate_(create_limits.create_rate_per_tenant, create_limits.create_burst_per_tenant,
                   clock),
      watchers_(watch_limits.max_watchers_per_tenant, watch_limits.max_watchers) {}

namespace {
constexpr char kService[] = "exportjobs.v1.ExportService/";
}  // namespace

absl::StatusOr<Principal> ExportServiceImpl::JobCaller(const grpc::CallbackServerContext* context,
                                                       const char* method) const {
  return auth_->Check(context, Access::kJobs, Cat(kService, method));
}

void ExportServiceImpl::Finish(grpc::ServerUnaryReactor* reactor, const absl::Status& status) {
  reactor->Finish(ToGrpcStatus(status));
  calls_.Exit();
}

auto ExportServiceImpl::FinishWithJob(grpc::ServerUnaryReactor* reactor,
                                      exportjobs::v1::ExportJob* response) {
  return [this, reactor, response](absl::StatusOr<exportjobs::v1::ExportJob> job) {
    if (job.ok()) *response = *std::move(job);
    Finish(reactor, job.status());
  };
}

grpc::ServerUnaryReactor* ExportServiceImpl::Refuse(grpc::ServerUnaryReactor* reactor) {
  reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
  return reactor;
}

template <typename Start>
grpc::ServerUnaryReactor* ExportServiceImpl::Unary(grpc::CallbackServerContext* context,
                                                   Access access, const char* method,
                                                   const absl::Status& valid, Start start) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!calls_.Enter()) return Refuse(reactor);
  // Who calls comes before what it asks: an unauthenticated caller learns nothing of the rest.
  absl::StatusOr<Principal> caller = auth_->Check(context, access, Cat(kService, method));
  if (!caller.ok()) {
    Finish(reactor, caller.status());
  } else if (!valid.ok()) {
    Finish(reactor, valid);
  } else {
    start(reactor, *caller);
  }
  return reactor;
}

grpc::ServerUnaryReactor* ExportServiceImpl::CreateExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::CreateExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  absl::StatusOr<exportjobs::v1::CreateExportJobRequest> normalized =
      ValidateAndNormalizeCreate(*request, create_limits_);
  return Unary(context, Access::kJobs, "CreateExportJob", normalized.status(),
               [&](grpc::ServerUnaryReactor* reactor, const Principal& caller) {
                 // Only an authenticated, valid request takes a token of the create rate.
                 if (absl::Status allowed = create_rate_.Acquire(caller.tenant); !allowed.ok()) {
                   return Finish(reactor, allowed);
                 }
                 // A job belongs to its creator's own tenant (an admin's too).
                 jobs_->Create(*std::move(normalized), caller.tenant,
                               FinishWithJob(reactor, response));
               });
}

namespace {

// `status` with its message prefixed by the item it is about ("requests[3]."), its code and
// payloads (error details) kept.
absl::Status ForItem(const absl::Status& status, int index) {
  absl::Status item(status.code(), Cat("requests[", index, "].", status.message()));
  status.ForEachPayload([&item](absl::string_view type_url, const absl::Cord& payload) {
    item.SetPayload(type_url, payload);
  });
  return item;
}

}  // namespace

grpc::ServerUnaryReactor* ExportServiceImpl::BatchCreateExportJobs(
    grpc::CallbackServerContext* context,
    const exportjobs::v1::BatchCreateExportJobsRequest* request,
    exportjobs::v1::BatchCreateExportJobsResponse* response) {
  const int items = request->requests_size();
  const absl::Time arrived = absl::Now();
  // An item refused by a limit (or the store) is logged as the same refused CreateExportJob
  // would be by the interceptor: the call itself is OK.
  auto item_error = [arrived](const absl::Status& status, int index) {
    const absl::Status item = ForItem(status, index);
    if (!IsExpectedOutcome(item.code())) {
      LogEvent(LogLevel::kWarn, "rpc.error",
               {{"service", "exportjobs.v1.ExportService"},
                {"method", "BatchCreateExportJobs"},
                {"code", absl::StatusCodeToString(item.code())},
                {"message", std::string(item.message())},
                {"duration_ms", absl::ToDoubleMilliseconds(absl::Now() - arrived)}});
    }
    return ToItemError(item);
  };
  absl::Status valid = absl::OkStatus();
  if (items > create_limits_.max_batch_creates) {
    valid = absl::InvalidArgumentError(Cat("requests: at most ", create_limits_.max_batch_creates,
                                           " items per call (--max_batch_creates), got ", items,
                                           "; split the batch"));
  }
  return Unary(context, Access::kJobs, "BatchCreateExportJobs", valid,
               [&](grpc::ServerUnaryReactor* reactor, const Principal& caller) {
                 // Every item gets a result now: an error, or a placeholder the JobManager's answer
                 // replaces. Only an authenticated, valid item takes a token of the create rate, as
                 // CreateExportJob does.
                 std::vector<exportjobs::v1::CreateExportJobRequest> accepted;
                 std::vector<int> accepted_index;
                 accepted.reserve(static_cast<size_t>(items));
                 accepted_index.reserve(static_cast<size_t>(items));
                 for (int i = 0; i < items; ++i) {
                   exportjobs::v1::BatchCreateExportJobsResponse::Result* result =
                       response->add_results();
                   absl::StatusOr<exportjobs::v1::CreateExportJobRequest> normalized =
                       ValidateAndNormalizeCreate(request->requests(i), create_limits_);
                   absl::Status item = normalized.status();
                   if (item.ok()) item = create_rate_.Acquire(caller.tenant);
                   if (!item.ok()) {
                     *result->mutable_error() = item_error(item, i);
                     continue;
                   }
                   accepted.push_back(*std::move(normalized));
                   accepted_index.push_back(i);
                 }
                 if (accepted.empty()) return Finish(reactor, absl::OkStatus());
                 jobs_->CreateBatch(
                     std::move(accepted), caller.tenant,
                     [this, reactor, response, item_error, index = std::move(accepted_index)](
                         std::vector<absl::StatusOr<exportjobs::v1::ExportJob>> jobs) mutable {
                       for (size_t k = 0; k < jobs.size() && k < index.size(); ++k) {
                         exportjobs::v1::BatchCreateExportJobsResponse::Result* result =
                             response->mutable_results(index[k]);
                         if (jobs[k].ok()) {
                           *result->mutable_job() = *std::move(jobs[k]);
                         } else {
                           *result->mutable_error() = item_error(jobs[k].status(), index[k]);
                         }
                       }
                       Finish(reactor, absl::OkStatus());
                     });
               });
}

grpc::ServerUnaryReactor* ExportServiceImpl::GetExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::GetExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  return Unary(context, Access::kJobs, "GetExportJob", ValidateJobId(request->id()),
               [&](grpc::ServerUnaryReactor* reactor, const Principal& caller) {
                 jobs_->Get(request->id(), caller.scope(), FinishWithJob(reactor, response));
               });
}

grpc::ServerUnaryReactor* ExportServiceImpl::ListExportJobs(
    grpc::CallbackServerContext* context, const exportjobs::v1::ListExportJobsRequest* request,
    exportjobs::v1::ListExportJobsResponse* response) {
  return Unary(context, Access::kJobs, "ListExportJobs", absl::OkStatus(),
               [&](grpc::ServerUnaryReactor* reactor, const Principal& caller) {
                 jobs_->List(*request, caller.scope(),
                             [this, reactor, response](
                                 absl::StatusOr<exportjobs::v1::ListExportJobsResponse> page) {
                               if (page.ok()) *response = *std::move(page);
                               Finish(reactor, page.status());
                             });
               });
}

grpc::ServerUnaryReactor* ExportServiceImpl::CancelExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::CancelExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  return Unary(context, Access::kJobs, "CancelExportJob", ValidateJobId(request->id()),
               [&](grpc::ServerUnaryReactor* reactor, const Principal& caller) {
                 jobs_->Cancel(request->id(), caller.scope(), FinishWithJob(reactor, response));
               });
}

grpc::ServerUnaryReactor* ExportServiceImpl::DeleteExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::DeleteExportJobRequest* request,
    google::protobuf::Empty*) {
  return Unary(context, Access::kJobs, "DeleteExportJob", ValidateJobId(request->id()),
               [&](grpc::ServerUnaryReactor* reactor, const Principal& caller) {
                 jobs_->Delete(request->id(), caller.scope(),
                               [this, reactor](absl::Status status) { Finish(reactor, status); });
               });
}

grpc::ServerUnaryReactor* ExportServiceImpl::ListExportableFields(
    grpc::CallbackServerContext* context,
    const exportjobs::v1::ListExportableFieldsRequest* request,
    exportjobs::v1::ListExportableFieldsResponse* response) {
  const catalog::Entity* entity = catalog::FindEntity(request->entity_type());
  absl::Status valid = absl::OkStatus();
  if (request->entity_type() == exportjobs::v1::ENTITY_TYPE_UNSPECIFIED) {
    valid = absl::InvalidArgumentError("entity_type: must be set (e.g. ENTITY_TYPE_ACCOUNTS)");
  } else if (entity == nullptr) {
    valid = absl::InvalidArgumentError(
        absl::StrCat("entity_type: unknown value ", request->entity_type()));
  }
  return Unary(context, Access::kAnyRole, "ListExportableFields", valid,
               [&](grpc::ServerUnaryReactor* reactor, const Principal&) {
                 for (const catalog::Field& field : entity->fields) {
                   exportjobs::v1::ExportableField* out = response->add_fields();
                   out->set_name(std::string(field.name));
                   out->set_type(field.type);
                   out->set_default_(field.is_default);
                   out->set_description(std::string(field.description));
                 }
                 Finish(reactor, absl::OkStatus());
               });
}

grpc::ServerWriteReactor<exportjobs::v1::DownloadExportResponse>* ExportServiceImpl::DownloadExport(
    grpc::CallbackServerContext* context, const exportjobs::v1::DownloadExportRequest* request) {
  absl::StatusOr<Principal> caller = JobCaller(context, "DownloadExport");
  if (!caller.ok()) {
    return FailedStream<exportjobs::v1::DownloadExportResponse>(ToGrpcStatus(caller.status()));
  }
  absl::Status valid = ValidateJobId(request->id());
  if (valid.ok() && request->part() < 0) {
    valid = absl::InvalidArgumentError(
        absl::StrCat("part: must be 0 (the whole file) or a part number, got ", request->part()));
  }
  if (!valid.ok()) return FailedStream<exportjobs::v1::DownloadExportResponse>(ToGrpcStatus(valid));
  if (!calls_.Enter()) {
    return FailedStream<exportjobs::v1::DownloadExportResponse>(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
  }
  return StartDownload(store_, blobs_, io_, clock_, &calls_, caller->scope(), *request);
}

grpc::ServerWriteReactor<ExportJobEvent>* ExportServiceImpl::WatchExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::WatchExportJobRequest* request) {
  absl::StatusOr<Principal> caller = JobCaller(context, "WatchExportJob");
  if (!caller.ok()) return FailedWatch(ToGrpcStatus(caller.status()));
  if (absl::Status valid = ValidateJobId(request->id()); !valid.ok()) {
    return FailedWatch(ToGrpcStatus(valid));
  }
  if (request->since_revision() < 0) {
    return FailedWatch(ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("since_revision: must not be negative, got ", request->since_revision()))));
  }
  // Watchers count against the caller's own tenant (an admin's too).
  absl::StatusOr<WatcherSlots::Slot> slot = watchers_.Acquire(caller->tenant);
  if (!slot.ok()) return FailedWatch(ToGrpcStatus(slot.status()));
  return StartJobWatch(hub_, store_, readers_, watch_limits_, caller->scope(), *request,
                       *std::move(slot));
}

grpc::ServerWriteReactor<ExportJobEvent>* ExportServiceImpl::WatchExportJobs(
    grpc::CallbackServerContext* context, const exportjobs::v1::WatchExportJobsRequest* request) {
  absl::StatusOr<Principal> caller = JobCaller(context, "WatchExportJobs");
  if (!caller.ok()) return FailedWatch(ToGrpcStatus(caller.status()));
  if (absl::Status valid = ValidateJobFilters(request->status(), request->entity_type());
      !valid.ok()) {
    return FailedWatch(ToGrpcStatus(valid));
  }
  absl::StatusOr<WatcherSlots::Slot> slot = watchers_.Acquire(caller->tenant);
  if (!slot.ok()) return FailedWatch(ToGrpcStatus(slot.status()));
  return StartAllJobsWatch(hub_, watch_limits_, caller->scope(), *request, *std::move(slot));
}

}  // namespace exportd
