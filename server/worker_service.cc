#include "server/worker_service.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "server/grpc_status.h"
#include "server/upload_message.h"
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
// works on the chunks before it. Each chunk (as the slices gRPC received it in, not copied; see
// upload_message.h) goes to two queues, each drained in order by one task at a time on the I/O
// executor: the hasher (SHA-256) and the writer (the copy into the file's staging buffer and the
// write), so on two I/O threads hashing and writing overlap. Reading pauses while either queue
// holds kMaxQueuedBytes and resumes as both catch up, so an upload holds at most that much (at
// least one chunk) besides the chunk being read. Whichever of the two finishes last after the
// trailer has come runs the commit.
//
// The reactor finishes exactly once, and never while one of its tasks (the lease check and the
// file's creation, the hasher, the writer, the commit) runs: OnDone deletes it. An error found on
// the gRPC thread while a task runs is left for the last task to finish with.
class UploadReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  // Bytes of chunks queued for the hasher or the writer before reading pauses.
  static constexpr int64_t kMaxQueuedBytes = int64_t{8} << 20;

  UploadReactor(JobManager* jobs, BlobStore* blobs, Executor* io, CallTracker* calls,
                const WorkerServiceImpl::Options& options, grpc::ByteBuffer* response)
      : jobs_(jobs), blobs_(blobs), io_(io), calls_(calls), options_(options), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return Stop(Invalid("trailer", "the stream ended before the part's trailer"));
    absl::Status read = ReadUploadMessage(request_, &message_);
    request_.Clear();
    if (!read.ok()) return Stop(read);
    switch (message_.item) {
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
  // A chunk as received: its bytes in order (references to gRPC's buffers), and their total.
  struct Chunk {
    std::vector<grpc::Slice> slices;
    int64_t size = 0;
  };
  // The chunks waiting for the hasher or the writer, and whether its task runs.
  struct Stage {
    std::deque<Chunk> queue;
    int64_t bytes = 0;
    bool running = false;
  };

  void OnHeader() {
    if (started_) return Stop(Invalid("header", "sent twice"));
    started_ = true;
    header_ = message_.parsed.header();
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
    // The lease check and the file's creation are a task: the next read starts after them.
    {
      absl::MutexLock lock(&mu_);
      if (!status_.ok()) return;  // Cancelled: OnCancel finished.
      ++tasks_;
    }
    jobs_->CheckLease(
        header_.job_id(), header_.lease_token(), [this](absl::StatusOr<int64_t> epoch) {
          if (!epoch.ok()) return EndTask(epoch.status());
          io_->Submit([this, epoch = *epoch] {
            auto upload = blobs_->StartPart(header_.job_id(), epoch, header_.part_number());
            if (!upload.ok()) return EndTask(upload.status());
            upload_ = *std::move(upload);
            StartRead(&request_);
            EndTask(absl::OkStatus());
          });
        });
  }

  // On the gRPC thread: queue the chunk for both stages, start those that are idle, read on
  // unless a queue is full.
  void OnChunk() {
    if (!started_) return Stop(Invalid("header", "must come first"));
    const int64_t size = message_.chunk_size;
    if (size > options_.max_chunk_bytes) {
      return Stop(
          Invalid("chunk", absl::StrCat(size, " bytes, at most ", options_.max_chunk_bytes)));
    }
    if (received_ + size > options_.max_part_bytes) {
      return Stop(
          Invalid("chunk", absl::StrCat("the part exceeds ", options_.max_part_bytes, " bytes")));
    }
    received_ += size;
    Chunk chunk{std::move(message_.chunk), size};
    message_.chunk.clear();
    bool start_hasher = false;
    bool start_writer = false;
    bool read_on = false;
    {
      absl::MutexLock lock(&mu_);
      if (!status_.ok()) return;              // Finished, or the last task will finish.
      start_hasher = Queue(&hasher_, chunk);  // A copy: the slices are shared, not the bytes.
      start_writer = Queue(&writer_, std::move(chunk));
      read_on = std::max(hasher_.bytes, writer_.bytes) < kMaxQueuedBytes;
      read_paused_ = !read_on;
    }
    if (read_on) StartRead(&request_);
    if (start_hasher) io_->Submit([this] { Drain(&hasher_); });
    if (start_writer) io_->Submit([this] { Drain(&writer_); });
  }

  void OnTrailer() {
    if (!started_) return Stop(Invalid("header", "must come first"));
    const auto& trailer = message_.parsed.trailer();
    if (!IsLowerHexSha256(trailer.sha256())) {
      return Stop(Invalid("trailer.sha256", "must be 64 lowercase hex characters"));
    }
    {
      absl::MutexLock lock(&mu_);
      if (!status_.ok()) return;  // Finished, or the last task will finish.
      trailer_ = trailer;
      // Both stages done already: the commit is a task of its own. Else the one that finishes
      // last commits.
      if (!Idle(hasher_) || !Idle(writer_)) return;
      trailer_.reset();
      ++tasks_;
    }
    io_->Submit([this, trailer] { Commit(trailer); });
  }

  // Adds `chunk` to `stage`; true when its task is to be started.
  bool Queue(Stage* stage, Chunk chunk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stage->bytes += chunk.size;
    stage->queue.push_back(std::move(chunk));
    if (stage->running) return false;
    stage->running = true;
    ++tasks_;
    return true;
  }

  static bool Idle(const Stage& stage) { return !stage.running && stage.queue.empty(); }

  // The hasher's or the writer's task, on the I/O executor: takes the stage's chunks in order;
  // returns when its queue is empty (the next chunk starts it again), or commits when it is the
  // last to finish after the trailer has come.
  void Drain(Stage* stage) {
    while (true) {
      Chunk chunk;
      bool resume_read = false;
      std::optional<UploadExportPartRequest::Trailer> commit;
      {
        absl::MutexLock lock(&mu_);
        if (!status_.ok()) {  // Stopped meanwhile: end, and finish if last.
          stage->running = false;
          break;
        }
        if (stage->queue.empty()) {
          stage->running = false;
          if (!trailer_ || !Idle(hasher_) || !Idle(writer_)) {
            --tasks_;
            return;
          }
          commit = std::move(trailer_);  // This task goes on as the commit.
          trailer_.reset();
        } else {
          chunk = std::move(stage->queue.front());
          stage->queue.pop_front();
          stage->bytes -= chunk.size;
          if (read_paused_ && std::max(hasher_.bytes, writer_.bytes) < kMaxQueuedBytes) {
            read_paused_ = false;
            resume_read = true;
          }
        }
      }
      if (commit) return Commit(*commit);
      if (resume_read) StartRead(&request_);
      for (const grpc::Slice& slice : chunk.slices) {
        const std::string_view bytes(reinterpret_cast<const char*>(slice.begin()), slice.size());
        if (stage == &hasher_) {
          upload_->Hash(bytes);
        } else if (absl::Status written = upload_->Write(bytes); !written.ok()) {
          return EndTask(written);
        }
      }
      if (stage == &writer_ && options_.on_bytes_written) options_.on_bytes_written(chunk.size);
    }
    EndTask(absl::OkStatus());
  }

  // A task, once every chunk is hashed and written: the durable commit, then the part's record.
  void Commit(const UploadExportPartRequest::Trailer& trailer) {
    if (absl::Status committed = upload_->Commit(trailer.size_bytes(), trailer.sha256());
        !committed.ok()) {
      return EndTask(committed);
    }
    UploadExportPartResponse response;
    ExportPart& part = *response.mutable_part();
    part.set_part_number(header_.part_number());
    part.set_size_bytes(trailer.size_bytes());
    part.set_record_count(header_.record_count());
    part.set_sha256(trailer.sha256());
    grpc::Slice answer(response.SerializeAsString());
    *response_ = grpc::ByteBuffer(&answer, 1);
    jobs_->RecordPart(
        header_.job_id(), header_.lease_token(), part,
        [this](absl::StatusOr<ExportJob> job) { EndTask(job.status(), /*committed=*/job.ok()); });
  }

  // Ends the upload with `status` (the first error wins): finishes now when no task runs, else
  // leaves it to the last task, which stops at its next step.
  void Stop(const absl::Status& status) {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (status_.ok()) status_ = status;
      if (tasks_ == 0) finish = TakeFinish(false);
    }
    if (finish) Finish(*finish);
  }

  // A task ends with `status` (OK when it stopped for an error recorded meanwhile, or when the
  // file's creation is done), or the commit ends (`committed`). The last task to end finishes
  // the upload when there is an error (the first recorded) or the part was committed. That need
  // not be the commit: the header's task starts the first chunk's read before it ends, so the
  // whole part may be read, written and committed before that task's own end.
  void EndTask(const absl::Status& status, bool committed = false) {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      --tasks_;
      if (status_.ok() && !status.ok()) status_ = status;
      if (committed) committed_ = true;
      if (tasks_ == 0 && (committed_ || !status_.ok())) finish = TakeFinish(status_.ok());
    }
    if (finish) Finish(*finish);
  }

  // The status to Finish with (outside mu_: gRPC may run OnDone, which deletes this, inside
  // Finish), once; nothing after that.
  std::optional<grpc::Status> TakeFinish(bool committed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return std::nullopt;
    finished_ = true;
    for (Stage* stage : {&hasher_, &writer_}) {
      stage->queue.clear();
      stage->bytes = 0;
    }
    if (committed) return grpc::Status::OK;
    return ToGrpcStatus(status_);
  }

  JobManager* const jobs_;
  BlobStore* const blobs_;
  Executor* const io_;
  CallTracker* const calls_;
  const WorkerServiceImpl::Options options_;
  grpc::ByteBuffer* const response_;
  // Touched by gRPC reactions only (one at a time), and by a task only while no read is
  // outstanding (StartRead after the file's creation and on resume).
  grpc::ByteBuffer request_;
  UploadMessage message_;  // request_, read.
  UploadExportPartRequest::Header header_;
  bool started_ = false;
  int64_t received_ = 0;  // Bytes of the chunks read (gRPC reactions only).
  // Created by the header's task, then used by the hasher (Hash), the writer (Write) and the
  // commit, and freed in OnDone.
  std::unique_ptr<BlobStore::PartUpload> upload_;
  absl::Mutex mu_;
  Stage hasher_ ABSL_GUARDED_BY(mu_);
  Stage writer_ ABSL_GUARDED_BY(mu_);
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  // Set when the trailer has come and the commit is left to the stage that finishes last.
  std::optional<UploadExportPartRequest::Trailer> trailer_ ABSL_GUARDED_BY(mu_);
  int tasks_ ABSL_GUARDED_BY(mu_) = 0;           // Tasks running.
  bool committed_ ABSL_GUARDED_BY(mu_) = false;  // The part is committed and recorded.
  absl::Status status_ ABSL_GUARDED_BY(mu_);     // The first error.
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class RefusedUpload final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
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

grpc::ServerReadReactor<grpc::ByteBuffer>* WorkerServiceImpl::UploadExportPart(
    grpc::CallbackServerContext* context, grpc::ByteBuffer* response) {
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
