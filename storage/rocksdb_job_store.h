// RocksDbJobStore: the JobStore on RocksDB, one column family per purpose (see keys.h).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "storage/job_store.h"

namespace exportd {

class RocksDbJobStore : public JobStore {
 public:
  struct Options {
    // Directory of the database; created when missing.
    std::string path;
    // Block cache size.
    size_t block_cache_bytes = 64 << 20;
  };

  // Opens (or creates) the database at options.path. Errors: UNAVAILABLE when RocksDB cannot
  // open it (e.g. it is locked by another process), with RocksDB's reason.
  static absl::StatusOr<std::unique_ptr<RocksDbJobStore>> Open(const Options& options);
};

}  // namespace exportd
