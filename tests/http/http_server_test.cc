// HttpServer on 127.0.0.1:0 with a real RocksDbJobStore, real part files written through the
// file BlobStore, a FakeClock, and httplib::Client as the caller.
#include "server/http_server.h"

#include <httplib.h>
#include <openssl/sha.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/clock.h"
#include "common/job_id.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/download_signer.h"
#include "storage/blob_store.h"
#include "storage/rocksdb_job_store.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {
namespace {

using ::exportd::test_support::TempDir;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kPublicUrl[] = "http://downloads.test";
constexpr int64_t kEpoch = 3;
const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);
const absl::Duration kRetention = absl::Hours(24 * 7);

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

// Deterministic CSV rows, `bytes` long or a little more.
std::string Rows(int first_row, size_t bytes) {
  std::string out;
  for (int row = first_row; out.size() < bytes; ++row) {
    absl::StrAppend(&out, row, ",Account ", row, ",example-", row * 7919 % 100000, ".com\n");
  }
  return out;
}

// One HTTP response, flattened.
struct Reply {
  int status = -1;  // -1: no response (the error says why).
  std::string error;
  std::string body;
  httplib::Headers headers;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  size_t HeaderCount(const std::string& name) const { return headers.count(name); }
};

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(jobs_, RocksDbJobStore::Open({.path = dir_.path() + "/jobs"}));
    ASSERT_OK_AND_ASSIGN(blobs_, OpenFileBlobStore(dir_.path() + "/parts"));
    ASSERT_OK_AND_ASSIGN(signer_, DownloadSigner::Create(std::string(32, 'k'), kPublicUrl));
    HttpServer::Options options;
    options.address = "127.0.0.1:0";
    options.jobs = jobs_.get();
    options.blobs = blobs_.get();
    options.signer = signer_.get();
    options.clock = &clock_;
    options.threads = 4;
    ASSERT_OK_AND_ASSIGN(server_, HttpServer::Start(options));

    // Three parts; the first and last span several of the server's 256 KiB chunks.
    parts_ = {"id,name,domain\n" + Rows(1, 600 << 10), Rows(100000, 100), Rows(200000, 300 << 10)};
    ASSERT_OK_AND_ASSIGN(job_, CommitCompletedJob(parts_, exportjobs::v1::EXPORT_FORMAT_CSV,
                                                  exportjobs::v1::COMPRESSION_NONE));
    whole_ = absl::StrJoin(parts_, "");
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Stop();
  }

  // Writes `parts` as the part files of a new job's attempt kEpoch and commits the job as
  // completed with their manifest. Returns the job id.
  absl::StatusOr<std::string> CommitCompletedJob(const std::vector<std::string>& parts,
                                                 exportjobs::v1::ExportFormat format,
                                                 exportjobs::v1::Compression compression) {
    JobRecord record = NewRecord(exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
    ExportJob& job = *record.mutable_job();
    job.set_format(format);
    job.set_compression(compression);
    *job.mutable_completed_at() = ToProtoTime(clock_.Now());
    *job.mutable_expires_at() = ToProtoTime(clock_.Now() + kRetention);
    int64_t size = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      const int32_t number = static_cast<int32_t>(i + 1);
      absl::StatusOr<std::unique_ptr<BlobStore::PartUpload>> upload =
          blobs_->StartPart(job.id(), kEpoch, number);
      if (!upload.ok()) return upload.status();
      if (absl::Status s = (*upload)->Append(parts[i]); !s.ok()) return s;
      const std::string sha = Sha256Hex(parts[i]);
      if (absl::Status s = (*upload)->Commit(static_cast<int64_t>(parts[i].size()), sha); !s.ok()) {
        return s;
      }
      exportjobs::v1::ExportPart* entry = job.add_parts();
      entry->set_part_number(number);
      entry->set_size_bytes(static_cast<int64_t>(parts[i].size()));
      entry->set_record_count(10);
      entry->set_sha256(sha);
      size += static_cast<int64_t>(parts[i].size());
    }
    job.set_file_parts(static_cast<int32_t>(parts.size()));
    job.set_file_size_bytes(size);
    job.set_record_count(10 * static_cast<int64_t>(parts.size()));
    record.mutable_lease()->set_epoch(kEpoch);
    if (absl::Status s = Commit(record); !s.ok()) return s;
    return job.id();
  }

  absl::StatusOr<std::string> CommitPendingJob() {
    JobRecord record = NewRecord(exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
    *record.mutable_ready_at() = ToProtoTime(clock_.Now());
    if (absl::Status s = Commit(record); !s.ok()) return s;
    return record.job().id();
  }

  JobRecord NewRecord(ExportJobStatus status) {
    JobRecord record;
    ExportJob& job = *record.mutable_job();
    job.set_id(ids_.Next());
    job.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
    job.set_status(status);
    job.add_fields("id");
    job.set_revision(1);
    *job.mutable_created_at() = ToProtoTime(clock_.Now());
    *job.mutable_updated_at() = ToProtoTime(clock_.Now());
    return record;
  }

  absl::Status Commit(const JobRecord& record) {
    std::vector<JobChange> changes = {JobChange{std::nullopt, record}};
    return jobs_->Commit(changes);
  }

  // The path and query of a signed URL.
  std::string SignedPath(const std::string& job, int32_t part,
                         absl::Duration valid_for = absl::Hours(1)) const {
    std::string url = signer_->Url(job, "", part, clock_.Now() + valid_for);
    return url.substr(std::string(kPublicUrl).size());
  }

  Reply Fetch(const std::string& method, const std::string& path,
              const httplib::Headers& headers = {}) const {
    httplib::Client client("127.0.0.1", server_->port());
    client.set_connection_timeout(5);
    client.set_read_timeout(20);
    client.set_write_timeout(5);
    httplib::Result result =
        method == "HEAD" ? client.Head(path.c_str(), headers) : client.Get(path.c_str(), headers);
    Reply reply;
    if (!result) {
      reply.error = httplib::to_string(result.error());
      return reply;
    }
    reply.status = result->status;
    reply.body = result->body;
    reply.headers = result->headers;
    return reply;
  }
  Reply Get(const std::string& path, const httplib::Headers& headers = {}) const {
    return Fetch("GET", path, headers);
  }

  std::string ContentRange(size_t first, size_t last) const {
    return absl::StrCat("bytes ", first, "-", last, "/", whole_.size());
  }

  TempDir dir_;
  FakeClock clock_{kT0};
  JobIdGenerator ids_{&clock_};
  std::unique_ptr<RocksDbJobStore> jobs_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<DownloadSigner> signer_;
  std::unique_ptr<HttpServer> server_;
  std::vector<std::string> parts_;
  std::string whole_;
  std::string job_;
};

// --- The file and its parts ---

TEST_F(HttpServerTest, TheWholeFileIsThePartsJoined) {
  Reply reply = Get(SignedPath(job_, 0));
  ASSERT_EQ(reply.status, 200) << reply.error << reply.body;
  EXPECT_EQ(reply.body.size(), whole_.size());
  EXPECT_TRUE(reply.body == whole_);
  EXPECT_EQ(reply.Header("Content-Length"), absl::StrCat(whole_.size()));
  EXPECT_EQ(reply.Header("Content-Type"), "text/csv; charset=utf-8");
  EXPECT_EQ(reply.Header("Content-Disposition"),
            absl::StrCat("attachment; filename=\"", job_, ".csv\""));
  EXPECT_THAT(reply.Header("ETag"), MatchesRegex("\"[0-9a-f]{32}\""));
  EXPECT_EQ(reply.Header("Accept-Ranges"), "bytes");
  EXPECT_EQ(reply.Header("Cache-Control"), "private");
  EXPECT_EQ(reply.HeaderCount("Content-Range"), 0u);
  EXPECT_EQ(reply.HeaderCount("Content-Encoding"), 0u);
}

// --- Tenancy: the signature covers the job's tenant ---

TEST_F(HttpServerTest, AUrlIsBoundToTheTenantOfItsJob) {
  ASSERT_OK_AND_ASSIGN(JobRecord record, jobs_->Get(job_));
  JobRecord acme = record;
  acme.set_tenant("acme");
  acme.mutable_job()->set_revision(record.job().revision() + 1);
  std::vector<JobChange> to_acme = {JobChange{record, acme}};
  ASSERT_OK(jobs_->Commit(to_acme));
  const std::string url = signer_->Url(job_, "acme", 0, clock_.Now() + absl::Hours(1));
  const std::string path = url.substr(std::string(kPublicUrl).size());
  ASSERT_THAT(path, HasSubstr("tenant=acme&"));
  EXPECT_EQ(Get(path).status, 200);

  // Another tenant written into the URL: the signature no longer matches.
  Reply moved = Get(absl::StrReplaceAll(path, {{"tenant=acme", "tenant=globex"}}));
  EXPECT_EQ(moved.status, 403);
  EXPECT_THAT(moved.body, HasSubstr("signature"));
  // No tenant at all is the tenant "", which the URL was not signed for either.
  EXPECT_EQ(Get(absl::StrReplaceAll(path, {{"tenant=acme&", ""}})).status, 403);
  // A URL signed for "" (the tenant before the move) no longer downloads the job.
  EXPECT_EQ(Get(SignedPath(job_, 0)).status, 403);

  // The job moves to another tenant: its old URLs stop working, with a valid signature.
  JobRecord globex = acme;
  globex.set_tenant("globex");
  globex.mutable_job()->set_revision(acme.job().revision() + 1);
  std::vector<JobChange> to_globex = {JobChange{acme, globex}};
  ASSERT_OK(jobs_->Commit(to_globex));
  Reply stale = Get(path);
  EXPECT_EQ(stale.status, 403);
  EXPECT_THAT(stale.body, HasSubstr("another tenant"));
}

TEST_F(HttpServerTest, EachPartIsServed) {
  for (int32_t part = 1; part <= 3; ++part) {
    Reply reply = Get(SignedPath(job_, part));
    ASSERT_EQ(reply.status, 200) << "part " << part << ": " << reply.error << reply.body;
    EXPECT_TRUE(reply.body == parts_[part - 1]) << "part " << part;
    EXPECT_EQ(reply.Header("Content-Length"), absl::StrCat(parts_[part - 1].size()));
    EXPECT_EQ(reply.Header("Content-Disposition"),
              absl::StrCat("attachment; filename=\"", job_, ".part-", part, ".csv\""));
  }
}

TEST_F(HttpServerTest, EveryPartAndTheFileHaveTheirOwnEtag) {
  std::vector<std::string> etags;
  for (int32_t part = 0; part <= 3; ++part)
    etags.push_back(Get(SignedPath(job_, part)).Header("ETag"));
  for (size_t i = 0; i < etags.size(); ++i) {
    for (size_t j = i + 1; j < etags.size(); ++j) EXPECT_NE(etags[i], etags[j]) << i << " " << j;
  }
  // And the same bytes keep their ETag.
  EXPECT_EQ(Get(SignedPath(job_, 2)).Header("ETag"), etags[2]);
}

TEST_F(HttpServerTest, JsonLinesContentType) {
  ASSERT_OK_AND_ASSIGN(std::string job,
                       CommitCompletedJob({"{\"id\":1}\n"}, exportjobs::v1::EXPORT_FORMAT_JSONL,
                                          exportjobs::v1::COMPRESSION_NONE));
  Reply reply = Get(SignedPath(job, 0));
  ASSERT_EQ(reply.status, 200) << reply.error << reply.body;
  EXPECT_EQ(reply.body, "{\"id\":1}\n");
  EXPECT_EQ(reply.Header("Content-Type"), "application/x-ndjson");
  EXPECT_EQ(reply.Header("Content-Disposition"),
            absl::StrCat("attachment; filename=\"", job, ".jsonl\""));
}

TEST_F(HttpServerTest, GzipContentTypeAndFilename) {
  // Not real gzip: the server serves the bytes as they are, without a Content-Encoding.
  const std::string a("\x1f\x8b\x08\x00part1", 9);
  const std::string b("\x1f\x8b\x08\x00part2", 9);
  ASSERT_OK_AND_ASSIGN(std::string job,
                       CommitCompletedJob({a, b}, exportjobs::v1::EXPORT_FORMAT_JSONL,
                                          exportjobs::v1::COMPRESSION_GZIP));
  Reply whole = Get(SignedPath(job, 0));
  ASSERT_EQ(whole.status, 200) << whole.error << whole.body;
  EXPECT_TRUE(whole.body == a + b);
  EXPECT_EQ(whole.Header("Content-Type"), "application/gzip");
  EXPECT_EQ(whole.HeaderCount("Content-Encoding"), 0u);
  EXPECT_EQ(whole.Header("Content-Disposition"),
            absl::StrCat("attachment; filename=\"", job, ".jsonl.gz\""));
  Reply part = Get(SignedPath(job, 2));
  EXPECT_EQ(part.Header("Content-Disposition"),
            absl::StrCat("attachment; filename=\"", job, ".part-2.jsonl.gz\""));
  ASSERT_OK_AND_ASSIGN(
      std::string csv_job,
      CommitCompletedJob({a}, exportjobs::v1::EXPORT_FORMAT_CSV, exportjobs::v1::COMPRESSION_GZIP));
  EXPECT_EQ(Get(SignedPath(csv_job, 0)).Header("Content-Disposition"),
            absl::StrCat("attachment; filename=\"", csv_job, ".csv.gz\""));
}

TEST_F(HttpServerTest, AnEmptyFile) {
  ASSERT_OK_AND_ASSIGN(std::string job, CommitCompletedJob({""}, exportjobs::v1::EXPORT_FORMAT_CSV,
                                                           exportjobs::v1::COMPRESSION_NONE));
  Reply reply = Get(SignedPath(job, 0));
  ASSERT_EQ(reply.status, 200) << reply.error << reply.body;
  EXPECT_EQ(reply.body, "");
  EXPECT_EQ(reply.Header("Content-Length"), "0");
  EXPECT_EQ(Get(SignedPath(job, 0), {{"Range", "bytes=0-"}}).status, 416);
}

TEST_F(HttpServerTest, HeadHasTheHeadersAndNoBody) {
  Reply reply = Fetch("HEAD", SignedPath(job_, 0));
  ASSERT_EQ(reply.status, 200) << reply.error;
  EXPECT_EQ(reply.body, "");
  EXPECT_EQ(reply.Header("Content-Length"), absl::StrCat(whole_.size()));
  EXPECT_EQ(reply.Header("Content-Type"), "text/csv; charset=utf-8");
  EXPECT_EQ(reply.Header("ETag"), Get(SignedPath(job_, 0)).Header("ETag"));
  EXPECT_EQ(reply.HeaderCount("Accept-Ranges"), 1u);
}

TEST_F(HttpServerTest, HeadIsCheckedLikeGet) {
  EXPECT_EQ(Fetch("HEAD", SignedPath(job_, 0) + "0").status, 403);
  Reply part = Fetch("HEAD", SignedPath(job_, 2));
  EXPECT_EQ(part.status, 200);
  EXPECT_EQ(part.Header("Content-Length"), absl::StrCat(parts_[1].size()));
}

// --- Ranges ---

TEST_F(HttpServerTest, RangeInTheMiddle) {
  Reply reply = Get(SignedPath(job_, 0), {{"Range", "bytes=1000-1999"}});
  ASSERT_EQ(reply.status, 206) << reply.error << reply.body;
  EXPECT_TRUE(reply.body == whole_.substr(1000, 1000));
  EXPECT_EQ(reply.Header("Content-Range"), ContentRange(1000, 1999));
  EXPECT_EQ(reply.Header("Content-Length"), "1000");
  EXPECT_EQ(reply.HeaderCount("Content-Range"), 1u);
  EXPECT_EQ(reply.Header("ETag"), Get(SignedPath(job_, 0)).Header("ETag"));
}

TEST_F(HttpServerTest, SuffixRange) {
  Reply reply = Get(SignedPath(job_, 0), {{"Range", "bytes=-10"}});
  ASSERT_EQ(reply.status, 206) << reply.error << reply.body;
  EXPECT_EQ(reply.body, whole_.substr(whole_.size() - 10));
  EXPECT_EQ(reply.Header("Content-Range"), ContentRange(whole_.size() - 10, whole_.size() - 1));
}

TEST_F(HttpServerTest, OpenEndedRange) {
  const size_t first = whole_.size() - 300000;
  Reply reply = Get(SignedPath(job_, 0), {{"Range", absl::StrCat("bytes=", first, "-")}});
  ASSERT_EQ(reply.status, 206) << reply.error << reply.body;
  EXPECT_TRUE(reply.body == whole_.substr(first));
  EXPECT_EQ(reply.Header("Content-Range"), ContentRange(first, whole_.size() - 1));
}

TEST_F(HttpServerTest, RangeAcrossPartBoundaries) {
  // From 10 bytes before the end of part 1, through all of part 2, into part 3.
  const size_t first = parts_[0].size() - 10;
  const size_t last = parts_[0].size() + parts_[1].size() + 9;
  Reply reply = Get(SignedPath(job_, 0), {{"Range", absl::StrCat("bytes=", first, "-", last)}});
  ASSERT_EQ(reply.status, 206) << reply.error << reply.body;
  EXPECT_EQ(reply.body, whole_.substr(first, last - first + 1));
  EXPECT_EQ(reply.Header("Content-Range"), ContentRange(first, last));
}

TEST_F(HttpServerTest, RangeOfAPart) {
  Reply reply = Get(SignedPath(job_, 2), {{"Range", "bytes=5-14"}});
  ASSERT_EQ(reply.status, 206) << reply.error << reply.body;
  EXPECT_EQ(reply.body, parts_[1].substr(5, 10));
  EXPECT_EQ(reply.Header("Content-Range"), absl::StrCat("bytes 5-14/", parts_[1].size()));
}

TEST_F(HttpServerTest, RangeOnHead) {
  Reply reply = Fetch("HEAD", SignedPath(job_, 0), {{"Range", "bytes=0-99"}});
  ASSERT_EQ(reply.status, 206) << reply.error;
  EXPECT_EQ(reply.body, "");
  EXPECT_EQ(reply.Header("Content-Length"), "100");
  EXPECT_EQ(reply.Header("Content-Range"), ContentRange(0, 99));
}

TEST_F(HttpServerTest, UnsatisfiableRange) {
  Reply reply = Get(SignedPath(job_, 0), {{"Range", absl::StrCat("bytes=", whole_.size(), "-")}});
  ASSERT_EQ(reply.status, 416) << reply.error << reply.body;
  EXPECT_EQ(reply.Header("Content-Range"), absl::StrCat("bytes */", whole_.size()));
  EXPECT_EQ(reply.HeaderCount("Content-Range"), 1u);
  EXPECT_THAT(reply.body, StartsWith("range not satisfiable"));
  EXPECT_EQ(reply.HeaderCount("Cache-Control"), 1u);
  EXPECT_EQ(Get(SignedPath(job_, 0), {{"Range", "bytes=20-10"}}).status, 416);
}

TEST_F(HttpServerTest, SeveralRangesGetTheWholeFile) {
  Reply reply = Get(SignedPath(job_, 0), {{"Range", "bytes=0-9,20-29"}});
  ASSERT_EQ(reply.status, 200) << reply.error << reply.body;
  EXPECT_TRUE(reply.body == whole_);
  EXPECT_EQ(reply.HeaderCount("Content-Range"), 0u);
}

TEST_F(HttpServerTest, AnUnparsableRangeIsIgnored) {
  for (const char* range : {"bytes=abc", "bits=0-9", "bytes=0-9-", "bytes="}) {
    Reply reply = Get(SignedPath(job_, 2), {{"Range", range}});
    ASSERT_EQ(reply.status, 200) << range << ": " << reply.error << reply.body;
    EXPECT_EQ(reply.body, parts_[1]) << range;
    EXPECT_EQ(reply.HeaderCount("Content-Range"), 0u) << range;
  }
  Reply head = Fetch("HEAD", SignedPath(job_, 0), {{"Range", "bytes=abc"}});
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("Content-Length"), absl::StrCat(whole_.size()));
}

TEST_F(HttpServerTest, AnUnparsableRangeDoesNotSkipTheChecks) {
  EXPECT_EQ(Get(SignedPath(job_, 0) + "0", {{"Range", "bytes=abc"}}).status, 403);
}

TEST_F(HttpServerTest, ErrorsAreNotCutByARange) {
  Reply reply = Get(SignedPath(job_, 0) + "0", {{"Range", "bytes=0-3"}});
  EXPECT_EQ(reply.status, 403);
  EXPECT_THAT(reply.body, StartsWith("forbidden: "));
  EXPECT_EQ(reply.HeaderCount("Content-Range"), 0u);
}

TEST_F(HttpServerTest, IfRangeWithTheEtagAllowsTheRange) {
  const std::string etag = Get(SignedPath(job_, 0)).Header("ETag");
  Reply reply = Get(SignedPath(job_, 0), {{"Range", "bytes=0-9"}, {"If-Range", etag}});
  EXPECT_EQ(reply.status, 206);
  EXPECT_EQ(reply.body, whole_.substr(0, 10));
}

TEST_F(HttpServerTest, IfRangeWithAnotherEtagGetsTheWholeFile) {
  Reply reply = Get(SignedPath(job_, 0), {{"Range", "bytes=0-9"}, {"If-Range", "\"other\""}});
  ASSERT_EQ(reply.status, 200);
  EXPECT_TRUE(reply.body == whole_);
}

// --- Conditional requests ---

TEST_F(HttpServerTest, IfNoneMatchWithTheEtagIsNotModified) {
  const std::string etag = Get(SignedPath(job_, 0)).Header("ETag");
  ASSERT_FALSE(etag.empty());
  Reply reply = Get(SignedPath(job_, 0), {{"If-None-Match", etag}});
  EXPECT_EQ(reply.status, 304);
  EXPECT_EQ(reply.body, "");
  EXPECT_EQ(reply.Header("ETag"), etag);
  EXPECT_EQ(reply.Header("Cache-Control"), "private");
}

TEST_F(HttpServerTest, IfNoneMatchForms) {
  const std::string etag = Get(SignedPath(job_, 1)).Header("ETag");
  EXPECT_EQ(Get(SignedPath(job_, 1), {{"If-None-Match", "*"}}).status, 304);
  EXPECT_EQ(Get(SignedPath(job_, 1), {{"If-None-Match", "W/" + etag}}).status, 304);
  EXPECT_EQ(Get(SignedPath(job_, 1), {{"If-None-Match", "\"a\", " + etag + " ,\"b\""}}).status,
            304);
  EXPECT_EQ(Fetch("HEAD", SignedPath(job_, 1), {{"If-None-Match", etag}}).status, 304);
  // A range does not matter once the file has not changed.
  EXPECT_EQ(Get(SignedPath(job_, 1), {{"If-None-Match", etag}, {"Range", "bytes=0-1"}}).status,
            304);
}

TEST_F(HttpServerTest, IfNoneMatchWithAnotherEtagGetsTheFile) {
  const std::string whole_etag = Get(SignedPath(job_, 0)).Header("ETag");
  EXPECT_EQ(Get(SignedPath(job_, 0), {{"If-None-Match", "\"other\""}}).status, 200);
  // The whole file's ETag is not part 1's.
  EXPECT_EQ(Get(SignedPath(job_, 1), {{"If-None-Match", whole_etag}}).status, 200);
}

TEST_F(HttpServerTest, IfNoneMatchDoesNotSkipTheSignature) {
  const std::string etag = Get(SignedPath(job_, 0)).Header("ETag");
  EXPECT_EQ(Get(SignedPath(job_, 0) + "0", {{"If-None-Match", etag}}).status, 403);
}

// --- Signatures and expiry ---

TEST_F(HttpServerTest, AForgedSignatureIsForbidden) {
  std::string path = SignedPath(job_, 0);
  path.back() = path.back() == '0' ? '1' : '0';
  Reply reply = Get(path);
  EXPECT_EQ(reply.status, 403);
  EXPECT_EQ(reply.body, "forbidden: the URL's signature does not match\n");
  EXPECT_EQ(reply.Header("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(reply.HeaderCount("ETag"), 0u);
}

TEST_F(HttpServerTest, AnotherJobsSignatureIsForbidden) {
  ASSERT_OK_AND_ASSIGN(std::string other,
                       CommitCompletedJob({"x\n"}, exportjobs::v1::EXPORT_FORMAT_CSV,
                                          exportjobs::v1::COMPRESSION_NONE));
  // The other job's query string on this job's path.
  const std::string other_path = SignedPath(other, 0);
  const std::string query = other_path.substr(other_path.find('?'));
  EXPECT_EQ(Get(absl::StrCat("/v1/export-jobs/", job_, "/file", query)).status, 403);
  // While the other job's URL itself works.
  EXPECT_EQ(Get(other_path).status, 200);
}

TEST_F(HttpServerTest, AnotherPartsSignatureIsForbidden) {
  const std::string part1 = SignedPath(job_, 1);
  const std::string query = part1.substr(part1.find('?'));
  EXPECT_EQ(Get(absl::StrCat("/v1/export-jobs/", job_, "/parts/2", query)).status, 403);
  EXPECT_EQ(Get(absl::StrCat("/v1/export-jobs/", job_, "/file", query)).status, 403);
  const std::string file = SignedPath(job_, 0);
  EXPECT_EQ(
      Get(absl::StrCat("/v1/export-jobs/", job_, "/parts/1", file.substr(file.find('?')))).status,
      403);
}

TEST_F(HttpServerTest, AnExtendedExpiryIsForbidden) {
  std::string path = SignedPath(job_, 0);
  const size_t at = path.find("expires=") + 8;
  path[at] = path[at] == '1' ? '2' : '1';
  EXPECT_EQ(Get(path).status, 403);
}

TEST_F(HttpServerTest, AMissingSignatureIsForbidden) {
  const std::string base = absl::StrCat("/v1/export-jobs/", job_, "/file");
  const std::string signed_path = SignedPath(job_, 0);
  const size_t expires_at = signed_path.find("expires=");
  const std::string expires =
      signed_path.substr(expires_at, signed_path.find('&', expires_at) - expires_at);
  EXPECT_EQ(Get(base).status, 403);
  EXPECT_EQ(Get(base + "?" + expires).status, 403);
  EXPECT_EQ(Get(base + "?" + expires + "&sig=").status, 403);
  EXPECT_EQ(Get(base + signed_path.substr(signed_path.find("&sig")).replace(0, 1, "?")).status,
            403);
}

TEST_F(HttpServerTest, TheSignatureIsCheckedBeforeTheJobIsLookedUp) {
  // A job that does not exist, with a forged signature: 403, not 404.
  const std::string unknown = ids_.Next();
  Reply reply = Get(absl::StrCat("/v1/export-jobs/", unknown,
                                 "/file?expires=1800000000&sig=", std::string(64, 'a')));
  EXPECT_EQ(reply.status, 403);
  ASSERT_OK_AND_ASSIGN(std::string pending, CommitPendingJob());
  EXPECT_EQ(Get(absl::StrCat("/v1/export-jobs/", pending,
                             "/file?expires=1800000000&sig=", std::string(64, 'a')))
                .status,
            403);
}

TEST_F(HttpServerTest, AnExpiredUrlIsGone) {
  const std::string path = SignedPath(job_, 0, absl::Hours(1));
  ASSERT_EQ(Get(path).status, 200);
  clock_.Advance(absl::Hours(1));
  Reply reply = Get(path);
  EXPECT_EQ(reply.status, 410);
  EXPECT_EQ(reply.body, "gone: the URL has expired\n");
}

TEST_F(HttpServerTest, AnExpiredJobIsGone) {
  // The URL outlives the job's expires_at.
  const std::string path = SignedPath(job_, 0, kRetention + absl::Hours(24));
  ASSERT_EQ(Get(path).status, 200);
  clock_.Advance(kRetention - absl::Seconds(1));
  EXPECT_EQ(Get(path).status, 200);
  clock_.Advance(absl::Seconds(1));
  Reply reply = Get(path);
  EXPECT_EQ(reply.status, 410);
  EXPECT_THAT(reply.body, HasSubstr("expired"));
}

// --- Unknown and unfinished jobs ---

TEST_F(HttpServerTest, AnUnknownJobIsNotFound) {
  Reply reply = Get(SignedPath(ids_.Next(), 0));
  EXPECT_EQ(reply.status, 404);
  EXPECT_THAT(reply.body, StartsWith("not found: "));
}

TEST_F(HttpServerTest, AMalformedJobIdIsNotFound) {
  EXPECT_EQ(Get(SignedPath("not-a-job-id", 0)).status, 404);
}

TEST_F(HttpServerTest, AnUnknownPartIsNotFound) {
  Reply reply = Get(SignedPath(job_, 4));
  EXPECT_EQ(reply.status, 404);
  EXPECT_THAT(reply.body, HasSubstr("no part 4"));
}

TEST_F(HttpServerTest, PartNumbersThatAreNotPositiveIntegersAreNotFound) {
  const std::string file = SignedPath(job_, 0);
  const std::string query = file.substr(file.find('?'));
  for (const char* part : {"0", "-1", "x", "1x", "99999999999"}) {
    EXPECT_EQ(Get(absl::StrCat("/v1/export-jobs/", job_, "/parts/", part, query)).status, 404)
        << part;
  }
}

TEST_F(HttpServerTest, AMissingPartFileIsNotFound) {
  ASSERT_OK(blobs_->DeleteParts(job_, kEpoch));
  Reply reply = Get(SignedPath(job_, 0));
  EXPECT_EQ(reply.status, 404);
  EXPECT_THAT(reply.body, HasSubstr("not stored"));
}

TEST_F(HttpServerTest, APartFileOfTheWrongSizeIsAnInternalError) {
  ASSERT_OK_AND_ASSIGN(std::string path, blobs_->PartPath(job_, kEpoch, 2));
  std::filesystem::resize_file(path, parts_[1].size() - 1);
  Reply reply = Get(SignedPath(job_, 0));
  EXPECT_EQ(reply.status, 500);
  EXPECT_EQ(reply.body, "internal error: the export cannot be served\n");
  // Parts that are intact are still served.
  EXPECT_EQ(Get(SignedPath(job_, 1)).status, 200);
}

TEST_F(HttpServerTest, APendingJobIsAConflict) {
  ASSERT_OK_AND_ASSIGN(std::string pending, CommitPendingJob());
  Reply reply = Get(SignedPath(pending, 0));
  EXPECT_EQ(reply.status, 409);
  EXPECT_EQ(reply.body, absl::StrCat("conflict: job ", pending, " is pending, not completed\n"));
  EXPECT_EQ(Get(SignedPath(pending, 1)).status, 409);
}

// --- Other paths ---

TEST_F(HttpServerTest, Healthz) {
  Reply reply = Get("/healthz");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, "ok");
  EXPECT_EQ(Fetch("HEAD", "/healthz").status, 200);
}

TEST_F(HttpServerTest, UnknownPathsAreNotFound) {
  for (const char* path : {"/", "/v1/export-jobs", "/v1/export-jobs/x", "/v1/export-jobs//file",
                           "/v1/export-jobs/x/file/more", "/v1/export-jobs/x/parts/"}) {
    Reply reply = Get(path);
    EXPECT_EQ(reply.status, 404) << path;
    EXPECT_THAT(reply.body, StartsWith("not found")) << path;
  }
}

// --- Concurrency and lifecycle ---

TEST_F(HttpServerTest, ConcurrentDownloads) {
  constexpr int kClients = 6;
  std::vector<Reply> replies(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    const int32_t part = i % 4;
    const std::string path = SignedPath(job_, part);
    threads.emplace_back([this, i, path, &replies] { replies[i] = Get(path); });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    const int32_t part = i % 4;
    ASSERT_EQ(replies[i].status, 200) << i << ": " << replies[i].error;
    EXPECT_TRUE(replies[i].body == (part == 0 ? whole_ : parts_[part - 1])) << i;
  }
}

TEST_F(HttpServerTest, AddressHasTheRealPort) {
  EXPECT_GT(server_->port(), 0);
  EXPECT_EQ(server_->address(), absl::StrCat("127.0.0.1:", server_->port()));
}

TEST_F(HttpServerTest, StopIsIdempotentAndClosesThePort) {
  const int port = server_->port();
  server_->Stop();
  server_->Stop();
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  EXPECT_FALSE(client.Get("/healthz"));
}

TEST_F(HttpServerTest, ABoundPortIsUnavailable) {
  HttpServer::Options options;
  options.address = server_->address();
  options.jobs = jobs_.get();
  options.blobs = blobs_.get();
  options.signer = signer_.get();
  options.clock = &clock_;
  EXPECT_THAT(HttpServer::Start(options), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(HttpServerTest, StartRefusesBadOptions) {
  HttpServer::Options options;
  options.jobs = jobs_.get();
  options.blobs = blobs_.get();
  options.signer = signer_.get();
  options.clock = &clock_;
  for (const char* address : {"", "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:x",
                              "127.0.0.1:65536", "::1:80", "[::1:80"}) {
    options.address = address;
    EXPECT_THAT(HttpServer::Start(options), StatusIs(absl::StatusCode::kInvalidArgument))
        << address;
  }
  options.address = "127.0.0.1:0";
  options.threads = 0;
  EXPECT_THAT(HttpServer::Start(options), StatusIs(absl::StatusCode::kInvalidArgument));
  options.threads = 1;
  options.signer = nullptr;
  EXPECT_THAT(HttpServer::Start(options), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace exportd::testing
