// JobManager: the worker protocol (claims, leases, parts, completion, failure, expiry).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "server/job_manager.h"
#include "server/job_txn.h"

namespace exportd {
namespace {

using exportjobs::v1::ExportPart;
using job_internal::JobNotFound;
using job_internal::NextRevision;

constexpr auto kPending = exportjobs::v1::EXPORT_JOB_STATUS_PENDING;
constexpr auto kProcessing = exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING;

std::string NewLeaseToken() {
  thread_local std::mt19937_64 random(std::random_device{}());
  const uint64_t words[2] = {random(), random()};
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(words), sizeof(words)));
}

int64_t ReadyMicros(const JobRecord& record) {
  return absl::ToUnixMicros(
      FromProtoTime(record.has_ready_at() ? record.ready_at() : record.job().created_at()));
}

std::string Describe(const ExportPart& p) {
  return absl::StrCat("part ", p.part_number(), " (", p.size_bytes(), " bytes, ", p.record_count(),
                      " records, sha256 ", p.sha256(), ")");
}

// Ends the record's attempt: no lease token, no uploaded parts, no progress. The epoch stays,
// so that the next claim takes the next one.
void EndAttempt(JobRecord& record) {
  record.mutable_lease()->clear_token();
  record.mutable_lease()->clear_expires_at();
  record.clear_uploaded_parts();
  record.mutable_job()->clear_progress();
}

void SetTerminal(JobRecord& record, ExportJobStatus status, absl::Time now) {
  record.mutable_job()->set_status(status);
  *record.mutable_job()->mutable_completed_at() = ToProtoTime(now);
}

}  // namespace

absl::StatusOr<JobRecord> JobManager::LeasedJob(Txn& txn, const std::string& id,
                                                const std::string& token) {
  EXPORTD_ASSIGN_OR_RETURN(std::optional<JobRecord> record, txn.Read(id));
  if (!record) return JobNotFound(id);
  const exportjobs::internal::v1::Lease& lease = record->lease();
  if (record->job().status() != kProcessing || lease.token().empty() || lease.token() != token) {
    return absl::AbortedError(absl::StrCat(
        "job ", id,
        ": lease_token is not the job's current lease (it expired, or the job was claimed "
        "again or finished); drop the job"));
  }
  if (FromProtoTime(lease.expires_at()) <= txn.now()) {
    return absl::AbortedError(absl::StrCat("job ", id, ": the lease expired; drop the job"));
  }
  return *std::move(record);
}

absl::Duration JobManager::Backoff(int attempt) const {
  absl::Duration backoff = options_.retry_backoff;
  for (int i = 1; i < attempt && backoff < options_.max_retry_backoff; ++i) backoff *= 2;
  return std::min(backoff, options_.max_retry_backoff);
}

int JobManager::waiting_claims() { return waiting_.load(); }

void JobManager::Claim(std::string worker_id, std::vector<EntityType> entity_types,
                       absl::Duration wait, ClaimCallback done, std::function<bool()> cancelled) {
  ClaimBatch(std::move(worker_id), std::move(entity_types), 1, wait, std::move(done),
             std::move(cancelled));
}

void JobManager::ClaimBatch(std::string worker_id, std::vector<EntityType> entity_types,
                            int max_jobs, absl::Duration wait, ClaimCallback done,
                            std::function<bool()> cancelled) {
  auto claim = std::make_shared<ClaimState>();
  claim->worker_id = std::move(worker_id);
  claim->entity_types = std::move(entity_types);
  claim->max_jobs = std::clamp(max_jobs, 1, kMaxClaimJobs);
  claim->deadline = absl::Now() + wait;
  claim->done = std::move(done);
  claim->cancelled = std::move(cancelled);
  Enqueue(ClaimOp(std::move(claim)));
}

JobManager::Op JobManager::ClaimOp(std::shared_ptr<ClaimState> claim) {
  // Whether this op parked the claim: decided by `apply` on the committer, read by `finish` on
  // the answer thread, which may run after ServeWaiters has woken the claim again (and changed
  // claim->parked).
  auto parked_here = std::make_shared<bool>(false);
  return Op{[this, claim, parked_here](Txn& txn) {
              if (claim->cancelled && claim->cancelled()) {
                claim->result = absl::CancelledError("the claim was cancelled");
                return;
              }
              claim->result = TryClaim(txn, *claim);
              if (claim->result.ok() && !claim->result->job && claim->deadline > absl::Now()) {
                claim->parked = true;
                *parked_here = true;
                waiters_.push_back(claim);
                waiting_.store(static_cast<int>(waiters_.size()));
              }
            },
            [claim, parked_here](const absl::Status& written) {
              if (*parked_here) return;  // A waiter now; ServeWaiters answers it.
              if (!written.ok()) return std::move(claim->done)(written);
              std::move(claim->done)(std::move(claim->result));
            }};
}

absl::StatusOr<JobManager::Claimed> JobManager::TryClaim(Txn& txn, const ClaimState& claim) {
  std::vector<EntityType> types = claim.entity_types;
  if (types.empty()) {
    for (int t = 1; t < static_cast<int>(ready_.size()); ++t) {
      types.push_back(static_cast<EntityType>(t));
    }
  }
  Claimed claimed;
  for (int i = 0; i < claim.max_jobs; ++i) {
    EXPORTD_ASSIGN_OR_RETURN(std::optional<exportjobs::v1::ClaimedExportJob> one,
                             ClaimOne(txn, claim, types));
    if (!one) break;
    if (!claimed.job) {
      claimed.job = std::move(*one->mutable_job());
      claimed.lease = std::move(*one->mutable_lease());
    } else {
      claimed.more.push_back(*std::move(one));
    }
  }
  return claimed;
}

absl::StatusOr<std::optional<exportjobs::v1::ClaimedExportJob>> JobManager::ClaimOne(
    Txn& txn, const ClaimState& claim, const std::vector<EntityType>& types) {
  const int64_t now = absl::ToUnixMicros(txn.now());
  std::optional<std::pair<int64_t, std::string>> best;
  std::optional<JobRecord> before;
  for (EntityType type : types) {
    const auto& ready = ready_[static_cast<size_t>(type)];
    for (auto it = ready.begin(); it != ready.end() && it->first <= now; ++it) {
      if (best && *it >= *best) break;
      // Claimed or cancelled earlier in this group (the index changes only at commit): skipped
      // without reading it. A job changed otherwise and still ready is claimed by a later group.
      if (txn.Staged(it->second)) continue;
      EXPORTD_ASSIGN_OR_RETURN(std::optional<JobRecord> record, txn.Read(it->second));
      if (record && record->job().status() == kPending && ReadyMicros(*record) <= now) {
        best = *it;
        before = std::move(record);
        break;
      }
    }
  }
  if (!best) return std::nullopt;

  JobRecord after = NextRevision(*before, txn.now());
  ExportJob& job = *after.mutable_job();
  job.set_status(kProcessing);
  job.set_attempt(job.attempt() + 1);
  *job.mutable_started_at() = ToProtoTime(txn.now());
  job.clear_progress();
  exportjobs::internal::v1::Lease& lease = *after.mutable_lease();
  lease.set_token(NewLeaseToken());
  lease.set_epoch(lease.epoch() + 1);
  *lease.mutable_expires_at() = ToProtoTime(txn.now() + options_.lease_duration);
  lease.set_worker_id(claim.worker_id);
  after.clear_uploaded_parts();

  exportjobs::v1::ClaimedExportJob claimed;
  *claimed.mutable_job() = job;
  claimed.mutable_lease()->set_token(lease.token());
  claimed.mutable_lease()->set_epoch(lease.epoch());
  *claimed.mutable_lease()->mutable_expires_at() = lease.expires_at();
  txn.Stage(JobChange{std::move(before), std::move(after)}, ChangeCause::kClaim);
  return claimed;
}

void JobManager::AfterCommit(const std::vector<JobChange>& changes) {
  for (const JobChange& change : changes) {
    if (change.before && change.before->job().status() == kPending) {
      ready_[static_cast<size_t>(change.before->job().entity_type())].erase(
          {ReadyMicros(*change.before), change.before->job().id()});
    }
    if (change.after && change.after->job().status() == kPending) {
      ready_[static_cast<size_t>(change.after->job().entity_type())].emplace(
          ReadyMicros(*change.after), change.after->job().id());
    }
  }
}

void JobManager::ServeWaiters(absl::Time clock_now) {
  if (waiters_.empty()) return;
  const int64_t now = absl::ToUnixMicros(clock_now);
  const absl::Time real_now = absl::Now();
  absl::flat_hash_set<std::string> promised;
  std::deque<std::shared_ptr<ClaimState>> still_waiting;
  for (std::shared_ptr<ClaimState>& claim : waiters_) {
    if (claim->cancelled && claim->cancelled()) {  // The caller went away: no job for it.
      claim->parked = false;
      std::move(claim->done)(absl::CancelledError("the claim was cancelled"));
      continue;
    }
    // A ready job nobody else in this pass was sent for: wake this claim for it.
    bool wake = false;
    for (int t = 1; t < static_cast<int>(ready_.size()) && !wake; ++t) {
      const bool wanted = claim->entity_types.empty() ||
                          std::find(claim->entity_types.begin(), claim->entity_types.end(),
                                    static_cast<EntityType>(t)) != claim->entity_types.end();
      if (!wanted) continue;
      for (const auto& [ready_at, id] : ready_[static_cast<size_t>(t)]) {
        if (ready_at > now) break;
        if (promised.insert(id).second) {
          wake = true;
          break;
        }
      }
    }
    if (wake) {
      claim->parked = false;
      Enqueue(ClaimOp(std::move(claim)));
    } else if (claim->deadline <= real_now) {
      claim->parked = false;
      std::move(claim->done)(Claimed{});
    } else {
      still_waiting.push_back(std::move(claim));
    }
  }
  waiters_ = std::move(still_waiting);
  waiting_.store(static_cast<int>(waiters_.size()));
}

void JobManager::EndWaitingClaims() {
  Enqueue(Op{[this](Txn&) {
               for (std::shared_ptr<ClaimState>& claim : waiters_) {
                 claim->parked = false;
                 std::move(claim->done)(Claimed{});
               }
               waiters_.clear();
               waiting_.store(0);
             },
             nullptr});
}

void JobManager::Tick() {
  Enqueue(Op{[this](Txn& txn) {
               if (count_stalled_) {  // The count at start could not read a page: retry it.
                 count_stalled_ = false;
                 Enqueue(CountOp());
               }
               absl::StatusOr<std::vector<IndexEntry>> expired =
                   store_->ScanLeases(txn.now(), 1000);
               if (!expired.ok()) return;  // The next tick tries again.
               for (const IndexEntry& entry : *expired) {
                 absl::StatusOr<std::optional<JobRecord>> before = txn.Read(entry.id);
                 if (!before.ok() || !*before) continue;
                 const JobRecord& record = **before;
                 if (record.job().status() != kProcessing ||
                     FromProtoTime(record.lease().expires_at()) > txn.now()) {
                   continue;
                 }
                 JobRecord after = NextRevision(record, txn.now());
                 const int attempt = record.job().attempt();
                 if (record.job().cancel_requested()) {
                   SetTerminal(after, exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED, txn.now());
                 } else if (attempt >= options_.max_attempts) {
                   SetTerminal(after, exportjobs::v1::EXPORT_JOB_STATUS_FAILED, txn.now());
                   after.mutable_job()->set_error_message(
                       absl::StrCat("lease expired; ", attempt, " attempts"));
                 } else {
                   after.mutable_job()->set_status(kPending);
                   *after.mutable_ready_at() = ToProtoTime(txn.now() + Backoff(attempt));
                 }
                 EndAttempt(after);
                 txn.Discard(entry.id, record.lease().epoch());
                 txn.Stage(JobChange{**before, std::move(after)}, ChangeCause::kLeaseExpiry);
               }
             },
             nullptr});
}

absl::StatusOr<exportjobs::v1::ReportProgressResponse> JobManager::ApplyProgress(
    Txn& txn, const exportjobs::v1::ReportProgressRequest& request) {
  EXPORTD_ASSIGN_OR_RETURN(JobRecord before,
                           LeasedJob(txn, request.job_id(), request.lease_token()));
  JobRecord after = NextRevision(before, txn.now());
  exportjobs::v1::ExportProgress& progress = *after.mutable_job()->mutable_progress();
  progress.set_records_processed(request.records_processed());
  progress.set_bytes_written(request.bytes_written());
  progress.set_parts_uploaded(request.parts_uploaded());
  progress.set_records_total_estimate(request.records_total_estimate());
  *after.mutable_lease()->mutable_expires_at() = ToProtoTime(txn.now() + options_.lease_duration);
  exportjobs::v1::ReportProgressResponse response;
  *response.mutable_lease_expires_at() = after.lease().expires_at();
  response.set_cancel_requested(after.job().cancel_requested());
  txn.Stage(JobChange{std::move(before), std::move(after)}, ChangeCause::kProgress);
  return response;
}

void JobManager::ReportProgress(exportjobs::v1::ReportProgressRequest request,
                                ProgressCallback done) {
  Enqueue(MakeOp<exportjobs::v1::ReportProgressResponse>(
      [this, request = std::move(request)](
          Txn& txn) -> absl::StatusOr<exportjobs::v1::ReportProgressResponse> {
        return ApplyProgress(txn, request);
      },
      std::move(done)));
}

void JobManager::ReportBatch(exportjobs::v1::BatchReportExportJobsRequest request,
                             ReportBatchCallback done) {
  const int reports = request.reports_size();
  Op op = MakeOp<exportjobs::v1::BatchReportExportJobsResponse>(
      [this, request = std::move(request)](
          Txn& txn) -> absl::StatusOr<exportjobs::v1::BatchReportExportJobsResponse> {
        exportjobs::v1::BatchReportExportJobsResponse response;
        for (const exportjobs::v1::JobReport& report : request.reports()) {
          exportjobs::v1::JobReportResult& result = *response.add_results();
          absl::Status status;
          if (report.has_progress()) {
            absl::StatusOr<exportjobs::v1::ReportProgressResponse> progress =
                ApplyProgress(txn, report.progress());
            if (progress.ok()) *result.mutable_progress() = *std::move(progress);
            status = progress.status();
          } else {
            absl::StatusOr<ExportJob> job = ApplyComplete(txn, report.complete());
            if (job.ok()) *result.mutable_job() = *std::move(job);
            status = job.status();
          }
          result.set_code(static_cast<int32_t>(status.code()));
          result.set_message(std::string(status.message()));
        }
        if (request.has_claim()) {
          ClaimState claim;
          claim.worker_id = request.claim().worker_id();
          for (int type : request.claim().entity_types()) {
            claim.entity_types.push_back(static_cast<EntityType>(type));
          }
          claim.max_jobs = std::clamp(request.claim().max_jobs(), 1, kMaxClaimJobs);
          EXPORTD_ASSIGN_OR_RETURN(Claimed claimed, TryClaim(txn, claim));
          if (claimed.job) {
            exportjobs::v1::ClaimedExportJob& first = *response.add_claimed();
            *first.mutable_job() = *std::move(claimed.job);
            *first.mutable_lease() = std::move(claimed.lease);
            for (exportjobs::v1::ClaimedExportJob& more : claimed.more) {
              *response.add_claimed() = std::move(more);
            }
          }
        }
        return response;
      },
      std::move(done));
  op.requests = std::max(1, reports);  // For CommitReport::requests.
  Enqueue(std::move(op));
}

void JobManager::CheckLease(std::string id, std::string token,
                            absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&> done) {
  readers_->Submit(
      [this, id = std::move(id), token = std::move(token), done = std::move(done)]() mutable {
        Txn txn(store_, clock_->Now());
        absl::StatusOr<JobRecord> record = LeasedJob(txn, id, token);
        if (!record.ok()) return std::move(done)(record.status());
        std::move(done)(record->lease().epoch());
      });
}

void JobManager::RecordPart(std::string id, std::string token, ExportPart part, JobCallback done) {
  Enqueue(MakeOp<ExportJob>(
      [this, id = std::move(id), token = std::move(token),
       part = std::move(part)](Txn& txn) -> absl::StatusOr<ExportJob> {
        EXPORTD_ASSIGN_OR_RETURN(JobRecord before, LeasedJob(txn, id, token));
        JobRecord after = NextRevision(before, txn.now());
        auto* parts = after.mutable_uploaded_parts();
        auto it = std::find_if(parts->begin(), parts->end(), [&](const ExportPart& p) {
          return p.part_number() >= part.part_number();
        });
        if (it != parts->end() && it->part_number() == part.part_number()) {
          *it = part;
        } else {
          const int index = static_cast<int>(it - parts->begin());
          parts->Add()->CopyFrom(part);
          for (int i = parts->size() - 1; i > index; --i) parts->SwapElements(i, i - 1);
        }
        after.mutable_job()->mutable_progress()->set_parts_uploaded(parts->size());
        *after.mutable_lease()->mutable_expires_at() =
            ToProtoTime(txn.now() + options_.lease_duration);
        ExportJob result = after.job();
        txn.Stage(JobChange{std::move(before), std::move(after)}, ChangeCause::kPartRecorded);
        return result;
      },
      std::move(done)));
}

// Checks the manifest against the uploaded parts; FAILED_PRECONDITION or INVALID_ARGUMENT
// naming the first difference.
static absl::Status CheckManifest(const exportjobs::v1::CompleteExportJobRequest& request,
                                  const JobRecord& record) {
  const auto& manifest = request.parts();
  const auto& uploaded = record.uploaded_parts();
  // An export of no records may have no file at all: it completes without parts (and its
  // download is empty). Any other export lists part 1 onwards.
  if (manifest.empty() && request.record_count() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("parts: must list at least part 1 (only an export of 0 records may complete "
                     "without parts; record_count is ",
                     request.record_count(), ")"));
  }
  int64_t records = 0;
  for (int i = 0; i < manifest.size(); ++i) {
    if (manifest[i].part_number() != i + 1) {
      return absl::InvalidArgumentError(absl::StrCat("parts[", i, "].part_number: expected ", i + 1,
                                                     " (parts are numbered "
                                                     "from 1, in order, without gaps), got ",
                                                     manifest[i].part_number()));
    }
    records += manifest[i].record_count();
  }
  if (request.record_count() != records) {
    return absl::InvalidArgumentError(
        absl::StrCat("record_count: ", request.record_count(), ", but the parts hold ", records));
  }
  for (int i = 0; i < manifest.size(); ++i) {
    auto it = std::find_if(uploaded.begin(), uploaded.end(), [&](const ExportPart& p) {
      return p.part_number() == manifest[i].part_number();
    });
    if (it == uploaded.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("parts[", i, "]: part ", manifest[i].part_number(), " was not uploaded"));
    }
    if (it->size_bytes() != manifest[i].size_bytes() ||
        it->record_count() != manifest[i].record_count() || it->sha256() != manifest[i].sha256()) {
      return absl::FailedPreconditionError(absl::StrCat("parts[", i, "]: the manifest says ",
                                                        Describe(manifest[i]),
                                                        " but the upload was ", Describe(*it)));
    }
  }
  for (const ExportPart& part : uploaded) {
    if (part.part_number() > manifest.size()) {
      return absl::FailedPreconditionError(
          absl::StrCat("part ", part.part_number(), " was uploaded but is not in the manifest"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ExportJob> JobManager::ApplyComplete(
    Txn& txn, const exportjobs::v1::CompleteExportJobRequest& request) {
  EXPORTD_ASSIGN_OR_RETURN(JobRecord before,
                           LeasedJob(txn, request.job_id(), request.lease_token()));
  EXPORTD_RETURN_IF_ERROR(CheckManifest(request, before));
  JobRecord after = NextRevision(before, txn.now());
  ExportJob& job = *after.mutable_job();
  int64_t size = 0;
  for (const ExportPart& part : request.parts()) size += part.size_bytes();
  SetTerminal(after, exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED, txn.now());
  job.set_record_count(request.record_count());
  job.set_file_parts(request.parts_size());
  job.set_file_size_bytes(size);
  // Whole seconds, as download URLs carry them: the URL and the job expire together.
  const absl::Time expires_exact = txn.now() + options_.retention;
  absl::Time expires = absl::FromUnixSeconds(absl::ToUnixSeconds(expires_exact));
  if (expires < expires_exact) expires += absl::Seconds(1);
  *job.mutable_expires_at() = ToProtoTime(expires);
  *job.mutable_parts() = request.parts();
  if (options_.download_url) {
    job.set_download_url(options_.download_url(job.id(), after.tenant(), 0, expires));
    for (ExportPart& part : *job.mutable_parts()) {
      part.set_download_url(
          options_.download_url(job.id(), after.tenant(), part.part_number(), expires));
    }
  }
  exportjobs::v1::ExportProgress& progress = *job.mutable_progress();
  progress.set_records_processed(request.record_count());
  progress.set_bytes_written(size);
  progress.set_parts_uploaded(request.parts_size());
  after.mutable_lease()->clear_token();
  after.mutable_lease()->clear_expires_at();
  after.clear_uploaded_parts();
  ExportJob result = job;
  txn.Stage(JobChange{std::move(before), std::move(after)}, ChangeCause::kComplete);
  return result;
}

void JobManager::Complete(exportjobs::v1::CompleteExportJobRequest request, JobCallback done) {
  Enqueue(MakeOp<ExportJob>(
      [this, request = std::move(request)](Txn& txn) -> absl::StatusOr<ExportJob> {
        return ApplyComplete(txn, request);
      },
      std::move(done)));
}

void JobManager::Fail(exportjobs::v1::FailExportJobRequest request, JobCallback done) {
  Enqueue(MakeOp<ExportJob>(
      [this, request = std::move(request)](Txn& txn) -> absl::StatusOr<ExportJob> {
        EXPORTD_ASSIGN_OR_RETURN(JobRecord before,
                                 LeasedJob(txn, request.job_id(), request.lease_token()));
        JobRecord after = NextRevision(before, txn.now());
        const int attempt = before.job().attempt();
        if (before.job().cancel_requested()) {
          SetTerminal(after, exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED, txn.now());
        } else if (request.retryable() && attempt < options_.max_attempts) {
          after.mutable_job()->set_status(kPending);
          *after.mutable_ready_at() = ToProtoTime(txn.now() + Backoff(attempt));
        } else {
          SetTerminal(after, exportjobs::v1::EXPORT_JOB_STATUS_FAILED, txn.now());
          after.mutable_job()->set_error_message(request.error_message());
        }
        EndAttempt(after);
        txn.Discard(request.job_id(), before.lease().epoch());
        ExportJob result = after.job();
        txn.Stage(JobChange{std::move(before), std::move(after)}, ChangeCause::kFail,
                  request.error_message());
        return result;
      },
      std::move(done)));
}

void JobManager::Release(std::string id, std::string token, JobCallback done) {
  Enqueue(MakeOp<ExportJob>(
      [id = std::move(id), token = std::move(token)](Txn& txn) -> absl::StatusOr<ExportJob> {
        EXPORTD_ASSIGN_OR_RETURN(JobRecord before, LeasedJob(txn, id, token));
        JobRecord after = NextRevision(before, txn.now());
        if (before.job().cancel_requested()) {
          SetTerminal(after, exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED, txn.now());
        } else {
          after.mutable_job()->set_status(kPending);
          after.mutable_job()->set_attempt(before.job().attempt() - 1);
          *after.mutable_ready_at() = ToProtoTime(txn.now());
        }
        EndAttempt(after);
        txn.Discard(id, before.lease().epoch());
        ExportJob result = after.job();
        txn.Stage(JobChange{std::move(before), std::move(after)}, ChangeCause::kRelease);
        return result;
      },
      std::move(done)));
}

}  // namespace exportd

namespace exportd {

void JobManager::Sweep(absl::Duration job_retention,
                       absl::AnyInvocable<void(absl::StatusOr<std::pair<int, int>>) &&> done) {
  readers_->Submit([this, job_retention, done = std::move(done)]() mutable {
    const absl::Time now = clock_->Now();
    // A completed job's files expire `retention` after completion, so only jobs created before
    // now - retention can have expired; jobs to delete finished (and so were created) before
    // now - job_retention.
    ListQuery query;
    query.before_id = FirstJobIdAt(now - std::min(options_.retention, job_retention));
    query.limit = 500;
    int expired = 0;
    int deleted = 0;
    while (true) {
      absl::StatusOr<ListResult> page = store_->List(query);
      if (!page.ok()) return std::move(done)(page.status());
      for (const JobRecord& record : page->jobs) {
        const ExportJob& job = record.job();
        const bool terminal = IsTerminal(job.status());
        if (terminal && FromProtoTime(job.completed_at()) + job_retention < now) {
          ++deleted;
          Enqueue(MakeOp<ExportJob>(
              [id = job.id(), now, job_retention](Txn& txn) -> absl::StatusOr<ExportJob> {
                EXPORTD_ASSIGN_OR_RETURN(std::optional<JobRecord> before, txn.Read(id));
                if (!before || !IsTerminal(before->job().status())) return ExportJob();
                if (FromProtoTime(before->job().completed_at()) + job_retention >= now) {
                  return ExportJob();
                }
                txn.Stage(JobChange{*before, std::nullopt}, ChangeCause::kRetention);
                txn.Discard(id, -1);
                return ExportJob();
              },
              [](absl::StatusOr<ExportJob>) {}));
        } else if (job.status() == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED &&
                   !record.parts_deleted() && FromProtoTime(job.expires_at()) < now) {
          ++expired;
          Enqueue(MakeOp<ExportJob>(
              [id = job.id()](Txn& txn) -> absl::StatusOr<ExportJob> {
                EXPORTD_ASSIGN_OR_RETURN(std::optional<JobRecord> before, txn.Read(id));
                if (!before || before->parts_deleted()) return ExportJob();
                JobRecord after = NextRevision(*before, txn.now());
                after.set_parts_deleted(true);
                txn.Stage(JobChange{*before, std::move(after)}, ChangeCause::kFilesExpiry);
                txn.Discard(id, -1);
                return ExportJob();
              },
              [](absl::StatusOr<ExportJob>) {}));
        }
      }
      if (!page->more || page->jobs.empty()) break;
      query.before_id = page->jobs.back().job().id();
    }
    // Answered after the changes it queued: the committer applies ops in order.
    Enqueue(MakeOp<ExportJob>(
        [](Txn&) -> absl::StatusOr<ExportJob> { return ExportJob(); },
        [done = std::move(done), expired, deleted](absl::StatusOr<ExportJob> written) mutable {
          if (!written.ok()) return std::move(done)(written.status());
          std::move(done)(std::make_pair(expired, deleted));
        }));
  });
}

}  // namespace exportd
