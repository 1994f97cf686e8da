#include "server/job_manager.h"

#include <pthread.h>

#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "server/job_txn.h"
#include "server/limits.h"
#include "server/tenancy.h"
#include "server/validation.h"

namespace exportd {

using exportjobs::v1::CreateExportJobRequest;
using exportjobs::v1::ExportJobStatus_Name;
using exportjobs::v1::ListExportJobsRequest;
using exportjobs::v1::ListExportJobsResponse;

bool IsTerminal(ExportJobStatus status) {
  return status == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED ||
         status == exportjobs::v1::EXPORT_JOB_STATUS_FAILED ||
         status == exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED;
}

namespace {

using job_internal::JobNotFound;
using job_internal::NextRevision;
using job_internal::StatusWord;

// Page tokens: web-safe base64 of "1|<last id>|<status>|<entity type>". The filters are part of
// the token so that a token is refused with different filters instead of silently skipping jobs.
std::string EncodePageToken(const std::string& last_id, const ListExportJobsRequest& request) {
  return absl::WebSafeBase64Escape(
      absl::StrCat("1|", last_id, "|", request.status(), "|", request.entity_type()));
}

absl::StatusOr<std::string> DecodePageToken(const ListExportJobsRequest& request) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(request.page_token(), &raw)) raw.clear();
  const std::vector<std::string> parts = absl::StrSplit(raw, '|');
  int status = 0;
  int entity_type = 0;
  if (parts.size() != 4 || parts[0] != "1" || !IsWellFormedJobId(parts[1]) ||
      !absl::SimpleAtoi(parts[2], &status) || !absl::SimpleAtoi(parts[3], &entity_type)) {
    return absl::InvalidArgumentError(
        "page_token: not a token from a previous ListExportJobs response");
  }
  if (status != request.status() || entity_type != request.entity_type()) {
    return absl::InvalidArgumentError(
        "page_token: was issued for a different status or entity_type filter; repeat the "
        "filters of the first call");
  }
  return parts[1];
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Start(JobStore* store, const Clock* clock,
                                                              Executor* readers, Options options,
                                                              ChangeListener listener) {
  EXPORTD_ASSIGN_OR_RETURN(std::string last_id, store->LastJobId());
  std::unique_ptr<JobManager> manager(
      new JobManager(store, clock, readers, options, std::move(listener)));
  manager->ids_.ObserveExisting(last_id);
  EXPORTD_ASSIGN_OR_RETURN(std::vector<IndexEntry> queued,
                           store->ScanQueue(absl::InfiniteFuture(), INT32_MAX));
  for (IndexEntry& entry : queued) {
    const size_t type = static_cast<size_t>(entry.entity_type);
    if (type < manager->ready_.size()) {
      manager->ready_[type].emplace(absl::ToUnixMicros(entry.time), std::move(entry.id));
    }
  }
  for (size_t type = 0; type < manager->ready_.size(); ++type) {
    manager->queued_[type].store(static_cast<int64_t>(manager->ready_[type].size()));
  }
  // Every id created from now on sorts above last_id, and so above count_floor_: counted as
  // created. The stored jobs are counted in the background, from the newest down.
  if (last_id.empty()) {
    absl::MutexLock lock(&manager->counted_mu_);
    manager->counted_ = true;
  } else {
    manager->count_floor_ = last_id + '\x01';
    manager->count_started_ = absl::Now();
  }
  manager->committer_ = std::thread([m = manager.get()] { m->CommitLoop(); });
  // Named for top -H, perf and /proc (at most 15 characters).
  pthread_setname_np(manager->committer_.native_handle(), "job-committer");
  if (!last_id.empty()) manager->Enqueue(manager->CountOp());
  return manager;
}

JobManager::JobManager(JobStore* store, const Clock* clock, Executor* readers, Options options,
                       ChangeListener listener)
    : store_(store),
      clock_(clock),
      readers_(readers),
      options_(options),
      listener_(std::move(listener)),
      ids_(clock) {
  ready_.resize(exportjobs::v1::EntityType_ARRAYSIZE);
}

JobManager::~JobManager() { Shutdown(); }

void JobManager::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (committer_.joinable()) committer_.join();
  answers_.Shutdown();
}

void JobManager::Enqueue(Op op) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(std::move(op));
      return;
    }
  }
  if (op.finish) op.finish(absl::UnavailableError("server is shutting down"));
}

void JobManager::CommitLoop() {
  while (true) {
    std::vector<Op> group;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](JobManager* m)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(m->mu_) { return m->stopping_ || !m->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // stopping, and everything queued was answered
      while (!queue_.empty() && static_cast<int>(group.size()) < options_.max_group_size) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }

    Txn txn(store_, clock_->Now());
    group_creates_.clear();
    int requests = 0;
    for (Op& op : group) {
      op.apply(txn);
      requests += op.requests;
    }

    absl::Status written = absl::OkStatus();
    absl::Duration write_time;
    if (!txn.changes().empty()) {
      const absl::Time write_start = absl::Now();
      written = store_->Commit(txn.changes());
      write_time = absl::Now() - write_start;
      if (written.ok() && options_.on_commit) {
        options_.on_commit(
            CommitReport{txn.changes(), txn.causes(), txn.notes(), requests, write_time});
      }
    }
    if (written.ok()) {
      for (const JobChange& change : txn.changes()) listener_(change);
      AfterCommit(txn.changes());
      CountChanges(txn.changes());
      if (options_.discard_parts) {
        for (const auto& [id, epoch] : txn.discards()) options_.discard_parts(id, epoch);
      }
      if (resync_ && !txn.changes().empty()) Resync();
    } else {
      // The outcome is unknown: a write that failed only in its sync may be found applied once
      // the store reopens. After the next successful write, memory is read again from the store.
      resync_ = true;
      written = absl::UnavailableError(
          absl::StrCat("the change could not be stored; retry: ", written.message()));
    }
    // The answers (gRPC Finish: serialising and sending) go to the answer thread, so that the
    // committer goes on with the next group while they are sent; so do the group's changes
    // when on_commit_answering wants them (the committer is done with them), which also frees
    // them there.
    std::vector<absl::AnyInvocable<void(const absl::Status&)>> finishes;
    finishes.reserve(group.size());
    for (Op& op : group) {
      if (op.finish) finishes.push_back(std::move(op.finish));
    }
    std::shared_ptr<Written> report;
    if (written.ok() && !txn.changes().empty() && options_.on_commit_answering) {
      report = std::make_shared<Written>(Written{std::move(txn.changes()), txn.TakeCauses(),
                                                 txn.TakeNotes(), requests, write_time});
    }
    if (!finishes.empty() || report != nullptr) {
      answers_.Submit([this, finishes = std::move(finishes), report, written]() mutable {
        if (report != nullptr) {
          options_.on_commit_answering(CommitReport{report->changes, report->causes, report->notes,
                                                    report->requests, report->write_time});
        }
        for (auto& finish : finishes) finish(written);
      });
    }
    ServeWaiters(txn.now());
    if (options_.after_group) options_.after_group();
  }
}

void JobManager::CountChanges(const std::vector<JobChange>& changes) {
  for (const JobChange& change : changes) {
    const JobRecord& any = change.after ? *change.after : *change.before;
    if (any.job().id() < count_floor_) continue;  // Not counted yet: the count will see it.
    if (change.before) {
      by_status_[static_cast<size_t>(change.before->job().status())] -= 1;
      CountActive(*change.before, -1);
    }
    if (change.after) {
      by_status_[static_cast<size_t>(change.after->job().status())] += 1;
      CountActive(*change.after, +1);
    }
  }
  for (size_t type = 0; type < ready_.size(); ++type) {
    queued_[type].store(static_cast<int64_t>(ready_[type].size()));
  }
}

JobManager::Op JobManager::CountOp() {
  return Op{
      [this](Txn&) {
        // Runs between the group's reads and its write: what it reads is what is stored
        // before the group, and the group's changes to the jobs it counts are applied
        // after the write by CountChanges, as for every counted job.
        ListQuery query;
        query.before_id = count_floor_;
        query.limit = options_.count_page_size;
        absl::StatusOr<ListResult> page = store_->List(query);
        if (!page.ok()) {
          count_stalled_ = true;  // Tick resumes.
          LogEvent(LogLevel::kWarn, "server.count_failed", {{"error", page.status().ToString()}});
          return;
        }
        for (const JobRecord& record : page->jobs) {
          by_status_[static_cast<size_t>(record.job().status())] += 1;
          CountActive(record, +1);
        }
        if (page->more && !page->jobs.empty()) {
          count_floor_ = page->jobs.back().job().id();
          Enqueue(CountOp());
          return;
        }
        count_floor_.clear();
        int64_t jobs = 0;
        for (const auto& n : by_status_) jobs += n.load();
        LogEvent(
            LogLevel::kInfo, "server.jobs_counted",
            {{"jobs", jobs}, {"seconds", absl::ToDoubleSeconds(absl::Now() - count_started_)}});
        absl::MutexLock lock(&counted_mu_);
        counted_ = true;
      },
      nullptr};
}

void JobManager::Resync() {
  absl::StatusOr<std::vector<IndexEntry>> queued =
      store_->ScanQueue(absl::InfiniteFuture(), INT32_MAX);
  absl::StatusOr<std::string> last_id = store_->LastJobId();
  if (!queued.ok() || !last_id.ok()) return;  // Tried again after the next write.
  resync_ = false;
  for (auto& entries : ready_) entries.clear();
  for (IndexEntry& entry : *queued) {
    const size_t type = static_cast<size_t>(entry.entity_type);
    if (type < ready_.size())
      ready_[type].emplace(absl::ToUnixMicros(entry.time), std::move(entry.id));
  }
  for (size_t type = 0; type < ready_.size(); ++type) {
    queued_[type].store(static_cast<int64_t>(ready_[type].size()));
  }
  // Count every stored job again, from the newest down, as at start.
  for (auto& n : by_status_) n.store(0);
  active_by_tenant_.clear();
  const bool counting = !count_floor_.empty();
  {
    absl::MutexLock lock(&counted_mu_);
    counted_ = last_id->empty();
  }
  count_floor_ = last_id->empty() ? std::string() : *last_id + '\x01';
  count_started_ = absl::Now();
  // A count already under way (or stalled, resumed by Tick) goes on from the new floor.
  if (!counting && !count_floor_.empty()) Enqueue(CountOp());
  LogEvent(LogLevel::kInfo, "server.resynced",
           {{"queued_jobs", static_cast<int64_t>(queued->size())}});
}

void JobManager::CountActive(const JobRecord& record, int delta) {
  if (IsTerminal(record.job().status())) return;
  auto [it, inserted] = active_by_tenant_.try_emplace(record.tenant(), 0);
  it->second += delta;
  if (it->second <= 0) active_by_tenant_.erase(it);
}

JobManager::Counts JobManager::counts() const {
  Counts counts;
  bool counted = false;
  {
    absl::MutexLock lock(&counted_mu_);
    counted = counted_;
  }
  if (counted) {
    counts.by_status.emplace();
    for (size_t i = 0; i < by_status_.size(); ++i) (*counts.by_status)[i] = by_status_[i].load();
  }
  for (size_t i = 0; i < queued_.size(); ++i) counts.queued[i] = queued_[i].load();
  return counts;
}

bool JobManager::AwaitCounted(absl::Time deadline) {
  absl::MutexLock lock(&counted_mu_);
  return counted_mu_.AwaitWithDeadline(absl::Condition(&counted_), deadline);
}

absl::StatusOr<ExportJob> JobManager::ApplyCreate(Txn& txn, const CreateExportJobRequest& request,
                                                  const std::string& tenant,
                                                  const std::string& fingerprint) {
  if (!request.request_id().empty()) {
    EXPORTD_ASSIGN_OR_RETURN(std::optional<std::string> existing_id,
                             txn.FindByRequestId(tenant, request.request_id()));
    if (existing_id) {
      EXPORTD_ASSIGN_OR_RETURN(std::optional<JobRecord> existing, txn.Read(*existing_id));
      if (existing) {
        if (existing->request_fingerprint() != fingerprint) {
          return absl::AlreadyExistsError(absl::StrCat("request_id: \"", request.request_id(),
                                                       "\" was already used for job ", *existing_id,
                                                       " with a different request"));
        }
        return existing->job();
      }
    }
  }
  if (const int64_t limit = options_.max_active_jobs_per_tenant; limit > 0) {
    auto it = active_by_tenant_.find(tenant);
    const int64_t active =
        (it == active_by_tenant_.end() ? 0 : it->second) + group_creates_[tenant];
    if (active >= limit) {
      return LimitExceeded(
          absl::StrCat(TenantSubject(tenant), " has ", active,
                       " active (pending or processing) jobs, its limit; retry once some "
                       "have finished, or cancel some"),
          options_.active_jobs_retry_after, TenantSubject(tenant),
          absl::StrCat(limit, " active jobs per tenant (--max_active_jobs_per_tenant)"));
    }
    group_creates_[tenant] += 1;
  }
  JobRecord record;
  record.set_tenant(tenant);
  record.set_request_fingerprint(fingerprint);
  ExportJob& job = *record.mutable_job();
  job.set_id(ids_.Next());
  job.set_entity_type(request.entity_type());
  job.set_status(exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  *job.mutable_fields() = request.fields();
  if (request.has_filters()) *job.mutable_filters() = request.filters();
  *job.mutable_created_at() = ToProtoTime(txn.now());
  *job.mutable_updated_at() = job.created_at();
  job.set_revision(1);
  job.set_format(request.format());
  job.set_compression(request.compression());
  job.set_part_size_bytes(request.part_size_bytes());
  job.set_request_id(request.request_id());
  *record.mutable_ready_at() = job.created_at();
  ExportJob result = job;
  txn.Stage(JobChange{std::nullopt, std::move(record)}, ChangeCause::kCreate);
  return result;
}

void JobManager::Create(CreateExportJobRequest normalized, std::string tenant, JobCallback done) {
  // The fingerprint is computed here, on the caller's thread, to keep it off the committer.
  std::string fingerprint = CreateFingerprint(normalized);
  Enqueue(MakeOp<ExportJob>(
      [this, request = std::move(normalized), tenant = std::move(tenant),
       fingerprint = std::move(fingerprint)](Txn& txn) -> absl::StatusOr<ExportJob> {
        return ApplyCreate(txn, request, tenant, fingerprint);
      },
      std::move(done)));
}

void JobManager::CreateBatch(std::vector<CreateExportJobRequest> normalized, std::string tenant,
                             BatchCallback done) {
  if (normalized.empty()) return std::move(done)({});
  const int items = static_cast<int>(normalized.size());
  auto results = std::make_shared<std::vector<absl::StatusOr<ExportJob>>>();
  // As in Create: the fingerprints are computed on the caller's thread.
  std::vector<std::string> fingerprints;
  fingerprints.reserve(normalized.size());
  for (const CreateExportJobRequest& request : normalized) {
    fingerprints.push_back(CreateFingerprint(request));
  }
  Op op{[this, requests = std::move(normalized), tenant = std::move(tenant),
         fingerprints = std::move(fingerprints), results](Txn& txn) {
          results->reserve(requests.size());
          for (size_t i = 0; i < requests.size(); ++i) {
            results->push_back(ApplyCreate(txn, requests[i], tenant, fingerprints[i]));
          }
        },
        [results, items, done = std::move(done)](const absl::Status& written) mutable {
          if (!written.ok()) {
            // Nothing of the group is stored (or its outcome is unknown): every item is retried.
            results->assign(static_cast<size_t>(items), written);
          }
          std::move(done)(std::move(*results));
        },
        items};
  Enqueue(std::move(op));
}

void JobManager::Cancel(std::string id, std::string tenant, JobCallback done) {
  Enqueue(MakeOp<ExportJob>(
      [id = std::move(id), tenant = std::move(tenant)](Txn& txn) -> absl::StatusOr<ExportJob> {
        EXPORTD_ASSIGN_OR_RETURN(std::optional<JobRecord> before, txn.Read(id));
        if (!before || !InTenantScope(tenant, before->tenant())) return JobNotFound(id);
        const ExportJobStatus status = before->job().status();
        if (IsTerminal(status)) {
          return absl::FailedPreconditionError(
              absl::StrCat("job ", id, " is already ", StatusWord(status),
                           "; only pending or processing jobs can be cancelled"));
        }
        if (status == exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING &&
            before->job().cancel_requested()) {
          return before->job();  // Already requested: nothing changes.
        }
        JobRecord after = NextRevision(*before, txn.now());
        if (status == exportjobs::v1::EXPORT_JOB_STATUS_PENDING) {
          after.mutable_job()->set_status(exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
          *after.mutable_job()->mutable_completed_at() = ToProtoTime(txn.now());
        } else {
          after.mutable_job()->set_cancel_requested(true);
        }
        ExportJob result = after.job();
        txn.Stage(JobChange{std::move(before), std::move(after)}, ChangeCause::kCancel);
        return result;
      },
      std::move(done)));
}

void JobManager::Delete(std::string id, std::string tenant, StatusCallback done) {
  Enqueue(MakeOp<ExportJob>(
      [id = std::move(id), tenant = std::move(tenant)](Txn& txn) -> absl::StatusOr<ExportJob> {
        EXPORTD_ASSIGN_OR_RETURN(std::optional<JobRecord> before, txn.Read(id));
        if (!before || !InTenantScope(tenant, before->tenant())) return JobNotFound(id);
        const ExportJobStatus status = before->job().status();
        if (!IsTerminal(status)) {
          return absl::FailedPreconditionError(
              absl::StrCat("job ", id, " is ", StatusWord(status),
                           "; only completed, failed or cancelled jobs can be deleted "
                           "(cancel it first)"));
        }
        ExportJob result = before->job();
        txn.Stage(JobChange{std::move(before), std::nullopt}, ChangeCause::kDelete);
        txn.Discard(id, -1);
        return result;
      },
      [done = std::move(done)](absl::StatusOr<ExportJob> job) mutable {
        std::move(done)(job.status());
      }));
}

void JobManager::Update(std::string id, Mutation mutate, JobCallback done) {
  Enqueue(MakeOp<ExportJob>(
      [id = std::move(id),
       mutate = std::move(mutate)](Txn& txn) mutable -> absl::StatusOr<ExportJob> {
        EXPORTD_ASSIGN_OR_RETURN(std::optional<JobRecord> before, txn.Read(id));
        if (!before) return JobNotFound(id);
        JobRecord after = NextRevision(*before, txn.now());
        EXPORTD_RETURN_IF_ERROR(mutate(after));
        if (after.job().id() != id || after.job().revision() != before->job().revision() + 1) {
          return absl::InternalError("a job mutation may not change the id or revision");
        }
        ExportJob result = after.job();
        txn.Stage(JobChange{std::move(before), std::move(after)}, ChangeCause::kUpdate);
        return result;
      },
      std::move(done)));
}

void JobManager::Get(std::string id, std::string tenant, JobCallback done) {
  auto task = [this, id = std::move(id), tenant = std::move(tenant),
               done = std::move(done)]() mutable {
    absl::StatusOr<JobRecord> record = store_->Get(id);
    if (record.ok() && !InTenantScope(tenant, record->tenant())) record = JobNotFound(id);
    if (absl::IsNotFound(record.status())) record = JobNotFound(id);
    if (!record.ok()) return std::move(done)(record.status());
    std::move(done)(std::move(*record->mutable_job()));
  };
  readers_->Submit(std::move(task));
}

void JobManager::List(ListExportJobsRequest request, std::string tenant, ListCallback done) {
  if (request.page_size() < 0) {
    return std::move(done)(absl::InvalidArgumentError(
        absl::StrCat("page_size: must not be negative, got ", request.page_size())));
  }
  if (absl::Status valid = ValidateJobFilters(request.status(), request.entity_type());
      !valid.ok()) {
    return std::move(done)(valid);
  }
  ListQuery query;
  if (tenant != kAllTenants) query.tenant = tenant;
  query.max_scanned = options_.max_list_scan;
  query.status = request.status();
  query.entity_type = request.entity_type();
  query.limit = request.page_size() == 0 ? options_.default_page_size
                                         : std::min(request.page_size(), options_.max_page_size);
  if (!request.page_token().empty()) {
    absl::StatusOr<std::string> before_id = DecodePageToken(request);
    if (!before_id.ok()) return std::move(done)(before_id.status());
    query.before_id = *std::move(before_id);
  }
  readers_->Submit([this, query = std::move(query), request = std::move(request),
                    tenant = std::move(tenant), done = std::move(done)]() mutable {
    absl::StatusOr<ListResult> result = store_->List(query);
    if (!result.ok()) return std::move(done)(result.status());
    ListExportJobsResponse response;
    if (result->more && !result->resume_before_id.empty()) {
      response.set_next_page_token(EncodePageToken(result->resume_before_id, request));
    }
    for (JobRecord& record : result->jobs) {
      // The store filtered by tenant already; this keeps the scope rule in one visible place.
      if (InTenantScope(tenant, record.tenant())) {
        *response.add_jobs() = std::move(*record.mutable_job());
      }
    }
    std::move(done)(std::move(response));
  });
}

}  // namespace exportd
