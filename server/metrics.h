// ServerMetrics: the export-server's metrics, rendered in the Prometheus text format for /metrics
// on the HTTP port (prometheus-cpp's Registry and TextSerializer; the HTTP port is our own).
//
// Counters and histograms are kept as things happen:
//  - job events, counted from each group commit's changes by JobManager::Options::on_commit
//    (on the committer thread, lock-free increments): created, claims, completed, failed,
//    cancelled, retries, lease expiries, releases, deletes, expired files, uploaded parts, and
//    the size and write time of each group commit;
//  - every call of ExportService and WorkerService, by a gRPC server interceptor (see
//    NewRpcInterceptorFactory): its duration and its status code (the interceptor also logs
//    "rpc.error" at warn for codes other than OK, CANCELLED and the domain errors);
//  - part bytes written by uploads, and janitor runs.
// Gauges are read at each scrape from Sources instead: jobs by status and queued jobs (kept
// incrementally by the JobManager, so a scrape never reads the store), watch streams, waiting
// claims and readiness; and the log lines the asynchronous logger dropped.
//
// Every name starts with exportd_; docs/architecture.md (Operations) lists them.
//
// Thread safety: all methods are thread-safe and never block on I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "grpcpp/support/server_interceptor.h"
#include "server/job_manager.h"

namespace exportd {

class ServerMetrics {
 public:
  // What a scrape reads. Each may be unset; each is called on an HTTP thread and must not block.
  struct Sources {
    // The JobManager's counts; nullopt while it is not running.
    std::function<std::optional<JobManager::Counts>()> counts;
    // Watch streams open (WatchExportJob and WatchExportJobs).
    std::function<size_t()> watchers;
    // Claims waiting for a job.
    std::function<int()> waiting_claims;
    // Whether the server is ready (see ExportServer's readiness).
    std::function<bool()> ready;
  };

  explicit ServerMetrics(Sources sources);
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Counts one group commit (JobManager::Options::on_commit).
  void OnCommit(const CommitReport& report);

  // Part bytes an upload wrote to its part file.
  void AddUploadBytes(int64_t bytes);

  // One janitor run; `ok` false when it failed. (What it removed is counted by OnCommit.)
  void JanitorRun(bool ok);

  // A server interceptor that times every call of exportjobs.v1.ExportService and
  // exportjobs.v1.WorkerService (from the call's arrival to its status) and counts it by status
  // code; other services' calls are not intercepted. For
  // ServerBuilder::experimental().SetInterceptorCreators; must not outlive this object.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewRpcInterceptorFactory();

  // Every metric in the Prometheus text exposition format (version 0.0.4).
  std::string Scrape() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace exportd
