#include "server/export_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/catalog.h"
#include "server/download_reactor.h"
#include "server/grpc_status.h"

namespace exportd {

using exportjobs::v1::ExportJobEvent;

ExportServiceImpl::ExportServiceImpl(JobManager* jobs, ProgressHub* hub, const JobStore* store,
                                     const BlobStore* blobs, Executor* readers, Executor* io,
                                     const Clock* clock, CreateLimits create_limits,
                                     WatchLimits watch_limits)
    : jobs_(jobs),
      hub_(hub),
      store_(store),
      blobs_(blobs),
      readers_(readers),
      io_(io),
      clock_(clock),
      create_limits_(create_limits),
      watch_limits_(watch_limits),
      create_rate_(create_limits.create_rate_per_tenant, create_limits.create_burst_per_tenant,
                   clock),
      watchers_(watch_limits.max_watchers_per_tenant, watch_limits.max_watchers) {}

std::string ExportServiceImpl::TenantOf(const grpc::CallbackServerContext*) { return ""; }

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
                                                   const absl::Status& valid, Start start) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!calls_.Enter()) return Refuse(reactor);
  if (!valid.ok()) {
    Finish(reactor, valid);
  } else {
    start(reactor);
  }
  return reactor;
}

grpc::ServerUnaryReactor* ExportServiceImpl::CreateExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::CreateExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  absl::StatusOr<exportjobs::v1::CreateExportJobRequest> normalized =
      ValidateAndNormalizeCreate(*request, create_limits_);
  std::string tenant = TenantOf(context);
  // A bad request takes no token of the create rate.
  absl::Status valid = normalized.ok() ? create_rate_.Acquire(tenant) : normalized.status();
  return Unary(context, valid, [&](grpc::ServerUnaryReactor* reactor) {
    jobs_->Create(*std::move(normalized), std::move(tenant), FinishWithJob(reactor, response));
  });
}

grpc::ServerUnaryReactor* ExportServiceImpl::GetExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::GetExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  return Unary(context, ValidateJobId(request->id()), [&](grpc::ServerUnaryReactor* reactor) {
    jobs_->Get(request->id(), TenantOf(context), FinishWithJob(reactor, response));
  });
}

grpc::ServerUnaryReactor* ExportServiceImpl::ListExportJobs(
    grpc::CallbackServerContext* context, const exportjobs::v1::ListExportJobsRequest* request,
    exportjobs::v1::ListExportJobsResponse* response) {
  return Unary(context, absl::OkStatus(), [&](grpc::ServerUnaryReactor* reactor) {
    jobs_->List(
        *request, TenantOf(context),
        [this, reactor, response](absl::StatusOr<exportjobs::v1::ListExportJobsResponse> page) {
          if (page.ok()) *response = *std::move(page);
          Finish(reactor, page.status());
        });
  });
}

grpc::ServerUnaryReactor* ExportServiceImpl::CancelExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::CancelExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  return Unary(context, ValidateJobId(request->id()), [&](grpc::ServerUnaryReactor* reactor) {
    jobs_->Cancel(request->id(), TenantOf(context), FinishWithJob(reactor, response));
  });
}

grpc::ServerUnaryReactor* ExportServiceImpl::DeleteExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::DeleteExportJobRequest* request,
    google::protobuf::Empty*) {
  return Unary(context, ValidateJobId(request->id()), [&](grpc::ServerUnaryReactor* reactor) {
    jobs_->Delete(request->id(), TenantOf(context),
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
  return Unary(context, valid, [&](grpc::ServerUnaryReactor* reactor) {
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
  return StartDownload(store_, blobs_, io_, clock_, &calls_, TenantOf(context), *request);
}

grpc::ServerWriteReactor<ExportJobEvent>* ExportServiceImpl::WatchExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::WatchExportJobRequest* request) {
  if (absl::Status valid = ValidateJobId(request->id()); !valid.ok()) {
    return FailedWatch(ToGrpcStatus(valid));
  }
  if (request->since_revision() < 0) {
    return FailedWatch(ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("since_revision: must not be negative, got ", request->since_revision()))));
  }
  std::string tenant = TenantOf(context);
  absl::StatusOr<WatcherSlots::Slot> slot = watchers_.Acquire(tenant);
  if (!slot.ok()) return FailedWatch(ToGrpcStatus(slot.status()));
  return StartJobWatch(hub_, store_, readers_, watch_limits_, std::move(tenant), *request,
                       *std::move(slot));
}

grpc::ServerWriteReactor<ExportJobEvent>* ExportServiceImpl::WatchExportJobs(
    grpc::CallbackServerContext* context, const exportjobs::v1::WatchExportJobsRequest* request) {
  if (absl::Status valid = ValidateJobFilters(request->status(), request->entity_type());
      !valid.ok()) {
    return FailedWatch(ToGrpcStatus(valid));
  }
  std::string tenant = TenantOf(context);
  absl::StatusOr<WatcherSlots::Slot> slot = watchers_.Acquire(tenant);
  if (!slot.ok()) return FailedWatch(ToGrpcStatus(slot.status()));
  return StartAllJobsWatch(hub_, watch_limits_, std::move(tenant), *request, *std::move(slot));
}

}  // namespace exportd
