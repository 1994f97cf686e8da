#include "worker/export_runner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "common/catalog.h"
#include "common/filters.h"
#include "common/proto_time.h"
#include "common/str_cat.h"
#include "worker/part_writer.h"
#include "worker/sqlite_source.h"

namespace exportd {
namespace {

using exportjobs::v1::BatchClaim;
using exportjobs::v1::BatchReportExportJobsRequest;
using exportjobs::v1::BatchReportExportJobsResponse;
using exportjobs::v1::ClaimExportJobRequest;
using exportjobs::v1::ClaimExportJobResponse;
using exportjobs::v1::CompleteExportJobRequest;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportPart;
using exportjobs::v1::FailExportJobRequest;
using exportjobs::v1::Lease;
using exportjobs::v1::ReleaseExportJobRequest;
using exportjobs::v1::ReportProgressRequest;
using exportjobs::v1::ReportProgressResponse;

// Part files are read (and uploaded) in chunks of this many bytes (the protocol's limit).
constexpr size_t kChunkBytes = client::WorkerClient::kMaxChunkBytes;
// The server refuses longer error messages.
constexpr size_t kMaxErrorMessage = 4096;
// The server's limit of ClaimExportJobRequest.max_jobs.
constexpr int kMaxJobsPerClaim = 256;

// Codes after which the same call may succeed when tried again.
const std::vector<absl::StatusCode>& TransientCodes() {
  static const auto* const codes = new std::vector<absl::StatusCode>{
      absl::StatusCode::kUnavailable, absl::StatusCode::kDeadlineExceeded,
      absl::StatusCode::kResourceExhausted};
  return *codes;
}

bool IsTransient(absl::StatusCode code) {
  return std::find(TransientCodes().begin(), TransientCodes().end(), code) !=
         TransientCodes().end();
}

// The calls' deadlines and retries, from the runner's options: each try has its own deadline,
// and the transient codes are retried.
client::CallOptions ClientOptions(const ExportRunner::Options& options) {
  client::CallOptions call;
  call.timeout = options.rpc_timeout;
  call.timeout_per_try = true;
  call.token = options.token;
  call.retry.max_attempts = options.max_call_attempts;
  call.retry.initial_backoff = options.initial_backoff;
  call.retry.max_backoff = options.max_backoff;
  call.retry.retryable_codes = TransientCodes();
  return call;
}

// A failed call's status, its message prefixed with what was being done.
absl::Status Annotated(std::string_view what, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), Cat(what, ": ", status.message()));
}

std::string Truncated(std::string message) {
  if (message.size() > kMaxErrorMessage) message.resize(kMaxErrorMessage);
  return message;
}

std::string_view EntityName(exportjobs::v1::EntityType type) {
  const catalog::Entity* entity = catalog::FindEntity(type);
  return entity == nullptr ? std::string_view("unknown entity") : entity->table;
}

// Reads up to `size` bytes, retrying short reads and EINTR; 0 at the end of the file, -1 with
// errno on error.
ssize_t ReadFull(int fd, char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

}  // namespace

// --- JobRun --------------------------------------------------------------------------------

// One claimed job, from the claim to its final call. Used by one loop thread.
class ExportRunner::JobRun {
 public:
  JobRun(ExportRunner* runner, ExportJob job, Lease lease, absl::Time claim_sent)
      : runner_(runner),
        options_(runner->options_),
        job_(std::move(job)),
        lease_(std::move(lease)),
        claimed_at_(absl::Now()) {
    // The lease's length by the server's clock; its end by ours, counted from when the claim
    // was sent (so never later than the server's end, whatever the clocks' offset).
    lease_duration_ = FromProtoTime(lease_.expires_at()) - FromProtoTime(job_.started_at());
    if (!job_.has_started_at() || lease_duration_ <= absl::ZeroDuration()) {
      lease_duration_ =
          std::max(absl::ZeroDuration(), FromProtoTime(lease_.expires_at()) - absl::Now());
    }
    lease_end_ = claim_sent + lease_duration_;
  }

  void Run();

 private:
  // Why an export ended before its end.
  enum class Stopped {
    kNo,
    kLeaseLost,  // ABORTED: another worker has the job, or it ended.
    kCancel,     // Cancel was requested: release it (it ends cancelled).
    kRelease,    // Stop(kRelease): release it.
    kGaveUp,     // Transient errors outlasted the tries: leave the lease to expire.
    kRejected,   // The server refused a call for another reason: fail, retryable.
    kLocalIo,    // A part file could not be read: fail, retryable.
  };

  // What a call may be cancelled by: Stop(kRelease) (progress reports and uploads), or nothing
  // (the final complete, fail or release).
  enum class CallKind { kJob, kFinal };
  // The limits of a call: cancelled as `kind`, no retry past the lease; a final call made while
  // releasing gets a few tries only, so that Stop returns promptly.
  // The control of one call of `rpc`: never retried past the lease, cancelled by the Stop that
  // `kind` names, and each retry logged (job.call_retrying).
  client::CallControl Control(CallKind kind, std::string_view rpc) const;
  // Reports progress; false (with stopped_ set) when the export must stop.
  bool Heartbeat();
  // PartWriter's on_part: uploads the part, deletes its file, reports progress.
  absl::Status OnPart(const FinishedPart& part);
  // Uploads the part file; a local I/O error goes to *local (and ends the call).
  absl::Status Upload(const FinishedPart& part, absl::Status* local);
  // Sets stopped_ from a failed call's status.
  void StopFor(absl::Status status);
  // The final call after stopped_ was set.
  void EndStopped();
  void Complete();
  // Completes with BatchReportExportJobs, claiming the loop's next job in the same call.
  void CompleteAndClaim(const CompleteExportJobRequest& request);
  // What follows the completion's answer: counted and logged, or the job stops for the error.
  void Completed(const absl::StatusOr<ExportJob>& completed);
  void Fail(const std::string& message, bool retryable);
  void Release();
  void Drop(const std::string& why);
  // Logs `event` with the job's worker_id, job_id and request_id before `fields`.
  void Log(LogLevel level, std::string_view event,
           std::initializer_list<LogField> fields = {}) const;

  ExportRunner* const runner_;
  const Options& options_;
  const ExportJob job_;
  const Lease lease_;
  absl::Duration lease_duration_;
  absl::Time lease_end_;  // By the local clock; extended by each progress report.
  const absl::Time claimed_at_;

  Stopped stopped_ = Stopped::kNo;
  absl::Status stop_status_;
  std::unique_ptr<PartWriter> writer_;
  int64_t records_total_estimate_ = 0;
  std::vector<ExportPart> parts_;  // Uploaded, in order.
  absl::Time last_report_ = absl::InfinitePast();
};

void ExportRunner::JobRun::Run() {
  Log(LogLevel::kInfo, "job.claimed",
      {{"entity_type", EntityName(job_.entity_type())}, {"attempt", job_.attempt()}});
  if (runner_->stopping()) {
    // Claimed as Stop began: give it back unstarted.
    stopped_ = Stopped::kRelease;
    return EndStopped();
  }

  const catalog::Entity* entity = catalog::FindEntity(job_.entity_type());
  if (entity == nullptr) {
    return Fail(Cat("entity_type: unknown value ", job_.entity_type()), false);
  }
  absl::StatusOr<filters::Condition> condition = filters::Parse(job_.filters(), *entity);
  if (!condition.ok()) return Fail(std::string(condition.status().message()), false);
  std::vector<std::string> fields(job_.fields().begin(), job_.fields().end());
  if (fields.empty()) return Fail("fields: none to export", false);
  std::vector<Column> columns;
  for (size_t i = 0; i < fields.size(); ++i) {
    const catalog::Field* field = catalog::FindField(*entity, fields[i]);
    if (field == nullptr) {
      return Fail(Cat("fields[", i, "]: unknown field \"", fields[i], "\" for ", entity->table),
                  false);
    }
    columns.push_back(Column{fields[i], field->type});
  }

  absl::StatusOr<std::unique_ptr<Source>> source = options_.open_source();
  if (!source.ok()) {
    return Fail(Cat("cannot open the data source: ", source.status().message()), false);
  }
  absl::StatusOr<int64_t> count = (*source)->Count(*entity, *condition);
  if (!count.ok()) {
    return Fail(Cat("cannot read the data source: ", count.status().message()), false);
  }
  records_total_estimate_ = *count;
  if (!Heartbeat()) return EndStopped();

  PartWriter::Options writer_options;
  writer_options.columns = std::move(columns);
  writer_options.format = job_.format() == exportjobs::v1::EXPORT_FORMAT_UNSPECIFIED
                              ? exportjobs::v1::EXPORT_FORMAT_CSV
                              : job_.format();
  writer_options.compression = job_.compression() == exportjobs::v1::COMPRESSION_UNSPECIFIED
                                   ? exportjobs::v1::COMPRESSION_NONE
                                   : job_.compression();
  writer_options.part_size_bytes =
      job_.part_size_bytes() > 0 ? job_.part_size_bytes() : options_.default_part_size_bytes;
  writer_options.work_dir = options_.work_dir;
  writer_options.on_part = [this](const FinishedPart& part) { return OnPart(part); };
  absl::StatusOr<std::unique_ptr<PartWriter>> writer = PartWriter::Create(writer_options);
  if (!writer.ok()) {
    return Fail(Cat("cannot write the export: ", writer.status().message()), false);
  }
  writer_ = *std::move(writer);

  // Errors of the writer itself (not of on_part, which sets stopped_) are local I/O.
  absl::Status write_error;
  const absl::Status scanned = (*source)->Scan(*entity, fields, *condition, [&](const Row& row) {
    if (runner_->releasing()) {
      stopped_ = Stopped::kRelease;
      return false;
    }
    write_error = writer_->Add(row);
    if (!write_error.ok()) return false;
    if (absl::Now() - last_report_ >= options_.heartbeat_interval && !Heartbeat()) {
      return false;
    }
    return true;
  });
  source->reset();
  if (stopped_ != Stopped::kNo) return EndStopped();
  if (!write_error.ok()) {
    return Fail(Cat("writing the export failed: ", write_error.message()), true);
  }
  if (!scanned.ok()) {
    return Fail(Cat("cannot read the data source: ", scanned.message()), false);
  }
  if (runner_->releasing()) {
    stopped_ = Stopped::kRelease;
    return EndStopped();
  }
  // Uploads the last part, whose progress report is the report at the end.
  absl::StatusOr<int32_t> finished = writer_->Finish();
  if (stopped_ != Stopped::kNo) return EndStopped();
  if (!finished.ok()) {
    return Fail(Cat("writing the export failed: ", finished.status().message()), true);
  }
  Complete();
}

client::CallControl ExportRunner::JobRun::Control(CallKind kind, std::string_view rpc) const {
  client::CallControl control;
  control.on_retry = [this, rpc](const absl::Status& status, int attempt, absl::Duration backoff) {
    Log(LogLevel::kWarn, "job.call_retrying",
        {{"rpc", rpc},
         {"code", absl::StatusCodeToString(status.code())},
         {"error", std::string(status.message())},
         {"attempt", attempt},
         {"backoff_ms", absl::ToInt64Milliseconds(backoff)}});
  };
  control.retry_until = lease_end_;  // Never past the lease.
  if (kind == CallKind::kJob) {
    control.cancel = &runner_->jobs_cancel_;
    // A job call's tries end a fifth of the lease before it does, so that the final call (the
    // fail that records why the tries ran out) still finds the lease.
    control.retry_until = lease_end_ - lease_duration_ / 5;
  } else if (runner_->releasing()) {
    control.max_attempts = std::min(options_.max_call_attempts, 3);
  }
  return control;
}

bool ExportRunner::JobRun::Heartbeat() {
  ReportProgressRequest request;
  request.set_job_id(job_.id());
  request.set_lease_token(lease_.token());
  request.set_records_processed(writer_ ? writer_->records() : 0);
  request.set_bytes_written(writer_ ? writer_->bytes_written() : 0);
  request.set_parts_uploaded(static_cast<int32_t>(parts_.size()));
  request.set_records_total_estimate(records_total_estimate_);
  const absl::Time sent = absl::Now();
  absl::StatusOr<ReportProgressResponse> response =
      runner_->client_.ReportProgress(request, Control(CallKind::kJob, "ReportProgress"));
  last_report_ = absl::Now();
  if (!response.ok()) {
    StopFor(Annotated("reporting progress", response.status()));
    return false;
  }
  lease_end_ = sent + lease_duration_;
  if (response->cancel_requested()) {
    stopped_ = Stopped::kCancel;
    return false;
  }
  return true;
}

absl::Status ExportRunner::JobRun::OnPart(const FinishedPart& part) {
  struct Unlink {
    const std::string& path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink{part.path};  // Uploaded or not, the file is done with.
  if (runner_->releasing()) {
    stopped_ = Stopped::kRelease;
    return absl::CancelledError("the worker is stopping");
  }
  absl::Status local;
  const absl::Status uploaded =
      Annotated(Cat("uploading part ", part.part_number), Upload(part, &local));
  if (!local.ok()) {
    stopped_ = Stopped::kLocalIo;
    stop_status_ = local;
    return local;
  }
  if (!uploaded.ok()) {
    StopFor(uploaded);
    return uploaded;
  }
  ExportPart& manifest = parts_.emplace_back();
  manifest.set_part_number(part.part_number);
  manifest.set_size_bytes(part.size_bytes);
  manifest.set_record_count(part.record_count);
  manifest.set_sha256(part.sha256);
  if (!Heartbeat()) return absl::CancelledError("the export stopped");
  return absl::OkStatus();
}

absl::Status ExportRunner::JobRun::Upload(const FinishedPart& part, absl::Status* local) {
  const int fd = ::open(part.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *local =
        absl::UnavailableError(Cat("opening part file ", part.path, ": ", std::strerror(errno)));
    return *local;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  client::WorkerClient::PartUpload upload;
  upload.header.set_job_id(job_.id());
  upload.header.set_lease_token(lease_.token());
  upload.header.set_part_number(part.part_number);
  upload.header.set_record_count(part.record_count);
  upload.trailer.set_size_bytes(part.size_bytes);
  upload.trailer.set_sha256(part.sha256);
  int64_t sent = 0;
  // One chunk in memory at a time.
  upload.read = [&]() -> absl::StatusOr<std::string> {
    std::string chunk(kChunkBytes, '\0');
    const ssize_t n = ReadFull(fd, chunk.data(), kChunkBytes);
    if (n < 0) {
      *local =
          absl::UnavailableError(Cat("reading part file ", part.path, ": ", std::strerror(errno)));
      return *local;
    }
    chunk.resize(static_cast<size_t>(n));
    sent += n;
    if (n == 0 && sent != part.size_bytes) {
      *local = absl::DataLossError(
          Cat("part file ", part.path, " has ", sent, " bytes, expected ", part.size_bytes));
      return *local;
    }
    return chunk;
  };
  // A retry sends the part again from its first byte.
  upload.rewind = [&]() -> absl::Status {
    if (::lseek(fd, 0, SEEK_SET) != 0) {
      *local = absl::UnavailableError(
          Cat("rewinding part file ", part.path, ": ", std::strerror(errno)));
      return *local;
    }
    sent = 0;
    return absl::OkStatus();
  };
  return runner_->client_.Upload(upload, Control(CallKind::kJob, "UploadExportPart")).status();
}

void ExportRunner::JobRun::StopFor(absl::Status status) {
  if (status.code() == absl::StatusCode::kAborted) {
    stopped_ = Stopped::kLeaseLost;
  } else if (status.code() == absl::StatusCode::kCancelled && runner_->releasing()) {
    stopped_ = Stopped::kRelease;
  } else if (IsTransient(status.code())) {
    stopped_ = Stopped::kGaveUp;
  } else {
    stopped_ = Stopped::kRejected;
  }
  stop_status_ = std::move(status);
}

void ExportRunner::JobRun::EndStopped() {
  switch (stopped_) {
    case Stopped::kNo:
      return;
    case Stopped::kLeaseLost:
      return Drop(Cat("lease lost (", stop_status_.message(), ")"));
    case Stopped::kCancel:
    case Stopped::kRelease:
      return Release();
    case Stopped::kGaveUp:
      // The job is failed (retryable) with the last error, so that it records the cause (the
      // server's disk is full, say) and is retried now rather than after the lease; when the
      // server cannot be reached for that either, Fail drops the job and its lease expires.
      return Fail(Cat(stop_status_.message(), " (gave up after retrying)"), true);
    case Stopped::kRejected:
    case Stopped::kLocalIo:
      return Fail(std::string(stop_status_.message()), true);
  }
}

void ExportRunner::JobRun::Complete() {
  CompleteExportJobRequest request;
  request.set_job_id(job_.id());
  request.set_lease_token(lease_.token());
  request.set_record_count(writer_->records());
  for (const ExportPart& part : parts_) *request.add_parts() = part;
  // The completion also claims this loop's next job (BatchReportExportJobs). A server from
  // before BatchReportExportJobs answers UNIMPLEMENTED: then CompleteExportJob, from then on.
  if (!runner_->batch_unsupported_.load(std::memory_order_relaxed)) {
    CompleteAndClaim(request);
    return;
  }
  absl::StatusOr<ExportJob> completed =
      runner_->client_.Complete(request, Control(CallKind::kFinal, "CompleteExportJob"));
  Completed(completed);
}

// The claim (of one job, unless the runner is stopping) brings the job to claimed_, where this
// loop (or another waiting one) takes it as its next job.
void ExportRunner::JobRun::CompleteAndClaim(const CompleteExportJobRequest& request) {
  BatchReportExportJobsRequest batch;
  *batch.add_reports()->mutable_complete() = request;
  if (!runner_->stopping()) {
    BatchClaim& claim = *batch.mutable_claim();
    claim.set_worker_id(runner_->options_.worker_id);
    for (exportjobs::v1::EntityType type : runner_->options_.entity_types) {
      claim.add_entity_types(type);
    }
    claim.set_max_jobs(1);
  }
  const absl::Time sent = absl::Now();
  absl::StatusOr<BatchReportExportJobsResponse> answer =
      runner_->client_.BatchReport(batch, Control(CallKind::kFinal, "BatchReportExportJobs"));
  if (answer.status().code() == absl::StatusCode::kUnimplemented) {
    runner_->batch_unsupported_.store(true, std::memory_order_relaxed);
    return Completed(
        runner_->client_.Complete(request, Control(CallKind::kFinal, "CompleteExportJob")));
  }
  if (!answer.ok()) return Completed(answer.status());
  absl::StatusOr<ExportJob> completed =
      absl::InternalError("BatchReportExportJobs: no result for the completion");
  if (answer->results_size() == 1) {
    const exportjobs::v1::JobReportResult& result = answer->results(0);
    completed = result.code() == 0
                    ? absl::StatusOr<ExportJob>(result.job())
                    : absl::Status(static_cast<absl::StatusCode>(result.code()), result.message());
  }
  if (!answer->claimed().empty()) {
    absl::MutexLock lock(&runner_->claim_mu_);
    for (exportjobs::v1::ClaimedExportJob& next : *answer->mutable_claimed()) {
      runner_->claimed_.push_back(
          ClaimedJob{std::move(*next.mutable_job()), std::move(*next.mutable_lease()), sent});
    }
  }
  Completed(completed);
}

void ExportRunner::JobRun::Completed(const absl::StatusOr<ExportJob>& completed) {
  if (!completed.ok()) {
    StopFor(Annotated("completing the job", completed.status()));
    return EndStopped();
  }
  runner_->Count(&Stats::completed);
  Log(LogLevel::kInfo, "job.completed",
      {{"records", completed->record_count()},
       {"parts", completed->file_parts()},
       {"bytes", completed->file_size_bytes()},
       {"seconds", absl::ToDoubleSeconds(absl::Now() - claimed_at_)}});
}

void ExportRunner::JobRun::Fail(const std::string& message, bool retryable) {
  FailExportJobRequest request;
  request.set_job_id(job_.id());
  request.set_lease_token(lease_.token());
  request.set_error_message(Truncated(message));
  request.set_retryable(retryable);
  absl::StatusOr<ExportJob> answer =
      runner_->client_.Fail(request, Control(CallKind::kFinal, "FailExportJob"));
  const absl::Status status = Annotated("failing the job", answer.status());
  if (status.code() == absl::StatusCode::kAborted) {
    return Drop(Cat("lease lost (", status.message(), ")"));
  }
  if (!status.ok()) {
    return Drop(Cat("failed: ", message, "; and ", status.message()));
  }
  const ExportJob& failed = *answer;
  if (failed.status() == exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED) {
    runner_->Count(&Stats::cancelled);
    return Log(LogLevel::kInfo, "job.cancelled");
  }
  runner_->Count(&Stats::failed);
  Log(LogLevel::kWarn, "job.failed",
      {{"error", message},
       {"retryable", retryable},
       {"will_retry", failed.status() == exportjobs::v1::EXPORT_JOB_STATUS_PENDING}});
}

void ExportRunner::JobRun::Release() {
  ReleaseExportJobRequest request;
  request.set_job_id(job_.id());
  request.set_lease_token(lease_.token());
  absl::StatusOr<ExportJob> released =
      runner_->client_.Release(request, Control(CallKind::kFinal, "ReleaseExportJob"));
  const absl::Status status = Annotated("releasing the job", released.status());
  if (status.code() == absl::StatusCode::kAborted) {
    return Drop(Cat("lease lost (", status.message(), ")"));
  }
  if (!status.ok()) return Drop(std::string(status.message()));
  if (released->status() == exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED) {
    runner_->Count(&Stats::cancelled);
    return Log(LogLevel::kInfo, "job.cancelled");
  }
  runner_->Count(&Stats::released);
  Log(LogLevel::kInfo, "job.released");
}

void ExportRunner::JobRun::Drop(const std::string& why) {
  runner_->Count(&Stats::dropped);
  Log(LogLevel::kWarn, "job.dropped", {{"why", why}});
}

void ExportRunner::JobRun::Log(LogLevel level, std::string_view event,
                               std::initializer_list<LogField> fields) const {
  std::vector<LogField> all = {
      {"worker_id", options_.worker_id}, {"job_id", job_.id()}, {"request_id", job_.request_id()}};
  all.insert(all.end(), fields.begin(), fields.end());
  runner_->Log(level, event, all);
}

// --- ExportRunner --------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<ExportRunner>> ExportRunner::Create(Options options) {
  auto invalid = [](std::string_view field, std::string_view reason) {
    return absl::InvalidArgumentError(Cat(field, ": ", reason));
  };
  if (options.channel == nullptr) return invalid("channel", "must be set");
  if (options.worker_id.empty() || options.worker_id.size() > 128) {
    return invalid("worker_id", "must have 1 to 128 characters");
  }
  if (!options.open_source) return invalid("open_source", "must be set");
  if (options.concurrency < 1) {
    return invalid("concurrency", Cat("must be at least 1, got ", options.concurrency));
  }
  for (exportjobs::v1::EntityType type : options.entity_types) {
    if (catalog::FindEntity(type) == nullptr) {
      return invalid("entity_types", Cat("unknown value ", type));
    }
  }
  if (options.work_dir.empty()) return invalid("work_dir", "must be set");
  struct stat info;
  if (::stat(options.work_dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return invalid("work_dir", Cat(options.work_dir, " is not a directory"));
  }
  if (options.default_part_size_bytes < 1) {
    return invalid("default_part_size_bytes", "must be at least 1");
  }
  if (options.heartbeat_interval <= absl::ZeroDuration()) {
    return invalid("heartbeat_interval", "must be more than 0");
  }
  if (options.claim_wait <= absl::ZeroDuration() || options.claim_wait > absl::Seconds(30)) {
    return invalid("claim_wait", "must be more than 0 and at most 30s");
  }
  if (options.rpc_timeout <= absl::ZeroDuration()) {
    return invalid("rpc_timeout", "must be more than 0");
  }
  if (options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff) {
    return invalid("initial_backoff", "must be more than 0 and at most max_backoff");
  }
  if (options.max_call_attempts < 1) return invalid("max_call_attempts", "must be at least 1");
  return std::unique_ptr<ExportRunner>(new ExportRunner(std::move(options)));
}

ExportRunner::ExportRunner(Options options)
    : options_(std::move(options)), client_(options_.channel, ClientOptions(options_)) {}

ExportRunner::~ExportRunner() { Stop(StopMode::kRelease); }

void ExportRunner::Start() {
  absl::MutexLock join_lock(&join_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopping_) return;
    started_ = true;
  }
  for (int i = 0; i < options_.concurrency; ++i) threads_.emplace_back([this] { Loop(); });
}

void ExportRunner::Stop(StopMode mode) {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (mode == StopMode::kRelease) {
      releasing_ = true;
      releasing_flag_.store(true, std::memory_order_release);
    }
    // Waiting claims end at once; with kRelease, so do progress reports and uploads (and
    // every later one: the tokens stay cancelled).
    claims_cancel_.Cancel();
    if (releasing_) jobs_cancel_.Cancel();
  }
  absl::MutexLock join_lock(&join_mu_);
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

ExportRunner::Stats ExportRunner::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void ExportRunner::Count(int64_t Stats::*counter) {
  absl::MutexLock lock(&mu_);
  ++(stats_.*counter);
}

bool ExportRunner::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool ExportRunner::SleepUnlessStopped(absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  return !mu_.AwaitWithTimeout(absl::Condition(&stopping_), duration);
}

void ExportRunner::Log(LogLevel level, std::string_view event,
                       const std::vector<LogField>& fields) const {
  if (options_.log) return options_.log(level, event, fields);
  LogEvent(level, event, fields);
}

void ExportRunner::Loop() {
  while (std::optional<ClaimedJob> next = NextJob()) {
    Count(&Stats::claimed);
    JobRun(this, std::move(next->job), std::move(next->lease), next->claim_sent).Run();
  }
}

std::optional<ExportRunner::ClaimedJob> ExportRunner::NextJob() {
  absl::MutexLock lock(&claim_mu_);
  ++idle_loops_;
  while (true) {
    // A job claimed for this loop is run even when Stop began meanwhile (JobRun releases it).
    if (!claimed_.empty()) {
      ClaimedJob job = std::move(claimed_.front());
      claimed_.pop_front();
      --idle_loops_;
      return job;
    }
    if (stopping()) {
      --idle_loops_;
      return std::nullopt;
    }
    if (!claiming_) {
      // Claim for every loop waiting now. Loops leave NextJob only with a job or (with none
      // left) at Stop, so each job claimed has a loop to run it.
      claiming_ = true;
      const int max_jobs = std::min(idle_loops_, kMaxJobsPerClaim);
      claim_mu_.Unlock();
      std::vector<ClaimedJob> jobs = ClaimFor(max_jobs);
      claim_mu_.Lock();
      claiming_ = false;
      for (ClaimedJob& job : jobs) claimed_.push_back(std::move(job));
      continue;
    }
    claim_mu_.Await(absl::Condition(
        +[](ExportRunner* runner) ABSL_EXCLUSIVE_LOCKS_REQUIRED(runner->claim_mu_) {
          return !runner->claimed_.empty() || !runner->claiming_;
        },
        this));
  }
}

std::vector<ExportRunner::ClaimedJob> ExportRunner::ClaimFor(int max_jobs) {
  if (claim_backoff_ == absl::ZeroDuration()) claim_backoff_ = options_.initial_backoff;
  ClaimExportJobRequest request;
  request.set_worker_id(options_.worker_id);
  for (exportjobs::v1::EntityType type : options_.entity_types) request.add_entity_types(type);
  request.mutable_wait()->set_seconds(absl::ToInt64Seconds(options_.claim_wait));
  request.mutable_wait()->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(
      options_.claim_wait - absl::Seconds(absl::ToInt64Seconds(options_.claim_wait)))));
  if (max_jobs > 1) request.set_max_jobs(max_jobs);
  const absl::Time sent = absl::Now();
  // One try: the loops retry claims themselves, for as long as the runner runs.
  absl::StatusOr<ClaimExportJobResponse> claimed =
      client_.Claim(request, {.cancel = &claims_cancel_, .max_attempts = 1});
  std::vector<ClaimedJob> jobs;
  if (!claimed.ok()) {
    if (stopping()) return jobs;
    // Claims are retried for as long as the runner runs; the log shows the first failure of
    // a run of them and every tenth.
    if (++claim_failures_ == 1 || claim_failures_ % 10 == 0) {
      Log(LogLevel::kWarn, "worker.claim_failed",
          {{"worker_id", options_.worker_id},
           {"rpc", "ClaimExportJob"},
           {"code", absl::StatusCodeToString(claimed.status().code())},
           {"error", std::string(claimed.status().message())},
           {"failures", claim_failures_}});
    }
    SleepUnlessStopped(claim_backoff_);
    claim_backoff_ = std::min(claim_backoff_ * 2, options_.max_backoff);
    return jobs;
  }
  claim_failures_ = 0;
  claim_backoff_ = options_.initial_backoff;
  ClaimExportJobResponse& response = *claimed;
  if (!response.has_job()) {
    // Answered well before the wait ended without a job (the server is shutting down):
    // pause before the next claim rather than spin.
    if (absl::Now() - sent < options_.claim_wait / 2) {
      SleepUnlessStopped(options_.initial_backoff);
    }
    return jobs;
  }
  jobs.push_back(
      ClaimedJob{std::move(*response.mutable_job()), std::move(*response.mutable_lease()), sent});
  for (exportjobs::v1::ClaimedExportJob& more : *response.mutable_more_jobs()) {
    jobs.push_back(
        ClaimedJob{std::move(*more.mutable_job()), std::move(*more.mutable_lease()), sent});
  }
  return jobs;
}

ExportRunner::SourceFactory SqliteSourceFactory(std::string path) {
  return [path = std::move(path)]() -> absl::StatusOr<std::unique_ptr<Source>> {
    absl::StatusOr<std::unique_ptr<SqliteSource>> source = SqliteSource::Open(path);
    if (!source.ok()) return source.status();
    return std::unique_ptr<Source>(*std::move(source));
  };
}

}  // namespace exportd
