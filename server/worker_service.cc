#include "server/worker_service.h"

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/proto_time.h"
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

// One UploadExportPart stream: header, chunks, trailer. Each message is handled to the end
// (lease check, file write, commit) before the next read starts, so there is one task at a
// time and the reactor finishes only from that flow.
class UploadReactor final : public grpc::ServerReadReactor<UploadExportPartRequest> {
 public:
  UploadReactor(JobManager* jobs, BlobStore* blobs, Executor* io, CallTracker* calls,
                const WorkerServiceImpl::Options& options, UploadExportPartResponse* response)
      : jobs_(jobs), blobs_(blobs), io_(io), calls_(calls), options_(options), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return End(Invalid("trailer", "the stream ended before the part's trailer"));
    switch (request_.item_case()) {
      case UploadExportPartRequest::kHeader:
        return OnHeader();
      case UploadExportPartRequest::kChunk:
        return OnChunk();
      case UploadExportPartRequest::kTrailer:
        return OnTrailer();
      default:
        return End(Invalid("item", "each message must hold a header, a chunk or a trailer"));
    }
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }

  void OnDone() override {
    calls_->Exit();
    // The upload (if not committed) removes its temporary file; that is file I/O, so it is
    // destroyed on the I/O executor.
    if (upload_) io_->Submit([upload = std::move(upload_)]() mutable { upload.reset(); });
    delete this;
  }

 private:
  void OnHeader() {
    if (started_) return End(Invalid("header", "sent twice"));
    started_ = true;
    header_ = request_.header();
    if (absl::Status valid = ValidateLease(header_.job_id(), header_.lease_token()); !valid.ok()) {
      return End(valid);
    }
    if (header_.part_number() < 1) {
      return End(Invalid("header.part_number",
                         absl::StrCat("must be at least 1, got ", header_.part_number())));
    }
    if (header_.record_count() < 0)
      return End(Invalid("header.record_count", "must not be negative"));
    jobs_->CheckLease(
        header_.job_id(), header_.lease_token(), [this](absl::StatusOr<int64_t> epoch) {
          if (!epoch.ok()) return End(epoch.status());
          io_->Submit([this, epoch = *epoch] {
            auto upload = blobs_->StartPart(header_.job_id(), epoch, header_.part_number());
            if (!upload.ok()) return End(upload.status());
            upload_ = *std::move(upload);
            Next();
          });
        });
  }

  void OnChunk() {
    if (!upload_) return End(Invalid("header", "must come first"));
    const int64_t size = static_cast<int64_t>(request_.chunk().size());
    if (size > options_.max_chunk_bytes) {
      return End(
          Invalid("chunk", absl::StrCat(size, " bytes, at most ", options_.max_chunk_bytes)));
    }
    if (upload_->size() + size > options_.max_part_bytes) {
      return End(
          Invalid("chunk", absl::StrCat("the part exceeds ", options_.max_part_bytes, " bytes")));
    }
    io_->Submit([this] {
      if (absl::Status appended = upload_->Append(request_.chunk()); !appended.ok()) {
        return End(appended);
      }
      if (options_.on_bytes_written) {
        options_.on_bytes_written(static_cast<int64_t>(request_.chunk().size()));
      }
      Next();
    });
  }

  void OnTrailer() {
    if (!upload_) return End(Invalid("header", "must come first"));
    const auto& trailer = request_.trailer();
    if (!IsLowerHexSha256(trailer.sha256())) {
      return End(Invalid("trailer.sha256", "must be 64 lowercase hex characters"));
    }
    io_->Submit([this, trailer] {
      if (absl::Status committed = upload_->Commit(trailer.size_bytes(), trailer.sha256());
          !committed.ok()) {
        return End(committed);
      }
      ExportPart part;
      part.set_part_number(header_.part_number());
      part.set_size_bytes(trailer.size_bytes());
      part.set_record_count(header_.record_count());
      part.set_sha256(trailer.sha256());
      *response_->mutable_part() = part;
      jobs_->RecordPart(header_.job_id(), header_.lease_token(), part,
                        [this](absl::StatusOr<ExportJob> job) { End(job.status()); });
    });
  }

  // Reads the next message, unless the call was cancelled meanwhile.
  void Next() {
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) return Finish(grpc::Status::CANCELLED);
    }
    StartRead(&request_);
  }

  void End(const absl::Status& status) { Finish(ToGrpcStatus(status)); }

  JobManager* const jobs_;
  BlobStore* const blobs_;
  Executor* const io_;
  CallTracker* const calls_;
  const WorkerServiceImpl::Options options_;
  UploadExportPartResponse* const response_;
  UploadExportPartRequest request_;
  UploadExportPartRequest::Header header_;
  std::unique_ptr<BlobStore::PartUpload> upload_;
  bool started_ = false;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

class RefusedUpload final : public grpc::ServerReadReactor<UploadExportPartRequest> {
 public:
  RefusedUpload() {
    Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
  }
  void OnDone() override { delete this; }
};

}  // namespace

WorkerServiceImpl::WorkerServiceImpl(JobManager* jobs, BlobStore* blobs, Executor* io,
                                     Options options)
    : jobs_(jobs), blobs_(blobs), io_(io), options_(options) {}

template <typename Start>
grpc::ServerUnaryReactor* WorkerServiceImpl::Unary(grpc::CallbackServerContext* context,
                                                   const absl::Status& valid, Start start) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!calls_.Enter()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
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
  return Unary(context, ValidateClaim(*request), [&](grpc::ServerUnaryReactor* reactor) {
    absl::Duration wait = std::min(
        absl::Seconds(request->wait().seconds()) + absl::Nanoseconds(request->wait().nanos()),
        options_.max_claim_wait);
    // Answer (without a job) a little before the caller's deadline rather than after it.
    const absl::Duration until_deadline =
        absl::FromChrono(context->deadline()) - absl::Now() - absl::Milliseconds(200);
    wait = std::max(absl::ZeroDuration(), std::min(wait, until_deadline));
    std::vector<EntityType> types;
    for (int type : request->entity_types()) types.push_back(static_cast<EntityType>(type));
    jobs_->Claim(
        request->worker_id(), std::move(types), wait,
        [this, reactor, response](absl::StatusOr<JobManager::Claimed> claimed) {
          if (claimed.ok() && claimed->job) {
            *response->mutable_job() = *std::move(claimed->job);
            *response->mutable_lease() = std::move(claimed->lease);
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
  return Unary(context, ValidateProgress(*request), [&](grpc::ServerUnaryReactor* reactor) {
    jobs_->ReportProgress(
        *request,
        [this, reactor, response](absl::StatusOr<exportjobs::v1::ReportProgressResponse> result) {
          if (result.ok()) *response = *std::move(result);
          Finish(reactor, result.status());
        });
  });
}

grpc::ServerReadReactor<UploadExportPartRequest>* WorkerServiceImpl::UploadExportPart(
    grpc::CallbackServerContext*, UploadExportPartResponse* response) {
  if (!calls_.Enter()) return new RefusedUpload();
  return new UploadReactor(jobs_, blobs_, io_, &calls_, options_, response);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::CompleteExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::CompleteExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  return Unary(context, ValidateComplete(*request), [&](grpc::ServerUnaryReactor* reactor) {
    jobs_->Complete(*request, FinishWithJob(reactor, response));
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::FailExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::FailExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  return Unary(context, ValidateFail(*request), [&](grpc::ServerUnaryReactor* reactor) {
    jobs_->Fail(*request, FinishWithJob(reactor, response));
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ReleaseExportJob(
    grpc::CallbackServerContext* context, const exportjobs::v1::ReleaseExportJobRequest* request,
    exportjobs::v1::ExportJob* response) {
  return Unary(context, ValidateLease(request->job_id(), request->lease_token()),
               [&](grpc::ServerUnaryReactor* reactor) {
                 jobs_->Release(request->job_id(), request->lease_token(),
                                FinishWithJob(reactor, response));
               });
}

}  // namespace exportd
