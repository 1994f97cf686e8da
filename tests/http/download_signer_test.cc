// DownloadSigner: the URL form, verification of every part of a signed URL, expiry, and the
// signing key file.
#include "server/download_signer.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {
namespace {

using ::exportd::test_support::TempDir;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

const std::string kKey(32, 'k');
const std::string kJob = "0005f0a1b2c3d4e5a1b2c3d4";
const std::string kOtherJob = "0005f0a1b2c3d4e5a1b2c3d5";
const std::string kTenant = "acme";
const absl::Time kExpires = absl::FromUnixSeconds(1'700'003'600);
const absl::Time kBefore = kExpires - absl::Seconds(1);

// The query values of a URL.
std::map<std::string, std::string> Query(const std::string& url) {
  std::map<std::string, std::string> values;
  const size_t question = url.find('?');
  if (question == std::string::npos) return values;
  for (absl::string_view pair : absl::StrSplit(url.substr(question + 1), '&')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    values[kv.first] = kv.second;
  }
  return values;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

class DownloadSignerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(signer_, DownloadSigner::Create(kKey, "http://127.0.0.1:8080"));
  }

  // Verifies the URL signed for (job, part) as a request for (job, part).
  absl::Status VerifyUrl(const std::string& url, const std::string& job, int32_t part,
                         absl::Time now) {
    std::map<std::string, std::string> query = Query(url);
    return signer_->Verify(job, part, query["tenant"], query["expires"], query["sig"], now);
  }

  std::unique_ptr<DownloadSigner> signer_;
};

TEST(DownloadSignerCreateTest, RefusesAKeyShorterThan32Bytes) {
  EXPECT_THAT(DownloadSigner::Create(std::string(31, 'k'), "http://127.0.0.1:8080"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("31 bytes")));
  EXPECT_THAT(DownloadSigner::Create("", "http://127.0.0.1:8080"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(DownloadSigner::Create(std::string(32, 'k'), "http://127.0.0.1:8080"));
}

TEST(DownloadSignerCreateTest, AcceptsHttpAndHttpsHostsWithOptionalPorts) {
  for (const char* url :
       {"http://127.0.0.1:8080", "https://downloads.example.com", "http://localhost",
        "https://exports.example.com:443", "http://[::1]:8080", "http://[2001:db8::1]"}) {
    EXPECT_OK(DownloadSigner::Create(kKey, url)) << url;
  }
}

TEST(DownloadSignerCreateTest, RefusesPublicUrlsThatAreNotSchemeHostPort) {
  for (const char* url :
       {"", "127.0.0.1:8080", "ftp://example.com", "http://", "http://example.com/",
        "http://example.com/downloads", "http://example.com?x=1",
        "http://example.com:", "http://example.com:0", "http://example.com:65536",
        "http://example.com:80a", "http://exa mple.com", "http://[::1", "http://[]:80",
        "HTTP://example.com", "http://user@example.com"}) {
    EXPECT_THAT(DownloadSigner::Create(kKey, url),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("public_url")))
        << url;
  }
}

TEST_F(DownloadSignerTest, UrlOfTheWholeFile) {
  EXPECT_THAT(
      signer_->Url(kJob, kTenant, 0, kExpires),
      MatchesRegex(
          "http://127\\.0\\.0\\.1:8080/v1/export-jobs/"
          "0005f0a1b2c3d4e5a1b2c3d4/file\\?tenant=acme&expires=1700003600&sig=[0-9a-f]{64}"));
}

TEST_F(DownloadSignerTest, UrlOfAPart) {
  EXPECT_THAT(
      signer_->Url(kJob, kTenant, 3, kExpires),
      MatchesRegex(
          "http://127\\.0\\.0\\.1:8080/v1/export-jobs/"
          "0005f0a1b2c3d4e5a1b2c3d4/parts/3\\?tenant=acme&expires=1700003600&sig=[0-9a-f]{64}"));
}

TEST_F(DownloadSignerTest, UrlEscapesAnIdThatIsNotAPathSegment) {
  EXPECT_THAT(signer_->Url("a/b c", kTenant, 0, kExpires),
              StartsWith("http://127.0.0.1:8080/v1/export-jobs/a%2Fb%20c/file?"));
}

TEST_F(DownloadSignerTest, SignedUrlsVerify) {
  EXPECT_OK(VerifyUrl(signer_->Url(kJob, kTenant, 0, kExpires), kJob, 0, kBefore));
  EXPECT_OK(VerifyUrl(signer_->Url(kJob, kTenant, 1, kExpires), kJob, 1, kBefore));
  EXPECT_OK(VerifyUrl(signer_->Url(kJob, kTenant, 1000, kExpires), kJob, 1000, kBefore));
}

TEST_F(DownloadSignerTest, SigningIsDeterministic) {
  EXPECT_EQ(signer_->Url(kJob, kTenant, 2, kExpires), signer_->Url(kJob, kTenant, 2, kExpires));
}

TEST_F(DownloadSignerTest, AnotherJobsUrlIsRefused) {
  EXPECT_THAT(VerifyUrl(signer_->Url(kOtherJob, kTenant, 0, kExpires), kJob, 0, kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("signature")));
}

TEST_F(DownloadSignerTest, AUrlMovedToAnotherTenantIsRefused) {
  std::map<std::string, std::string> query = Query(signer_->Url(kJob, kTenant, 0, kExpires));
  EXPECT_OK(signer_->Verify(kJob, 0, kTenant, query["expires"], query["sig"], kBefore));
  EXPECT_THAT(signer_->Verify(kJob, 0, "globex", query["expires"], query["sig"], kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("signature")));
  EXPECT_THAT(signer_->Verify(kJob, 0, "", query["expires"], query["sig"], kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("signature")));
  // The tenant is length-prefixed: shifting characters between it and the job id fails.
  EXPECT_THAT(signer_->Verify(kJob + "a", 0, "cme", query["expires"], query["sig"], kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(DownloadSignerTest, AnotherPartsUrlIsRefused) {
  EXPECT_THAT(VerifyUrl(signer_->Url(kJob, kTenant, 1, kExpires), kJob, 2, kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(VerifyUrl(signer_->Url(kJob, kTenant, 0, kExpires), kJob, 1, kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(VerifyUrl(signer_->Url(kJob, kTenant, 1, kExpires), kJob, 0, kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(DownloadSignerTest, AChangedExpiryIsRefused) {
  std::map<std::string, std::string> query = Query(signer_->Url(kJob, kTenant, 0, kExpires));
  EXPECT_THAT(signer_->Verify(kJob, 0, kTenant, "1700003601", query["sig"], kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(signer_->Verify(kJob, 0, kTenant, "1800000000", query["sig"], kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(DownloadSignerTest, AChangedSignatureIsRefused) {
  std::map<std::string, std::string> query = Query(signer_->Url(kJob, kTenant, 0, kExpires));
  std::string sig = query["sig"];
  for (size_t i : {size_t{0}, size_t{31}, size_t{63}}) {
    std::string forged = sig;
    forged[i] = forged[i] == '0' ? '1' : '0';
    EXPECT_THAT(signer_->Verify(kJob, 0, kTenant, query["expires"], forged, kBefore),
                StatusIs(absl::StatusCode::kPermissionDenied))
        << "changed at " << i;
  }
}

TEST_F(DownloadSignerTest, ASignatureUnderAnotherKeyIsRefused) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DownloadSigner> other,
                       DownloadSigner::Create(std::string(32, 'x'), "http://127.0.0.1:8080"));
  EXPECT_THAT(VerifyUrl(other->Url(kJob, kTenant, 0, kExpires), kJob, 0, kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(DownloadSignerTest, MissingValuesAreRefused) {
  std::map<std::string, std::string> query = Query(signer_->Url(kJob, kTenant, 0, kExpires));
  EXPECT_THAT(signer_->Verify(kJob, 0, kTenant, "", query["sig"], kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("expires")));
  EXPECT_THAT(signer_->Verify(kJob, 0, kTenant, query["expires"], "", kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("sig")));
  EXPECT_THAT(signer_->Verify(kJob, 0, kTenant, "", "", kBefore),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(DownloadSignerTest, MalformedValuesAreRefused) {
  std::map<std::string, std::string> query = Query(signer_->Url(kJob, kTenant, 0, kExpires));
  const std::string& sig = query["sig"];
  for (const char* expires : {"-1700003600", "+1700003600", " 1700003600", "1700003600 ",
                              "17000036OO", "0x1", "99999999999999999999999"}) {
    EXPECT_THAT(signer_->Verify(kJob, 0, kTenant, expires, sig, kBefore),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("expires")))
        << expires;
  }
  std::string upper = sig;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const std::string& bad :
       {sig.substr(0, 63), sig + "0", upper, std::string(64, 'g'), sig.substr(0, 32)}) {
    EXPECT_THAT(signer_->Verify(kJob, 0, kTenant, query["expires"], bad, kBefore),
                StatusIs(absl::StatusCode::kPermissionDenied))
        << bad;
  }
}

TEST_F(DownloadSignerTest, AnExpiredUrlIsDeadlineExceeded) {
  const std::string url = signer_->Url(kJob, kTenant, 0, kExpires);
  EXPECT_OK(VerifyUrl(url, kJob, 0, kExpires - absl::Milliseconds(1)));
  EXPECT_THAT(VerifyUrl(url, kJob, 0, kExpires),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("expired")));
  EXPECT_THAT(VerifyUrl(url, kJob, 0, kExpires + absl::Hours(24)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_F(DownloadSignerTest, AForgedExpiredUrlIsRefusedNotExpired) {
  EXPECT_THAT(
      VerifyUrl(signer_->Url(kOtherJob, kTenant, 0, kExpires), kJob, 0, kExpires + absl::Hours(1)),
      StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(DownloadSignerTest, ExpiryIsKeptInWholeSeconds) {
  const std::string url = signer_->Url(kJob, kTenant, 0, kExpires + absl::Milliseconds(900));
  EXPECT_EQ(Query(url)["expires"], "1700003600");
  EXPECT_OK(VerifyUrl(url, kJob, 0, kBefore));
}

// --- The key file ---

TEST(SigningKeyTest, CreatesA32ByteKeyReadableOnlyByItsOwner) {
  TempDir dir;
  const std::string path = dir.path() + "/signing.key";
  ASSERT_OK_AND_ASSIGN(std::string key, LoadOrCreateSigningKey(path));
  EXPECT_EQ(key.size(), 32u);
  struct stat info;
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  EXPECT_EQ(info.st_size, 32);
  EXPECT_EQ(ReadFile(path), key);
}

TEST(SigningKeyTest, LeavesNoTemporaryFileBehind) {
  TempDir dir;
  ASSERT_OK(LoadOrCreateSigningKey(dir.path() + "/signing.key"));
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_THAT(names, ::testing::ElementsAre("signing.key"));
}

TEST(SigningKeyTest, ReadsTheSameKeyAgain) {
  TempDir dir;
  const std::string path = dir.path() + "/signing.key";
  ASSERT_OK_AND_ASSIGN(std::string first, LoadOrCreateSigningKey(path));
  ASSERT_OK_AND_ASSIGN(std::string second, LoadOrCreateSigningKey(path));
  EXPECT_EQ(first, second);
}

TEST(SigningKeyTest, NewKeysAreRandom) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::string a, LoadOrCreateSigningKey(dir.path() + "/a.key"));
  ASSERT_OK_AND_ASSIGN(std::string b, LoadOrCreateSigningKey(dir.path() + "/b.key"));
  EXPECT_NE(a, b);
}

TEST(SigningKeyTest, ReadsAnExistingKeyAsItIs) {
  TempDir dir;
  const std::string path = dir.path() + "/signing.key";
  const std::string existing(48, '\x7f');
  WriteFile(path, existing);
  EXPECT_THAT(LoadOrCreateSigningKey(path), IsOkAndHolds(existing));
}

TEST(SigningKeyTest, RefusesAShortKeyFile) {
  TempDir dir;
  const std::string path = dir.path() + "/signing.key";
  WriteFile(path, std::string(31, 'k'));
  EXPECT_THAT(LoadOrCreateSigningKey(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("31 bytes")));
  // And leaves it alone.
  EXPECT_EQ(ReadFile(path), std::string(31, 'k'));
}

TEST(SigningKeyTest, RefusesAnEmptyKeyFile) {
  TempDir dir;
  const std::string path = dir.path() + "/signing.key";
  WriteFile(path, "");
  EXPECT_THAT(LoadOrCreateSigningKey(path), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SigningKeyTest, UnavailableWhenTheDirectoryDoesNotExist) {
  TempDir dir;
  EXPECT_THAT(LoadOrCreateSigningKey(dir.path() + "/missing/signing.key"),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(SigningKeyTest, UnavailableWhenThePathIsADirectory) {
  TempDir dir;
  EXPECT_THAT(LoadOrCreateSigningKey(dir.path()), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(SigningKeyTest, ACreatedKeySignsUrlsThatVerify) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::string key, LoadOrCreateSigningKey(dir.path() + "/signing.key"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DownloadSigner> signer,
                       DownloadSigner::Create(key, "https://exports.example.com"));
  std::map<std::string, std::string> query = Query(signer->Url(kJob, kTenant, 0, kExpires));
  EXPECT_OK(signer->Verify(kJob, 0, kTenant, query["expires"], query["sig"], kBefore));
}

}  // namespace
}  // namespace exportd::testing
