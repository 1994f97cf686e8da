// The file BlobStore on a temporary directory.
#include "storage/blob_store.h"

#include <openssl/sha.h>
#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {
namespace {

using ::exportd::test_support::TempDir;
using ::testing::HasSubstr;

constexpr char kJob[] = "0000000000000001000000aa";
// SHA-256 of "hello world".
constexpr char kHelloWorldSha[] =
    "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

// `size` bytes that differ from block to block (a misplaced block shows).
std::string Bytes(size_t size) {
  std::string bytes(size, '\0');
  uint32_t x = 2463534242u;
  for (char& c : bytes) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return bytes;
}

// The staging buffer of the file store: parts are written in blocks of this many bytes.
constexpr size_t kStage = size_t{4} << 20;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

int CountFiles(const std::string& dir) {
  int n = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) ++n;
  }
  return n;
}

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenFileBlobStore(dir_.path() + "/parts");
    ASSERT_OK(store);
    store_ = *std::move(store);
  }

  absl::Status Upload(int64_t epoch, int32_t part, const std::string& a, const std::string& b,
                      int64_t size, const std::string& sha) {
    auto upload = store_->StartPart(kJob, epoch, part);
    if (!upload.ok()) return upload.status();
    if (auto s = (*upload)->Append(a); !s.ok()) return s;
    if (auto s = (*upload)->Append(b); !s.ok()) return s;
    return (*upload)->Commit(size, sha);
  }

  TempDir dir_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTest, CommittedPartHoldsTheBytes) {
  ASSERT_OK(Upload(1, 1, "hello ", "world", 11, kHelloWorldSha));
  ASSERT_OK_AND_ASSIGN(std::string path, store_->PartPath(kJob, 1, 1));
  EXPECT_EQ(ReadFile(path), "hello world");
  EXPECT_EQ(CountFiles(dir_.path()), 1);
}

TEST_F(BlobStoreTest, SizeMismatchIsInvalidArgumentAndKeepsNothing) {
  EXPECT_THAT(Upload(1, 1, "hello ", "world", 12, kHelloWorldSha),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("size_bytes: ")));
  EXPECT_THAT(store_->PartPath(kJob, 1, 1), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(CountFiles(dir_.path()), 0);
}

TEST_F(BlobStoreTest, ChecksumMismatchIsInvalidArgumentAndKeepsNothing) {
  EXPECT_THAT(Upload(1, 1, "hello ", "world!", 12, kHelloWorldSha),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sha256: ")));
  EXPECT_EQ(CountFiles(dir_.path()), 0);
}

TEST_F(BlobStoreTest, AbandonedUploadLeavesNoFile) {
  {
    ASSERT_OK_AND_ASSIGN(auto upload, store_->StartPart(kJob, 1, 1));
    ASSERT_OK(upload->Append("partial"));
  }
  EXPECT_EQ(CountFiles(dir_.path()), 0);
}

// Sizes around the direct-write block (4096) and the staging buffer, appended in chunks that
// are aligned to neither: every byte lands in place, and the digest is checked.
TEST_F(BlobStoreTest, PartsOfEverySizeHoldTheirBytes) {
  const size_t sizes[] = {
      1, 4095, 4096, 4097, kStage - 1, kStage, kStage + 1, 2 * kStage, 3 * kStage + 4097};
  int32_t part = 0;
  for (size_t size : sizes) {
    ++part;
    const std::string bytes = Bytes(size);
    ASSERT_OK_AND_ASSIGN(auto upload, store_->StartPart(kJob, 1, part));
    for (size_t offset = 0; offset < size; offset += (1 << 20) + 13) {
      ASSERT_OK(upload->Append(std::string_view(bytes).substr(offset, (1 << 20) + 13)));
    }
    ASSERT_OK(upload->Commit(static_cast<int64_t>(size), Sha256Hex(bytes)));
    ASSERT_OK_AND_ASSIGN(std::string path, store_->PartPath(kJob, 1, part));
    EXPECT_EQ(std::filesystem::file_size(path), size) << "size " << size;
    EXPECT_TRUE(ReadFile(path) == bytes) << "size " << size;
  }
}

// Hash and Write on two threads at once, each given the chunks in order (as the upload reactor
// runs them): the part is the same as with Append, digest checked.
TEST_F(BlobStoreTest, HashingAndWritingOnTwoThreadsMakeTheSamePart) {
  const std::string bytes = Bytes(3 * kStage + 4097);
  const size_t chunk = (1 << 20) + 13;
  ASSERT_OK_AND_ASSIGN(auto upload, store_->StartPart(kJob, 1, 1));
  std::thread hasher([&] {
    for (size_t offset = 0; offset < bytes.size(); offset += chunk) {
      upload->Hash(std::string_view(bytes).substr(offset, chunk));
    }
  });
  absl::Status written;
  for (size_t offset = 0; offset < bytes.size() && written.ok(); offset += chunk) {
    written = upload->Write(std::string_view(bytes).substr(offset, chunk));
  }
  hasher.join();
  ASSERT_OK(written);
  ASSERT_OK(upload->Commit(static_cast<int64_t>(bytes.size()), Sha256Hex(bytes)));
  ASSERT_OK_AND_ASSIGN(std::string path, store_->PartPath(kJob, 1, 1));
  EXPECT_TRUE(ReadFile(path) == bytes);
}

// A caller that hashed other bytes than it wrote gets an error, not a part whose digest was
// never computed over its bytes.
TEST_F(BlobStoreTest, BytesWrittenButNotHashedAreRefusedAndKeepNothing) {
  ASSERT_OK_AND_ASSIGN(auto upload, store_->StartPart(kJob, 1, 1));
  upload->Hash("hello ");
  ASSERT_OK(upload->Write("hello "));
  ASSERT_OK(upload->Write("world"));
  EXPECT_THAT(upload->Commit(11, Sha256Hex("hello ")),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("6 bytes were hashed but 11")));
  upload.reset();
  EXPECT_EQ(CountFiles(dir_.path()), 0);
}

TEST_F(BlobStoreTest, AnUploadAbandonedWithWritesUnderWayLeavesNoFile) {
  {
    ASSERT_OK_AND_ASSIGN(auto upload, store_->StartPart(kJob, 1, 1));
    ASSERT_OK(upload->Append(Bytes(2 * kStage + 5)));  // Two blocks written, five bytes staged.
  }
  EXPECT_EQ(CountFiles(dir_.path()), 0);
}

// A write that fails (here: past the process's file size limit, as a full disk would) is
// UNAVAILABLE naming the write, from Append or at the latest from Commit; nothing is kept.
TEST_F(BlobStoreTest, AFailedWriteIsUnavailableAndKeepsNothing) {
  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  void (*old_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old_limit;
  limit.rlim_cur = kStage + 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);

  const std::string bytes = Bytes(3 * kStage);
  absl::Status status;
  {
    auto upload = store_->StartPart(kJob, 1, 1);
    status = upload.status();
    for (size_t offset = 0; status.ok() && offset < bytes.size(); offset += 1 << 20) {
      status = (*upload)->Append(std::string_view(bytes).substr(offset, 1 << 20));
    }
    if (status.ok())
      status = (*upload)->Commit(static_cast<int64_t>(bytes.size()), Sha256Hex(bytes));
  }
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("write ")));
  EXPECT_THAT(store_->PartPath(kJob, 1, 1), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(CountFiles(dir_.path()), 0);
}

TEST_F(BlobStoreTest, UploadingAPartAgainReplacesIt) {
  // SHA-256 of no bytes.
  ASSERT_OK(
      Upload(1, 1, "", "", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  ASSERT_OK(Upload(1, 1, "hello world", "", 11, kHelloWorldSha));
  ASSERT_OK_AND_ASSIGN(std::string path, store_->PartPath(kJob, 1, 1));
  EXPECT_EQ(ReadFile(path), "hello world");
  EXPECT_EQ(CountFiles(dir_.path()), 1);
}

TEST_F(BlobStoreTest, EpochsAreSeparateAndDeletedApart) {
  ASSERT_OK(Upload(1, 1, "hello ", "world", 11, kHelloWorldSha));
  ASSERT_OK(Upload(2, 1, "hello ", "world", 11, kHelloWorldSha));

  ASSERT_OK(store_->DeleteParts(kJob, 1));

  EXPECT_THAT(store_->PartPath(kJob, 1, 1), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(store_->PartPath(kJob, 2, 1));
  ASSERT_OK(store_->DeleteParts(kJob, -1));
  EXPECT_THAT(store_->PartPath(kJob, 2, 1), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(BlobStoreTest, OpeningRemovesTemporaryFilesOfACrash) {
  ASSERT_OK(Upload(1, 1, "hello ", "world", 11, kHelloWorldSha));
  const std::string leftover = dir_.path() + "/parts/" + kJob + "/1/2.part.tmp-dead";
  std::ofstream(leftover) << "half a part";

  ASSERT_OK_AND_ASSIGN(auto reopened, OpenFileBlobStore(dir_.path() + "/parts"));

  EXPECT_FALSE(std::filesystem::exists(leftover));
  EXPECT_OK(reopened->PartPath(kJob, 1, 1));
}

TEST_F(BlobStoreTest, MalformedArgumentsAreRefused) {
  EXPECT_THAT(store_->StartPart("../../etc", 1, 1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->StartPart(kJob, 1, 0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->PartPath("../../etc/passwd", 1, 1), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace exportd::testing
