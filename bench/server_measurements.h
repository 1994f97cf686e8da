// The measurements of exportd-bench that start export-servers of their own, because they measure
// the server process itself (its resident memory, its start):
//
//   watch_memory  server memory holding --idle_watchers idle WatchExportJob streams: on a fresh
//                 server, --idle_watch_jobs pending jobs are created, the server's VmRSS is read
//                 from /proc/<pid>/status, then the streams are opened (spread over the jobs, each
//                 stream proven registered by its first event, the snapshot) and VmRSS is read
//                 again. Nothing changes the jobs, so the watchers stay idle. One fresh server per
//                 run.
//   restart       restart time to serving with --restart_jobs jobs stored: one data directory is
//                 filled once (CreateExportJob with --restart_fill_in_flight calls in flight,
//                 untimed; --restart_cancel_percent of them cancelled so they are stored finished,
//                 the rest stay pending), then each run stops the server (SIGTERM) and times a new
//                 one from exec to its `grpc listening` line and to gRPC health SERVING plus a
//                 first ListExportJobs answer; VmRSS then, and after --restart_settle.
//
// Each prints one JSON line per run and a summary line (median, min, max over the runs).
//
// Thread safety: run one measurement at a time, from the main thread (children are tied to it).
#pragma once

#include <string>

#include "absl/time/time.h"

namespace exportd::bench {

struct ServerBenchContext {
  // The export-server binary.
  std::string server_binary;
  // Copy the started servers' stderr to this stderr.
  bool server_log = false;
  int runs = 1;
  // Deadline of every unary call.
  absl::Duration deadline = absl::Seconds(10);
};

// The resident memory (VmRSS) of process `pid` in bytes, or -1 when it cannot be read.
int64_t ResidentBytes(int pid);

// Each returns 0 when every run succeeded, 1 when some failed, 2 when it could not run at all.
int RunWatchMemoryBench(const ServerBenchContext& context);
int RunRestartBench(const ServerBenchContext& context);

}  // namespace exportd::bench
