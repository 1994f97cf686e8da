#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/job_id.h"
#include "storage/blob_store.h"

namespace exportd {
namespace {

namespace fs = std::filesystem;

constexpr char kTempMarker[] = ".tmp-";

absl::Status IoError(const std::string& what, const std::string& path, int error) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(error)));
}

absl::Status SyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return IoError("open", path, errno);
  const int rc = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (rc != 0) return IoError("fsync", path, error);
  return absl::OkStatus();
}

std::string ToHex(const unsigned char* bytes, size_t n) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), static_cast<size_t>(n)));
}

class FileUpload final : public BlobStore::PartUpload {
 public:
  FileUpload(std::string dir, std::string final_path, std::string temp_path, int fd)
      : dir_(std::move(dir)),
        final_path_(std::move(final_path)),
        temp_path_(std::move(temp_path)),
        fd_(fd),
        sha_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr);
  }

  ~FileUpload() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_path_.c_str());
    EVP_MD_CTX_free(sha_);
  }

  absl::Status Append(std::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError("the part upload is closed");
    EVP_DigestUpdate(sha_, data.data(), data.size());
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return IoError("write", temp_path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(n));
      size_ += n;
    }
    return absl::OkStatus();
  }

  absl::Status Commit(int64_t size_bytes, const std::string& sha256) override {
    if (fd_ < 0) return absl::FailedPreconditionError("the part upload is closed");
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    EVP_DigestFinal_ex(sha_, digest, &digest_size);
    const std::string actual = ToHex(digest, digest_size);
    if (size_bytes != size_) {
      return absl::InvalidArgumentError(absl::StrCat("size_bytes: the trailer says ", size_bytes,
                                                     " but ", size_, " bytes were uploaded"));
    }
    if (sha256 != actual) {
      return absl::InvalidArgumentError(absl::StrCat("sha256: the trailer says ",
                                                     sha256.substr(0, 64),
                                                     " but the uploaded bytes hash to ", actual));
    }
    const int fd = std::exchange(fd_, -1);
    if (::fsync(fd) != 0) {
      const int error = errno;
      ::close(fd);
      return IoError("fsync", temp_path_, error);
    }
    if (::close(fd) != 0) return IoError("close", temp_path_, errno);
    if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
      return IoError("rename", temp_path_, errno);
    }
    committed_ = true;
    return SyncPath(dir_, O_RDONLY | O_DIRECTORY);
  }

  int64_t size() const override { return size_; }

 private:
  const std::string dir_;
  const std::string final_path_;
  const std::string temp_path_;
  int fd_;
  EVP_MD_CTX* sha_;
  int64_t size_ = 0;
  bool committed_ = false;
};

class FileBlobStore final : public BlobStore {
 public:
  explicit FileBlobStore(std::string root) : root_(std::move(root)) {}

  absl::StatusOr<std::unique_ptr<PartUpload>> StartPart(const std::string& job_id, int64_t epoch,
                                                        int32_t part_number) override {
    if (!IsWellFormedJobId(job_id) || epoch < 0 || part_number < 1) {
      return absl::InvalidArgumentError(absl::StrCat("no part ", part_number, " of job \"",
                                                     job_id.substr(0, 64), "\" epoch ", epoch));
    }
    const std::string dir = AttemptDir(job_id, epoch);
    std::error_code error;
    fs::create_directories(dir, error);
    if (error) {
      return absl::UnavailableError(absl::StrCat("create ", dir, ": ", error.message()));
    }
    std::string temp = absl::StrCat(dir, "/", part_number, ".part", kTempMarker, RandomSuffix());
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) return IoError("create", temp, errno);
    return std::unique_ptr<PartUpload>(
        new FileUpload(dir, FinalPath(job_id, epoch, part_number), std::move(temp), fd));
  }

  absl::StatusOr<std::string> PartPath(const std::string& job_id, int64_t epoch,
                                       int32_t part_number) const override {
    if (!IsWellFormedJobId(job_id)) return absl::NotFoundError("no such part");
    std::string path = FinalPath(job_id, epoch, part_number);
    std::error_code error;
    if (!fs::is_regular_file(path, error)) {
      return absl::NotFoundError(absl::StrCat("part ", part_number, " of job ", job_id, " (epoch ",
                                              epoch, ") is not stored"));
    }
    return path;
  }

  absl::Status DeleteParts(const std::string& job_id, int64_t epoch) override {
    if (!IsWellFormedJobId(job_id)) return absl::OkStatus();
    const std::string path = epoch < 0 ? JobDir(job_id) : AttemptDir(job_id, epoch);
    std::error_code error;
    fs::remove_all(path, error);
    if (error) return absl::UnavailableError(absl::StrCat("remove ", path, ": ", error.message()));
    return absl::OkStatus();
  }

  // Removes temporary files left by a crash.
  absl::Status RemoveTemporaryFiles() {
    std::error_code error;
    for (auto it = fs::recursive_directory_iterator(root_, error);
         !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
      if (it->is_regular_file() &&
          it->path().filename().string().find(kTempMarker) != std::string::npos) {
        std::error_code ignored;
        fs::remove(it->path(), ignored);
      }
    }
    if (error) return absl::UnavailableError(absl::StrCat("scan ", root_, ": ", error.message()));
    return absl::OkStatus();
  }

 private:
  std::string JobDir(const std::string& job_id) const { return absl::StrCat(root_, "/", job_id); }
  std::string AttemptDir(const std::string& job_id, int64_t epoch) const {
    return absl::StrCat(JobDir(job_id), "/", epoch);
  }
  std::string FinalPath(const std::string& job_id, int64_t epoch, int32_t part) const {
    return absl::StrCat(AttemptDir(job_id, epoch), "/", part, ".part");
  }
  static std::string RandomSuffix() {
    thread_local std::mt19937_64 random(std::random_device{}());
    return absl::StrCat(absl::Hex(random()));
  }

  const std::string root_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlobStore>> OpenFileBlobStore(const std::string& dir) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (error || !fs::is_directory(dir)) {
    return absl::UnavailableError(absl::StrCat("cannot use \"", dir, "\" for part files",
                                               error ? ": " + error.message() : ""));
  }
  auto store = std::make_unique<FileBlobStore>(dir);
  if (absl::Status cleaned = store->RemoveTemporaryFiles(); !cleaned.ok()) return cleaned;
  return std::unique_ptr<BlobStore>(std::move(store));
}

}  // namespace exportd
