// RocksDbJobStore: the JobStore on RocksDB, one column family per purpose (see keys.h).
//
// Every Commit is one WriteBatch written with sync; reads use RocksDB's implicit snapshots, so
// each call sees one consistent state. The store holds no locks of its own: RocksDB orders the
// writes. Destroying the store closes the database; no call may be in progress then.
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
