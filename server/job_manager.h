// JobManager: the job state machine. Every mutation runs on one committer thread that applies
// queued requests in arrival order, against the stored state plus the changes staged before it,
// and writes each group of changes with one synced JobStore::Commit (group commit). A caller is
// answered only after its change is durable. Reads run on the read executor.
//
// Every committed change is then handed, in commit order, to the change listener (the
// ProgressHub), which must not block.
//
// Thread safety: all methods are thread-safe and return at once; callbacks run on the committer
// thread (mutations) or a read executor thread (reads) and must not block.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/job_id.h"
#include "exportjobs/v1/export_service.pb.h"
#include "server/executor.h"
#include "storage/job_store.h"

namespace exportd {

class JobManager {
 public:
  using JobCallback = absl::AnyInvocable<void(absl::StatusOr<ExportJob>) &&>;
  using StatusCallback = absl::AnyInvocable<void(absl::Status) &&>;
  using ListCallback =
      absl::AnyInvocable<void(absl::StatusOr<exportjobs::v1::ListExportJobsResponse>) &&>;
  using ChangeListener = std::function<void(const JobChange&)>;
  // Changes a job record in place; returns an error to leave it unchanged.
  using Mutation = absl::AnyInvocable<absl::Status(JobRecord&)>;

  struct Options {
    // Most requests applied in one group commit.
    int max_group_size = 512;
    int default_page_size = 50;
    int max_page_size = 1000;
  };

  // Starts the committer thread. `store`, `clock` and `readers` must outlive the manager.
  // Errors: whatever reading the last job id from the store returns.
  static absl::StatusOr<std::unique_ptr<JobManager>> Start(JobStore* store, const Clock* clock,
                                                           Executor* readers, Options options,
                                                           ChangeListener listener);
  ~JobManager();

  // Creates a pending job from a request that passed ValidateAndNormalizeCreate.
  // With a request_id: returns the job an earlier create with the same tenant, request_id and
  // request made; ALREADY_EXISTS when that request_id was used for a different request.
  void Create(exportjobs::v1::CreateExportJobRequest normalized, std::string tenant,
              JobCallback done);

  // PENDING -> CANCELLED; PROCESSING -> cancel_requested (no change when already requested);
  // a terminal job -> FAILED_PRECONDITION. NOT_FOUND for an unknown id or another tenant's job.
  void Cancel(std::string id, std::string tenant, JobCallback done);

  // Deletes a terminal job with its events; FAILED_PRECONDITION when it is not terminal.
  void Delete(std::string id, std::string tenant, StatusCallback done);

  // Applies `mutate` to the job's current record and commits the result as its next revision
  // (revision + 1, updated_at = now). For the server's own state transitions (the worker
  // protocol); does no tenant check. `mutate` runs on the committer thread and must not block;
  // the error it returns is the call's result and nothing changes. NOT_FOUND for an unknown id.
  void Update(std::string id, Mutation mutate, JobCallback done);

  // NOT_FOUND for an unknown id or another tenant's job.
  void Get(std::string id, std::string tenant, JobCallback done);

  // Newest first; see ListExportJobsRequest. INVALID_ARGUMENT for a bad page_size, filter or
  // page_token.
  void List(exportjobs::v1::ListExportJobsRequest request, std::string tenant, ListCallback done);

  // Applies the requests already queued, answers them, then stops the committer; requests after
  // this are answered UNAVAILABLE. Idempotent.
  void Shutdown();

 private:
  class Txn;
  struct Op {
    absl::AnyInvocable<absl::StatusOr<ExportJob>(Txn&)> apply;
    JobCallback done;
  };

  JobManager(JobStore* store, const Clock* clock, Executor* readers, Options options,
             ChangeListener listener);
  void Enqueue(Op op);
  void CommitLoop();

  JobStore* const store_;
  const Clock* const clock_;
  Executor* const readers_;
  const Options options_;
  const ChangeListener listener_;
  JobIdGenerator ids_;

  absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread committer_;
};

// True for COMPLETED, FAILED and CANCELLED.
bool IsTerminal(exportjobs::v1::ExportJobStatus status);

}  // namespace exportd
