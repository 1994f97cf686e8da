// ExportServiceImpl: the public gRPC API on the callback API. Handlers validate on the gRPC
// thread (CPU only), hand the work to the JobManager or the watch streams, and finish the call
// from there; no handler blocks.
//
// Thread safety: called by gRPC from any thread.
#pragma once

#include <string>

#include "exportjobs/v1/export_service.grpc.pb.h"
#include "server/auth.h"
#include "server/call_tracker.h"
#include "server/executor.h"
#include "server/job_manager.h"
#include "server/limits.h"
#include "server/progress_hub.h"
#include "server/validation.h"
#include "server/watch_reactor.h"
#include "storage/blob_store.h"
#include "storage/job_store.h"

namespace exportd {

class ExportServiceImpl final : public exportjobs::v1::ExportService::CallbackService {
 public:
  // All pointers must outlive the service.
  ExportServiceImpl(JobManager* jobs, ProgressHub* hub, const JobStore* store,
                    const BlobStore* blobs, Executor* readers, Executor* io, const Clock* clock,
                    CreateLimits create_limits, WatchLimits watch_limits,
                    const Authenticator* auth);

  grpc::ServerUnaryReactor* CreateExportJob(grpc::CallbackServerContext* context,
                                            const exportjobs::v1::CreateExportJobRequest* request,
                                            exportjobs::v1::ExportJob* response) override;
  // Each item as CreateExportJob (validation, a token of the create rate, the active-jobs limit,
  // request_id), all valid items in one JobManager::CreateBatch, so that they share one group
  // commit; answered after it.
  grpc::ServerUnaryReactor* BatchCreateExportJobs(
      grpc::CallbackServerContext* context,
      const exportjobs::v1::BatchCreateExportJobsRequest* request,
      exportjobs::v1::BatchCreateExportJobsResponse* response) override;
  grpc::ServerUnaryReactor* GetExportJob(grpc::CallbackServerContext* context,
                                         const exportjobs::v1::GetExportJobRequest* request,
                                         exportjobs::v1::ExportJob* response) override;
  grpc::ServerUnaryReactor* ListExportJobs(
      grpc::CallbackServerContext* context, const exportjobs::v1::ListExportJobsRequest* request,
      exportjobs::v1::ListExportJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelExportJob(grpc::CallbackServerContext* context,
                                            const exportjobs::v1::CancelExportJobRequest* request,
                                            exportjobs::v1::ExportJob* response) override;
  grpc::ServerUnaryReactor* DeleteExportJob(grpc::CallbackServerContext* context,
                                            const exportjobs::v1::DeleteExportJobRequest* request,
                                            google::protobuf::Empty* response) override;
  grpc::ServerWriteReactor<exportjobs::v1::ExportJobEvent>* WatchExportJob(
      grpc::CallbackServerContext* context,
      const exportjobs::v1::WatchExportJobRequest* request) override;
  grpc::ServerWriteReactor<exportjobs::v1::ExportJobEvent>* WatchExportJobs(
      grpc::CallbackServerContext* context,
      const exportjobs::v1::WatchExportJobsRequest* request) override;

  grpc::ServerUnaryReactor* ListExportableFields(
      grpc::CallbackServerContext* context,
      const exportjobs::v1::ListExportableFieldsRequest* request,
      exportjobs::v1::ListExportableFieldsResponse* response) override;

  grpc::ServerWriteReactor<exportjobs::v1::DownloadExportResponse>* DownloadExport(
      grpc::CallbackServerContext* context,
      const exportjobs::v1::DownloadExportRequest* request) override;

  // Unary calls and downloads in flight; drained at shutdown.
  CallTracker& calls() { return calls_; }

 private:
  // Finishes `reactor` with `status` and counts the call out.
  void Finish(grpc::ServerUnaryReactor* reactor, const absl::Status& status);
  // Finishes with a job result, copying the job into `response` on success.
  auto FinishWithJob(grpc::ServerUnaryReactor* reactor, exportjobs::v1::ExportJob* response);
  // Runs a unary call: counts it in (or refuses it while draining), authenticates the caller
  // and checks it may make a call that needs `access` (UNAUTHENTICATED / PERMISSION_DENIED
  // naming `method`), finishes it with `valid` when that is an error, else calls
  // start(reactor, principal), which must see to the Finish.
  template <typename Start>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, Access access,
                                  const char* method, const absl::Status& valid, Start start);
  // Finishes a call that Enter refused with UNAVAILABLE.
  static grpc::ServerUnaryReactor* Refuse(grpc::ServerUnaryReactor* reactor);

  // The caller of a job call (client or admin role), or why it may not make it.
  absl::StatusOr<Principal> JobCaller(const grpc::CallbackServerContext* context,
                                      const char* method) const;

  JobManager* const jobs_;
  ProgressHub* const hub_;
  const JobStore* const store_;
  const BlobStore* const blobs_;
  Executor* const readers_;
  Executor* const io_;
  const Clock* const clock_;
  const CreateLimits create_limits_;
  const WatchLimits watch_limits_;
  const Authenticator* const auth_;
  CreateRateLimiter create_rate_;
  WatcherSlots watchers_;

  CallTracker calls_;
};

}  // namespace exportd
