// The server streams of WatchExportJob and WatchExportJobs.
//
// Each stream is a ServerWriteReactor fed by the ProgressHub: no thread per watcher, one write
// in flight, and a bounded queue. A watcher of one job gets every change in order while it keeps
// up; when it falls behind, the newest changes replace the oldest queued ones (the revision
// jumps), so memory stays bounded and the terminal state is always delivered, after which the
// stream ends OK. A watcher of all jobs keeps at most one queued event per job (the newest).
//
// Thread safety: the reactors are driven by gRPC and the hub from any thread.
#pragma once

#include <string>

#include "exportjobs/v1/export_service.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/executor.h"
#include "server/progress_hub.h"
#include "storage/job_store.h"

namespace exportd {

struct WatchLimits {
  // Events queued for a slow watcher of one job before the newest replace the oldest.
  size_t max_queued_events = 64;
  // Jobs with an undelivered change queued for a slow watcher of all jobs before the stream
  // ends RESOURCE_EXHAUSTED.
  size_t max_queued_jobs = 10'000;
  // Stored events replayed for since_revision before jumping to the current snapshot.
  int max_replay_events = 256;
  // Open watch streams (WatchExportJob and WatchExportJobs) per tenant and per server; a watch
  // beyond either is RESOURCE_EXHAUSTED. <= 0: no limit.
  int max_watchers_per_tenant = 0;
  int max_watchers = 0;
};

// `slot` (see WatcherSlots in server/limits.h) is held until gRPC is done with the stream.
//
// Starts a watch of one job: the current snapshot (or the changes after since_revision), then
// every change. The request must have passed validation. `hub`, `store` and `readers` must
// outlive the stream.
grpc::ServerWriteReactor<exportjobs::v1::ExportJobEvent>* StartJobWatch(
    ProgressHub* hub, const JobStore* store, Executor* readers, const WatchLimits& limits,
    std::string tenant, const exportjobs::v1::WatchExportJobRequest& request,
    std::shared_ptr<void> slot = nullptr);

// Starts a watch of every change of every job of `tenant` that matches the request's filters.
// The response headers are sent once the watch is registered, so a client that has them (e.g.
// ClientReader::WaitForInitialMetadata) knows that no later change will be missed.
grpc::ServerWriteReactor<exportjobs::v1::ExportJobEvent>* StartAllJobsWatch(
    ProgressHub* hub, const WatchLimits& limits, std::string tenant,
    const exportjobs::v1::WatchExportJobsRequest& request, std::shared_ptr<void> slot = nullptr);

// A server stream that ends at once with `status`.
template <typename Response>
grpc::ServerWriteReactor<Response>* FailedStream(const grpc::Status& status) {
  class Failed final : public grpc::ServerWriteReactor<Response> {
   public:
    explicit Failed(const grpc::Status& status) { this->Finish(status); }
    void OnDone() override { delete this; }
  };
  return new Failed(status);
}

inline grpc::ServerWriteReactor<exportjobs::v1::ExportJobEvent>* FailedWatch(
    const grpc::Status& status) {
  return FailedStream<exportjobs::v1::ExportJobEvent>(status);
}

}  // namespace exportd
