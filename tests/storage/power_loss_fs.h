// PowerLossFileSystem: a rocksdb::FileSystem for tests that remembers what a power cut would keep
// of the files written through it, and can then throw away everything else.
//
// What it models:
//  - File data: a file written through it (NewWritableFile, ReopenWritableFile,
//    ReuseWritableFile) keeps, after DropUnsyncedData, only the bytes it had at its last Sync or
//    Fsync. RangeSync, Flush and Close make nothing durable. Syncs are recorded, not passed to
//    the disk (the simulation, not the disk, decides what survives), so tests stay fast.
//  - Directory entries: a file created (under a name that did not exist) or renamed is durable
//    only once its directory is fsynced through an FSDirectory from NewDirectory. Until then
//    DropUnsyncedData removes a created file and undoes a rename: the file goes back to its old
//    name, and what the rename replaced comes back (saved, truncated to its synced size, at the
//    time of the rename). A rename counts as durable when the target's directory is fsynced.
//  - The power cut: Crash(), or CrashAfter(n) mutating calls of the calling thread (so that a
//    seed picks the same call whatever RocksDB's background threads do meanwhile; their calls
//    do not count towards n, but are cut like any other). From then on nothing becomes
//    durable: syncs and directory fsyncs still return OK but record nothing, so the program
//    (RocksDB closing, flushing, compacting) runs on without meeting errors, and all it writes
//    is undone by DropUnsyncedData. What could not be undone is refused with an IOError:
//    deletes, truncates, and overwriting an existing file. Reads always work.
// What it does not model: a delete (DeleteFile) is durable at once (a deleted file never comes
// back); partial or torn writes inside the unsynced tail (the tail is dropped whole); reordering
// of writes; files that existed before this object saw them, and files written through
// NewRandomRWFile, LinkFile or NewLogger, count as fully durable; a new directory is durable at
// once.
//
// A power-loss test: CrashAfter(n) or Crash(); a write acknowledged after the cut does not
// count (the machine was off); destroy the database; DropUnsyncedData(); Revive(); reopen.
//
// Thread safety: thread-safe (one mutex; RocksDB's background threads write through it).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "rocksdb/file_system.h"

namespace exportd::testing {

class PowerLossFileSystem : public rocksdb::FileSystemWrapper {
 public:
  // Size of one file written through this file system.
  struct FileState {
    uint64_t size = 0;    // Bytes written.
    uint64_t synced = 0;  // Bytes durable (as of the last Sync or Fsync).
  };

  explicit PowerLossFileSystem(const std::shared_ptr<rocksdb::FileSystem>& target);

  static const char* kClassName() { return "PowerLossFileSystem"; }
  const char* Name() const override { return kClassName(); }

  // The power goes off now: nothing written from now on becomes durable.
  void Crash();
  // The power goes off before the n-th mutating call that the calling thread makes from now
  // (n >= 0; 0 is Crash()). Other threads' calls (RocksDB's flushes and compactions) do not
  // count: their number depends on timing, and would move the cut from one run to the next.
  void CrashAfter(int64_t n);
  // True once the power went off.
  bool crashed() const;

  // Makes the files on disk what a power cut would have left: truncates every tracked file to
  // its synced size, then undoes, newest first, the creates and renames whose directory was
  // not fsynced. REQUIRES: crashed(), and no file of it is still open for writing.
  // Errors: the first error of the underlying file system.
  rocksdb::IOStatus DropUnsyncedData();
  // Power back on: syncs count again, and everything on disk counts as durable.
  void Revive();

  // --- rocksdb::FileSystem ---
  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& file_opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname,
                                       const rocksdb::FileOptions& file_opts,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& file_opts,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& io_opts,
                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& fname, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus Truncate(const std::string& fname, size_t size,
                             const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& target,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDir(const std::string& dirname, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDirIfMissing(const std::string& dirname,
                                       const rocksdb::IOOptions& options,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteDir(const std::string& dirname, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override;

  // For the file and directory wrappers. CountCall counts one mutating call (cutting the power
  // if CrashAfter chose this one) and returns crashed(). Refused is the error for a call that
  // cannot be made after the cut. SyncDirectory makes the directory's pending entries durable.
  bool CountCall();
  static rocksdb::IOStatus Refused();
  void SyncDirectory(const std::string& dir);

 private:
  // A directory operation not yet made durable by an fsync of `dir`.
  struct PendingEntry {
    std::string dir;
    std::string name;  // Created, or the rename's target.
    // Renames only: the old name, and what `name` held before (nullopt: nothing).
    std::optional<std::string> renamed_from;
    std::optional<std::string> replaced_content;
  };

  rocksdb::IOStatus OpenTracked(const std::string& fname, bool truncates,
                                std::unique_ptr<rocksdb::FSWritableFile>* result,
                                const std::function<rocksdb::IOStatus()>& open);
  bool Exists(const std::string& fname);

  mutable std::mutex mu_;
  bool crashed_ ABSL_GUARDED_BY(mu_) = false;
  // Armed by CrashAfter: the thread whose calls count, and how many it may still make.
  std::thread::id crash_thread_ ABSL_GUARDED_BY(mu_);
  std::optional<int64_t> calls_before_crash_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<FileState>> files_ ABSL_GUARDED_BY(mu_);
  std::vector<PendingEntry> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace exportd::testing
