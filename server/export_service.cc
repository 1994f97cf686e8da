#include "server/export_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/grpc_status.h"

namespace exportd {

using exportjobs::v1::ExportJobEvent;

namespace {

// Finishes `reactor` with a job result, copying the job into `response` on success.
auto FinishWithJob(grpc::ServerUnaryReactor* reactor, exportjobs::v1::ExportJob* response) {
  return [reactor, response](absl::StatusOr<exportjobs::v1::ExportJob> job) {
    if (job.ok()) *response = *std::move(job);
    reactor->Finish(ToGrpcStatus(job.status()));
  };
}

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                    const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

ExportServiceImpl::ExportServiceImpl(JobManager* jobs, ProgressHub* hub, const JobStore* store,
                                     Executor* readers, CreateLimits create_limits,
                                     WatchLimits watch_limits)
    : jobs_(jobs),
      hub_(hub),
      store_(store),
      readers_(readers),
      create_limits_(create_limits),
      watch_limits_(watch_limits) {}

std::string ExportServiceImpl::TenantOf(const grpc::CallbackServerContext*) { return ""; }

grpc::ServerUnaryReactor* ExportServiceImpl::CreateExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::CreateExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  absl::StatusOr<exportjobs::v1::CreateExportJobRequest> normalized =
      ValidateAndNormalizeCreate(*request, create_limits_);
  if (!normalized.ok()) return FinishNow(context, normalized.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  jobs_->Create(*std::move(normalized), TenantOf(context), FinishWithJob(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* ExportServiceImpl::GetExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::GetExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  if (absl::Status valid = ValidateJobId(request->id()); !valid.ok()) {
    return FinishNow(context, valid);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  jobs_->Get(request->id(), TenantOf(context), FinishWithJob(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* ExportServiceImpl::ListExportJobs(
    grpc::CallbackServerContext* context, const exportjobs::v1::ListExportJobsRequest* request,
    exportjobs::v1::ListExportJobsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  jobs_->List(*request, TenantOf(context),
              [reactor, response](absl::StatusOr<exportjobs::v1::ListExportJobsResponse> page) {
                if (page.ok()) *response = *std::move(page);
                reactor->Finish(ToGrpcStatus(page.status()));
              });
  return reactor;
}

grpc::ServerUnaryReactor* ExportServiceImpl::CancelExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::CancelExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  if (absl::Status valid = ValidateJobId(request->id()); !valid.ok()) {
    return FinishNow(context, valid);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  jobs_->Cancel(request->id(), TenantOf(context), FinishWithJob(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* ExportServiceImpl::DeleteExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::DeleteExportJobRequest* request,
    google::protobuf::Empty*) {
  if (absl::Status valid = ValidateJobId(request->id()); !valid.ok()) {
    return FinishNow(context, valid);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  jobs_->Delete(request->id(), TenantOf(context),
                [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); });
  return reactor;
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
  return StartJobWatch(hub_, store_, readers_, watch_limits_, TenantOf(context), *request);
}

grpc::ServerWriteReactor<ExportJobEvent>* ExportServiceImpl::WatchExportJobs(
    grpc::CallbackServerContext* context, const exportjobs::v1::WatchExportJobsRequest* request) {
  if (absl::Status valid = ValidateJobFilters(request->status(), request->entity_type());
      !valid.ok()) {
    return FailedWatch(ToGrpcStatus(valid));
  }
  return StartAllJobsWatch(hub_, watch_limits_, TenantOf(context), *request);
}

}  // namespace exportd
