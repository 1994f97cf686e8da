// FaultyFileSystem: a rocksdb::FileSystem for tests that makes RocksDB's log writes fail on
// demand, as a disk that is full or failing would.
//
// While a fault is set, every Append, PositionedAppend, Flush, Sync, Fsync and RangeSync of a
// write-ahead log file (a name ending in ".log") fails with that fault: IOStatus::NoSpace or
// IOStatus::IOError, each with a message naming the file. Everything else (the MANIFEST, table
// files written by flushes and compactions, reads) goes through untouched, so a test can make
// the foreground writes fail without failing RocksDB's background work. ClearFault() lets the
// writes through again.
//
// Thread safety: thread-safe (RocksDB's threads write through it while a test sets faults).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "rocksdb/file_system.h"

namespace exportd::testing {

class FaultyFileSystem : public rocksdb::FileSystemWrapper {
 public:
  // kSyncIoError fails only the syncs (Sync, Fsync, RangeSync): the bytes reach the log file
  // but the write is not acknowledged, so it may be found applied when the log is replayed.
  enum class Fault { kNone, kNoSpace, kIoError, kSyncIoError };

  explicit FaultyFileSystem(const std::shared_ptr<rocksdb::FileSystem>& target);

  static const char* kClassName() { return "FaultyFileSystem"; }
  const char* Name() const override { return kClassName(); }

  // From now on the log writes fail with `fault` (kNone: they work).
  void SetFault(Fault fault) { fault_.store(fault); }
  void ClearFault() { SetFault(Fault::kNone); }
  // Log writes refused so far.
  int64_t refused() const { return refused_.load(); }

  // The error for a write (`sync`: a sync) of `fname` while a fault is set; OK otherwise
  // (counts a refusal).
  rocksdb::IOStatus Check(const std::string& fname, bool sync = false);

  // --- rocksdb::FileSystem ---
  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname,
                                       const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;

 private:
  // Wraps a file just opened for writing when it is a log.
  void Wrap(const std::string& fname, std::unique_ptr<rocksdb::FSWritableFile>* result);

  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<int64_t> refused_{0};
};

}  // namespace exportd::testing
