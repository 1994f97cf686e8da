#include "tests/storage/power_loss_fs.h"

#include <algorithm>
#include <thread>
#include <utility>

namespace exportd::testing {
namespace {

using rocksdb::FileOptions;
using rocksdb::FSDirectory;
using rocksdb::FSWritableFile;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

// The directory part of a path ("." when there is none).
std::string DirName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string StripTrailingSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

// Counts what is written and synced into the file's FileState.
class TrackedWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  TrackedWritableFile(std::unique_ptr<FSWritableFile> target, PowerLossFileSystem* fs,
                      std::shared_ptr<PowerLossFileSystem::FileState> state, std::mutex* mu)
      : FSWritableFileOwnerWrapper(std::move(target)), fs_(fs), state_(std::move(state)), mu_(mu) {}

  IOStatus Append(const Slice& data, const IOOptions& options, IODebugContext* dbg) override {
    fs_->CountCall();
    IOStatus s = target()->Append(data, options, dbg);
    if (s.ok()) Grow(data.size(), std::nullopt);
    return s;
  }
  IOStatus Append(const Slice& data, const IOOptions& options,
                  const rocksdb::DataVerificationInfo& info, IODebugContext* dbg) override {
    fs_->CountCall();
    IOStatus s = target()->Append(data, options, info, dbg);
    if (s.ok()) Grow(data.size(), std::nullopt);
    return s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            IODebugContext* dbg) override {
    fs_->CountCall();
    IOStatus s = target()->PositionedAppend(data, offset, options, dbg);
    if (s.ok()) Grow(data.size(), offset);
    return s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            const rocksdb::DataVerificationInfo& info,
                            IODebugContext* dbg) override {
    fs_->CountCall();
    IOStatus s = target()->PositionedAppend(data, offset, options, info, dbg);
    if (s.ok()) Grow(data.size(), offset);
    return s;
  }
  IOStatus Truncate(uint64_t size, const IOOptions& options, IODebugContext* dbg) override {
    // Cutting synced data after the power cut could not be undone: refused.
    if (fs_->CountCall()) return PowerLossFileSystem::Refused();
    IOStatus s = target()->Truncate(size, options, dbg);
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(*mu_);
      state_->size = size;
      state_->synced = std::min(state_->synced, size);
    }
    return s;
  }
  IOStatus Close(const IOOptions& options, IODebugContext* dbg) override {
    fs_->CountCall();
    return target()->Close(options, dbg);
  }
  IOStatus Flush(const IOOptions& options, IODebugContext* dbg) override {
    fs_->CountCall();
    return target()->Flush(options, dbg);
  }
  IOStatus Sync(const IOOptions& /*options*/, IODebugContext* /*dbg*/) override {
    return Durable();
  }
  IOStatus Fsync(const IOOptions& /*options*/, IODebugContext* /*dbg*/) override {
    return Durable();
  }
  IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const IOOptions& options,
                     IODebugContext* dbg) override {
    // Starts write-back only: nothing becomes durable.
    fs_->CountCall();
    return target()->RangeSync(offset, nbytes, options, dbg);
  }

 private:
  void Grow(uint64_t n, std::optional<uint64_t> offset) {
    std::lock_guard<std::mutex> lock(*mu_);
    state_->size = offset ? std::max(state_->size, *offset + n) : state_->size + n;
  }

  // Everything written so far is durable. The disk is not asked to sync: what survives is
  // decided by DropUnsyncedData, and real syncs would only slow the tests down.
  // After the power cut a sync "succeeds" but makes nothing durable.
  IOStatus Durable() {
    if (fs_->CountCall()) return IOStatus::OK();
    std::lock_guard<std::mutex> lock(*mu_);
    state_->synced = state_->size;
    return IOStatus::OK();
  }

  PowerLossFileSystem* const fs_;
  const std::shared_ptr<PowerLossFileSystem::FileState> state_;
  std::mutex* const mu_;
};

// Makes the directory's new entries durable on Fsync.
class TrackedDirectory final : public rocksdb::FSDirectoryWrapper {
 public:
  TrackedDirectory(std::unique_ptr<FSDirectory> target, PowerLossFileSystem* fs, std::string name)
      : FSDirectoryWrapper(std::move(target)), fs_(fs), name_(std::move(name)) {}

  // As for files, the disk is not asked to sync.
  IOStatus Fsync(const IOOptions& /*options*/, IODebugContext* /*dbg*/) override {
    if (!fs_->CountCall()) fs_->SyncDirectory(name_);
    return IOStatus::OK();
  }
  IOStatus FsyncWithDirOptions(const IOOptions& options, IODebugContext* dbg,
                               const rocksdb::DirFsyncOptions& /*dir_options*/) override {
    return Fsync(options, dbg);
  }

 private:
  PowerLossFileSystem* const fs_;
  const std::string name_;
};

}  // namespace

PowerLossFileSystem::PowerLossFileSystem(const std::shared_ptr<rocksdb::FileSystem>& target)
    : FileSystemWrapper(target) {}

void PowerLossFileSystem::Crash() {
  std::lock_guard<std::mutex> lock(mu_);
  crashed_ = true;
}

void PowerLossFileSystem::CrashAfter(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (n <= 0) {
    crashed_ = true;
  } else {
    crash_thread_ = std::this_thread::get_id();
    calls_before_crash_ = n;
  }
}

bool PowerLossFileSystem::crashed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return crashed_;
}

bool PowerLossFileSystem::CountCall() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!crashed_ && calls_before_crash_ && std::this_thread::get_id() == crash_thread_) {
    if (*calls_before_crash_ == 0) {
      crashed_ = true;
    } else {
      --*calls_before_crash_;
    }
  }
  return crashed_;
}

IOStatus PowerLossFileSystem::Refused() {
  return IOStatus::IOError("refused after the simulated power cut (it could not be undone)");
}

void PowerLossFileSystem::SyncDirectory(const std::string& dir) {
  const std::string name = StripTrailingSlashes(dir);
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(pending_, [&](const PendingEntry& entry) { return entry.dir == name; });
}

bool PowerLossFileSystem::Exists(const std::string& fname) {
  return target_->FileExists(fname, IOOptions(), nullptr).ok();
}

IOStatus PowerLossFileSystem::DropUnsyncedData() {
  std::map<std::string, std::shared_ptr<FileState>> files;
  std::vector<PendingEntry> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    files = files_;
    pending = pending_;
  }
  const IOOptions options;
  for (const auto& [name, state] : files) {
    if (!Exists(name)) continue;
    uint64_t size = 0;
    IOStatus s = target_->GetFileSize(name, options, &size, nullptr);
    if (s.ok() && size > state->synced) {
      // Through a writable file: not every FileSystem implements FileSystem::Truncate.
      std::unique_ptr<FSWritableFile> file;
      s = target_->ReopenWritableFile(name, FileOptions(), &file, nullptr);
      if (s.ok()) s = file->Truncate(state->synced, options, nullptr);
      if (s.ok()) s = file->Close(options, nullptr);
    }
    if (!s.ok()) return s;
  }
  for (auto it = pending.rbegin(); it != pending.rend(); ++it) {
    if (!it->renamed_from) {
      if (Exists(it->name)) {
        if (IOStatus s = target_->DeleteFile(it->name, options, nullptr); !s.ok()) return s;
      }
      continue;
    }
    if (Exists(it->name)) {
      if (IOStatus s = target_->RenameFile(it->name, *it->renamed_from, options, nullptr);
          !s.ok()) {
        return s;
      }
    }
    if (it->replaced_content) {
      if (IOStatus s = rocksdb::WriteStringToFile(target_.get(), *it->replaced_content, it->name,
                                                  /*should_sync=*/true);
          !s.ok()) {
        return s;
      }
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  pending_.clear();
  // The renames moved files back; the sizes of what is left are all durable now.
  files_.clear();
  return IOStatus::OK();
}

void PowerLossFileSystem::Revive() {
  std::lock_guard<std::mutex> lock(mu_);
  crashed_ = false;
  calls_before_crash_.reset();
}

IOStatus PowerLossFileSystem::OpenTracked(const std::string& fname, bool truncates,
                                          std::unique_ptr<FSWritableFile>* result,
                                          const std::function<IOStatus()>& open) {
  const bool after_cut = CountCall();
  const bool existed = Exists(fname);
  // Overwriting a file after the power cut could not be undone: refused.
  if (after_cut && existed && truncates) return Refused();
  uint64_t size = 0;
  if (existed && !truncates) {
    if (IOStatus s = target_->GetFileSize(fname, IOOptions(), &size, nullptr); !s.ok()) return s;
  }
  IOStatus s = open();
  if (!s.ok()) return s;
  std::shared_ptr<FileState> state;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::shared_ptr<FileState>& tracked = files_[fname];
    if (!tracked) tracked = std::make_shared<FileState>(FileState{size, size});
    if (truncates) *tracked = FileState{};
    state = tracked;
    if (!existed)
      pending_.push_back(PendingEntry{DirName(fname), fname, std::nullopt, std::nullopt});
  }
  *result = std::make_unique<TrackedWritableFile>(std::move(*result), this, state, &mu_);
  return IOStatus::OK();
}

IOStatus PowerLossFileSystem::NewWritableFile(const std::string& fname,
                                              const FileOptions& file_opts,
                                              std::unique_ptr<FSWritableFile>* result,
                                              IODebugContext* dbg) {
  return OpenTracked(fname, /*truncates=*/true, result,
                     [&] { return target_->NewWritableFile(fname, file_opts, result, dbg); });
}

IOStatus PowerLossFileSystem::ReopenWritableFile(const std::string& fname,
                                                 const FileOptions& file_opts,
                                                 std::unique_ptr<FSWritableFile>* result,
                                                 IODebugContext* dbg) {
  return OpenTracked(fname, /*truncates=*/false, result,
                     [&] { return target_->ReopenWritableFile(fname, file_opts, result, dbg); });
}

IOStatus PowerLossFileSystem::ReuseWritableFile(const std::string& fname,
                                                const std::string& old_fname,
                                                const FileOptions& file_opts,
                                                std::unique_ptr<FSWritableFile>* result,
                                                IODebugContext* dbg) {
  // A rename followed by rewriting the file from its start.
  if (IOStatus s = RenameFile(old_fname, fname, IOOptions(), dbg); !s.ok()) return s;
  return OpenTracked(fname, /*truncates=*/true, result,
                     [&] { return target_->ReopenWritableFile(fname, file_opts, result, dbg); });
}

IOStatus PowerLossFileSystem::NewDirectory(const std::string& name, const IOOptions& io_opts,
                                           std::unique_ptr<FSDirectory>* result,
                                           IODebugContext* dbg) {
  IOStatus s = target_->NewDirectory(name, io_opts, result, dbg);
  if (!s.ok()) return s;
  *result =
      std::make_unique<TrackedDirectory>(std::move(*result), this, StripTrailingSlashes(name));
  return s;
}

IOStatus PowerLossFileSystem::DeleteFile(const std::string& fname, const IOOptions& options,
                                         IODebugContext* dbg) {
  if (CountCall()) return Refused();
  IOStatus s = target_->DeleteFile(fname, options, dbg);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    files_.erase(fname);
  }
  return s;
}

IOStatus PowerLossFileSystem::Truncate(const std::string& fname, size_t size,
                                       const IOOptions& options, IODebugContext* dbg) {
  if (CountCall()) return Refused();
  IOStatus s = target_->Truncate(fname, size, options, dbg);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = files_.find(fname); it != files_.end()) {
      it->second->size = size;
      it->second->synced = std::min<uint64_t>(it->second->synced, size);
    }
  }
  return s;
}

IOStatus PowerLossFileSystem::RenameFile(const std::string& src, const std::string& target,
                                         const IOOptions& options, IODebugContext* dbg) {
  CountCall();
  // What a crash before the next directory fsync brings back under `target`: its durable part.
  std::optional<std::string> replaced;
  if (Exists(target)) {
    std::string content;
    if (IOStatus s = rocksdb::ReadFileToString(target_.get(), target, &content); !s.ok()) {
      return s;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = files_.find(target); it != files_.end()) content.resize(it->second->synced);
    replaced = std::move(content);
  }
  IOStatus s = target_->RenameFile(src, target, options, dbg);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  files_.erase(target);
  if (auto it = files_.find(src); it != files_.end()) {
    files_[target] = it->second;
    files_.erase(it);
  }
  pending_.push_back(PendingEntry{DirName(target), target, src, std::move(replaced)});
  return s;
}

IOStatus PowerLossFileSystem::CreateDir(const std::string& dirname, const IOOptions& options,
                                        IODebugContext* dbg) {
  CountCall();
  return target_->CreateDir(dirname, options, dbg);
}

IOStatus PowerLossFileSystem::CreateDirIfMissing(const std::string& dirname,
                                                 const IOOptions& options, IODebugContext* dbg) {
  CountCall();
  return target_->CreateDirIfMissing(dirname, options, dbg);
}

IOStatus PowerLossFileSystem::DeleteDir(const std::string& dirname, const IOOptions& options,
                                        IODebugContext* dbg) {
  if (CountCall()) return Refused();
  return target_->DeleteDir(dirname, options, dbg);
}

}  // namespace exportd::testing
