// TempDir: a fresh directory that is removed, with everything in it, on destruction. Tests use
// one per test for their RocksDB directory or data dir; the benchmark for its server.
//
// Thread safety: a TempDir is an immutable value once created; destroying it is not synchronised
// with users of path().
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace exportd::test_support {

class TempDir {
 public:
  // Creates a fresh directory under $TEST_TMPDIR, else $TMPDIR, else /tmp, named
  // `<prefix>XXXXXX`. Errors: INTERNAL when it cannot be created.
  static absl::StatusOr<TempDir> Create(const std::string& prefix);

  // A fresh "exportd-test-XXXXXX" directory, for test fixtures; aborts the process (with the
  // reason on stderr) when none can be created, as no test could run then.
  TempDir();

  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Removes the directory and everything in it; errors are ignored.
  ~TempDir();

  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}

  std::string path_;  // Empty after a move.
};

}  // namespace exportd::test_support
