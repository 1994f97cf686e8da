#include "server/worker_service.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "server/grpc_status.h"
#include "server/validation.h"

namespace exportd {
namespace {

using exportjobs::v1::ExportPart;
using exportjobs::v1::UploadExportPartRequest;
using exportjobs::v1::UploadExportPartResponse;

absl::Status Invalid(const std::string& field, const std::string& reason) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", reason));
}

absl::Status ValidateLease(const std::string& job_id, const std::string& token) {
  if (absl::Status valid = ValidateJobId(job_id, "job_id"); !valid.ok()) return valid;
  if (token.empty()) return Invalid("lease_token", "must be set");
  if (token.size() > 128) return Invalid("lease_token", "longer than 128 characters");
  return absl::OkStatus();
}

bool IsLowerHexSha256(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::Status ValidateClaim(const exportjobs::v1::ClaimExportJobRequest& request) {
  if (request.worker_id().empty()) return Invalid("worker_id", "must be set");
  if (request.worker_id().size() > 128) return Invalid("worker_id", "longer than 128 characters");
  for (int i = 0; i < request.entity_types_size(); ++i) {
    const int type = request.entity_types(i);
    if (type == exportjobs::v1::ENTITY_TYPE_UNSPECIFIED ||
        !exportjobs::v1::EntityType_IsValid(type)) {
      return Invalid(absl::StrCat("entity_types[", i, "]"), absl::StrCat("unknown value ", type));
    }
  }
  if (request.wait().seconds() < 0 || request.wait().nanos() < 0 ||
      request.wait().nanos() >= 1'000'000'000) {
    return Invalid("wait", "must be a non-negative duration");
  }
  if (request.max_jobs() < 0 || request.max_jobs() > JobManager::kMaxClaimJobs) {
    return Invalid("max_jobs", absl::StrCat("must be 0 to ", JobManager::kMaxClaimJobs,
                                            " (0 claims one job), got ", request.max_jobs()));
  }
  return absl::OkStatus();
}

absl::Status ValidateProgress(const exportjobs::v1::ReportProgressRequest& request) {
  if (absl::Status valid = ValidateLease(request.job_id(), request.lease_token()); !valid.ok()) {
    return valid;
  }
  if (request.records_processed() < 0) return Invalid("records_processed", "must not be negative");
  if (request.bytes_written() < 0) return Invalid("bytes_written", "must not be negative");
  if (request.parts_uploaded() < 0) return Invalid("parts_uploaded", "must not be negative");
  if (request.records_total_estimate() < 0) {
    return Invalid("records_total_estimate", "must not be negative");
  }
  return absl::OkStatus();
}

absl::Status ValidateComplete(const exportjobs::v1::CompleteExportJobRequest& request) {
  if (absl::Status valid = ValidateLease(request.job_id(), request.lease_token()); !valid.ok()) {
    return valid;
  }
  if (request.record_count() < 0) return Invalid("record_count", "must not be negative");
  for (int i = 0; i < request.parts_size(); ++i) {
    const ExportPart& part = request.parts(i);
    const std::string field = absl::StrCat("parts[", i, "]");
    if (part.size_bytes() < 0) return Invalid(field + ".size_bytes", "must not be negative");
    if (part.record_count() < 0) return Invalid(field + ".record_count", "must not be negative");
    if (!IsLowerHexSha256(part.sha256())) {
      return Invalid(field + ".sha256", "must be 64 lowercase hex characters");
    }
  }
  return absl::OkStatus();
}

// The error of a nested request, with its field names under `prefix` (e.g. "reports[3].").
absl::Status Nested(const std::string& prefix, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

absl::Status ValidateBatchReport(const exportjobs::v1::BatchReportExportJobsRequest& request) {
  if (request.reports_size() > JobManager::kMaxBatchReports) {
    return Invalid("reports", absl::StrCat("at most ", JobManager::kMaxBatchReports,
                                           " per call, got ", request.reports_size()));
  }
  for (int i = 0; i < request.reports_size(); ++i) {
    const exportjobs::v1::JobReport& report = request.reports(i);
    const std::string field = absl::StrCat("reports[", i, "]");
    if (report.has_progress()) {
      EXPORTD_RETURN_IF_ERROR(Nested(field + ".progress.", ValidateProgress(report.progress())));
    } else if (report.has_complete()) {
      EXPORTD_RETURN_IF_ERROR(Nested(field + ".complete.", ValidateComplete(report.complete())));
    } else {
      return Invalid(field, "must hold progress or complete");
    }
  }
  if (request.has_claim()) {
    const exportjobs::v1::BatchClaim& claim = request.claim();
    exportjobs::v1::ClaimExportJobRequest as_claim;
    as_claim.set_worker_id(claim.worker_id());
    *as_claim.mutable_entity_types() = claim.entity_types();
    EXPORTD_RETURN_IF_ERROR(Nested("claim.", ValidateClaim(as_claim)));
    if (claim.max_jobs() < 1 || claim.max_jobs() > JobManager::kMaxClaimJobs) {
      return Invalid("claim.max_jobs", absl::StrCat("must be 1 to ", JobManager::kMaxClaimJobs,
                                                    ", got ", claim.max_jobs()));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateFail(const exportjobs::v1::FailExportJobRequest& request) {
  if (absl::Status valid = ValidateLease(request.job_id(), request.lease_token()); !valid.ok()) {
    return valid;
  }
  if (request.error_message().empty()) return Invalid("error_message", "must be set");
  if (request.error_message().size() > 4096) {
    return Invalid("error_message", "longer than 4096 characters");
  }
  return absl::OkStatus();
}

// One UploadExportPart stream: header, chunks, trailer, pipelined. The header's lease check and
// the part file's creation come first; then gRPC reads the next message while the I/O executor
// writes the chunks before it: each chunk moves (not copies) from the read buffer into a queue
// that one writer task at a time drains in order (SHA-256 and the file write). Reading pauses
// while kMaxQueuedBytes are queued and resumes as the writer catches up, so an upload holds at
// most that much (at least one chunk) besides the chunk being read and the one being written.
// The trailer's commit runs on the writer after the last chunk.
//
// The reactor finishes exactly once, and never while a writer task runs (OnDone deletes it):
// an error found on the gRPC thread while the writer runs is left for the writer to finish with.
class UploadReactor final : public grpc::ServerReadReactor<UploadExportPartRequest> {
 public:
  // Bytes of chunks queued for the writer before reading pauses.
  static constexpr int64_t kMaxQueuedBytes = int64_t{8} << 20;

  UploadReactor(JobManager* jobs, BlobStore* blobs, Executor* io, CallTracker* calls,
                const WorkerServiceImpl::Options& options, UploadExportPartResponse* response)
      : jobs_(jobs), blobs_(blobs), io_(io), calls_(calls), options_(options), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return Stop(Invalid("trailer", "the stream ended before the part's trailer"));
    switch (request_.item_case()) {
      case UploadExportPartRequest::kHeader:
        return OnHeader();
      case UploadExportPartRequest::kChunk:
        return OnChunk();
      case UploadExportPartRequest::kTrailer:
        return OnTrailer();
      default:
        return Stop(Invalid("item", "each message must hold a header, a chunk or a trailer"));
    }
  }

  void OnCancel() override { Stop(absl::CancelledError("the upload was cancelled")); }

  void OnDone() override {
    calls_->Exit();
    // The upload (if not committed) removes its temporary file; that is file I/O, so it is
    // destroyed on the I/O executor.
    if (upload_) io_->Submit([upload = std::move(upload_)]() mutable { upload.reset(); });
    delete this;
  }

 private:
  void OnHeader() {
    if (started_) return Stop(Invalid("header", "sent twice"));
    started_ = true;
    header_ = request_.header();
    if (absl::Status valid = ValidateLease(header_.job_id(), header_.lease_token()); !valid.ok()) {
      return Stop(valid);
    }
    if (header_.part_number() < 1) {
      return Stop(Invalid("header.part_number",
                          absl::StrCat("must be at least 1, got ", header_.part_number())));
    }
    if (header_.record_count() < 0) {
      return Stop(Invalid("header.record_count", "must not be negative"));
    }
    // The lease check and the file's creation run as the writer: nothing else runs meanwhile.
    {
      absl::MutexLock lock(&mu_);
      if (!status_.ok()) return;  // Cancelled: OnCancel finished.
      writing_ = true;
    }
    jobs_->CheckLease(
        header_.job_id(), header_.lease_token(), [this](absl::StatusOr<int64_t> epoch) {
          if (!epoch.ok()) return WriterStopped(epoch.status());
          io_->Submit([this, epoch = *epoch] {
            auto upload = blobs_->StartPart(header_.job_id(), epoch, header_.part_number());
            if (!upload.ok()) return WriterStopped(upload.status());
            upload_ = *std::move(upload);
            StartRead(&request_);
            Drain();
          });
        });
  }

  // On the gRPC thread: queue the chunk, start the writer if it is idle, read on unless the
  // queue is full.
  void OnChunk() {
    if (!started_) return Stop(Invalid("header", "must come first"));
    const int64_t size = static_cast<int64_t>(request_.chunk().size());
    if (size > options_.max_chunk_bytes) {
      return Stop(
          Invalid("chunk", absl::StrCat(size, " bytes, at most ", options_.max_chunk_bytes)));
    }
    if (received_ + size > options_.max_part_bytes) {
      return Stop(
          Invalid("chunk", absl::StrCat("the part exceeds ", options_.max_part_bytes, " bytes")));
    }
    received_ += size;
    bool start_writer = false;
    bool read_on = false;
    {
      absl::MutexLock lock(&mu_);
      if (!status_.ok()) return;  // Finished, or the writer will finish.
      queue_.push_back(std::move(*request_.mutable_chunk()));
      queued_bytes_ += size;
      start_writer = !writing_;
      writing_ = true;
      read_on = queued_bytes_ < kMaxQueuedBytes;
      read_paused_ = !read_on;
    }
    if (read_on) StartRead(&request_);
    if (start_writer) io_->Submit([this] { Drain(); });
  }

  void OnTrailer() {
    if (!started_) return Stop(Invalid("header", "must come first"));
    const auto& trailer = request_.trailer();
    if (!IsLowerHexSha256(trailer.sha256())) {
      return Stop(Invalid("trailer.sha256", "must be 64 lowercase hex characters"));
    }
    bool start_writer = false;
    {
      absl::MutexLock lock(&mu_);
      if (!status_.ok()) return;  // Finished, or the writer will finish.
      trailer_ = trailer;
      start_writer = !writing_;
      writing_ = true;
    }
    if (start_writer) io_->Submit([this] { Drain(); });
  }

  // The writer, on the I/O executor: writes the queued chunks in order, then commits once the
  // trailer has come. Returns when the queue is empty (the next chunk starts a new writer).
  void Drain() {
    std::optional<UploadExportPartRequest::Trailer> trailer;  // Set when it is time to commit.
    while (true) {
      std::string chunk;
      bool resume_read = false;
      {
        absl::MutexLock lock(&mu_);
        if (!status_.ok()) break;  // Stopped meanwhile: finish with that error.
        if (queue_.empty()) {
          if (!trailer_) {
            writing_ = false;
            return;
          }
          trailer = *trailer_;
          break;  // Every chunk is written: commit.
        }
        chunk = std::move(queue_.front());
        queue_.pop_front();
        queued_bytes_ -= static_cast<int64_t>(chunk.size());
        if (read_paused_ && queued_bytes_ < kMaxQueuedBytes) {
          read_paused_ = false;
          resume_read = true;
        }
      }
      if (resume_read) StartRead(&request_);
      if (absl::Status appended = upload_->Append(chunk); !appended.ok()) {
        return WriterStopped(appended);
      }
      if (options_.on_bytes_written) options_.on_bytes_written(static_cast<int64_t>(chunk.size()));
    }
    if (trailer) return Commit(*trailer);
    WriterStopped(absl::OkStatus());
  }

  // On the writer, after the last chunk: the durable commit, then the part's record.
  void Commit(const UploadExportPartRequest::Trailer& trailer) {
    if (absl::Status committed = upload_->Commit(trailer.size_bytes(), trailer.sha256());
        !committed.ok()) {
      return WriterStopped(committed);
    }
    ExportPart part;
    part.set_part_number(header_.part_number());
    part.set_size_bytes(trailer.size_bytes());
    part.set_record_count(header_.record_count());
    part.set_sha256(trailer.sha256());
    *response_->mutable_part() = part;
    jobs_->RecordPart(header_.job_id(), header_.lease_token(), part,
                      [this](absl::StatusOr<ExportJob> job) { WriterStopped(job.status()); });
  }

  // Ends the upload with `status` (the first error wins): finishes now when no writer runs,
  // else leaves it to the writer, which stops at its next step.
  void Stop(const absl::Status& status) {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (status_.ok()) status_ = status;
      if (!writing_) finish = TakeFinish(false);
    }
    if (finish) Finish(*finish);
  }

  // The writer ends: with the commit's (or the lease check's, the file's creation's) outcome, or
  // OK when it stopped for an error recorded meanwhile. Finishes with the first error recorded,
  // else with `status`.
  void WriterStopped(const absl::Status& status) {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (status_.ok() && !status.ok()) status_ = status;
      finish = TakeFinish(status_.ok());
    }
    if (finish) Finish(*finish);
  }

  // The status to Finish with (outside mu_: gRPC may run OnDone, which deletes this, inside
  // Finish), once; nothing after that.
  std::optional<grpc::Status> TakeFinish(bool committed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return std::nullopt;
    finished_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    if (committed) return grpc::Status::OK;
    return ToGrpcStatus(status_);
  }

  JobManager* const jobs_;
  BlobStore* const blobs_;
  Executor* const io_;
  CallTracker* const calls_;
  const WorkerServiceImpl::Options options_;
  UploadExportPartResponse* const response_;
  // Touched by gRPC reactions only (one at a time), and by the writer only while no read is
  // outstanding (StartRead after the file's creation and on resume).
  UploadExportPartRequest request_;
  UploadExportPartRequest::Header header_;
  bool started_ = false;
  int64_t received_ = 0;  // Bytes of the chunks read (gRPC reactions only).
  // Used by the writer only, and freed in OnDone.
  std::unique_ptr<BlobStore::PartUpload> upload_;
  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<UploadExportPartRequest::Trailer> trailer_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // A writer task (or the lease check) runs.
  absl::Status status_ ABSL_GUARDED_BY(mu_);   // The first error.
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class RefusedUpload final : public grpc::ServerReadReactor<UploadExportPartRequest> {
 public:
  explicit RefusedUpload(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

constexpr char kService[] = "exportjobs.v1.WorkerService/";

}  // namespace

WorkerServiceImpl::WorkerServiceImpl(JobManager* jobs, BlobStore* blobs, Executor* io,
                                     Options options, const Authenticator* auth)
    : jobs_(jobs), blobs_(blobs), io_(io), options_(options), auth_(auth) {}

template <typename Start>
grpc::ServerUnaryReactor* WorkerServiceImpl::Unary(grpc::CallbackServerContext* context,
                                                   const char* method, const absl::Status& valid,
                                                   Start start) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!calls_.Enter()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
    return reactor;
  }
  absl::StatusOr<Principal> caller =
      auth_->Check(context, Access::kWorker, absl::StrCat(kService, method));
  if (!caller.ok()) {
    Finish(reactor, caller.status());
  } else if (!valid.ok()) {
    Finish(reactor, valid);
  } else {
    start(reactor);
  }
  return reactor;
}

void WorkerServiceImpl::Finish(grpc::ServerUnaryReactor* reactor, const absl::Status& status) {
  reactor->Finish(ToGrpcStatus(status));
  calls_.Exit();
}

auto WorkerServiceImpl::FinishWithJob(grpc::ServerUnaryReactor* reactor,
                                      exportjobs::v1::ExportJob* response) {
  return [this, reactor, response](absl::StatusOr<exportjobs::v1::ExportJob> job) {
    if (job.ok()) *response = *std::move(job);
    Finish(reactor, job.status());
  };
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ClaimExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::ClaimExportJobRequest* request,
    exportjobs::v1::ClaimExportJobResponse* response) {
  return Unary(
      context, "ClaimExportJob", ValidateClaim(*request), [&](grpc::ServerUnaryReactor* reactor) {
        absl::Duration wait = std::min(
            absl::Seconds(request->wait().seconds()) + absl::Nanoseconds(request->wait().nanos()),
            options_.max_claim_wait);
        // Answer (without a job) a little before the caller's deadline rather than after it.
        const absl::Duration until_deadline =
            absl::FromChrono(context->deadline()) - absl::Now() - absl::Milliseconds(200);
        wait = std::max(absl::ZeroDuration(), std::min(wait, until_deadline));
        std::vector<EntityType> types;
        for (int type : request->entity_types()) types.push_back(static_cast<EntityType>(type));
        jobs_->ClaimBatch(
            request->worker_id(), std::move(types), std::max(1, request->max_jobs()), wait,
            [this, reactor, response](absl::StatusOr<JobManager::Claimed> claimed) {
              if (claimed.ok() && claimed->job) {
                *response->mutable_job() = *std::move(claimed->job);
                *response->mutable_lease() = std::move(claimed->lease);
                for (exportjobs::v1::ClaimedExportJob& more : claimed->more) {
                  *response->add_more_jobs() = std::move(more);
                }
              }
              Finish(reactor, claimed.status());
            },
            // A worker that stopped (or died) while its claim waited must not be given a job.
            [context] { return context->IsCancelled(); });
      });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ReportProgress(
    grpc::CallbackServerContext* context, const exportjobs::v1::ReportProgressRequest* request,
    exportjobs::v1::ReportProgressResponse* response) {
  return Unary(context, "ReportProgress", ValidateProgress(*request),
               [&](grpc::ServerUnaryReactor* reactor) {
                 jobs_->ReportProgress(
                     *request, [this, reactor, response](
                                   absl::StatusOr<exportjobs::v1::ReportProgressResponse> result) {
                       if (result.ok()) *response = *std::move(result);
                       Finish(reactor, result.status());
                     });
               });
}

grpc::ServerReadReactor<UploadExportPartRequest>* WorkerServiceImpl::UploadExportPart(
    grpc::CallbackServerContext* context, UploadExportPartResponse* response) {
  absl::StatusOr<Principal> caller =
      auth_->Check(context, Access::kWorker, absl::StrCat(kService, "UploadExportPart"));
  if (!caller.ok()) return new RefusedUpload(ToGrpcStatus(caller.status()));
  if (!calls_.Enter()) {
    return new RefusedUpload(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
  }
  return new UploadReactor(jobs_, blobs_, io_, &calls_, options_, response);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::CompleteExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::CompleteExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  return Unary(context, "CompleteExportJob", ValidateComplete(*request),
               [&](grpc::ServerUnaryReactor* reactor) {
                 jobs_->Complete(*request, FinishWithJob(reactor, response));
               });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::FailExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::FailExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  return Unary(context, "FailExportJob", ValidateFail(*request),
               [&](grpc::ServerUnaryReactor* reactor) {
                 jobs_->Fail(*request, FinishWithJob(reactor, response));
               });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ReleaseExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::ReleaseExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  return Unary(
      context, "ReleaseExportJob", ValidateLease(request->job_id(), request->lease_token()),
      [&](grpc::ServerUnaryReactor* reactor) {
        jobs_->Release(request->job_id(), request->lease_token(), FinishWithJob(reactor, response));
      });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::BatchReportExportJobs(
    grpc::CallbackServerContext* context,
    const exportjobs::v1::BatchReportExportJobsRequest* request,
    exportjobs::v1::BatchReportExportJobsResponse* response) {
  return Unary(context, "BatchReportExportJobs", ValidateBatchReport(*request),
               [&](grpc::ServerUnaryReactor* reactor) {
                 jobs_->ReportBatch(
                     *request,
                     [this, reactor, response](
                         absl::StatusOr<exportjobs::v1::BatchReportExportJobsResponse> result) {
                       if (result.ok()) *response = *std::move(result);
                       Finish(reactor, result.status());
                     });
               });
}

}  // namespace exportd
