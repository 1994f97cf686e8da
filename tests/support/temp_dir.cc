#include "tests/support/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"

namespace exportd::test_support {

absl::StatusOr<TempDir> TempDir::Create(const std::string& prefix) {
  std::string root = "/tmp";
  for (const char* variable : {"TEST_TMPDIR", "TMPDIR"}) {
    const char* value = getenv(variable);
    if (value != nullptr && *value != '\0') {
      root = value;
      break;
    }
  }
  std::string path_template = absl::StrCat(root, "/", prefix, "XXXXXX");
  if (mkdtemp(path_template.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", path_template, ": ", std::strerror(errno)));
  }
  return TempDir(std::move(path_template));
}

TempDir::TempDir() {
  absl::StatusOr<TempDir> dir = Create("exportd-test-");
  if (!dir.ok()) {
    std::fprintf(stderr, "cannot create a temporary directory: %s\n",
                 std::string(dir.status().message()).c_str());
    std::abort();
  }
  path_ = std::exchange(dir->path_, std::string());
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, std::string())) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    TempDir old(std::move(*this));
    path_ = std::exchange(other.path_, std::string());
  }
  return *this;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace exportd::test_support
