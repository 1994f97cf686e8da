#include <aio.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
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

// Part files are written with O_DIRECT where the file system allows it: the bytes go from an
// aligned staging buffer to the disk without the page cache's copy, which on a busy machine
// costs more CPU than receiving them (docs/performance.md, "Part upload"). There are two staging
// buffers: while one is written (POSIX AIO, so the disk works while the caller goes on), the next
// chunks are hashed and copied into the other. Direct writes are whole multiples of kDirectAlign
// at aligned offsets; the last partial block is written through the page cache. Durability is
// as for buffered writes: every write has completed, then fsync, before the rename.
constexpr size_t kDirectAlign = 4096;
// Bytes staged before a direct write: large enough that each write streams to the disk.
constexpr size_t kStageBytes = size_t{4} << 20;

class FileUpload final : public BlobStore::PartUpload {
 public:
  FileUpload(std::string dir, std::string final_path, std::string temp_path, int fd, bool direct)
      : dir_(std::move(dir)),
        final_path_(std::move(final_path)),
        temp_path_(std::move(temp_path)),
        fd_(fd),
        direct_(direct),
        sha_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr);
  }

  ~FileUpload() override {
    for (Stage& stage : stages_) {
      if (stage.pending) {
        ::aio_cancel(fd_, stage.cb.get());
        (void)Await(stage);  // The buffer and the descriptor outlive the write.
      }
      std::free(stage.data);
    }
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_path_.c_str());
    EVP_MD_CTX_free(sha_);
  }

  void Hash(std::string_view data) override {
    EVP_DigestUpdate(sha_, data.data(), data.size());
    hashed_ += static_cast<int64_t>(data.size());
  }

  absl::Status Write(std::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError("the part upload is closed");
    size_ += static_cast<int64_t>(data.size());
    if (!direct_ && !stages_[current_].pending && stages_[current_].size == 0) {
      return WriteAt(data.data(), data.size());
    }
    while (!data.empty()) {
      Stage& stage = stages_[current_];
      if (stage.pending) {  // Written two buffers ago: wait for it before filling it again.
        if (absl::Status written = Await(stage); !written.ok()) return written;
      }
      if (stage.data == nullptr) {
        stage.data = static_cast<char*>(std::aligned_alloc(kDirectAlign, kStageBytes));
        if (stage.data == nullptr) return absl::ResourceExhaustedError("no memory to stage a part");
      }
      const size_t n = std::min(data.size(), kStageBytes - stage.size);
      std::memcpy(stage.data + stage.size, data.data(), n);
      stage.size += n;
      data.remove_prefix(n);
      if (stage.size == kStageBytes) {
        if (absl::Status started = StartWrite(stage); !started.ok()) return started;
        current_ ^= 1;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Commit(int64_t size_bytes, const std::string& sha256) override {
    if (fd_ < 0) return absl::FailedPreconditionError("the part upload is closed");
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    EVP_DigestFinal_ex(sha_, digest, &digest_size);
    const std::string actual = ToHex(digest, digest_size);
    if (hashed_ != size_) {
      return absl::InternalError(
          absl::StrCat(hashed_, " bytes were hashed but ", size_, " bytes were written"));
    }
    if (size_bytes != size_) {
      return absl::InvalidArgumentError(absl::StrCat("size_bytes: the trailer says ", size_bytes,
                                                     " but ", size_, " bytes were uploaded"));
    }
    if (sha256 != actual) {
      return absl::InvalidArgumentError(absl::StrCat("sha256: the trailer says ",
                                                     sha256.substr(0, 64),
                                                     " but the uploaded bytes hash to ", actual));
    }
    if (absl::Status flushed = Flush(); !flushed.ok()) return flushed;
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
  // A staging buffer and its write.
  struct Stage {
    char* data = nullptr;  // kStageBytes, aligned to kDirectAlign; allocated when first needed.
    size_t size = 0;       // Bytes staged.
    int64_t offset = 0;    // In the file, once the write started.
    bool pending = false;  // cb is a write in progress.
    // Apart: struct aiocb ends in a zero-length array, which no struct may hold inline.
    std::unique_ptr<struct aiocb> cb = std::make_unique<struct aiocb>();
  };

  // Starts writing the staged bytes at the end of the file; Await completes it.
  absl::Status StartWrite(Stage& stage) {
    stage.offset = offset_;
    offset_ += static_cast<int64_t>(stage.size);
    struct aiocb& cb = *stage.cb;
    cb = {};
    cb.aio_fildes = fd_;
    cb.aio_buf = stage.data;
    cb.aio_nbytes = stage.size;
    cb.aio_offset = stage.offset;
    cb.aio_sigevent.sigev_notify = SIGEV_NONE;
    if (::aio_write(&cb) == 0) {
      stage.pending = true;
      return absl::OkStatus();
    }
    // No asynchronous write to be had (EAGAIN: out of resources): write it now.
    const absl::Status written = PwriteAll(stage.data, stage.size, stage.offset);
    stage.size = 0;
    return written;
  }

  // Waits for the stage's write; a short or refused direct write is finished synchronously.
  absl::Status Await(Stage& stage) {
    const struct aiocb* const list[1] = {stage.cb.get()};
    int error;
    while ((error = ::aio_error(stage.cb.get())) == EINPROGRESS) ::aio_suspend(list, 1, nullptr);
    const ssize_t n = ::aio_return(stage.cb.get());
    stage.pending = false;
    const size_t size = std::exchange(stage.size, 0);
    if (error == ECANCELED) return absl::CancelledError("the write was cancelled");
    if (error != 0 && !(error == EINVAL && direct_)) {
      return IoError("write", temp_path_, error);
    }
    const size_t done = error == 0 ? static_cast<size_t>(n) : 0;
    if (done == size) return absl::OkStatus();
    return PwriteAll(stage.data + done, size - done, stage.offset + static_cast<int64_t>(done));
  }

  // Completes every write, then writes what is staged: the whole blocks directly, the rest
  // through the page cache.
  absl::Status Flush() {
    for (Stage& stage : stages_) {
      if (stage.pending) {
        if (absl::Status written = Await(stage); !written.ok()) return written;
      }
    }
    Stage& stage = stages_[current_];
    if (stage.size == 0) return absl::OkStatus();
    const size_t whole = direct_ ? stage.size / kDirectAlign * kDirectAlign : stage.size;
    const size_t size = std::exchange(stage.size, 0);
    if (absl::Status written = WriteAt(stage.data, whole); !written.ok()) return written;
    if (whole == size) return absl::OkStatus();
    if (absl::Status buffered = StopDirect(); !buffered.ok()) return buffered;
    return WriteAt(stage.data + whole, size - whole);
  }

  // From now on, writes go through the page cache.
  absl::Status StopDirect() {
    if (!direct_) return absl::OkStatus();
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) {
      return IoError("fcntl", temp_path_, errno);
    }
    direct_ = false;
    return absl::OkStatus();
  }

  // Writes at the end of the file, synchronously.
  absl::Status WriteAt(const char* data, size_t size) {
    const int64_t offset = std::exchange(offset_, offset_ + static_cast<int64_t>(size));
    return PwriteAll(data, size, offset);
  }

  absl::Status PwriteAll(const char* data, size_t size, int64_t offset) {
    while (size > 0) {
      const ssize_t n = ::pwrite(fd_, data, size, offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        // A file system may accept O_DIRECT at open and refuse a direct write (e.g. an
        // alignment it needs beyond kDirectAlign): write through the page cache instead.
        if (errno == EINVAL && direct_) {
          if (absl::Status buffered = StopDirect(); !buffered.ok()) return buffered;
          continue;
        }
        return IoError("write", temp_path_, errno);
      }
      data += n;
      size -= static_cast<size_t>(n);
      offset += n;
    }
    return absl::OkStatus();
  }

  const std::string dir_;
  const std::string final_path_;
  const std::string temp_path_;
  int fd_;
  bool direct_;  // fd_ has O_DIRECT: whole blocks from the staging buffers only.
  EVP_MD_CTX* sha_;
  Stage stages_[2];
  int current_ = 0;     // The stage being filled.
  int64_t offset_ = 0;  // Where the next write starts.
  int64_t size_ = 0;    // Bytes written (given to Write).
  int64_t hashed_ = 0;  // Bytes given to Hash.
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
    constexpr int kFlags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
    bool direct = true;
    int fd = ::open(temp.c_str(), kFlags | O_DIRECT, 0640);
    if (fd < 0 &&
        errno == EINVAL) {  // The file system has no O_DIRECT (e.g. tmpfs on old kernels).
      direct = false;
      fd = ::open(temp.c_str(), kFlags, 0640);
    }
    if (fd < 0) return IoError("create", temp, errno);
    return std::unique_ptr<PartUpload>(
        new FileUpload(dir, FinalPath(job_id, epoch, part_number), std::move(temp), fd, direct));
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
