#include "server/download_reactor.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/export_file.h"
#include "server/grpc_status.h"
#include "server/tenancy.h"

namespace exportd {
namespace {

using exportjobs::v1::DownloadExportResponse;

constexpr int64_t kChunkBytes = 1 << 20;

class DownloadReactor final : public grpc::ServerWriteReactor<DownloadExportResponse> {
 public:
  DownloadReactor(const JobStore* store, const BlobStore* blobs, Executor* io, const Clock* clock,
                  CallTracker* calls, std::string tenant,
                  exportjobs::v1::DownloadExportRequest request)
      : store_(store),
        blobs_(blobs),
        io_(io),
        clock_(clock),
        calls_(calls),
        tenant_(std::move(tenant)),
        request_(std::move(request)) {
    io_->Submit([this] { Resolve(); });
  }

  ~DownloadReactor() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::CANCELLED);
    io_->Submit([this] { ReadNext(); });
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }

  void OnDone() override {
    calls_->Exit();
    delete this;
  }

 private:
  void Resolve() {
    const std::string& id = request_.id();
    absl::StatusOr<JobRecord> record = store_->Get(id);
    if ((record.ok() && !InTenantScope(tenant_, record->tenant())) ||
        absl::IsNotFound(record.status())) {
      return End(absl::NotFoundError(absl::StrCat("job ", id, " not found")));
    }
    if (!record.ok()) return End(record.status());
    absl::StatusOr<ExportFile> file =
        ResolveExportFile(*record, request_.part(), *blobs_, clock_->Now());
    if (absl::IsDeadlineExceeded(file.status())) {
      return End(absl::FailedPreconditionError(
          absl::StrCat("job ", id, ": the export has expired: ", file.status().message())));
    }
    if (!file.ok()) return End(file.status());
    file_ = *std::move(file);
    ReadNext();
  }

  // Reads the next chunk and writes it, or finishes at the end of the file.
  void ReadNext() {
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) return Finish(grpc::Status::CANCELLED);
    }
    std::string* chunk = response_.mutable_chunk();
    chunk->resize(kChunkBytes);
    size_t filled = 0;
    while (filled < static_cast<size_t>(kChunkBytes)) {
      if (fd_ < 0) {
        if (piece_ >= file_.pieces.size()) break;
        const std::string& path = file_.pieces[piece_].path;
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0)
          return End(
              absl::UnavailableError(absl::StrCat("open ", path, ": ", std::strerror(errno))));
      }
      const ssize_t n = ::read(fd_, chunk->data() + filled, kChunkBytes - filled);
      if (n < 0) {
        if (errno == EINTR) continue;
        return End(absl::UnavailableError(absl::StrCat("read part: ", std::strerror(errno))));
      }
      if (n == 0) {
        ::close(fd_);
        fd_ = -1;
        ++piece_;
        continue;
      }
      filled += static_cast<size_t>(n);
    }
    chunk->resize(filled);
    if (filled == 0) return Finish(grpc::Status::OK);
    StartWrite(&response_);
  }

  void End(const absl::Status& status) { Finish(ToGrpcStatus(status)); }

  const JobStore* const store_;
  const BlobStore* const blobs_;
  Executor* const io_;
  const Clock* const clock_;
  CallTracker* const calls_;
  const std::string tenant_;
  const exportjobs::v1::DownloadExportRequest request_;
  ExportFile file_;
  size_t piece_ = 0;
  int fd_ = -1;
  DownloadExportResponse response_;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<DownloadExportResponse>* StartDownload(
    const JobStore* store, const BlobStore* blobs, Executor* io, const Clock* clock,
    CallTracker* calls, std::string tenant, const exportjobs::v1::DownloadExportRequest& request) {
  return new DownloadReactor(store, blobs, io, clock, calls, std::move(tenant), request);
}

}  // namespace exportd
