// TempDir: a fresh directory under $TMPDIR (or /tmp), removed with everything in it when the
// TempDir is destroyed.
//
// Thread safety: a TempDir is a value; path() may be read from any thread.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "gtest/gtest.h"

namespace exportd::testing {

class TempDir {
 public:
  TempDir() {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string pattern = (tmpdir != nullptr && *tmpdir != '\0') ? tmpdir : "/tmp";
    pattern += "/exportd_test.XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp(" << pattern << ") failed";
      return;
    }
    path_ = buffer.data();
  }

  ~TempDir() {
    if (path_.empty()) return;
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // The directory; empty when it could not be created (the test has then failed).
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace exportd::testing
