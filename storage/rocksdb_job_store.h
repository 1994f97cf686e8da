// RocksDbJobStore: the JobStore on RocksDB, one column family per purpose (see keys.h).
//
// Every Commit is one WriteBatch written with sync; reads use RocksDB's implicit snapshots, so
// each call sees one consistent state. RocksDB orders the writes; the store's one lock (shared
// by every read and write) is taken exclusively only to reopen the database after a failed
// write. Destroying the store closes the database; no call may be in progress then.
//
// A write that fails (the disk is full or failing) is UNAVAILABLE with RocksDB's reason (e.g.
// "IO error: No space left on device"); its outcome is unknown, as for any UNAVAILABLE (a log
// write that failed only in its sync may be found applied later). RocksDB then refuses every
// write until it is reopened: the next Commit closes and reopens it, replaying the synced log
// (not DB::Resume, which after a failed log write can let the next write reach the failed log
// writer, an assertion failure in RocksDB); so the store writes again, without a restart, once
// the disk does. While the disk still refuses, Commit
// stays UNAVAILABLE and reads go on (from the database reopened read-only if need be).
//
// Beyond JobStore's contract: Commit also refuses (INVALID_ARGUMENT) a record whose job id is
// not well-formed (IsWellFormedJobId: the keys rely on ids of fixed length) or whose tenant
// contains '\0'; List, ReadEvents, ScanQueue and ScanLeases refuse limit <= 0
// (INVALID_ARGUMENT). Index times are kept in whole microseconds, times before the Unix epoch as
// the epoch.
//
// Thread safety: all methods are thread-safe (see JobStore).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "storage/job_store.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace exportd {

class RocksDbJobStore : public JobStore {
 public:
  struct Options {
    // Directory of the database; created when missing.
    std::string path;
    // Block cache size.
    size_t block_cache_bytes = 64 << 20;
    // The environment RocksDB does its file I/O through; nullptr for the default (the local
    // file system). Tests pass one that simulates power loss. Not owned; it must outlive the
    // store.
    rocksdb::Env* env = nullptr;
  };

  // Opens (or creates) the database at options.path. Errors: UNAVAILABLE when RocksDB cannot
  // open it (e.g. it is locked by another process), with RocksDB's reason.
  // Also INVALID_ARGUMENT when options.path is empty, and RocksDB's other errors as mapped in
  // storage/rocksdb_status.h (e.g. DATA_LOSS for a corrupt database).
  static absl::StatusOr<std::unique_ptr<RocksDbJobStore>> Open(const Options& options);

 protected:
  // Only Open creates stores (an implementation class hidden in the .cc).
  RocksDbJobStore() = default;
};

}  // namespace exportd
