// JobManager: the job state machine. Every mutation runs on one committer thread that applies
// queued requests in arrival order, against the stored state plus the changes staged before it,
// and writes each group of changes with one synced JobStore::Commit (group commit). A caller is
// answered only after its change is durable. Reads run on the read executor.
//
// A group whose write fails (the disk is full or failing) changes nothing in memory (claim
// queue, leases, counts), and each of its callers is answered UNAVAILABLE "the change could not
// be stored; retry: <the store's reason>". Its outcome in the store is unknown (a write that
// failed only in its sync can be found applied once the store reopens), so after the next
// successful write the claim queue is read again from the store and the counts start over. The
// server does not stop: reads go on, and writes work again as soon as the store does
// (RocksDbJobStore reopens RocksDB after a failed write, at its next Commit).
//
// Every committed change is then handed, in commit order, to the change listener (the
// ProgressHub), which must not block.
//
// The worker protocol runs here too: claims take the oldest ready job from an in-memory index
// of the claim queue (one ordered set per entity type, loaded at start, kept in step with every
// commit); a claim that finds nothing parks until a job becomes ready or its wait ends; leases
// are fenced by their token, extended by progress, and expired by Tick().
//
// Answers: the callbacks of mutations run on one answer thread, group after group in commit
// order, so that the committer writes the next group while the answers of the last one are
// sent (a gRPC Finish serialises and sends); a claim answered from its wait runs on the
// committer.
//
// Thread safety: all methods are thread-safe and return at once; callbacks run on the answer
// thread (mutations), the committer (claims answered from their wait) or a read executor thread
// (reads) and must not block.
#pragma once

#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/job_id.h"
#include "exportjobs/v1/export_service.pb.h"
#include "exportjobs/v1/worker_service.pb.h"
#include "server/executor.h"
#include "storage/job_store.h"

namespace exportd {

// Why the JobManager made a change; reported with each committed change (see CommitReport).
enum class ChangeCause : uint8_t {
  kCreate,        // Create
  kCancel,        // Cancel: cancelled at once, or cancel requested
  kDelete,        // Delete
  kUpdate,        // Update (the server's own transitions)
  kClaim,         // a claim took the job
  kProgress,      // ReportProgress
  kPartRecorded,  // RecordPart
  kComplete,      // Complete
  kFail,          // Fail: retried, failed or (cancel requested) cancelled
  kRelease,       // Release: pending again or (cancel requested) cancelled
  kLeaseExpiry,   // Tick found the lease expired: retried, failed or cancelled
  kFilesExpiry,   // the janitor removed the files of an expired export
  kRetention,     // the janitor deleted a finished job after its retention
};

// One group commit, as written: each change with its cause, in commit order.
struct CommitReport {
  std::span<const JobChange> changes;
  std::span<const ChangeCause> causes;  // causes[i] is why changes[i] was made
  // notes[i] says more about changes[i] when the records do not (else empty): the worker's
  // error message of a failure (kFail), also when the job is retried.
  std::span<const std::string> notes;
  // Requests applied in the group (some change nothing, some several jobs; each item of a
  // batch create counts as one).
  int requests = 0;
  // How long the synced write took.
  absl::Duration write_time;
};

class JobManager {
 public:
  using JobCallback = absl::AnyInvocable<void(absl::StatusOr<ExportJob>) &&>;
  using StatusCallback = absl::AnyInvocable<void(absl::Status) &&>;
  using ListCallback =
      absl::AnyInvocable<void(absl::StatusOr<exportjobs::v1::ListExportJobsResponse>) &&>;
  using ChangeListener = std::function<void(const JobChange&)>;
  // Changes a job record in place; returns an error to leave it unchanged.
  using Mutation = absl::AnyInvocable<absl::Status(JobRecord&)>;

  struct Claimed {
    // Unset when no job came within the wait.
    std::optional<ExportJob> job;
    exportjobs::v1::Lease lease;
    // With max_jobs > 1: the jobs claimed after `job`, oldest first, each with its lease.
    std::vector<exportjobs::v1::ClaimedExportJob> more;
  };
  // Most jobs one claim may take (ClaimExportJobRequest.max_jobs).
  static constexpr int kMaxClaimJobs = 256;
  using ClaimCallback = absl::AnyInvocable<void(absl::StatusOr<Claimed>) &&>;
  using ProgressCallback =
      absl::AnyInvocable<void(absl::StatusOr<exportjobs::v1::ReportProgressResponse>) &&>;
  using ReportBatchCallback =
      absl::AnyInvocable<void(absl::StatusOr<exportjobs::v1::BatchReportExportJobsResponse>) &&>;

  struct Options {
    // Most requests applied in one group commit.
    int max_group_size = 512;
    int default_page_size = 50;
    int max_page_size = 1000;
    // Stored jobs one List page examines at most (see List); 0: no bound.
    int64_t max_list_scan = 10000;
    // How long a claim or a progress report keeps the lease.
    absl::Duration lease_duration = absl::Seconds(30);
    // Claims of a job before a failure or lease expiry fails it for good.
    int max_attempts = 3;
    // Backoff before retry n (from 1): retry_backoff * 2^(n-1), at most max_retry_backoff.
    absl::Duration retry_backoff = absl::Seconds(1);
    absl::Duration max_retry_backoff = absl::Minutes(5);
    // How long a completed job's file stays downloadable.
    absl::Duration retention = absl::Hours(24 * 7);
    // The download URL of a completed job's file (part 0) or of one part, of a job of
    // `tenant`, valid until `expires`. Must not block.
    std::function<std::string(const std::string& id, const std::string& tenant, int32_t part,
                              absl::Time expires)>
        download_url;
    // Called on the committer thread after each group of requests (after its changes were
    // handed to the listener). Must not block.
    std::function<void()> after_group;
    // Called after a commit with the parts to delete: those of an attempt that ended without
    // completing (epoch >= 0) or of a deleted job (epoch -1). Must not block.
    std::function<void(const std::string& id, int64_t epoch)> discard_parts;
    // Called on the committer thread after each successful write, before the changes are
    // handed to the listener and the callers are answered (for metrics and logs). Must not
    // block.
    std::function<void(const CommitReport&)> on_commit;
    // Called on the answer thread after each successful write, in commit order, just before
    // that group's callers are answered (for log lines: formatting them stays off the
    // committer, which writes the next group meanwhile). Must not block.
    std::function<void(const CommitReport&)> on_commit_answering;
    // Job records read per step of the count at start (see counts()).
    int count_page_size = 512;
    // Most active (pending or processing) jobs of one tenant; a Create beyond it is
    // RESOURCE_EXHAUSTED (server/limits.h). 0: no limit. Enforced from the jobs counted so far:
    // until the count at start has finished (see counts()), jobs not yet counted are not seen.
    int64_t max_active_jobs_per_tenant = 0;
    // The retry hint of that refusal.
    absl::Duration active_jobs_retry_after = absl::Seconds(5);
  };

  struct Counts {
    // Jobs stored, by status (indexed by ExportJobStatus); nullopt until the count at start has
    // finished (see counts()).
    std::optional<std::array<int64_t, exportjobs::v1::ExportJobStatus_ARRAYSIZE>> by_status;
    // Pending jobs in the claim queue (ready, or waiting for a retry's backoff), by entity type
    // (indexed by EntityType).
    std::array<int64_t, exportjobs::v1::EntityType_ARRAYSIZE> queued{};
  };

  // Starts the committer thread. `store`, `clock` and `readers` must outlive the manager.
  // Errors: whatever reading the last job id from the store returns.
  static absl::StatusOr<std::unique_ptr<JobManager>> Start(JobStore* store, const Clock* clock,
                                                           Executor* readers, Options options,
                                                           ChangeListener listener);
  ~JobManager();

  // Creates a pending job of `tenant` (a tenant name, never kAllTenants) from a request that
  // passed ValidateAndNormalizeCreate. With a request_id: returns the job an earlier create with
  // the same tenant, request_id and request made; ALREADY_EXISTS when that request_id was used for
  // a different request. RESOURCE_EXHAUSTED when the tenant has max_active_jobs_per_tenant active
  // jobs.
  void Create(exportjobs::v1::CreateExportJobRequest normalized, std::string tenant,
              JobCallback done);

  using BatchCallback = absl::AnyInvocable<void(std::vector<absl::StatusOr<ExportJob>>) &&>;
  // Creates a job for each of `normalized` (each passed ValidateAndNormalizeCreate) as Create
  // would, in order, as one queued request: the items are applied one after another in the same
  // group (a later item sees the earlier ones: two with one request_id give one job, and each
  // counts toward max_active_jobs_per_tenant) and share the group's one synced write. `done`
  // gets one result per item, in order, after that write; each item succeeds or fails on its
  // own (not atomic). When the write fails, every item is UNAVAILABLE, as for Create. An empty
  // batch is answered at once.
  void CreateBatch(std::vector<exportjobs::v1::CreateExportJobRequest> normalized,
                   std::string tenant, BatchCallback done);

  // Cancel, Delete, Get and List act for a caller whose tenant scope (server/tenancy.h) is
  // `scope`: a job outside it is NOT_FOUND, as if it did not exist.

  // PENDING -> CANCELLED; PROCESSING -> cancel_requested (no change when already requested);
  // a terminal job -> FAILED_PRECONDITION. NOT_FOUND for an unknown id or a job outside `scope`.
  void Cancel(std::string id, std::string scope, JobCallback done);

  // Deletes a terminal job with its events; FAILED_PRECONDITION when it is not terminal.
  void Delete(std::string id, std::string scope, StatusCallback done);

  // Applies `mutate` to the job's current record and commits the result as its next revision
  // (revision + 1, updated_at = now). For the server's own state transitions (the worker
  // protocol); does no tenant check. `mutate` runs on the committer thread and must not block;
  // the error it returns is the call's result and nothing changes. NOT_FOUND for an unknown id.
  void Update(std::string id, Mutation mutate, JobCallback done);

  // --- The worker protocol (WorkerService). Each call after Claim checks the lease token:
  // ABORTED (and no change) when it is not the job's current, unexpired lease.

  // Claims the oldest ready job of `entity_types` (empty: any) for `worker_id`: PROCESSING,
  // attempt + 1, a new lease with the next epoch. Without a ready job, waits up to `wait`
  // (real time) and answers without a job if none comes.
  // `cancelled` (optional, must not block) tells whether the caller has gone away: such a claim
  // is answered CANCELLED instead of being given a job, also while it waits.
  void Claim(std::string worker_id, std::vector<EntityType> entity_types, absl::Duration wait,
             ClaimCallback done, std::function<bool()> cancelled = nullptr);
  // The same, claiming up to `max_jobs` (1 to kMaxClaimJobs) ready jobs at once, oldest first:
  // a waiting claim is answered as soon as at least one job is ready, with as many of the ready
  // ones as it may take. Each job gets a lease of its own.
  void ClaimBatch(std::string worker_id, std::vector<EntityType> entity_types, int max_jobs,
                  absl::Duration wait, ClaimCallback done,
                  std::function<bool()> cancelled = nullptr);

  // Records progress and extends the lease.
  void ReportProgress(exportjobs::v1::ReportProgressRequest request, ProgressCallback done);

  // Several progress reports and completions in one group commit, each checked and applied as
  // ReportProgress or Complete would (in order: a later report of a job sees the earlier one),
  // then, when request.has_claim(), up to claim.max_jobs ready jobs claimed at once (no wait).
  // A report that is refused changes nothing and has its error in its result; the others
  // apply. The call's own error is only UNAVAILABLE (the group's write failed: nothing applied)
  // or a read error of the claim. REQUIRES: the request was validated
  // (ValidateBatchReport in server/worker_service.cc): at most kMaxBatchReports reports, each
  // well-formed, claim.max_jobs 1 to kMaxClaimJobs.
  void ReportBatch(exportjobs::v1::BatchReportExportJobsRequest request, ReportBatchCallback done);
  // Most reports in one ReportBatch.
  static constexpr int kMaxBatchReports = 256;

  // The epoch of the job's current lease if `token` is it (read only, for starting an upload).
  void CheckLease(std::string id, std::string token,
                  absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&> done);

  // Records an uploaded part (replacing one with the same number) and extends the lease.
  void RecordPart(std::string id, std::string token, exportjobs::v1::ExportPart part,
                  JobCallback done);

  // Completes the job when the manifest matches the uploaded parts exactly:
  // FAILED_PRECONDITION naming the first missing, extra or different part; INVALID_ARGUMENT when
  // the manifest itself is malformed or record_count is not the parts' sum. A manifest without
  // parts is accepted only with record_count 0 and no part uploaded (an export of no records,
  // whose download is empty).
  void Complete(exportjobs::v1::CompleteExportJobRequest request, JobCallback done);

  // A retryable failure with attempts left: PENDING after the backoff. Otherwise FAILED with the
  // message (CANCELLED when cancel was requested). The attempt's parts are discarded.
  void Fail(exportjobs::v1::FailExportJobRequest request, JobCallback done);

  // The worker gives the job up: CANCELLED when cancel was requested, else PENDING at once
  // without using an attempt. The attempt's parts are discarded.
  void Release(std::string id, std::string token, JobCallback done);

  // Expires leases due by the clock (PENDING after backoff, FAILED once attempts are used,
  // CANCELLED when cancel was requested), answers claims whose wait ended, and hands ready jobs
  // to waiting claims. The server calls it periodically; tests call it after moving a FakeClock.
  void Tick();

  // The janitor: removes the part files of completed jobs whose expires_at has passed, and
  // deletes terminal jobs (with their events and idempotency keys) that finished more than
  // `job_retention` ago. Reads on the read executor, changes through the committer; `done` runs
  // when the sweep is over with the numbers of expired files and deleted jobs.
  void Sweep(absl::Duration job_retention,
             absl::AnyInvocable<void(absl::StatusOr<std::pair<int, int>>) &&> done);

  // Answers every waiting claim at once without a job (the server is shutting down).
  void EndWaitingClaims();

  // Claims parked waiting for a job (for tests and metrics).
  int waiting_claims();

  // The number of jobs by status and of queued jobs by entity type, as of the last commit,
  // without reading the store. The queue is known from the start (it is loaded then). Jobs by
  // status are kept from each committed change's before and after; at start they are counted
  // once in the background — a page of count_page_size records at a time on the committer,
  // between groups, so that starting stays fast and no commit waits long — and by_status is
  // unset until that count has finished.
  Counts counts() const;

  // Waits until counts().by_status is set, or until `deadline`. True when it is.
  bool AwaitCounted(absl::Time deadline);

  // NOT_FOUND for an unknown id or a job outside `scope`.
  void Get(std::string id, std::string scope, JobCallback done);

  // The jobs in `scope`, newest first; see ListExportJobsRequest. INVALID_ARGUMENT for a bad
  // page_size, filter or page_token. One page examines at most Options::max_list_scan stored
  // jobs: when that many did not fill it, it comes back short (even empty) with a
  // next_page_token that continues the scan where it stopped.
  void List(exportjobs::v1::ListExportJobsRequest request, std::string scope, ListCallback done);

  // Applies the requests already queued, answers them, then stops the committer; requests after
  // this are answered UNAVAILABLE. Idempotent.
  void Shutdown();

 private:
  class Txn;
  // One queued request. `apply` runs on the committer against the group's state and stages
  // changes; `finish` answers the caller once the group's write is done (`written` OK) or
  // failed. An op that parks (a claim waiting for a job) leaves `finish` to the waiter.
  struct Op {
    absl::AnyInvocable<void(Txn&)> apply;
    absl::AnyInvocable<void(const absl::Status& written)> finish;
    // The callers' requests it carries, for CommitReport::requests (a batch create: its items).
    int requests = 1;
  };
  // A written group's changes, handed to the answer thread for on_commit_answering.
  struct Written {
    std::vector<JobChange> changes;
    std::vector<ChangeCause> causes;
    std::vector<std::string> notes;
    int requests = 0;
    absl::Duration write_time;
  };
  // A claim, from its request until it is answered; parked in waiters_ while it waits.
  struct ClaimState {
    std::string worker_id;
    std::vector<EntityType> entity_types;
    int max_jobs = 1;
    absl::Time deadline;  // Real time.
    ClaimCallback done;
    std::function<bool()> cancelled;
    absl::StatusOr<Claimed> result = absl::UnknownError("not applied");
    bool parked = false;
  };
  JobManager(JobStore* store, const Clock* clock, Executor* readers, Options options,
             ChangeListener listener);
  void Enqueue(Op op);
  void CommitLoop();
  // An op whose result is a StatusOr<T>: the caller gets the result, or UNAVAILABLE when the
  // group's write failed.
  template <typename T>
  static Op MakeOp(absl::AnyInvocable<absl::StatusOr<T>(Txn&)> apply,
                   absl::AnyInvocable<void(absl::StatusOr<T>) &&> done);
  // Committer only: one create in the group's state (see Create); `fingerprint` is the
  // request's CreateFingerprint, computed before the request was queued.
  absl::StatusOr<ExportJob> ApplyCreate(Txn& txn,
                                        const exportjobs::v1::CreateExportJobRequest& request,
                                        const std::string& tenant, const std::string& fingerprint);
  // The op of a claim: claims in the group's state, or parks the claim in waiters_.
  Op ClaimOp(std::shared_ptr<ClaimState> claim);
  absl::StatusOr<Claimed> TryClaim(Txn& txn, const ClaimState& claim);
  // Claims the oldest ready job of `types` in the group's state; nullopt when there is none.
  absl::StatusOr<std::optional<exportjobs::v1::ClaimedExportJob>> ClaimOne(
      Txn& txn, const ClaimState& claim, const std::vector<EntityType>& types);
  // The changes of ReportProgress and Complete, staged in `txn`; an error stages nothing.
  absl::StatusOr<exportjobs::v1::ReportProgressResponse> ApplyProgress(
      Txn& txn, const exportjobs::v1::ReportProgressRequest& request);
  absl::StatusOr<ExportJob> ApplyComplete(Txn& txn,
                                          const exportjobs::v1::CompleteExportJobRequest& request);
  // The job's record when `token` is its current, unexpired lease; ABORTED otherwise.
  static absl::StatusOr<JobRecord> LeasedJob(Txn& txn, const std::string& id,
                                             const std::string& token);
  // Committer only: keeps the ready index in step with committed changes, and wakes waiters
  // for jobs that became ready.
  void AfterCommit(const std::vector<JobChange>& changes);
  // Committer only: answers waiters whose wait ended; requeues claims of waiters that can now
  // get a job.
  void ServeWaiters(absl::Time clock_now);
  absl::Duration Backoff(int attempt) const;
  // Committer only: keeps the counts in step with committed changes.
  void CountChanges(const std::vector<JobChange>& changes);
  // Committer only, after a successful write that follows a failed one: reads the claim queue
  // again from the store and restarts the count of jobs by status and of active jobs, since the
  // failed write may have been applied after all.
  void Resync();
  // Committer only: counts `record` in (+1) or out (-1) of its tenant's active jobs when it is
  // active.
  void CountActive(const JobRecord& record, int delta);
  // The op that counts the next page of the jobs stored at start.
  Op CountOp();

  // The claim queue in memory: per entity type, (ready_at micros, id) of pending jobs, as
  // committed. Committer thread only. A B-tree: many entries per node instead of a node each,
  // so an insert (one per create) seldom allocates and a million entries load faster.
  std::vector<absl::btree_set<std::pair<int64_t, std::string>>> ready_;
  std::deque<std::shared_ptr<ClaimState>> waiters_;
  std::atomic<int> waiting_{0};

  // Jobs by status and queued jobs by entity type: written by the committer, read by anyone.
  std::array<std::atomic<int64_t>, exportjobs::v1::ExportJobStatus_ARRAYSIZE> by_status_{};
  std::array<std::atomic<int64_t>, exportjobs::v1::EntityType_ARRAYSIZE> queued_{};
  // Committer only: the jobs with ids >= count_floor_ are in by_status_ (the count at start
  // proceeds from the newest job down; new jobs sort above every stored one); empty once every
  // job is counted. count_stalled_: a page failed to read; the next Tick resumes the count.
  std::string count_floor_;
  bool count_stalled_ = false;
  // Committer only: active jobs by tenant, as committed and counted (like by_status_), and the
  // creates staged by the group being applied.
  absl::flat_hash_map<std::string, int64_t> active_by_tenant_;
  absl::flat_hash_map<std::string, int64_t> group_creates_;
  // Committer only: a write failed; Resync after the next successful one.
  bool resync_ = false;
  absl::Time count_started_;
  mutable absl::Mutex counted_mu_;
  bool counted_ ABSL_GUARDED_BY(counted_mu_) = false;

  JobStore* const store_;
  const Clock* const clock_;
  Executor* const readers_;
  const Options options_;
  const ChangeListener listener_;
  JobIdGenerator ids_;

  absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Runs each group's answers (Op::finish) in commit order, off the committer.
  Executor answers_{"job-answers", 1};
  std::thread committer_;
};

// True for COMPLETED, FAILED and CANCELLED.
bool IsTerminal(exportjobs::v1::ExportJobStatus status);

}  // namespace exportd
