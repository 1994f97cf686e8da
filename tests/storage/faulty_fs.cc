#include "tests/storage/faulty_fs.h"

#include <utility>

#include "absl/strings/match.h"

namespace exportd::testing {
namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

// A log file: each write asks the file system whether to fail.
class FaultyWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultyWritableFile(std::unique_ptr<FSWritableFile> target, FaultyFileSystem* fs,
                     std::string fname)
      : FSWritableFileOwnerWrapper(std::move(target)), fs_(fs), fname_(std::move(fname)) {}

  IOStatus Append(const Slice& data, const IOOptions& options, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(fname_);
    return s.ok() ? target()->Append(data, options, dbg) : s;
  }
  IOStatus Append(const Slice& data, const IOOptions& options,
                  const rocksdb::DataVerificationInfo& info, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(fname_);
    return s.ok() ? target()->Append(data, options, info, dbg) : s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            IODebugContext* dbg) override {
    IOStatus s = fs_->Check(fname_);
    return s.ok() ? target()->PositionedAppend(data, offset, options, dbg) : s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            const rocksdb::DataVerificationInfo& info,
                            IODebugContext* dbg) override {
    IOStatus s = fs_->Check(fname_);
    return s.ok() ? target()->PositionedAppend(data, offset, options, info, dbg) : s;
  }
  IOStatus Flush(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(fname_);
    return s.ok() ? target()->Flush(options, dbg) : s;
  }
  IOStatus Sync(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(fname_, /*sync=*/true);
    return s.ok() ? target()->Sync(options, dbg) : s;
  }
  IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(fname_, /*sync=*/true);
    return s.ok() ? target()->Fsync(options, dbg) : s;
  }
  IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const IOOptions& options,
                     IODebugContext* dbg) override {
    IOStatus s = fs_->Check(fname_, /*sync=*/true);
    return s.ok() ? target()->RangeSync(offset, nbytes, options, dbg) : s;
  }

 private:
  FaultyFileSystem* const fs_;
  const std::string fname_;
};

}  // namespace

FaultyFileSystem::FaultyFileSystem(const std::shared_ptr<rocksdb::FileSystem>& target)
    : FileSystemWrapper(target) {}

IOStatus FaultyFileSystem::Check(const std::string& fname, bool sync) {
  switch (fault_.load()) {
    case Fault::kNone:
      return IOStatus::OK();
    case Fault::kSyncIoError:
      if (!sync) return IOStatus::OK();
      ++refused_;
      return IOStatus::IOError("injected: Input/output error in fsync", fname);
    case Fault::kNoSpace:
      ++refused_;
      return IOStatus::NoSpace("injected: No space left on device", fname);
    case Fault::kIoError:
      ++refused_;
      return IOStatus::IOError("injected: Input/output error", fname);
  }
  return IOStatus::OK();
}

void FaultyFileSystem::Wrap(const std::string& fname,
                            std::unique_ptr<rocksdb::FSWritableFile>* result) {
  if (!absl::EndsWith(fname, ".log")) return;
  *result = std::make_unique<FaultyWritableFile>(std::move(*result), this, fname);
}

IOStatus FaultyFileSystem::NewWritableFile(const std::string& fname,
                                           const rocksdb::FileOptions& options,
                                           std::unique_ptr<rocksdb::FSWritableFile>* result,
                                           IODebugContext* dbg) {
  IOStatus s = target()->NewWritableFile(fname, options, result, dbg);
  if (s.ok()) Wrap(fname, result);
  return s;
}

IOStatus FaultyFileSystem::ReopenWritableFile(const std::string& fname,
                                              const rocksdb::FileOptions& options,
                                              std::unique_ptr<rocksdb::FSWritableFile>* result,
                                              IODebugContext* dbg) {
  IOStatus s = target()->ReopenWritableFile(fname, options, result, dbg);
  if (s.ok()) Wrap(fname, result);
  return s;
}

IOStatus FaultyFileSystem::ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                             const rocksdb::FileOptions& options,
                                             std::unique_ptr<rocksdb::FSWritableFile>* result,
                                             IODebugContext* dbg) {
  IOStatus s = target()->ReuseWritableFile(fname, old_fname, options, result, dbg);
  if (s.ok()) Wrap(fname, result);
  return s;
}

}  // namespace exportd::testing
