// ExportRunner: the engine of an export-worker process. It runs `concurrency` job loops, each on
// a thread of its own; the loops waiting for a job share one claim at a time from the server's
// WorkerService (long-polling, ClaimExportJobRequest.max_jobs = the loops waiting, so that idle
// slots fill with one call); a loop with a job runs the export — rows from a Source, encoded by
// a PartWriter into part files in work_dir, each part streamed to the server with
// UploadExportPart and then deleted — reports progress, and completes, fails or releases the
// job. A completion is a BatchReportExportJobs that also claims the completing loop's next job
// (CompleteExportJob against a server without it). Usable in-process (tests) and by
// worker_main.cc.
//
// Per job: the job's filters are parsed against the entity's catalog (filters::Parse), its
// fields become columns with their catalog types, the source counts the matching records (the
// progress estimate) and scans them into a PartWriter with the job's format, compression and
// part size.
//
// Progress: ReportProgress (records_processed, bytes_written, parts_uploaded,
// records_total_estimate) is sent before the scan, at most every heartbeat_interval while rows
// flow, and after every uploaded part (the last one is the report at the end). A report is where
// the lease is extended and where the runner learns that cancel was requested: it then stops the
// scan and calls ReleaseExportJob, which ends the job cancelled.
//
// The calls go through client::WorkerClient. Errors, per call:
//   ABORTED                                 the lease is lost: the job is dropped silently.
//   UNAVAILABLE, DEADLINE_EXCEEDED,         retried with exponential backoff (initial_backoff
//   RESOURCE_EXHAUSTED                      doubling to max_backoff, each wait randomised by
//                                           ±20%, at most max_call_attempts tries, ending a
//                                           fifth of the lease before its end); an upload is
//                                           retried from the start of the part. When the tries
//                                           run out the job is failed (retryable) with the last
//                                           error, e.g. the server's "No space left on device",
//                                           so the job records why and is retried at once; if
//                                           that call fails too (the server unreachable) the
//                                           job is dropped and its lease left to expire.
//   anything else from the server           FailExportJob(retryable = true).
// Per job: a data problem (unknown entity or field, a filter that does not parse, a source that
// cannot be opened or read) -> FailExportJob(retryable = false) with a message naming it; a
// local I/O failure (work_dir full or unwritable, a part file unreadable) -> FailExportJob
// (retryable = true).
//
// Every event is logged as one structured event (common/logging.h), each with worker_id, and
// job_id and request_id (the job's) where there is a job:
//   job.claimed    info   entity_type, attempt
//   job.completed  info   records, parts, bytes, seconds (from the claim)
//   job.failed     warn   error, retryable (as sent: false for a data problem), will_retry
//                         (the job is pending again for another attempt)
//   job.released   info   (pending again at once, for any worker)
//   job.cancelled  info   (cancel was requested; the job ended cancelled)
//   job.dropped    warn   why (lease lost, or the server unreachable: its lease will expire)
//   worker.claim_failed  warn  rpc, code, error, failures (the first of a run of failed claims
//                              and every tenth; claims are retried while the runner runs)
//
// Every gRPC call (each try of it) has a deadline: rpc_timeout; a claim claim_wait +
// rpc_timeout; an upload rpc_timeout plus one second per MiB of the part.
//
// Thread safety: Start, Stop, stats and the destructor may be called from any thread, except
// from the options' callbacks (Stop waits for the loops that call them). The callbacks
// (open_source, log) are called from the job loops' threads, concurrently.
//
// Limits: progress is reported from the scan's row callback, so a source that takes longer than
// the lease to produce its first row (or its count) loses the lease; Stop(kRelease) takes
// effect at the next row.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/export_client.h"
#include "common/logging.h"
#include "exportjobs/v1/export_job.pb.h"
#include "grpcpp/channel.h"
#include "worker/source.h"

namespace exportd {

class ExportRunner {
 public:
  // Opens the data source for one job; called once per job, on the job's loop thread.
  using SourceFactory = std::function<absl::StatusOr<std::unique_ptr<Source>>()>;

  struct Options {
    // The server's WorkerService (e.g. client::MakeChannel). Required.
    std::shared_ptr<grpc::Channel> channel;
    // The bearer token of a worker (or admin) principal, sent with every call; empty: none
    // (a server with --insecure_no_auth).
    std::string token;
    // Names this worker in claims and logs; 1 to 128 characters. Required.
    std::string worker_id;
    // Required; see SqliteSourceFactory.
    SourceFactory open_source;
    // Jobs run at once (job loops); at least 1.
    int concurrency = 2;
    // Claim only jobs of these entity types; empty for any.
    std::vector<exportjobs::v1::EntityType> entity_types;
    // Where part files are written until they are uploaded; must be an existing directory.
    std::string work_dir;
    // The part size of a job whose part_size_bytes is 0; at least 1.
    int64_t default_part_size_bytes = int64_t{64} << 20;
    // Most time between progress reports while rows flow; more than 0.
    absl::Duration heartbeat_interval = absl::Seconds(5);
    // How long one claim waits for a job (the server caps it at 30 s); 0 to 30 s.
    absl::Duration claim_wait = absl::Seconds(20);
    // The deadline of each call (added to claim_wait for a claim); more than 0.
    absl::Duration rpc_timeout = absl::Seconds(30);
    // Backoff between tries of a call that failed transiently: initial_backoff, doubling up to
    // max_backoff; at most max_call_attempts tries of one call (at least 1).
    absl::Duration initial_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(5);
    int max_call_attempts = 8;
    // Receives each event (see above); unset: LogEvent, the process's logger. Called from the
    // job loops' threads, concurrently.
    std::function<void(LogLevel level, std::string_view event, const std::vector<LogField>& fields)>
        log;
  };

  // How Stop treats the jobs in progress.
  enum class StopMode {
    // Finish them (complete, fail or release as they end); claim no more.
    kFinish,
    // Stop exporting them and release each with ReleaseExportJob (the job is pending again at
    // once without using an attempt, or cancelled if cancel was requested), so that none waits
    // for its lease to expire.
    kRelease,
  };

  // Counts of job events since Create.
  struct Stats {
    int64_t claimed = 0;
    int64_t completed = 0;
    int64_t failed = 0;     // FailExportJob accepted (retryable or not).
    int64_t released = 0;   // Released and pending again.
    int64_t cancelled = 0;  // Released after cancel was requested; cancelled.
    int64_t dropped = 0;    // Given up without a final call: lease lost or server unreachable.
  };

  // Checks the options (INVALID_ARGUMENT naming the first unusable one). Does not contact the
  // server.
  static absl::StatusOr<std::unique_ptr<ExportRunner>> Create(Options options);

  // Stop(StopMode::kRelease), then destroys the runner.
  ~ExportRunner();

  ExportRunner(const ExportRunner&) = delete;
  ExportRunner& operator=(const ExportRunner&) = delete;

  // Starts the job loops. REQUIRES: called at most once. A runner already stopped starts none.
  void Start();

  // Stops the job loops and returns when all have ended: waiting claims are cancelled at once;
  // jobs in progress are finished (kFinish) or released (kRelease: calls in progress are
  // cancelled, so this returns within about one call's round trip when the server is up). A
  // job claimed after Stop began is released. May be called more than once and from several
  // threads; a later kRelease escalates an earlier kFinish.
  void Stop(StopMode mode);

  Stats stats() const;

 private:
  class JobRun;

  explicit ExportRunner(Options options);

  // A claimed job on its way to a job loop; claim_sent: when its claim was sent.
  struct ClaimedJob {
    exportjobs::v1::ExportJob job;
    exportjobs::v1::Lease lease;
    absl::Time claim_sent;
  };

  void Loop();
  // The next job for the calling loop; nullopt once the runner stops. The loops waiting for a
  // job share one claim at a time, with max_jobs = their number, so idle slots are filled by
  // one ClaimExportJob; a claimed job always has a waiting loop to run it.
  std::optional<ClaimedJob> NextJob();
  // One ClaimExportJob for up to `max_jobs` jobs (waiting up to claim_wait): the jobs claimed,
  // none when none came or the claim failed (logged; backs off before returning).
  std::vector<ClaimedJob> ClaimFor(int max_jobs);
  void Log(LogLevel level, std::string_view event, const std::vector<LogField>& fields) const;
  bool stopping() const;
  bool releasing() const { return releasing_flag_.load(std::memory_order_acquire); }
  // Waits `duration` or until Stop; returns false when woken by Stop.
  bool SleepUnlessStopped(absl::Duration duration);
  void Count(int64_t Stats::*counter);

  const Options options_;
  client::WorkerClient client_;
  // What a call may be cancelled by: any Stop (claims), Stop(kRelease) (progress reports and
  // uploads, and the backoff between their tries), or nothing (the final complete, fail or
  // release, passed no token).
  client::CancelToken claims_cancel_;
  client::CancelToken jobs_cancel_;

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;   // Claim no more.
  bool releasing_ ABSL_GUARDED_BY(mu_) = false;  // Release the jobs in progress.
  Stats stats_ ABSL_GUARDED_BY(mu_);
  // Mirrors releasing_, for the scan's per-row check without the lock.
  std::atomic<bool> releasing_flag_{false};

  // The shared claim (NextJob). Lock order: claim_mu_ before mu_.
  absl::Mutex claim_mu_;
  int idle_loops_ ABSL_GUARDED_BY(claim_mu_) = 0;              // Loops in NextJob.
  bool claiming_ ABSL_GUARDED_BY(claim_mu_) = false;           // A loop is in ClaimFor.
  std::deque<ClaimedJob> claimed_ ABSL_GUARDED_BY(claim_mu_);  // Not yet taken by a loop.
  // Used only by the loop in ClaimFor (one at a time).
  int claim_failures_ = 0;
  absl::Duration claim_backoff_;

  // The server answered BatchReportExportJobs UNIMPLEMENTED (it predates it): complete with
  // CompleteExportJob.
  std::atomic<bool> batch_unsupported_{false};

  // Held while the loops are joined, so that every Stop returns only after they ended.
  absl::Mutex join_mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(join_mu_);
};

// A SourceFactory that opens the SQLite database at `path` read-only for each job (see
// SqliteSource::Open). Errors are the job's: NOT_FOUND when there is no file, and so on.
ExportRunner::SourceFactory SqliteSourceFactory(std::string path);

}  // namespace exportd
