// WorkerServiceImpl: the internal gRPC protocol of export-worker processes, on the callback
// API. Requests are validated on the gRPC thread and handed to the JobManager; part uploads
// stream into the BlobStore on the I/O executor (never on a gRPC thread), pipelined: the next
// message is read while the chunks before it are written.
//
// Thread safety: called by gRPC from any thread.
#pragma once

#include <functional>

#include "absl/time/time.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"
#include "server/auth.h"
#include "server/call_tracker.h"
#include "server/executor.h"
#include "server/job_manager.h"
#include "storage/blob_store.h"

namespace exportd {

// UploadExportPart is served as a raw method (its messages read as bytes, see upload_message.h) so
// that a chunk is not copied by protobuf; its protocol is the generated one.
class WorkerServiceImpl final
    : public exportjobs::v1::WorkerService::WithRawCallbackMethod_UploadExportPart<
          exportjobs::v1::WorkerService::CallbackService> {
 public:
  struct Options {
    // Longest long-poll of a claim.
    absl::Duration max_claim_wait = absl::Seconds(30);
    // Largest data message of an upload.
    int64_t max_chunk_bytes = 4 << 20;
    // Largest part.
    int64_t max_part_bytes = int64_t{4} << 30;
    // Called on the I/O executor with the bytes of each chunk written to a part file (for
    // metrics). Must not block.
    std::function<void(int64_t bytes)> on_bytes_written;
  };

  // All pointers must outlive the service. Every call needs the worker (or admin) role.
  WorkerServiceImpl(JobManager* jobs, BlobStore* blobs, Executor* io, Options options,
                    const Authenticator* auth);

  grpc::ServerUnaryReactor* ClaimExportJob(
      grpc::CallbackServerContext* context, const exportjobs::v1::ClaimExportJobRequest* request,
      exportjobs::v1::ClaimExportJobResponse* response) override;
  grpc::ServerUnaryReactor* ReportProgress(
      grpc::CallbackServerContext* context, const exportjobs::v1::ReportProgressRequest* request,
      exportjobs::v1::ReportProgressResponse* response) override;
  // Reads UploadExportPartRequest messages and answers an UploadExportPartResponse.
  grpc::ServerReadReactor<grpc::ByteBuffer>* UploadExportPart(grpc::CallbackServerContext* context,
                                                              grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* CompleteExportJob(
      grpc::CallbackServerContext* context, const exportjobs::v1::CompleteExportJobRequest* request,
      exportjobs::v1::ExportJob* response) override;
  grpc::ServerUnaryReactor* FailExportJob(grpc::CallbackServerContext* context,
                                          const exportjobs::v1::FailExportJobRequest* request,
                                          exportjobs::v1::ExportJob* response) override;
  grpc::ServerUnaryReactor* ReleaseExportJob(grpc::CallbackServerContext* context,
                                             const exportjobs::v1::ReleaseExportJobRequest* request,
                                             exportjobs::v1::ExportJob* response) override;

  grpc::ServerUnaryReactor* BatchReportExportJobs(
      grpc::CallbackServerContext* context,
      const exportjobs::v1::BatchReportExportJobsRequest* request,
      exportjobs::v1::BatchReportExportJobsResponse* response) override;

  // Calls in flight (uploads included); drained at shutdown.
  CallTracker& calls() { return calls_; }

 private:
  // Counts the call in, checks the caller (UNAUTHENTICATED / PERMISSION_DENIED naming
  // `method`), then `valid`, then runs start(reactor), which must see to the Finish.
  template <typename Start>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, const char* method,
                                  const absl::Status& valid, Start start);
  void Finish(grpc::ServerUnaryReactor* reactor, const absl::Status& status);
  auto FinishWithJob(grpc::ServerUnaryReactor* reactor, exportjobs::v1::ExportJob* response);

  JobManager* const jobs_;
  BlobStore* const blobs_;
  Executor* const io_;
  const Options options_;
  const Authenticator* const auth_;
  CallTracker calls_;
};

}  // namespace exportd
