// The worker-side measurements of exportd-bench, each against a running export-server:
//
//   cycle   job cycle throughput: --cycle_jobs empty jobs are created, then --cycle_workers
//           loops (job slots) over --cycle_channels connections each repeat: a job claimed ->
//           ReportProgress -> CompleteExportJob (0 records, no parts) until every job is
//           completed; jobs/s and per-cycle latency. A connection's loops waiting for a job
//           share one ClaimExportJob with max_jobs (--cycle_batch_claims), as export-worker's
//           slots do.
//   upload  part upload: --upload_bytes through one UploadExportPart stream in 1 MiB chunks
//           (SHA-256 computed as they go), beside a plain write of the same bytes to a file in
//           the scratch directory with fdatasync, and `dd ... conv=fdatasync`, in the same run.
//   export  export throughput end to end: an export-worker against the server and a seeded demo
//           database; an accounts export with every field (csv, and csv+gzip) from create to
//           COMPLETED, beside `sqlite3 -csv` of the same query into a file (for gzip variants
//           `sqlite3 -csv | gzip`), in the same run.
//
// Each prints one JSON line per run and a summary line (median, min, max over the runs).
// They need the server's queue to themselves: a claim takes whatever job is oldest.
//
// Thread safety: run one measurement at a time, from the main thread (children are tied to it).
#pragma once

#include <string>

#include "absl/time/time.h"

namespace exportd::bench {

struct WorkerBenchContext {
  // HOST:PORT of the export-server.
  std::string address;
  // A directory on the file system that holds the server's data directory: reference files,
  // the demo database and the worker's part files go here.
  std::string scratch_dir;
  int runs = 1;
  // Deadline of every unary call.
  absl::Duration deadline = absl::Seconds(10);
  // False when the measurement runs only because all were selected: a missing export-worker
  // then skips the export measurement instead of failing it.
  bool explicitly_selected = false;
};

// Each returns 0 when every run succeeded, 1 when some failed, 2 when it could not run at all
// (unusable flags, a missing program).
int RunCycleBench(const WorkerBenchContext& context);
int RunUploadBench(const WorkerBenchContext& context);
int RunExportBench(const WorkerBenchContext& context);

}  // namespace exportd::bench
