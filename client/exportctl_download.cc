#include "client/exportctl_download.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <vector>

#include "client/exportctl_exit.h"
#include "client/exportctl_http.h"
#include "client/exportctl_resume.h"
#include "client/exportctl_verify.h"
#include "common/str_cat.h"

namespace exportd::exportctl {
namespace {

using exportjobs::v1::ExportJob;

// Bodies of HTTP error responses are kept up to this size, for the message.
constexpr size_t kMaxErrorBody = 4096;

absl::Status FileError(std::string_view what, std::string_view path, int error) {
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (error == EACCES || error == EPERM || error == EROFS) {
    code = absl::StatusCode::kPermissionDenied;
  } else if (error == ENOSPC || error == EDQUOT) {
    code = absl::StatusCode::kResourceExhausted;
  } else if (error == ENOENT || error == ENOTDIR) {
    code = absl::StatusCode::kNotFound;
  } else if (error == EEXIST) {
    code = absl::StatusCode::kAlreadyExists;
  }
  return WithExitCode(absl::Status(code, Cat(what, " ", path, ": ", std::strerror(error))),
                      kExitLocalFile);
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// FILE.partial, open for reading and writing; appends go to its end.
class PartialFile {
 public:
  static absl::StatusOr<std::unique_ptr<PartialFile>> Open(std::string path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return FileError("cannot open", path, errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int error = errno;
      ::close(fd);
      return FileError("cannot stat", path, error);
    }
    return std::unique_ptr<PartialFile>(new PartialFile(std::move(path), fd, st.st_size));
  }

  ~PartialFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }

  absl::Status Truncate(int64_t size) {
    if (::ftruncate(fd_, size) != 0) return FileError("cannot truncate", path_, errno);
    size_ = size;
    return absl::OkStatus();
  }

  absl::Status Append(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::pwrite(fd_, bytes.data(), bytes.size(), size_);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return FileError("cannot write", path_, errno);
      size_ += n;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  // Passes the first `bytes` bytes to `sink`, in chunks.
  absl::Status ReadPrefix(int64_t bytes,
                          const std::function<absl::Status(std::string_view)>& sink) const {
    std::vector<char> buffer(1 << 20);
    int64_t offset = 0;
    while (offset < bytes) {
      const size_t want = static_cast<size_t>(
          std::min<int64_t>(static_cast<int64_t>(buffer.size()), bytes - offset));
      const ssize_t n = ::pread(fd_, buffer.data(), want, offset);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return FileError("cannot read", path_, errno);
      if (n == 0) return FileError("cannot read", path_, EIO);
      if (absl::Status status = sink(std::string_view(buffer.data(), static_cast<size_t>(n)));
          !status.ok()) {
        return status;
      }
      offset += n;
    }
    return absl::OkStatus();
  }

  absl::Status Sync() {
    if (::fsync(fd_) != 0) return FileError("cannot fsync", path_, errno);
    return absl::OkStatus();
  }

  // Syncs the file and renames it to `destination` (atomically replacing it only when
  // `overwrite`), then syncs the directory.
  absl::Status CommitTo(const std::string& destination, bool overwrite) {
    if (absl::Status status = Sync(); !status.ok()) return status;
    if (overwrite) {
      if (::rename(path_.c_str(), destination.c_str()) != 0) {
        return FileError(Cat("cannot rename ", path_, " to"), destination, errno);
      }
    } else if (::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, destination.c_str(),
                           RENAME_NOREPLACE) != 0) {
      if (errno == EEXIST) {
        return WithExitCode(absl::AlreadyExistsError(Cat(destination,
                                                         " appeared during the download; pass "
                                                         "--force to overwrite it (the download is "
                                                         "kept in ",
                                                         path_, ")")),
                            kExitLocalFile);
      }
      if (errno != EINVAL && errno != ENOSYS) {
        return FileError(Cat("cannot rename ", path_, " to"), destination, errno);
      }
      // A file system without RENAME_NOREPLACE: link (which never replaces), then unlink.
      if (::link(path_.c_str(), destination.c_str()) != 0) {
        return FileError(Cat("cannot link ", path_, " to"), destination, errno);
      }
      ::unlink(path_.c_str());
    }
    const std::string directory = DirectoryOf(destination);
    const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return FileError("cannot open directory", directory, errno);
    const int synced = ::fsync(dir_fd);
    const int error = errno;
    ::close(dir_fd);
    if (synced != 0) return FileError("cannot fsync directory", directory, error);
    return absl::OkStatus();
  }

 private:
  PartialFile(std::string path, int fd, int64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}

  const std::string path_;
  const int fd_;
  int64_t size_;
};

std::optional<PartialInfo> ReadSidecar(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<PartialInfo> info = DecodeSidecar(text);
  if (!info.ok()) return std::nullopt;
  return *info;
}

absl::Status WriteSidecar(const std::string& path, const PartialInfo& info) {
  const std::string text = EncodeSidecar(info);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return FileError("cannot write", path, errno);
  std::string_view rest = text;
  while (!rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return FileError("cannot write", path, error);
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  ::close(fd);
  return absl::OkStatus();
}

// One download in progress: the partial file, its sidecar and the verifier.
class Download {
 public:
  Download(const ExportJob& job, const DownloadRequest& request, std::vector<PartSpan> spans,
           DownloadObserver& observer, const std::function<bool()>& cancelled)
      : job_(job),
        request_(request),
        spans_(spans),
        verifier_(std::move(spans)),
        observer_(observer),
        cancelled_(cancelled) {}

  absl::StatusOr<DownloadResult> Run(const GrpcPartFetcher* grpc) {
    result_.path = request_.destination.empty() ? DefaultDestination(job_, request_.part)
                                                : request_.destination;
    const std::string& destination = result_.path;
    if (!request_.force && ::access(destination.c_str(), F_OK) == 0) {
      return WithExitCode(
          absl::AlreadyExistsError(Cat(destination, " exists; pass --force to overwrite it")),
          kExitLocalFile);
    }
    partial_path_ = PartialPath(destination);
    sidecar_path_ = SidecarPath(destination);
    absl::StatusOr<std::unique_ptr<PartialFile>> file = PartialFile::Open(partial_path_);
    if (!file.ok()) return file.status();
    file_ = *std::move(file);

    info_ = PartialInfo{job_.id(), request_.part, verifier_.total(), ""};
    const ResumePlan plan = PlanResume(ReadSidecar(sidecar_path_), file_->size(), info_);
    if (!plan.discard_reason.empty()) {
      observer_.Note(
          Cat("starting over: ", partial_path_, " is not kept (", plan.discard_reason, ")"));
    }
    if (absl::Status status = file_->Truncate(plan.keep_bytes); !status.ok()) return status;
    info_.etag = plan.if_range;
    if (absl::Status status = KeepEarlierBytes(grpc != nullptr); !status.ok()) return status;
    if (absl::Status status = WriteSidecar(sidecar_path_, info_); !status.ok()) return status;

    absl::Status transfer = absl::OkStatus();
    if (verifier_.position() < verifier_.total()) {
      transfer = grpc != nullptr ? FetchGrpc(*grpc) : FetchHttp();
    }
    observer_.Finished();
    if (verification_failed_) return Discard(transfer);
    if (!transfer.ok()) return KeepForResume(transfer);
    if (absl::Status status = verifier_.Finish(); !status.ok()) return Discard(status);
    if (absl::Status status = file_->CommitTo(destination, request_.force); !status.ok()) {
      return status;
    }
    ::unlink(sidecar_path_.c_str());
    result_.size_bytes = verifier_.total();
    result_.parts_verified = verifier_.parts_verified();
    return result_;
  }

 private:
  // Verifies the bytes kept from an earlier run. Over gRPC only whole parts can be kept.
  absl::Status KeepEarlierBytes(bool whole_parts_only) {
    const int64_t kept = file_->size();
    if (kept == 0) return absl::OkStatus();
    absl::Status status =
        file_->ReadPrefix(kept, [this](std::string_view bytes) { return verifier_.Update(bytes); });
    if (!status.ok()) {
      if (absl::IsDataLoss(status)) {
        verification_failed_ = true;
        return Discard(absl::DataLossError(
            Cat(partial_path_, ", kept from an earlier run, is corrupt: ", status.message())));
      }
      return status;
    }
    if (whole_parts_only && verifier_.position() > verifier_.verified_end()) {
      verifier_.RewindToVerifiedEnd();
      if (absl::Status truncated = file_->Truncate(verifier_.position()); !truncated.ok()) {
        return truncated;
      }
    }
    result_.resumed_from = verifier_.position();
    if (result_.resumed_from > 0) {
      observer_.Note(Cat("resuming ", partial_path_, " at byte ", result_.resumed_from, " of ",
                         verifier_.total()));
    }
    return absl::OkStatus();
  }

  // Appends fetched bytes: written, verified, reported.
  absl::Status Take(std::string_view bytes) {
    if (cancelled_ && cancelled_()) {
      return WithExitCode(absl::CancelledError("interrupted"), kExitInterrupted);
    }
    if (absl::Status status = file_->Append(bytes); !status.ok()) return status;
    if (absl::Status status = verifier_.Update(bytes); !status.ok()) {
      verification_failed_ = true;
      return status;
    }
    result_.fetched_bytes += static_cast<int64_t>(bytes.size());
    observer_.Progress(verifier_.position(), verifier_.total());
    return absl::OkStatus();
  }

  absl::Status FetchGrpc(const GrpcPartFetcher& fetch) {
    for (const PartSpan& span : spans_) {
      // Parts before the position are complete (a resumed gRPC download keeps whole parts).
      if (span.offset < verifier_.position()) continue;
      const int64_t before = verifier_.position();
      absl::Status status =
          fetch(span.number, [this](std::string_view chunk) { return Take(chunk); });
      if (!status.ok()) return status;
      if (verifier_.position() != before + span.size) {
        verification_failed_ = true;
        return absl::DataLossError(Cat("part ", span.number, ": DownloadExport sent ",
                                       verifier_.position() - before, " bytes, the manifest says ",
                                       span.size));
      }
      // A part's last byte verifies it; a part of no bytes is verified here.
      if (absl::Status updated = verifier_.Update({}); !updated.ok()) {
        verification_failed_ = true;
        return updated;
      }
    }
    return absl::OkStatus();
  }

  absl::Status FetchHttp() {
    const std::string url = request_.part == 0 ? job_.download_url() : spans_.front().download_url;
    if (url.empty()) {
      return WithExitCode(
          absl::FailedPreconditionError(
              Cat("job ", job_.id(), " has no download URL for ",
                  request_.part == 0 ? std::string("its file") : Cat("part ", request_.part))),
          kExitHttp);
    }
    const int64_t offset = verifier_.position();
    HttpGetRequest get;
    get.url = url;
    get.headers = ResumeHeaders(offset, info_.etag);
    get.timeout = request_.timeout;
    int status_code = 0;
    std::string error_body;
    absl::Status status = HttpGet(
        get,
        [&](const HttpResponseHead& head) -> absl::Status {
          status_code = head.status;
          result_.http_status = head.status;
          if (head.status != 200 && head.status != 206) return absl::OkStatus();
          absl::StatusOr<ResponseAction> action =
              DecideResponse(head.status, head.content_range, offset, verifier_.total());
          if (!action.ok()) return action.status();
          if (*action == ResponseAction::kRestart) {
            observer_.Note(Cat("starting over: the server sent the whole file (HTTP ", head.status,
                               "), not the rest from byte ", offset));
            verifier_.Reset();
            result_.resumed_from = 0;
            if (absl::Status truncated = file_->Truncate(0); !truncated.ok()) return truncated;
          } else if (head.status == 206) {
            observer_.Note(Cat("resumed at byte ", offset, ": HTTP 206 Partial Content"));
          }
          info_.etag = head.etag;
          return WriteSidecar(sidecar_path_, info_);
        },
        [&](std::string_view body) -> absl::Status {
          if (status_code != 200 && status_code != 206) {
            if (error_body.size() < kMaxErrorBody) {
              error_body.append(body.substr(0, kMaxErrorBody - error_body.size()));
            }
            return absl::OkStatus();
          }
          return Take(body);
        });
    if (!status.ok()) return status;
    if (status_code != 200 && status_code != 206) {
      return HttpStatusError(status_code, error_body);
    }
    return absl::OkStatus();
  }

  // A failed verification: no file is written and the partial download is removed.
  absl::Status Discard(const absl::Status& cause) {
    file_.reset();
    ::unlink(partial_path_.c_str());
    ::unlink(sidecar_path_.c_str());
    return WithExitCode(absl::DataLossError(Cat(cause.message(), "; ", result_.path,
                                                " was not written and the partial download was "
                                                "removed (run again to download from the start)")),
                        kExitVerification);
  }

  // A broken transfer: the verified bytes stay for the next run.
  absl::Status KeepForResume(const absl::Status& cause) {
    file_->Sync().IgnoreError();  // The bytes are verified again when resumed.
    absl::Status status(cause.code(),
                        Cat(cause.message(), " (", partial_path_, " keeps ", file_->size(), " of ",
                            verifier_.total(), " bytes; run the same command to resume)"));
    return WithExitCode(std::move(status), ExitCodeOf(cause));
  }

  const ExportJob& job_;
  const DownloadRequest& request_;
  const std::vector<PartSpan> spans_;
  PartVerifier verifier_;
  DownloadObserver& observer_;
  const std::function<bool()>& cancelled_;
  std::string partial_path_;
  std::string sidecar_path_;
  std::unique_ptr<PartialFile> file_;
  PartialInfo info_;
  DownloadResult result_;
  bool verification_failed_ = false;
};

}  // namespace

std::string DefaultDestination(const ExportJob& job, int part) {
  std::string name = job.id();
  if (part > 0) Append(&name, ".part", part);
  name += job.format() == exportjobs::v1::EXPORT_FORMAT_JSONL ? ".jsonl" : ".csv";
  if (job.compression() == exportjobs::v1::COMPRESSION_GZIP) name += ".gz";
  return name;
}

absl::StatusOr<DownloadResult> DownloadFile(const ExportJob& job, const DownloadRequest& request,
                                            const GrpcPartFetcher* grpc, DownloadObserver& observer,
                                            const std::function<bool()>& cancelled) {
  absl::StatusOr<std::vector<PartSpan>> spans = PartsToFetch(job, request.part);
  if (!spans.ok()) {
    return absl::IsInvalidArgument(spans.status())
               ? UsageError(std::string(spans.status().message()))
               : spans.status();
  }
  Download download(job, request, *std::move(spans), observer, cancelled);
  return download.Run(grpc);
}

}  // namespace exportd::exportctl
