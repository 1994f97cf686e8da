#include "bench/worker_measurements.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/bench_common.h"
#include "bench/child_process.h"
#include "client/export_client.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "exportjobs/v1/worker_service.grpc.pb.h"

#ifndef EXPORT_WORKER_PATH
#define EXPORT_WORKER_PATH ""
#endif

ABSL_FLAG(int, cycle_workers, 64,
          "cycle: concurrent worker loops (job slots), on the callback API in one process");
ABSL_FLAG(int, cycle_channels, 4,
          "cycle: connections the loops share, like that many worker processes");
ABSL_FLAG(int64_t, cycle_jobs, 5000, "cycle: empty jobs created and then cycled in each run");
ABSL_FLAG(absl::Duration, cycle_claim_wait, absl::Seconds(1),
          "cycle: the wait of each claim (jobs are ready, so claims answer at once)");
ABSL_FLAG(std::string, cycle_protocol, "batch",
          "cycle: comma-separated protocols, each measured --runs times: batch (a connection's "
          "loops send their progress reports and completions together in one "
          "BatchReportExportJobs, which also claims the next jobs for them, as export-worker "
          "does; reported as \"cycle\"), unary (ClaimExportJob, ReportProgress and "
          "CompleteExportJob per job; reported as \"cycle_unary\")");
ABSL_FLAG(int, cycle_batch_calls, 1,
          "cycle, batch protocol: BatchReportExportJobs calls in flight per connection");
ABSL_FLAG(bool, cycle_batch_claims, true,
          "cycle: one ClaimExportJob (max_jobs) for every loop of a connection waiting for a job, "
          "as export-worker claims for its idle slots; false: one claim per job (unary "
          "protocol)");
ABSL_FLAG(int64_t, upload_bytes, int64_t{1} << 30, "upload: bytes of the uploaded part");
ABSL_FLAG(int64_t, upload_chunk_bytes, int64_t{1} << 20, "upload: bytes per chunk message");
ABSL_FLAG(absl::Duration, upload_timeout, absl::Minutes(5),
          "upload: deadline of the upload stream and of the dd reference");
ABSL_FLAG(std::string, worker_binary, EXPORT_WORKER_PATH,
          "export: the export-worker binary (seeds the demo database and runs the export)");
ABSL_FLAG(int64_t, export_accounts, 2000000, "export: accounts in the seeded demo database");
ABSL_FLAG(std::string, export_source, "",
          "export: an existing demo database to export instead of seeding a fresh one");
ABSL_FLAG(std::string, export_variants, "csv,gzip",
          "export: comma-separated variants: csv (no compression), gzip (csv+gzip), jsonl, "
          "jsonl_gzip");
ABSL_FLAG(int64_t, export_part_size_bytes, 0,
          "export: part size of the export jobs; 0 for the server's default");
ABSL_FLAG(absl::Duration, export_timeout, absl::Minutes(10),
          "export: longest wait for seeding, one export, or the sqlite3 reference");

namespace exportd::bench {
namespace {

using exportjobs::v1::ClaimExportJobRequest;
using exportjobs::v1::ClaimExportJobResponse;
using exportjobs::v1::CompleteExportJobRequest;
using exportjobs::v1::CreateExportJobRequest;
using exportjobs::v1::DeleteExportJobRequest;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobEvent;
using exportjobs::v1::ExportService;
using exportjobs::v1::ReportProgressRequest;
using exportjobs::v1::ReportProgressResponse;
using exportjobs::v1::UploadExportPartRequest;
using exportjobs::v1::UploadExportPartResponse;
using exportjobs::v1::WorkerService;

double MegabytesPerSec(int64_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) / 1e6 / seconds : 0;
}

double PerSec(int64_t count, double seconds) {
  return seconds > 0 ? static_cast<double>(count) / seconds : 0;
}

double Ratio(double ours, double reference) { return reference > 0 ? ours / reference : 0; }

// A failed call, as text.
std::string Failure(const std::string& what, const grpc::Status& status) {
  return absl::StrCat(what, ": ", StatusText(status));
}

// A tiny job: the worker-side measurements never read its fields.
CreateExportJobRequest EmptyJobRequest() {
  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  request.add_fields("id");
  return request;
}

// Completes the claimed job with the given one-part manifest.
grpc::Status CompleteOnePart(WorkerService::Stub* stub, const std::string& job_id,
                             const std::string& token, const exportjobs::v1::ExportPart& part,
                             absl::Duration deadline) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(deadline));
  CompleteExportJobRequest request;
  request.set_job_id(job_id);
  request.set_lease_token(token);
  request.set_record_count(part.record_count());
  *request.add_parts() = part;
  ExportJob job;
  grpc::Status status = stub->CompleteExportJob(&context, request, &job);
  if (status.ok() && job.status() != exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        absl::StrCat("job ", job_id, " is not completed after CompleteExportJob"));
  }
  return status;
}

grpc::Status DeleteJob(ExportService::Stub* stub, const std::string& id, absl::Duration deadline) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(deadline));
  DeleteExportJobRequest request;
  request.set_id(id);
  google::protobuf::Empty empty;
  return stub->DeleteExportJob(&context, request, &empty);
}

// Claims one job, waiting up to `wait`; asks again (up to `attempts` times) when none came.
grpc::Status ClaimOne(WorkerService::Stub* stub, const std::string& worker_id, absl::Duration wait,
                      absl::Duration deadline, int attempts, ClaimExportJobResponse* response,
                      int64_t* empty_claims) {
  for (int attempt = 0; attempt < attempts; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(DeadlineAfter(deadline + wait));
    ClaimExportJobRequest request;
    request.set_worker_id(worker_id);
    request.mutable_wait()->set_seconds(absl::ToInt64Seconds(wait));
    request.mutable_wait()->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(wait - absl::Seconds(absl::ToInt64Seconds(wait)))));
    response->Clear();
    grpc::Status status = stub->ClaimExportJob(&context, request, response);
    if (!status.ok() || response->has_job()) return status;
    if (empty_claims != nullptr) ++*empty_claims;
  }
  return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                      absl::StrCat("no job to claim after ", attempts, " claims"));
}

// ---------------------------------------------------------------------------------------------
// cycle

struct CycleResult {
  std::string protocol = "unary";
  int loops = 0;
  int channels = 0;
  bool batch_claims = false;
  int64_t jobs = 0;
  int64_t completed = 0;
  int64_t errors = 0;
  int64_t claims = 0;
  int64_t empty_claims = 0;
  int64_t batch_calls = 0;  // Batch protocol: BatchReportExportJobs calls.
  double create_seconds = 0;
  double seconds = 0;
  Latency cycle, claim, progress, complete;
  std::string first_error;

  double jobs_per_sec() const { return PerSec(completed, seconds); }
  // The batch protocol is the cycle; the unary one is kept for comparison.
  std::string bench() const { return protocol == "batch" ? "cycle" : "cycle_unary"; }

  std::string Json() const {
    return absl::StrFormat(
        R"({"bench":"%s","protocol":"%s","loops":%d,"channels":%d,"batch_claims":%s,"jobs":%d,)"
        R"("completed":%d,"seconds":%.3f,"jobs_per_sec":%.1f,"p50_us":%.1f,"p99_us":%.1f,)"
        R"("max_us":%.1f,"claim_p50_us":%.1f,"progress_p50_us":%.1f,"complete_p50_us":%.1f,)"
        R"("claims":%d,"batch_calls":%d,"create_seconds":%.3f,"empty_claims":%d,"errors":%d})",
        bench(), protocol, loops, channels, batch_claims ? "true" : "false", jobs, completed,
        seconds, jobs_per_sec(), cycle.p50_us, cycle.p99_us, cycle.max_us, claim.p50_us,
        progress.p50_us, complete.p50_us, claims, batch_calls, create_seconds, empty_claims,
        errors);
  }
};

// What one loop measured.
struct LoopStats {
  std::vector<int64_t> cycle, claim, progress, complete;
  int64_t completed = 0;
  int64_t errors = 0;
  int64_t claims = 0;  // Without batch_claims: the loop's own claims.
  std::string first_error;

  void Error(std::string message) {
    ++errors;
    if (first_error.empty()) first_error = std::move(message);
  }
};

// What the loops of one run share.
struct CycleShared {
  int64_t jobs = 0;
  absl::Duration claim_wait;
  absl::Duration deadline;
  // One claim per job (max_jobs unset), or one claim for every loop of a connection waiting.
  bool batch_claims = true;
  std::atomic<int64_t> next_ticket{0};
  std::mutex mu;
  std::condition_variable changed;
  int finished_loops = 0;  // Guarded by mu.
};

class CycleLoop;

// The claims of one connection (one worker process): loops that need a job wait here, and one
// ClaimExportJob at a time claims for all of them (max_jobs = the loops waiting), as
// export-worker does for its idle job slots. Without batch_claims every loop claims for itself.
class CycleClaimer {
 public:
  CycleClaimer(WorkerService::Stub* stub, int index, CycleShared* shared)
      : stub_(stub), shared_(shared) {
    request_.set_worker_id(absl::StrCat("exportd-bench-cycle-", index));
    const absl::Duration wait = shared->claim_wait;
    const int64_t seconds = absl::ToInt64Seconds(wait);
    request_.mutable_wait()->set_seconds(seconds);
    request_.mutable_wait()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(wait - absl::Seconds(seconds))));
  }

  // Hands `loop` a job (CycleLoop::OnJob) or the claim's error (CycleLoop::OnClaimFailed) once
  // a claim answers; starts a claim when none is in flight.
  void Want(CycleLoop* loop) {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_.push_back(loop);
    if (!claiming_) StartClaim();
  }

  int64_t claims() const { return claims_; }
  int64_t empty_claims() const { return empty_claims_; }

 private:
  // REQUIRES: mu_ held, waiting_ not empty.
  void StartClaim() {
    claiming_ = true;
    ++claims_;
    request_.set_max_jobs(shared_->batch_claims ? static_cast<int32_t>(waiting_.size()) : 0);
    response_.Clear();
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(DeadlineAfter(shared_->deadline + shared_->claim_wait));
    stub_->async()->ClaimExportJob(context_.get(), &request_, &response_,
                                   [this](grpc::Status status) { OnClaimed(status); });
  }

  void OnClaimed(const grpc::Status& status);

  WorkerService::Stub* const stub_;
  CycleShared* const shared_;
  std::mutex mu_;
  std::deque<CycleLoop*> waiting_;  // Guarded by mu_.
  bool claiming_ = false;           // Guarded by mu_.
  int64_t claims_ = 0;              // Guarded by mu_.
  int64_t empty_claims_ = 0;        // Guarded by mu_.
  int empty_claims_in_a_row_ = 0;   // Guarded by mu_.
  std::unique_ptr<grpc::ClientContext> context_;
  ClaimExportJobRequest request_;
  ClaimExportJobResponse response_;
};

// One worker loop (job slot) on the callback API: a job from its connection's claimer ->
// progress -> complete (an export of no records: no parts), then the next job, until the shared
// tickets run out. One call at a time, so each step's callback is the only code touching the
// loop; Run reads the stats after the loop finished.
class CycleLoop {
 public:
  CycleLoop(WorkerService::Stub* stub, CycleClaimer* claimer, CycleShared* shared)
      : stub_(stub), claimer_(claimer), shared_(shared) {}

  void Start() { NextJob(); }
  LoopStats& stats() { return stats_; }

  void OnJob(exportjobs::v1::ClaimedExportJob job) {
    job_ = std::move(job);
    t1_ = NowNanos();
    progress_request_.set_job_id(job_.job().id());
    progress_request_.set_lease_token(job_.lease().token());
    progress_request_.set_records_processed(0);
    stub_->async()->ReportProgress(NewContext(), &progress_request_, &progress_response_,
                                   [this](grpc::Status status) { OnProgress(status); });
  }

  void OnClaimFailed(std::string message) { Failed(std::move(message)); }

 private:
  grpc::ClientContext* NewContext() {
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(DeadlineAfter(shared_->deadline));
    return context_.get();
  }

  void NextJob() {
    if (shared_->next_ticket.fetch_add(1) >= shared_->jobs) {
      std::lock_guard<std::mutex> lock(shared_->mu);
      ++shared_->finished_loops;
      shared_->changed.notify_all();
      return;
    }
    t0_ = NowNanos();
    if (shared_->batch_claims) return claimer_->Want(this);
    ClaimAlone();
  }

  // Without batch_claims: a claim of this loop's own, for one job.
  void ClaimAlone() {
    claim_request_.set_worker_id("exportd-bench-cycle");
    const int64_t seconds = absl::ToInt64Seconds(shared_->claim_wait);
    claim_request_.mutable_wait()->set_seconds(seconds);
    claim_request_.mutable_wait()->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(shared_->claim_wait - absl::Seconds(seconds))));
    claim_response_.Clear();
    ++stats_.claims;
    grpc::ClientContext* context = NewContext();
    context->set_deadline(DeadlineAfter(shared_->deadline + shared_->claim_wait));
    stub_->async()->ClaimExportJob(
        context, &claim_request_, &claim_response_, [this](grpc::Status status) {
          if (!status.ok()) {
            return Failed(Failure("ClaimExportJob", status));
          }
          if (!claim_response_.has_job()) {
            return Failed("ClaimExportJob: no job");
          }
          exportjobs::v1::ClaimedExportJob job;
          *job.mutable_job() = std::move(*claim_response_.mutable_job());
          *job.mutable_lease() = std::move(*claim_response_.mutable_lease());
          OnJob(std::move(job));
        });
  }

  void OnProgress(const grpc::Status& status) {
    if (!status.ok()) return Failed(Failure("ReportProgress", status));
    t2_ = NowNanos();
    complete_request_.set_job_id(job_.job().id());
    complete_request_.set_lease_token(job_.lease().token());
    complete_request_.set_record_count(0);
    stub_->async()->CompleteExportJob(NewContext(), &complete_request_, &complete_response_,
                                      [this](grpc::Status status) { OnCompleted(status); });
  }

  void OnCompleted(const grpc::Status& status) {
    if (!status.ok()) return Failed(Failure("CompleteExportJob", status));
    if (complete_response_.status() != exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) {
      return Failed("CompleteExportJob: the job is not completed");
    }
    const int64_t t3 = NowNanos();
    stats_.cycle.push_back(t3 - t0_);
    stats_.claim.push_back(t1_ - t0_);
    stats_.progress.push_back(t2_ - t1_);
    stats_.complete.push_back(t3 - t2_);
    ++stats_.completed;
    NextJob();
  }

  // The job is dropped (its lease runs out); the loop goes on with the next one.
  void Failed(std::string message) {
    stats_.Error(std::move(message));
    NextJob();
  }

  WorkerService::Stub* const stub_;
  CycleClaimer* const claimer_;
  CycleShared* const shared_;
  LoopStats stats_;
  std::unique_ptr<grpc::ClientContext> context_;  // Of the unary call in flight.
  exportjobs::v1::ClaimedExportJob job_;
  ClaimExportJobRequest claim_request_;    // Without batch_claims.
  ClaimExportJobResponse claim_response_;  // Without batch_claims.
  ReportProgressRequest progress_request_;
  ReportProgressResponse progress_response_;
  CompleteExportJobRequest complete_request_;
  ExportJob complete_response_;
  int64_t t0_ = 0, t1_ = 0, t2_ = 0;
};

void CycleClaimer::OnClaimed(const grpc::Status& status) {
  std::vector<std::pair<CycleLoop*, exportjobs::v1::ClaimedExportJob>> assigned;
  std::vector<CycleLoop*> failed;
  std::string error;
  {
    std::lock_guard<std::mutex> lock(mu_);
    claiming_ = false;
    if (!status.ok()) {
      error = Failure("ClaimExportJob", status);
      failed.assign(waiting_.begin(), waiting_.end());
      waiting_.clear();
    } else if (!response_.has_job()) {
      ++empty_claims_;
      if (++empty_claims_in_a_row_ >= 10) {
        error = "ClaimExportJob: no job after 10 claims";
        failed.assign(waiting_.begin(), waiting_.end());
        waiting_.clear();
      } else {
        StartClaim();
      }
    } else {
      empty_claims_in_a_row_ = 0;
      exportjobs::v1::ClaimedExportJob first;
      *first.mutable_job() = std::move(*response_.mutable_job());
      *first.mutable_lease() = std::move(*response_.mutable_lease());
      // Never more jobs than loops waiting: max_jobs was their number, and they only wait.
      assigned.emplace_back(waiting_.front(), std::move(first));
      waiting_.pop_front();
      for (auto& more : *response_.mutable_more_jobs()) {
        assigned.emplace_back(waiting_.front(), std::move(more));
        waiting_.pop_front();
      }
      if (!waiting_.empty()) StartClaim();
    }
  }
  for (auto& [loop, job] : assigned) loop->OnJob(std::move(job));
  for (CycleLoop* loop : failed) loop->OnClaimFailed(error);
}

// ---------------------------------------------------------------------------------------------
// cycle, batch protocol

class BatchCycleLoop;

// The calls of one connection (one worker process) on the batch protocol: its loops hand their
// progress reports and completions here, and up to `max_calls` BatchReportExportJobs at a time
// carry everything handed in since the last one went out, with a claim for the loops that want
// a job (a completing loop wants its next job in the same call). Loop reactions run outside mu_.
class CycleSession {
 public:
  CycleSession(WorkerService::Stub* stub, int index, CycleShared* shared, int max_calls)
      : stub_(stub),
        shared_(shared),
        max_calls_(max_calls),
        worker_id_(absl::StrCat("exportd-bench-cycle-", index)) {}

  // `report` (may be unset) goes out in the next call; with `want_job` the loop also gets a
  // job from that call's claim (or a later one's).
  void Submit(BatchCycleLoop* loop, std::optional<exportjobs::v1::JobReport> report,
              bool want_job) {
    std::lock_guard<std::mutex> lock(mu_);
    if (report) reports_.emplace_back(loop, *std::move(report));
    if (want_job) wanting_.push_back(loop);
    MaybeSend();
  }

  // Waits until no call is in flight (the loops have all finished).
  void AwaitIdle() {
    std::unique_lock<std::mutex> lock(mu_);
    idle_.wait(lock, [&] { return in_flight_ == 0; });
  }

  int64_t calls() const { return calls_; }
  int64_t claims() const { return claims_; }
  int64_t empty_claims() const { return empty_claims_; }

 private:
  struct Call {
    grpc::ClientContext context;
    exportjobs::v1::BatchReportExportJobsRequest request;
    exportjobs::v1::BatchReportExportJobsResponse response;
    std::vector<BatchCycleLoop*> reporters;  // One per report, in order.
    std::vector<BatchCycleLoop*> claimers;   // The loops the claim is for.
  };

  // REQUIRES: mu_ held.
  void MaybeSend() {
    if (in_flight_ >= max_calls_ || (reports_.empty() && wanting_.empty())) return;
    if (failed_) return;
    ++in_flight_;
    ++calls_;
    auto call = std::make_unique<Call>();
    call->context.set_deadline(DeadlineAfter(shared_->deadline));
    for (auto& [loop, report] : reports_) {
      call->reporters.push_back(loop);
      *call->request.add_reports() = std::move(report);
    }
    reports_.clear();
    if (!wanting_.empty()) {
      ++claims_;
      exportjobs::v1::BatchClaim& claim = *call->request.mutable_claim();
      claim.set_worker_id(worker_id_);
      claim.set_max_jobs(static_cast<int32_t>(wanting_.size()));
      call->claimers.assign(wanting_.begin(), wanting_.end());
      wanting_.clear();
    }
    Call* raw = call.release();
    stub_->async()->BatchReportExportJobs(
        &raw->context, &raw->request, &raw->response,
        [this, raw](grpc::Status status) { OnDone(std::unique_ptr<Call>(raw), status); });
  }

  void OnDone(std::unique_ptr<Call> call, const grpc::Status& status);

  WorkerService::Stub* const stub_;
  CycleShared* const shared_;
  const int max_calls_;
  const std::string worker_id_;
  std::mutex mu_;
  std::condition_variable idle_;
  std::vector<std::pair<BatchCycleLoop*, exportjobs::v1::JobReport>> reports_;  // Guarded by mu_.
  std::deque<BatchCycleLoop*> wanting_;  // Guarded by mu_: want a job, not yet claimed for.
  int in_flight_ = 0;                    // Guarded by mu_.
  bool failed_ = false;                  // Guarded by mu_: claims found nothing 10 times.
  int empty_claims_in_a_row_ = 0;        // Guarded by mu_.
  int64_t calls_ = 0;                    // Guarded by mu_.
  int64_t claims_ = 0;                   // Guarded by mu_.
  int64_t empty_claims_ = 0;             // Guarded by mu_.
};

// One worker loop (job slot) on the batch protocol: a job -> progress -> complete, whose call
// also claims this loop's next job while tickets last. One report at a time per loop.
class BatchCycleLoop {
 public:
  BatchCycleLoop(CycleSession* session, CycleShared* shared) : session_(session), shared_(shared) {}

  void Start() {
    if (TakeTicket()) session_->Submit(this, std::nullopt, /*want_job=*/true);
  }
  LoopStats& stats() { return stats_; }

  void OnJob(exportjobs::v1::ClaimedExportJob job) {
    job_ = std::move(job);
    t1_ = NowNanos();
    exportjobs::v1::JobReport report;
    exportjobs::v1::ReportProgressRequest& progress = *report.mutable_progress();
    progress.set_job_id(job_.job().id());
    progress.set_lease_token(job_.lease().token());
    progress.set_records_processed(0);
    session_->Submit(this, std::move(report), /*want_job=*/false);
  }

  // The result of this loop's report in flight.
  void OnResult(const grpc::Status& status, const exportjobs::v1::JobReportResult* result) {
    const bool progress = !completing_;
    const char* what = progress ? "progress" : "complete";
    if (!status.ok())
      return Failed(Failure(absl::StrCat("BatchReportExportJobs (", what, ")"), status));
    if (result->code() != 0) {
      return Failed(absl::StrCat("BatchReportExportJobs ", what, ": code ", result->code(), ": ",
                                 result->message()));
    }
    if (progress) {
      t2_ = NowNanos();
      completing_ = true;
      exportjobs::v1::JobReport report;
      exportjobs::v1::CompleteExportJobRequest& complete = *report.mutable_complete();
      complete.set_job_id(job_.job().id());
      complete.set_lease_token(job_.lease().token());
      complete.set_record_count(0);
      // The next job comes with the same call, while there are tickets.
      next_t0_ = NowNanos();
      const bool more = TakeTicket();
      session_->Submit(this, std::move(report), more);
      return;
    }
    completing_ = false;
    if (result->job().status() != exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) {
      return Failed("BatchReportExportJobs complete: the job is not completed");
    }
    const int64_t t3 = NowNanos();
    stats_.cycle.push_back(t3 - t0_);
    stats_.claim.push_back(t1_ - t0_);
    stats_.progress.push_back(t2_ - t1_);
    stats_.complete.push_back(t3 - t2_);
    ++stats_.completed;
    t0_ = next_t0_;
  }

  // The claim this loop waited for failed: it stops.
  void OnClaimFailed(std::string message) {
    stats_.Error(std::move(message));
    Finished();
  }

 private:
  // Takes a ticket for one more job; false (and the loop is finished) when they ran out.
  bool TakeTicket() {
    if (shared_->next_ticket.fetch_add(1) >= shared_->jobs) {
      Finished();
      return false;
    }
    if (t0_ == 0) t0_ = NowNanos();
    return true;
  }

  void Finished() {
    std::lock_guard<std::mutex> lock(shared_->mu);
    ++shared_->finished_loops;
    shared_->changed.notify_all();
  }

  // The job is dropped (its lease runs out); the loop goes on with the next one.
  void Failed(std::string message) {
    stats_.Error(std::move(message));
    if (completing_) {
      // The call carried this loop's claim too (when it had a ticket): the job comes with it.
      completing_ = false;
      t0_ = next_t0_;
      return;
    }
    t0_ = NowNanos();
    if (TakeTicket()) session_->Submit(this, std::nullopt, /*want_job=*/true);
  }

  CycleSession* const session_;
  CycleShared* const shared_;
  LoopStats stats_;
  exportjobs::v1::ClaimedExportJob job_;
  bool completing_ = false;
  int64_t t0_ = 0, t1_ = 0, t2_ = 0, next_t0_ = 0;
};

void CycleSession::OnDone(std::unique_ptr<Call> call, const grpc::Status& status) {
  std::vector<std::pair<BatchCycleLoop*, exportjobs::v1::ClaimedExportJob>> assigned;
  std::vector<BatchCycleLoop*> claim_failed;
  std::string claim_error;
  {
    // The call stays counted in flight until its loops have handed in what they do next, so
    // that the next call carries all of it rather than the first loop's report alone.
    std::lock_guard<std::mutex> lock(mu_);
    if (!call->claimers.empty()) {
      if (!status.ok()) {
        claim_error = Failure("BatchReportExportJobs (claim)", status);
        claim_failed = call->claimers;
      } else {
        auto& claimed = *call->response.mutable_claimed();
        size_t next = 0;
        for (auto& job : claimed) {
          if (next == call->claimers.size()) break;  // Never more than max_jobs.
          assigned.emplace_back(call->claimers[next++], std::move(job));
        }
        if (claimed.empty()) {
          ++empty_claims_;
          if (++empty_claims_in_a_row_ >= 10) {
            failed_ = true;
            claim_error = "BatchReportExportJobs: no job claimed after 10 calls";
          }
        } else {
          empty_claims_in_a_row_ = 0;
        }
        // Those without a job want one from the next call.
        for (; next < call->claimers.size(); ++next) {
          if (failed_) {
            claim_failed.push_back(call->claimers[next]);
          } else {
            wanting_.push_back(call->claimers[next]);
          }
        }
      }
    }
  }
  // Reports' results first: a loop that completed and claimed sees its completion before its
  // next job.
  for (size_t i = 0; i < call->reporters.size(); ++i) {
    const exportjobs::v1::JobReportResult* result =
        status.ok() && static_cast<int>(i) < call->response.results_size()
            ? &call->response.results(static_cast<int>(i))
            : nullptr;
    grpc::Status item_status = status;
    if (status.ok() && result == nullptr) {
      item_status = grpc::Status(grpc::StatusCode::INTERNAL, "no result for the report");
    }
    call->reporters[i]->OnResult(item_status, result);
  }
  for (auto& [loop, job] : assigned) loop->OnJob(std::move(job));
  for (BatchCycleLoop* loop : claim_failed) loop->OnClaimFailed(claim_error);
  std::lock_guard<std::mutex> lock(mu_);
  --in_flight_;
  MaybeSend();
  if (in_flight_ == 0) idle_.notify_all();
}

void PrintCycleSummary(const std::vector<CycleResult>& results, int loops, int64_t jobs, int runs);

CycleResult RunCycleOnce(const WorkerBenchContext& context, int run, int loops, int channel_count,
                         int64_t jobs, absl::Duration claim_wait, bool batch_claims,
                         const std::string& protocol, int batch_calls) {
  CycleResult result;
  result.protocol = protocol;
  result.loops = loops;
  result.channels = channel_count;
  result.batch_claims = batch_claims;
  result.jobs = jobs;

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<WorkerService::Stub>> workers;
  std::vector<std::unique_ptr<ExportService::Stub>> exports;
  for (int i = 0; i < channel_count; ++i) {
    channels.push_back(NewChannel(context.address, 2000 + 100 * run + i));
    workers.push_back(WorkerService::NewStub(channels.back()));
    exports.push_back(ExportService::NewStub(channels.back()));
  }
  // The channels live until the process ends. A run ends when its last loop has finished,
  // which it learns in a callback that has not returned yet; destroying the channels then can
  // drop gRPC's shared callback completion queue (gRPC 1.51: the last channel that used the
  // callback API releases it) under that callback's thread, which then crashes in
  // grpc_completion_queue_next.
  static auto* const kept_channels = new std::vector<std::shared_ptr<grpc::Channel>>();
  kept_channels->insert(kept_channels->end(), channels.begin(), channels.end());

  // The jobs, created by as many threads as there are loops (not measured).
  LoopStats create_stats;
  std::mutex create_mu;
  const int64_t create_start = NowNanos();
  {
    std::vector<std::thread> threads;
    for (int loop = 0; loop < loops; ++loop) {
      threads.emplace_back([&, loop] {
        ExportService::Stub* stub = exports[static_cast<size_t>(loop % channel_count)].get();
        const CreateExportJobRequest request = EmptyJobRequest();
        for (int64_t i = loop; i < jobs; i += loops) {
          grpc::ClientContext call;
          call.set_deadline(DeadlineAfter(context.deadline));
          ExportJob job;
          grpc::Status status = stub->CreateExportJob(&call, request, &job);
          if (!status.ok()) {
            std::lock_guard<std::mutex> lock(create_mu);
            create_stats.Error(Failure("CreateExportJob", status));
          }
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  }
  result.create_seconds = static_cast<double>(NowNanos() - create_start) / 1e9;

  // The cycles: every loop takes tickets until `jobs` cycles have started.
  CycleShared shared;
  shared.jobs = jobs;
  shared.claim_wait = claim_wait;
  shared.deadline = context.deadline;
  shared.batch_claims = batch_claims;
  if (protocol == "batch") {
    result.batch_claims = true;
    std::vector<std::unique_ptr<CycleSession>> sessions;
    for (int i = 0; i < channel_count; ++i) {
      sessions.push_back(std::make_unique<CycleSession>(workers[static_cast<size_t>(i)].get(), i,
                                                        &shared, batch_calls));
    }
    std::vector<std::unique_ptr<BatchCycleLoop>> batch_loops;
    for (int loop = 0; loop < loops; ++loop) {
      batch_loops.push_back(std::make_unique<BatchCycleLoop>(
          sessions[static_cast<size_t>(loop % channel_count)].get(), &shared));
    }
    const int64_t start = NowNanos();
    for (auto& loop : batch_loops) loop->Start();
    {
      std::unique_lock<std::mutex> lock(shared.mu);
      shared.changed.wait(lock, [&] { return shared.finished_loops == loops; });
    }
    result.seconds = static_cast<double>(NowNanos() - start) / 1e9;
    // The last calls' answers may still be on their way to the sessions: wait for none in flight
    // before the sessions go.
    for (auto& session : sessions) session->AwaitIdle();
    std::vector<int64_t> cycle, claim, progress, complete;
    result.errors = create_stats.errors;
    result.first_error = create_stats.first_error;
    for (auto& session : sessions) {
      result.claims += session->claims();
      result.empty_claims += session->empty_claims();
      result.batch_calls += session->calls();
    }
    for (auto& loop_ptr : batch_loops) {
      LoopStats& loop = loop_ptr->stats();
      result.completed += loop.completed;
      result.errors += loop.errors;
      if (result.first_error.empty()) result.first_error = loop.first_error;
      cycle.insert(cycle.end(), loop.cycle.begin(), loop.cycle.end());
      claim.insert(claim.end(), loop.claim.begin(), loop.claim.end());
      progress.insert(progress.end(), loop.progress.begin(), loop.progress.end());
      complete.insert(complete.end(), loop.complete.begin(), loop.complete.end());
    }
    result.cycle = Latency::Of(std::move(cycle));
    result.claim = Latency::Of(std::move(claim));
    result.progress = Latency::Of(std::move(progress));
    result.complete = Latency::Of(std::move(complete));
    return result;
  }

  std::vector<std::unique_ptr<CycleClaimer>> claimers;
  for (int i = 0; i < channel_count; ++i) {
    claimers.push_back(
        std::make_unique<CycleClaimer>(workers[static_cast<size_t>(i)].get(), i, &shared));
  }
  std::vector<std::unique_ptr<CycleLoop>> cycle_loops;
  for (int loop = 0; loop < loops; ++loop) {
    const size_t channel = static_cast<size_t>(loop % channel_count);
    cycle_loops.push_back(
        std::make_unique<CycleLoop>(workers[channel].get(), claimers[channel].get(), &shared));
  }
  const int64_t start = NowNanos();
  for (auto& loop : cycle_loops) loop->Start();
  {
    std::unique_lock<std::mutex> lock(shared.mu);
    shared.changed.wait(lock, [&] { return shared.finished_loops == loops; });
  }
  result.seconds = static_cast<double>(NowNanos() - start) / 1e9;

  std::vector<int64_t> cycle, claim, progress, complete;
  result.errors = create_stats.errors;
  result.first_error = create_stats.first_error;
  for (auto& claimer : claimers) {
    result.claims += claimer->claims();
    result.empty_claims += claimer->empty_claims();
  }
  for (auto& loop_ptr : cycle_loops) {
    LoopStats& loop = loop_ptr->stats();
    result.completed += loop.completed;
    result.errors += loop.errors;
    result.claims += loop.claims;
    if (result.first_error.empty()) result.first_error = loop.first_error;
    cycle.insert(cycle.end(), loop.cycle.begin(), loop.cycle.end());
    claim.insert(claim.end(), loop.claim.begin(), loop.claim.end());
    progress.insert(progress.end(), loop.progress.begin(), loop.progress.end());
    complete.insert(complete.end(), loop.complete.begin(), loop.complete.end());
  }
  result.cycle = Latency::Of(std::move(cycle));
  result.claim = Latency::Of(std::move(claim));
  result.progress = Latency::Of(std::move(progress));
  result.complete = Latency::Of(std::move(complete));
  return result;
}

// ---------------------------------------------------------------------------------------------
// upload

struct UploadResult {
  int64_t bytes = 0;
  int64_t chunk_bytes = 0;
  double seconds = 0;        // First chunk sent to the upload's response.
  double write_seconds = 0;  // First write() to the end of fdatasync().
  double dd_seconds = 0;     // As dd reports it.
  int64_t dd_bytes = 0;
  // dd with oflag=direct as well: how the server writes part files (O_DIRECT, then fsync).
  double dd_direct_seconds = 0;
  int64_t dd_direct_bytes = 0;
  std::string sha256;
  std::string error;

  double mb_per_sec() const { return MegabytesPerSec(bytes, seconds); }
  double write_mb_per_sec() const { return MegabytesPerSec(bytes, write_seconds); }
  double dd_mb_per_sec() const { return MegabytesPerSec(dd_bytes, dd_seconds); }
  double dd_direct_mb_per_sec() const {
    return MegabytesPerSec(dd_direct_bytes, dd_direct_seconds);
  }

  std::string Json() const {
    return absl::StrFormat(
        R"({"bench":"upload","bytes":%d,"chunk_bytes":%d,"seconds":%.3f,"mb_per_sec":%.1f,)"
        R"("write_seconds":%.3f,"write_mb_per_sec":%.1f,"dd_bytes":%d,"dd_seconds":%.3f,)"
        R"("dd_mb_per_sec":%.1f,"dd_direct_seconds":%.3f,"dd_direct_mb_per_sec":%.1f,)"
        R"("ratio_vs_write":%.3f,"ratio_vs_dd":%.3f,"ratio_vs_dd_direct":%.3f,"errors":%d})",
        bytes, chunk_bytes, seconds, mb_per_sec(), write_seconds, write_mb_per_sec(), dd_bytes,
        dd_seconds, dd_mb_per_sec(), dd_direct_seconds, dd_direct_mb_per_sec(),
        Ratio(mb_per_sec(), write_mb_per_sec()), Ratio(mb_per_sec(), dd_mb_per_sec()),
        Ratio(mb_per_sec(), dd_direct_mb_per_sec()), error.empty() ? 0 : 1);
  }
};

std::string Hex(const unsigned char* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (size_t i = 0; i < size; ++i) {
    hex.push_back(kDigits[bytes[i] >> 4]);
    hex.push_back(kDigits[bytes[i] & 15]);
  }
  return hex;
}

// The payload: one buffer of pseudo-random bytes, with each chunk's index in its first 8 bytes
// so that no two chunks are equal. Stamp() rewrites `chunk` for chunk `index` of `total` bytes.
class Payload {
 public:
  Payload(int64_t total, int64_t chunk_bytes) : total_(total), chunk_bytes_(chunk_bytes) {
    std::mt19937_64 random(20240601);
    base_.resize(static_cast<size_t>(chunk_bytes));
    for (size_t i = 0; i + 8 <= base_.size(); i += 8) {
      const uint64_t value = random();
      std::memcpy(base_.data() + i, &value, 8);
    }
  }

  int64_t chunks() const { return (total_ + chunk_bytes_ - 1) / chunk_bytes_; }

  void Stamp(int64_t index, std::string* chunk) const {
    const int64_t size = std::min(chunk_bytes_, total_ - index * chunk_bytes_);
    if (chunk->size() != static_cast<size_t>(size))
      chunk->assign(base_, 0, static_cast<size_t>(size));
    std::memcpy(chunk->data(), &index, std::min<size_t>(8, chunk->size()));
  }

 private:
  const int64_t total_;
  const int64_t chunk_bytes_;
  std::string base_;
};

// The payload's SHA-256 (lowercase hex), computed before an upload is timed: the export-worker
// computes a part's digest while it writes the part file, not while it uploads it.
std::string PayloadSha256(const Payload& payload) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
  std::string chunk;
  for (int64_t i = 0; i < payload.chunks(); ++i) {
    payload.Stamp(i, &chunk);
    EVP_DigestUpdate(sha.get(), chunk.data(), chunk.size());
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  EVP_DigestFinal_ex(sha.get(), digest, &digest_size);
  return Hex(digest, digest_size);
}

// Uploads the payload as part 1 of a claimed job through the client library, as the
// export-worker uploads a part file (client/export_client.cc, WorkerClient::Upload, which
// worker/export_runner.cc calls): each chunk is produced (here stamped, there read from the
// file) and handed to the library, which streams it. Sets seconds (from the first chunk to the
// server's answer) and sha256.
absl::Status UploadPayload(client::WorkerClient* worker, const std::string& job_id,
                           const std::string& token, const Payload& payload, UploadResult* result) {
  result->sha256 = PayloadSha256(payload);
  client::WorkerClient::PartUpload part;
  part.header.set_job_id(job_id);
  part.header.set_lease_token(token);
  part.header.set_part_number(1);
  part.header.set_record_count(0);
  part.trailer.set_size_bytes(result->bytes);
  part.trailer.set_sha256(result->sha256);
  int64_t next = 0;
  part.read = [&]() -> absl::StatusOr<std::string> {
    std::string chunk;
    if (next < payload.chunks()) payload.Stamp(next++, &chunk);
    return chunk;
  };
  const int64_t start = NowNanos();
  absl::StatusOr<UploadExportPartResponse> response = worker->Upload(part);
  result->seconds = static_cast<double>(NowNanos() - start) / 1e9;
  if (!response.ok()) return response.status();
  if (response->part().size_bytes() != result->bytes) {
    return absl::InternalError(absl::StrCat("the server recorded ", response->part().size_bytes(),
                                            " bytes, not ", result->bytes));
  }
  return absl::OkStatus();
}

// Writes the payload to `path` and fdatasyncs it; returns the seconds from the first write to
// the end of fdatasync. The file is removed afterwards.
absl::StatusOr<double> WriteReference(const std::string& path, const Payload& payload) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  std::string chunk;
  absl::Status status;
  const int64_t start = NowNanos();
  for (int64_t i = 0; status.ok() && i < payload.chunks(); ++i) {
    payload.Stamp(i, &chunk);
    size_t done = 0;
    while (done < chunk.size()) {
      const ssize_t n = write(fd, chunk.data() + done, chunk.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = absl::InternalError(absl::StrCat("write ", path, ": ", std::strerror(errno)));
        break;
      }
      done += static_cast<size_t>(n);
    }
  }
  if (status.ok() && fdatasync(fd) != 0) {
    status = absl::InternalError(absl::StrCat("fdatasync ", path, ": ", std::strerror(errno)));
  }
  const double seconds = static_cast<double>(NowNanos() - start) / 1e9;
  close(fd);
  unlink(path.c_str());
  if (!status.ok()) return status;
  return seconds;
}

// Runs `dd if=/dev/zero of=PATH bs=1M count=N conv=fdatasync` (with `direct`: bs=4M and
// oflag=direct too) and reads its own report ("N bytes (...) copied, S s, ...") into
// *bytes_out and *seconds_out. The file is removed afterwards.
absl::Status RunDd(const std::string& scratch, int64_t bytes, bool direct, absl::Duration timeout,
                   int64_t* bytes_out, double* seconds_out) {
  const std::string path = scratch + "/bench-dd.bin";
  const std::string log = scratch + "/bench-dd.log";
  const int shift = direct ? 22 : 20;
  const int64_t count = (bytes + (int64_t{1} << shift) - 1) >> shift;
  ChildProcess::Options options;
  options.argv = {"dd",
                  "if=/dev/zero",
                  "of=" + path,
                  direct ? "bs=4M" : "bs=1M",
                  absl::StrCat("count=", count),
                  "conv=fdatasync"};
  if (direct) options.argv.push_back("oflag=direct");
  options.stderr_path = log;
  options.env = {"LC_ALL=C"};
  absl::StatusOr<std::unique_ptr<ChildProcess>> dd = ChildProcess::Start(options);
  if (!dd.ok()) return dd.status();
  absl::StatusOr<test_support::ExitStatus> exit = (*dd)->Wait(timeout);
  const std::string report = (*dd)->StderrText();
  unlink(path.c_str());
  unlink(log.c_str());
  if (!exit.ok()) return exit.status();
  if (!exit->success()) {
    return absl::InternalError(absl::StrCat("dd ended with ", exit->ToString(), ": ", report));
  }
  for (absl::string_view line : absl::StrSplit(report, '\n')) {
    const size_t copied = line.find(" copied, ");
    if (copied == absl::string_view::npos) continue;
    const absl::string_view first = line.substr(0, line.find(' '));
    absl::string_view rest = line.substr(copied + 9);
    rest = rest.substr(0, rest.find(' '));
    if (absl::SimpleAtoi(first, bytes_out) && absl::SimpleAtod(rest, seconds_out)) {
      return absl::OkStatus();
    }
  }
  return absl::InternalError(absl::StrCat("cannot read dd's report: ", report));
}

UploadResult RunUploadOnce(const WorkerBenchContext& context, WorkerService::Stub* worker,
                           client::WorkerClient* uploader, ExportService::Stub* exports,
                           const Payload& payload, int64_t bytes, int64_t chunk_bytes,
                           absl::Duration timeout) {
  UploadResult result;
  result.bytes = bytes;
  result.chunk_bytes = chunk_bytes;

  // A job to upload to.
  {
    grpc::ClientContext call;
    call.set_deadline(DeadlineAfter(context.deadline));
    ExportJob job;
    grpc::Status status = exports->CreateExportJob(&call, EmptyJobRequest(), &job);
    if (!status.ok()) {
      result.error = Failure("CreateExportJob", status);
      return result;
    }
  }
  ClaimExportJobResponse claim;
  grpc::Status status = ClaimOne(worker, "exportd-bench-upload", absl::Seconds(5), context.deadline,
                                 1, &claim, nullptr);
  if (!status.ok()) {
    result.error = Failure("ClaimExportJob", status);
    return result;
  }
  const std::string& job_id = claim.job().id();
  if (absl::Status uploaded =
          UploadPayload(uploader, job_id, claim.lease().token(), payload, &result);
      !uploaded.ok()) {
    result.error = absl::StrCat("UploadExportPart: ", uploaded.ToString());
    return result;
  }
  // Completing checks the server's record of the part; deleting frees the disk for the
  // references and the next run.
  exportjobs::v1::ExportPart part;
  part.set_part_number(1);
  part.set_size_bytes(bytes);
  part.set_sha256(result.sha256);
  status = CompleteOnePart(worker, job_id, claim.lease().token(), part, context.deadline);
  if (!status.ok()) {
    result.error = Failure("CompleteExportJob", status);
    return result;
  }
  status = DeleteJob(exports, job_id, context.deadline);
  if (!status.ok()) {
    result.error = Failure("DeleteExportJob", status);
    return result;
  }

  absl::StatusOr<double> write_seconds =
      WriteReference(context.scratch_dir + "/bench-write.bin", payload);
  if (!write_seconds.ok()) {
    result.error = absl::StrCat("plain write: ", write_seconds.status().message());
    return result;
  }
  result.write_seconds = *write_seconds;
  if (absl::Status dd = RunDd(context.scratch_dir, bytes, /*direct=*/false, timeout,
                              &result.dd_bytes, &result.dd_seconds);
      !dd.ok()) {
    result.error = absl::StrCat("dd: ", dd.message());
    return result;
  }
  if (absl::Status dd = RunDd(context.scratch_dir, bytes, /*direct=*/true, timeout,
                              &result.dd_direct_bytes, &result.dd_direct_seconds);
      !dd.ok()) {
    result.error = absl::StrCat("dd oflag=direct: ", dd.message());
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// export

struct ExportVariant {
  std::string name;
  exportjobs::v1::ExportFormat format;
  exportjobs::v1::Compression compression;
};

std::optional<ExportVariant> ParseVariant(absl::string_view name) {
  using exportjobs::v1::COMPRESSION_GZIP;
  using exportjobs::v1::COMPRESSION_NONE;
  using exportjobs::v1::EXPORT_FORMAT_CSV;
  using exportjobs::v1::EXPORT_FORMAT_JSONL;
  if (name == "csv") return ExportVariant{"csv", EXPORT_FORMAT_CSV, COMPRESSION_NONE};
  if (name == "gzip") return ExportVariant{"gzip", EXPORT_FORMAT_CSV, COMPRESSION_GZIP};
  if (name == "jsonl") return ExportVariant{"jsonl", EXPORT_FORMAT_JSONL, COMPRESSION_NONE};
  if (name == "jsonl_gzip") {
    return ExportVariant{"jsonl_gzip", EXPORT_FORMAT_JSONL, COMPRESSION_GZIP};
  }
  return std::nullopt;
}

// The sqlite3 reference of one run.
struct SqliteResult {
  std::string command;      // "sqlite3 -csv" or "sqlite3 -csv | gzip".
  double seconds = 0;       // sqlite3 started to exited.
  double sync_seconds = 0;  // Then fdatasync of its output file.
  int64_t bytes = 0;
  std::string error;
};

struct ExportResult {
  std::string variant;
  int fields = 0;
  int64_t records = 0;
  int64_t bytes = 0;
  int parts = 0;
  double seconds = 0;        // CreateExportJob sent to COMPLETED received.
  double claim_seconds = 0;  // CreateExportJob sent to PROCESSING received.
  SqliteResult sqlite;
  std::string error;

  double records_per_sec() const { return PerSec(records, seconds); }
  double mb_per_sec() const { return MegabytesPerSec(bytes, seconds); }
  double sqlite_records_per_sec() const { return PerSec(records, sqlite.seconds); }
  double sqlite_mb_per_sec() const { return MegabytesPerSec(sqlite.bytes, sqlite.seconds); }
  // Above 1: the export beat sqlite3 writing the same rows into a file.
  double ratio() const { return seconds > 0 ? sqlite.seconds / seconds : 0; }

  std::string Json() const {
    return absl::StrFormat(
        R"({"bench":"export","variant":"%s","fields":%d,"records":%d,"bytes":%d,"parts":%d,)"
        R"("seconds":%.3f,"claim_ms":%.1f,"records_per_sec":%.1f,"mb_per_sec":%.1f,)"
        R"("reference":"%s","sqlite3_seconds":%.3f,"sqlite3_bytes":%d,"sqlite3_records_per_sec":%.1f,)"
        R"("sqlite3_mb_per_sec":%.1f,"sqlite3_fdatasync_seconds":%.3f,"ratio":%.3f,"errors":%d})",
        variant, fields, records, bytes, parts, seconds, claim_seconds * 1e3, records_per_sec(),
        mb_per_sec(), sqlite.command, sqlite.seconds, sqlite.bytes, sqlite_records_per_sec(),
        sqlite_mb_per_sec(), sqlite.sync_seconds, ratio(), error.empty() ? 0 : 1);
  }
};

std::string QuoteIdentifier(const std::string& name) {
  std::string quoted = "\"";
  for (char c : name) {
    if (c == '"') quoted.push_back('"');
    quoted.push_back(c);
  }
  return quoted + "\"";
}

// Runs `sqlite3 -csv -header DB QUERY > OUT`, or with `gzip` (default level, like the export's)
// `sqlite3 ... | gzip -c > OUT`, timed from start to exit; then fdatasyncs OUT, timed apart.
SqliteResult RunSqlite(const std::string& db, const std::string& query, const std::string& out,
                       const std::string& scratch, absl::Duration timeout, bool gzip) {
  SqliteResult result;
  result.command = gzip ? "sqlite3 -csv | gzip" : "sqlite3 -csv";
  ChildProcess::Options options;
  if (gzip) {
    // The database and the query are sh's $0 and $1: nothing is quoted into the script.
    options.argv = {"sh", "-c", "sqlite3 -csv -header \"$0\" \"$1\" | gzip -c", db, query};
  } else {
    options.argv = {"sqlite3", "-csv", "-header", db, query};
  }
  options.stdout_path = out;
  options.stderr_path = scratch + "/bench-sqlite3.log";
  const int64_t start = NowNanos();
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(options);
  if (!child.ok()) {
    result.error = absl::StrCat("sqlite3: ", child.status().message());
    return result;
  }
  absl::StatusOr<test_support::ExitStatus> exit = (*child)->Wait(timeout);
  result.seconds = static_cast<double>(NowNanos() - start) / 1e9;
  if (!exit.ok() || !exit->success()) {
    result.error =
        absl::StrCat("sqlite3: ", exit.ok() ? exit->ToString() : exit.status().ToString(), " ",
                     (*child)->StderrText());
  }
  const int fd = open(out.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    const int64_t sync_start = NowNanos();
    fdatasync(fd);
    result.sync_seconds = static_cast<double>(NowNanos() - sync_start) / 1e9;
    struct stat st {};
    if (fstat(fd, &st) == 0) result.bytes = st.st_size;
    close(fd);
  }
  unlink(out.c_str());
  unlink(options.stderr_path.c_str());
  return result;
}

// One export from create to COMPLETED, followed by WatchExportJob.
ExportResult RunExportOnce(ExportService::Stub* stub, const ExportVariant& variant,
                           const std::vector<std::string>& fields, int64_t part_size,
                           absl::Duration deadline, absl::Duration timeout) {
  ExportResult result;
  result.variant = variant.name;
  result.fields = static_cast<int>(fields.size());
  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  for (const std::string& field : fields) request.add_fields(field);
  request.set_format(variant.format);
  request.set_compression(variant.compression);
  request.set_part_size_bytes(part_size);

  const int64_t start = NowNanos();
  ExportJob job;
  {
    grpc::ClientContext context;
    context.set_deadline(DeadlineAfter(deadline));
    grpc::Status status = stub->CreateExportJob(&context, request, &job);
    if (!status.ok()) {
      result.error = Failure("CreateExportJob", status);
      return result;
    }
  }
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(timeout));
  exportjobs::v1::WatchExportJobRequest watch;
  watch.set_id(job.id());
  std::unique_ptr<grpc::ClientReader<ExportJobEvent>> reader =
      stub->WatchExportJob(&context, watch);
  ExportJobEvent event;
  bool terminal = false;
  while (!terminal && reader->Read(&event)) {
    const int64_t now = NowNanos();
    switch (event.job().status()) {
      case exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING:
        if (result.claim_seconds == 0)
          result.claim_seconds = static_cast<double>(now - start) / 1e9;
        break;
      case exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED:
        result.seconds = static_cast<double>(now - start) / 1e9;
        result.records = event.job().record_count();
        result.bytes = event.job().file_size_bytes();
        result.parts = event.job().file_parts();
        terminal = true;
        break;
      case exportjobs::v1::EXPORT_JOB_STATUS_FAILED:
      case exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED:
        result.error = absl::StrCat("job ", job.id(), " ended ",
                                    exportjobs::v1::ExportJobStatus_Name(event.job().status()),
                                    ": ", event.job().error_message());
        terminal = true;
        break;
      default:
        break;
    }
  }
  if (terminal) context.TryCancel();  // The stream ends by itself too; don't wait for it.
  grpc::Status status = reader->Finish();
  if (!terminal) {
    result.error = Failure(absl::StrCat("WatchExportJob ", job.id()), status);
    return result;
  }
  if (grpc::Status deleted = DeleteJob(stub, job.id(), deadline); !deleted.ok()) {
    if (result.error.empty()) result.error = Failure("DeleteExportJob", deleted);
  }
  return result;
}

// Reads a file once so that the first measured reader does not pay for a cold page cache.
void ReadThrough(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

int RunCycleBench(const WorkerBenchContext& context) {
  const int loops = absl::GetFlag(FLAGS_cycle_workers);
  const int channels = absl::GetFlag(FLAGS_cycle_channels);
  const int64_t jobs = absl::GetFlag(FLAGS_cycle_jobs);
  const absl::Duration claim_wait = absl::GetFlag(FLAGS_cycle_claim_wait);
  if (loops < 1 || channels < 1 || jobs < 1 || claim_wait < absl::ZeroDuration() ||
      claim_wait > absl::Seconds(30)) {
    std::cerr << "--cycle_workers, --cycle_channels and --cycle_jobs must be positive, "
                 "--cycle_claim_wait between 0 and 30s\n";
    return 2;
  }
  const int batch_calls = absl::GetFlag(FLAGS_cycle_batch_calls);
  std::vector<std::string> protocols =
      absl::StrSplit(absl::GetFlag(FLAGS_cycle_protocol), ',', absl::SkipEmpty());
  for (const std::string& protocol : protocols) {
    if (protocol != "batch" && protocol != "unary") {
      std::cerr << "--cycle_protocol: unknown protocol \"" << protocol << "\" (batch, unary)\n";
      return 2;
    }
  }
  if (protocols.empty() || batch_calls < 1) {
    std::cerr << "--cycle_protocol must name a protocol, --cycle_batch_calls be positive\n";
    return 2;
  }
  int failures = 0;
  // With several protocols, their runs alternate, so that a change of load shows in both.
  std::map<std::string, std::vector<CycleResult>> by_protocol;
  for (int run = 0; run < context.runs; ++run) {
    for (const std::string& protocol : protocols) {
      CycleResult result =
          RunCycleOnce(context, run, loops, std::min(channels, loops), jobs, claim_wait,
                       absl::GetFlag(FLAGS_cycle_batch_claims), protocol, batch_calls);
      PrintLine(result.Json());
      if (result.errors > 0 || result.completed != jobs) {
        ++failures;
        std::cerr << result.bench() << ": " << result.completed << " of " << jobs
                  << " jobs completed, " << result.errors
                  << " errors; first: " << result.first_error << "\n";
      }
      by_protocol[protocol].push_back(std::move(result));
    }
  }
  for (const auto& [protocol, results] : by_protocol) {
    PrintCycleSummary(results, loops, jobs, context.runs);
  }
  return failures == 0 ? 0 : 1;
}

namespace {
void PrintCycleSummary(const std::vector<CycleResult>& results, int loops, int64_t jobs, int runs) {
  PrintLine(absl::StrCat(
      R"({"bench":")", results.front().bench(), R"(","summary":true,"loops":)", loops,
      R"(,"jobs":)", jobs, R"(,"runs":)", runs, R"(,"jobs_per_sec":)",
      SpreadOf(results, [](const CycleResult& r) { return r.jobs_per_sec(); }).Json(),
      R"(,"p50_us":)",
      SpreadOf(results, [](const CycleResult& r) { return r.cycle.p50_us; }).Json(),
      R"(,"p99_us":)",
      SpreadOf(results, [](const CycleResult& r) { return r.cycle.p99_us; }).Json(),
      R"(,"max_us":)",
      SpreadOf(results, [](const CycleResult& r) { return r.cycle.max_us; }).Json(), "}"));
}
}  // namespace

int RunUploadBench(const WorkerBenchContext& context) {
  const int64_t bytes = absl::GetFlag(FLAGS_upload_bytes);
  const int64_t chunk_bytes = absl::GetFlag(FLAGS_upload_chunk_bytes);
  if (bytes < 1 || chunk_bytes < 1 || chunk_bytes > (int64_t{4} << 20)) {
    std::cerr << "--upload_bytes must be positive, --upload_chunk_bytes between 1 and 4 MiB\n";
    return 2;
  }
  const absl::Duration timeout = absl::GetFlag(FLAGS_upload_timeout);
  auto channel = NewChannel(context.address, 3000);
  auto worker = WorkerService::NewStub(channel);
  auto exports = ExportService::NewStub(channel);
  client::CallOptions upload_options;
  upload_options.timeout = timeout;
  upload_options.retry.max_attempts = 1;
  client::WorkerClient uploader(channel, upload_options);
  const Payload payload(bytes, chunk_bytes);

  int failures = 0;
  std::vector<UploadResult> results;
  for (int run = 0; run < context.runs; ++run) {
    UploadResult result = RunUploadOnce(context, worker.get(), &uploader, exports.get(), payload,
                                        bytes, chunk_bytes, timeout);
    PrintLine(result.Json());
    if (!result.error.empty()) {
      ++failures;
      std::cerr << "upload: " << result.error << "\n";
    }
    results.push_back(std::move(result));
  }
  PrintLine(absl::StrCat(
      R"({"bench":"upload","summary":true,"bytes":)", bytes, R"(,"runs":)", context.runs,
      R"(,"mb_per_sec":)",
      SpreadOf(results, [](const UploadResult& r) { return r.mb_per_sec(); }).Json(),
      R"(,"write_mb_per_sec":)",
      SpreadOf(results, [](const UploadResult& r) { return r.write_mb_per_sec(); }).Json(),
      R"(,"dd_mb_per_sec":)",
      SpreadOf(results, [](const UploadResult& r) { return r.dd_mb_per_sec(); }).Json(),
      R"(,"ratio_vs_write":)",
      SpreadOf(results,
               [](const UploadResult& r) { return Ratio(r.mb_per_sec(), r.write_mb_per_sec()); })
          .Json(3),
      R"(,"ratio_vs_dd":)",
      SpreadOf(results,
               [](const UploadResult& r) { return Ratio(r.mb_per_sec(), r.dd_mb_per_sec()); })
          .Json(3),
      R"(,"dd_direct_mb_per_sec":)",
      SpreadOf(results, [](const UploadResult& r) { return r.dd_direct_mb_per_sec(); }).Json(),
      R"(,"ratio_vs_dd_direct":)",
      SpreadOf(
          results,
          [](const UploadResult& r) { return Ratio(r.mb_per_sec(), r.dd_direct_mb_per_sec()); })
          .Json(3),
      "}"));
  return failures == 0 ? 0 : 1;
}

int RunExportBench(const WorkerBenchContext& context) {
  const std::string worker_binary = absl::GetFlag(FLAGS_worker_binary);
  if (worker_binary.empty() || access(worker_binary.c_str(), X_OK) != 0) {
    const std::string why = worker_binary.empty()
                                ? "no export-worker binary was built with the benchmark"
                                : absl::StrCat(worker_binary, " is not executable");
    std::cerr << "export: " << why << "; pass --worker_binary=PATH\n";
    PrintLine(absl::StrCat(R"({"bench":"export","skipped":")", why, R"("})"));
    return context.explicitly_selected ? 2 : 0;
  }
  std::vector<ExportVariant> variants;
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_export_variants), ',', absl::SkipWhitespace())) {
    std::optional<ExportVariant> variant = ParseVariant(name);
    if (!variant) {
      std::cerr << "--export_variants: unknown variant \"" << name
                << "\" (csv, gzip, jsonl, jsonl_gzip)\n";
      return 2;
    }
    variants.push_back(*variant);
  }
  const absl::Duration timeout = absl::GetFlag(FLAGS_export_timeout);
  const int64_t part_size = absl::GetFlag(FLAGS_export_part_size_bytes);

  // The database: given, or seeded here.
  std::string db = absl::GetFlag(FLAGS_export_source);
  if (db.empty()) {
    const int64_t accounts = absl::GetFlag(FLAGS_export_accounts);
    db = context.scratch_dir + "/bench-demo.db";
    ChildProcess::Options options;
    options.argv = {worker_binary, "seed-demo", "--source=" + db,
                    absl::StrCat("--accounts=", accounts), "--overwrite"};
    options.stdout_path = context.scratch_dir + "/bench-seed.out";
    options.stderr_path = context.scratch_dir + "/bench-seed.log";
    const int64_t start = NowNanos();
    absl::StatusOr<std::unique_ptr<ChildProcess>> seed = ChildProcess::Start(options);
    if (!seed.ok()) {
      std::cerr << "export: seed-demo: " << seed.status() << "\n";
      return 2;
    }
    absl::StatusOr<test_support::ExitStatus> exit = (*seed)->Wait(timeout);
    if (!exit.ok() || !exit->success()) {
      std::cerr << "export: seed-demo: "
                << (exit.ok() ? exit->ToString() : exit.status().ToString()) << "\n"
                << (*seed)->StderrText() << "\n";
      return 2;
    }
    std::cerr << "export: seeded " << accounts << " accounts into " << db << " in "
              << absl::StrFormat("%.1f", static_cast<double>(NowNanos() - start) / 1e9) << " s\n";
  } else if (access(db.c_str(), R_OK) != 0) {
    std::cerr << "--export_source: cannot read " << db << "\n";
    return 2;
  }

  auto channel = NewChannel(context.address, 4000);
  auto stub = ExportService::NewStub(channel);

  // Every accounts field, as the server lists them; the same columns for sqlite3.
  std::vector<std::string> fields;
  {
    grpc::ClientContext call;
    call.set_deadline(DeadlineAfter(context.deadline));
    exportjobs::v1::ListExportableFieldsRequest request;
    request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
    exportjobs::v1::ListExportableFieldsResponse response;
    grpc::Status status = stub->ListExportableFields(&call, request, &response);
    if (!status.ok()) {
      std::cerr << "export: " << Failure("ListExportableFields", status) << "\n";
      return 2;
    }
    for (const auto& field : response.fields()) fields.push_back(field.name());
  }
  std::vector<std::string> columns;
  for (const std::string& field : fields) columns.push_back(QuoteIdentifier(field));
  const std::string query =
      absl::StrCat("SELECT ", absl::StrJoin(columns, ","), " FROM \"accounts\" ORDER BY \"id\"");
  ReadThrough(db);

  ChildProcess::Options worker_options;
  worker_options.argv = {worker_binary,
                         "--server=" + context.address,
                         "--source=" + db,
                         "--worker_id=exportd-bench",
                         "--concurrency=1",
                         "--entity_types=accounts",
                         "--work_dir=" + context.scratch_dir};
  worker_options.stderr_path = context.scratch_dir + "/bench-export-worker.log";
  absl::StatusOr<std::unique_ptr<ChildProcess>> worker = ChildProcess::Start(worker_options);
  if (!worker.ok()) {
    std::cerr << "export: starting " << worker_binary << ": " << worker.status() << "\n";
    return 2;
  }
  if (absl::Status ready =
          (*worker)->WaitForStdoutLine("export-worker exportd-bench ready", absl::Seconds(60));
      !ready.ok()) {
    std::cerr << "export: export-worker: " << ready << "\n" << (*worker)->StderrText() << "\n";
    return 2;
  }
  std::cerr << "export: export-worker ready; " << fields.size() << " fields; variants "
            << absl::GetFlag(FLAGS_export_variants) << "\n";

  const bool any_gzip = std::any_of(variants.begin(), variants.end(), [](const ExportVariant& v) {
    return v.compression == exportjobs::v1::COMPRESSION_GZIP;
  });
  int failures = 0;
  std::vector<std::vector<ExportResult>> results(variants.size());
  for (int run = 0; run < context.runs; ++run) {
    const SqliteResult sqlite = RunSqlite(db, query, context.scratch_dir + "/bench-sqlite3.csv",
                                          context.scratch_dir, timeout, /*gzip=*/false);
    std::optional<SqliteResult> sqlite_gzip;
    if (any_gzip) {
      sqlite_gzip = RunSqlite(db, query, context.scratch_dir + "/bench-sqlite3.csv.gz",
                              context.scratch_dir, timeout, /*gzip=*/true);
    }
    for (size_t v = 0; v < variants.size(); ++v) {
      ExportResult result =
          RunExportOnce(stub.get(), variants[v], fields, part_size, context.deadline, timeout);
      // Each variant beside the reference of its compression (jsonl beside csv).
      result.sqlite =
          variants[v].compression == exportjobs::v1::COMPRESSION_GZIP ? *sqlite_gzip : sqlite;
      if (result.error.empty()) result.error = sqlite.error;
      PrintLine(result.Json());
      if (!result.error.empty()) {
        ++failures;
        std::cerr << "export " << variants[v].name << ": " << result.error << "\n";
      }
      results[v].push_back(std::move(result));
    }
  }

  absl::StatusOr<test_support::ExitStatus> stopped = (*worker)->Terminate(absl::Seconds(30));
  if (!stopped.ok() || !stopped->success()) {
    ++failures;
    std::cerr << "export: export-worker ended with "
              << (stopped.ok() ? stopped->ToString() : stopped.status().ToString()) << "\n"
              << (*worker)->StderrText() << "\n";
  }

  for (size_t v = 0; v < variants.size(); ++v) {
    const std::vector<ExportResult>& r = results[v];
    PrintLine(absl::StrCat(
        R"({"bench":"export","summary":true,"variant":")", variants[v].name, R"(","reference":")",
        r.empty() ? "" : r.front().sqlite.command, R"(","records":)",
        r.empty() ? 0 : r.front().records, R"(,"runs":)", context.runs, R"(,"records_per_sec":)",
        SpreadOf(r, [](const ExportResult& e) { return e.records_per_sec(); }).Json(),
        R"(,"mb_per_sec":)",
        SpreadOf(r, [](const ExportResult& e) { return e.mb_per_sec(); }).Json(), R"(,"seconds":)",
        SpreadOf(r, [](const ExportResult& e) { return e.seconds; }).Json(3),
        R"(,"sqlite3_records_per_sec":)",
        SpreadOf(r, [](const ExportResult& e) { return e.sqlite_records_per_sec(); }).Json(),
        R"(,"sqlite3_mb_per_sec":)",
        SpreadOf(r, [](const ExportResult& e) { return e.sqlite_mb_per_sec(); }).Json(),
        R"(,"ratio":)", SpreadOf(r, [](const ExportResult& e) { return e.ratio(); }).Json(3), "}"));
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace exportd::bench
