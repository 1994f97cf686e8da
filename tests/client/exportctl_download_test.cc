// exportctl download: the parts manifest as spans, the streaming SHA-256 verifier, the resume
// record and plan, the answers to a resumed request, and whole downloads (DownloadFile) against
// an HTTP server of the test's own on loopback (it records the Range and If-Range headers it
// gets and can break a response after N bytes, as a lost connection does) and a fake gRPC
// part fetcher.

#include "client/exportctl_download.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "client/exportctl_exit.h"
#include "client/exportctl_resume.h"
#include "client/exportctl_verify.h"
#include "common/str_cat.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::exportctl {
namespace {

using ::exportd::testing::IsOk;
using ::exportd::testing::IsOkAndHolds;
using ::exportd::testing::StatusIs;
using exportjobs::v1::ExportJob;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Deterministic bytes that differ at every offset in a way a shifted copy would not match.
std::string Bytes(size_t n, int seed = 1) {
  std::string out(n, '\0');
  uint32_t x = 2463534242u + static_cast<uint32_t>(seed);
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>('a' + x % 26);
  }
  return out;
}

// A completed job whose file is `body` split into parts of `sizes`.
ExportJob JobOf(const std::string& body, const std::vector<int64_t>& sizes,
                const std::string& base_url = "http://127.0.0.1:1") {
  ExportJob job;
  job.set_id("00066155b681fc4d25936487");
  job.set_status(exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  job.set_file_size_bytes(static_cast<int64_t>(body.size()));
  job.set_file_parts(static_cast<int>(sizes.size()));
  job.set_download_url(base_url + "/file?sig=s");
  int64_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    exportjobs::v1::ExportPart* part = job.add_parts();
    part->set_part_number(static_cast<int>(i) + 1);
    part->set_size_bytes(sizes[i]);
    part->set_sha256(Sha256Hex(std::string_view(body).substr(offset, sizes[i])));
    part->set_download_url(Cat(base_url, "/parts/", i + 1, "?sig=s"));
    offset += sizes[i];
  }
  return job;
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// ---------------------------------------------------------------------------------------------
// Spans and verification.

TEST(PartsToFetchTest, TheWholeFileOrOnePart) {
  const std::string body = Bytes(100);
  const ExportJob job = JobOf(body, {40, 0, 60});
  ASSERT_OK_AND_ASSIGN(const std::vector<PartSpan> all, PartsToFetch(job, 0));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].offset, 0);
  EXPECT_EQ(all[1].offset, 40);
  EXPECT_EQ(all[2].offset, 40);
  EXPECT_EQ(all[2].size, 60);
  EXPECT_EQ(SpansSize(all), 100);
  ASSERT_OK_AND_ASSIGN(const std::vector<PartSpan> third, PartsToFetch(job, 3));
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(third[0].number, 3);
  EXPECT_EQ(third[0].offset, 0);
  EXPECT_EQ(third[0].download_url, "http://127.0.0.1:1/parts/3?sig=s");
}

TEST(PartsToFetchTest, RefusesJobsThatCannotBeDownloaded) {
  ExportJob processing = JobOf(Bytes(10), {10});
  processing.set_status(exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING);
  EXPECT_THAT(PartsToFetch(processing, 0), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                    HasSubstr("is EXPORT_JOB_STATUS_PROCESSING")));
  EXPECT_THAT(PartsToFetch(JobOf(Bytes(10), {10}), 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("has 1 part, not 2")));

  ExportJob short_manifest = JobOf(Bytes(10), {10});
  short_manifest.set_file_size_bytes(11);
  EXPECT_THAT(PartsToFetch(short_manifest, 0),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("add up to 10 bytes")));
  ExportJob misnumbered = JobOf(Bytes(10), {5, 5});
  misnumbered.mutable_parts(1)->set_part_number(3);
  EXPECT_THAT(PartsToFetch(misnumbered, 0), StatusIs(absl::StatusCode::kDataLoss));
  ExportJob bad_digest = JobOf(Bytes(10), {10});
  bad_digest.mutable_parts(0)->set_sha256("ABC");
  EXPECT_THAT(PartsToFetch(bad_digest, 0), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(PartVerifierTest, AcceptsTheRightBytesInAnyChunking) {
  const std::string body = Bytes(1000);
  ASSERT_OK_AND_ASSIGN(std::vector<PartSpan> spans, PartsToFetch(JobOf(body, {300, 0, 700}), 0));
  for (size_t chunk : {1u, 7u, 300u, 1000u}) {
    PartVerifier verifier(spans);
    for (size_t at = 0; at < body.size(); at += chunk) {
      ASSERT_THAT(verifier.Update(std::string_view(body).substr(at, chunk)), IsOk());
    }
    EXPECT_THAT(verifier.Finish(), IsOk()) << chunk;
    EXPECT_EQ(verifier.parts_verified(), 3);
  }
}

TEST(PartVerifierTest, NamesTheCorruptPart) {
  std::string body = Bytes(1000);
  ASSERT_OK_AND_ASSIGN(std::vector<PartSpan> spans, PartsToFetch(JobOf(body, {300, 700}), 0));
  body[500] ^= 1;
  PartVerifier verifier(spans);
  ASSERT_THAT(verifier.Update(std::string_view(body).substr(0, 400)), IsOk());
  EXPECT_EQ(verifier.parts_verified(), 1);
  EXPECT_EQ(verifier.verified_end(), 300);
  EXPECT_THAT(
      verifier.Update(std::string_view(body).substr(400)),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("part 2 (bytes 300-999): SHA-256 is ")));
  // Spent: the error sticks.
  EXPECT_THAT(verifier.Finish(), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(PartVerifierTest, TooFewOrTooManyBytes) {
  const std::string body = Bytes(100);
  ASSERT_OK_AND_ASSIGN(std::vector<PartSpan> spans, PartsToFetch(JobOf(body, {50, 50}), 0));
  PartVerifier short_verifier(spans);
  ASSERT_THAT(short_verifier.Update(std::string_view(body).substr(0, 80)), IsOk());
  EXPECT_THAT(short_verifier.Finish(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("part 2 (bytes 50-99) ends after 30 of its 50 bytes")));
  PartVerifier long_verifier(spans);
  EXPECT_THAT(
      long_verifier.Update(body + "x"),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("more bytes than the manifest's 100")));
}

TEST(PartVerifierTest, RewindsToTheLastVerifiedPart) {
  const std::string body = Bytes(100);
  ASSERT_OK_AND_ASSIGN(std::vector<PartSpan> spans, PartsToFetch(JobOf(body, {50, 50}), 0));
  PartVerifier verifier(spans);
  ASSERT_THAT(verifier.Update(std::string_view(body).substr(0, 70)), IsOk());
  verifier.RewindToVerifiedEnd();
  EXPECT_EQ(verifier.position(), 50);
  ASSERT_THAT(verifier.Update(std::string_view(body).substr(50)), IsOk());
  EXPECT_THAT(verifier.Finish(), IsOk());
}

// ---------------------------------------------------------------------------------------------
// The resume record, the plan and the answers.

TEST(SidecarTest, RoundTrips) {
  const PartialInfo info{"job1", 2, 12345, "\"etag\""};
  EXPECT_EQ(EncodeSidecar(info),
            "{\"job_id\":\"job1\",\"part\":2,\"size_bytes\":12345,\"etag\":\"\\\"etag\\\"\"}\n");
  EXPECT_THAT(DecodeSidecar(EncodeSidecar(info)), IsOkAndHolds(info));
  for (const char* text :
       {"", "{}", "[1]", "{\"job_id\":1,\"part\":0,\"size_bytes\":1,\"etag\":\"\"}", "not json"}) {
    EXPECT_THAT(DecodeSidecar(text), StatusIs(absl::StatusCode::kInvalidArgument)) << text;
  }
  EXPECT_EQ(PartialPath("dir/out.csv"), "dir/out.csv.partial");
  EXPECT_EQ(SidecarPath("dir/out.csv"), "dir/out.csv.partial.json");
}

TEST(PlanResumeTest, KeepsOnlyAPartialOfTheSameDownload) {
  const PartialInfo want{"job1", 0, 1000, ""};
  const PartialInfo same{"job1", 0, 1000, "\"e\""};
  ResumePlan plan = PlanResume(same, 400, want);
  EXPECT_EQ(plan.keep_bytes, 400);
  EXPECT_EQ(plan.if_range, "\"e\"");
  EXPECT_EQ(plan.discard_reason, "");

  EXPECT_EQ(PlanResume(same, 0, want).keep_bytes, 0);
  EXPECT_EQ(PlanResume(same, 0, want).discard_reason, "");
  EXPECT_EQ(PlanResume(same, 1000, want).keep_bytes, 1000);

  const std::pair<std::optional<PartialInfo>, std::string> discarded[] = {
      {std::nullopt, "no readable record"},
      {PartialInfo{"job2", 0, 1000, ""}, "it holds job job2 part 0"},
      {PartialInfo{"job1", 3, 1000, ""}, "it holds job job1 part 3"},
      {PartialInfo{"job1", 0, 999, ""}, "for a download of 999 bytes, not 1000"},
  };
  for (const auto& [sidecar, reason] : discarded) {
    plan = PlanResume(sidecar, 400, want);
    EXPECT_EQ(plan.keep_bytes, 0) << reason;
    EXPECT_THAT(plan.discard_reason, HasSubstr(reason));
  }
  plan = PlanResume(same, 1001, want);
  EXPECT_EQ(plan.keep_bytes, 0);
  EXPECT_THAT(plan.discard_reason, HasSubstr("more than the download's 1000"));
}

TEST(ResumeHeadersTest, RangeFromTheOffsetAndIfRangeWithTheEtag) {
  EXPECT_THAT(ResumeHeaders(0, "\"e\""), IsEmpty());
  using Header = std::pair<std::string, std::string>;
  EXPECT_THAT(ResumeHeaders(400, "\"e\""),
              ElementsAre(Header("Range", "bytes=400-"), Header("If-Range", "\"e\"")));
  EXPECT_THAT(ResumeHeaders(400, ""), ElementsAre(Header("Range", "bytes=400-")));
}

TEST(DecideResponseTest, AppendRestartOrRefuse) {
  EXPECT_THAT(DecideResponse(200, "", 0, 1000), IsOkAndHolds(ResponseAction::kAppend));
  EXPECT_THAT(DecideResponse(200, "", 400, 1000), IsOkAndHolds(ResponseAction::kRestart));
  EXPECT_THAT(DecideResponse(206, "bytes 400-999/1000", 400, 1000),
              IsOkAndHolds(ResponseAction::kAppend));
  const absl::StatusOr<ResponseAction> wrong_range =
      DecideResponse(206, "bytes 0-999/1000", 400, 1000);
  EXPECT_THAT(wrong_range, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bytes 400-999/1000")));
  EXPECT_EQ(ExitCodeOf(wrong_range.status()), kExitHttp);
  const absl::StatusOr<ResponseAction> gone = DecideResponse(410, "", 0, 1000, "gone: expired\n");
  EXPECT_THAT(gone, StatusIs(absl::StatusCode::kFailedPrecondition, "HTTP 410: gone: expired"));
  EXPECT_EQ(ExitCodeOf(gone.status()), kExitHttp);
}

TEST(HttpStatusErrorTest, MapsStatusesToCodes) {
  EXPECT_THAT(HttpStatusError(403, "forbidden: bad signature\nmore"),
              StatusIs(absl::StatusCode::kPermissionDenied, "HTTP 403: forbidden: bad signature"));
  EXPECT_THAT(HttpStatusError(404, ""), StatusIs(absl::StatusCode::kNotFound, "HTTP 404"));
  EXPECT_THAT(HttpStatusError(409, ""), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(HttpStatusError(416, ""), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(HttpStatusError(503, ""), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(HttpStatusError(418, ""), StatusIs(absl::StatusCode::kUnknown));
  EXPECT_THAT(HttpStatusError(500, "a\x1b[2Jb"),
              StatusIs(absl::StatusCode::kUnavailable, "HTTP 500: a?[2Jb"));
}

// ---------------------------------------------------------------------------------------------
// Whole downloads.

// An HTTP server on loopback serving one file at /file and its parts at /parts/N, with an ETag,
// Range (by httplib) and If-Range (here).
class FakeFileServer {
 public:
  struct Request {
    std::string path;
    std::string range;
    std::string if_range;
  };

  FakeFileServer() {
    auto serve = [this](const httplib::Request& req, httplib::Response& res) { Serve(req, res); };
    server_.Get("/file", serve);
    server_.Get(R"(/parts/(\d+))", serve);
    server_.Get("/ready", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok", "text/plain");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // Once it has answered, the server runs, and stop() in the destructor reaches it.
    httplib::Client client(base_url());
    client.set_connection_timeout(10);
    client.set_read_timeout(10);
    const httplib::Result ready = client.Get("/ready");
    EXPECT_TRUE(ready && ready->status == 200) << "the test's HTTP server did not answer";
  }

  ~FakeFileServer() {
    server_.stop();
    thread_.join();
  }

  std::string base_url() const { return Cat("http://127.0.0.1:", port_); }

  // Serves `body` with `etag`; part N is the slice `parts` says.
  void SetFile(std::string body, std::vector<int64_t> part_sizes, std::string etag) {
    std::lock_guard<std::mutex> lock(mu_);
    body_ = std::move(body);
    part_sizes_ = std::move(part_sizes);
    etag_ = std::move(etag);
  }
  void SetEtag(std::string etag) {
    std::lock_guard<std::mutex> lock(mu_);
    etag_ = std::move(etag);
  }
  // The next response's body breaks off after `bytes` (the connection is dropped).
  void BreakNextAfter(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    break_after_ = bytes;
  }
  // Every response is `status` with `text`.
  void Refuse(int status, std::string text) {
    std::lock_guard<std::mutex> lock(mu_);
    refuse_status_ = status;
    refuse_text_ = std::move(text);
  }

  std::vector<Request> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void Serve(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(
        {req.path, req.get_header_value("Range"), req.get_header_value("If-Range")});
    if (refuse_status_ != 0) {
      auto& ranges = const_cast<httplib::Request&>(req).ranges;
      ranges.clear();
      res.status = refuse_status_;
      res.set_content(refuse_text_, "text/plain");
      return;
    }
    std::string content = body_;
    if (req.matches.size() > 1) {
      const int part = std::stoi(req.matches[1]);
      int64_t offset = 0;
      for (int i = 1; i < part; ++i) offset += part_sizes_[static_cast<size_t>(i - 1)];
      content = body_.substr(static_cast<size_t>(offset),
                             static_cast<size_t>(part_sizes_[static_cast<size_t>(part - 1)]));
    }
    res.set_header("ETag", etag_);
    if (req.has_header("If-Range") && req.get_header_value("If-Range") != etag_) {
      // Another version: the whole file, as RFC 9110 says.
      const_cast<httplib::Request&>(req).ranges.clear();
    }
    const int64_t budget = break_after_;
    break_after_ = -1;
    auto sent = std::make_shared<int64_t>(0);
    auto shared = std::make_shared<std::string>(std::move(content));
    res.set_content_provider(
        shared->size(), "application/octet-stream",
        [shared, sent, budget](size_t offset, size_t length, httplib::DataSink& sink) {
          size_t n = length;
          if (budget >= 0) n = static_cast<size_t>(std::min<int64_t>(n, budget - *sent));
          if (n > 0) sink.write(shared->data() + offset, n);
          *sent += static_cast<int64_t>(n);
          return n == length;  // false drops the connection
        });
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::string body_;
  std::vector<int64_t> part_sizes_;
  std::string etag_;
  int64_t break_after_ = -1;
  int refuse_status_ = 0;
  std::string refuse_text_;
  std::vector<Request> requests_;
};

class RecordingObserver : public DownloadObserver {
 public:
  void Note(std::string_view text) override { notes.emplace_back(text); }
  void Progress(int64_t done, int64_t total) override {
    last_done = done;
    last_total = total;
  }
  void Finished() override { ++finished; }

  std::vector<std::string> notes;
  int64_t last_done = -1;
  int64_t last_total = -1;
  int finished = 0;
};

class DownloadFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    body_ = Bytes(300'000);
    sizes_ = {100'000, 100'000, 100'000};
    server_.SetFile(body_, sizes_, "\"v1\"");
    job_ = JobOf(body_, sizes_, server_.base_url());
    request_.destination = Path("out.csv");
    request_.timeout = absl::Seconds(10);
  }

  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }

  absl::StatusOr<DownloadResult> Http() {
    return DownloadFile(job_, request_, nullptr, observer_, not_cancelled_);
  }

  const std::function<bool()> not_cancelled_ = [] { return false; };
  test_support::TempDir dir_;
  FakeFileServer server_;
  std::string body_;
  std::vector<int64_t> sizes_;
  ExportJob job_;
  DownloadRequest request_;
  RecordingObserver observer_;
};

TEST_F(DownloadFileTest, WritesTheVerifiedFileAndNothingElse) {
  ASSERT_OK_AND_ASSIGN(const DownloadResult result, Http());
  EXPECT_EQ(result.path, Path("out.csv"));
  EXPECT_EQ(result.size_bytes, 300'000);
  EXPECT_EQ(result.parts_verified, 3);
  EXPECT_EQ(result.resumed_from, 0);
  EXPECT_EQ(result.fetched_bytes, 300'000);
  EXPECT_EQ(result.http_status, 200);
  EXPECT_EQ(ReadFile(Path("out.csv")), body_);
  EXPECT_FALSE(Exists(Path("out.csv.partial")));
  EXPECT_FALSE(Exists(Path("out.csv.partial.json")));
  ASSERT_EQ(server_.requests().size(), 1u);
  EXPECT_EQ(server_.requests()[0].path, "/file");
  EXPECT_EQ(server_.requests()[0].range, "");
  EXPECT_EQ(observer_.last_done, 300'000);
  EXPECT_EQ(observer_.last_total, 300'000);
  EXPECT_EQ(observer_.finished, 1);
}

TEST_F(DownloadFileTest, ABrokenTransferIsResumedWithRangeAndIfRange) {
  server_.BreakNextAfter(150'000);
  const absl::StatusOr<DownloadResult> broken = Http();
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(ExitCodeOf(broken.status()), kExitHttp) << broken.status();
  EXPECT_THAT(broken.status().message(), HasSubstr("run the same command to resume"));
  EXPECT_FALSE(Exists(Path("out.csv")));
  const std::optional<std::string> partial = ReadFile(Path("out.csv.partial"));
  ASSERT_TRUE(partial.has_value());
  ASSERT_GT(partial->size(), 0u);
  EXPECT_LE(partial->size(), 150'000u);
  EXPECT_EQ(*partial, body_.substr(0, partial->size()));
  EXPECT_THAT(DecodeSidecar(*ReadFile(Path("out.csv.partial.json"))),
              IsOkAndHolds(PartialInfo{job_.id(), 0, 300'000, "\"v1\""}));

  ASSERT_OK_AND_ASSIGN(const DownloadResult resumed, Http());
  EXPECT_EQ(resumed.resumed_from, static_cast<int64_t>(partial->size()));
  EXPECT_EQ(resumed.fetched_bytes, 300'000 - static_cast<int64_t>(partial->size()));
  EXPECT_EQ(resumed.http_status, 206);
  EXPECT_EQ(ReadFile(Path("out.csv")), body_);
  EXPECT_FALSE(Exists(Path("out.csv.partial")));
  EXPECT_FALSE(Exists(Path("out.csv.partial.json")));
  const std::vector<FakeFileServer::Request> requests = server_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].range, Cat("bytes=", partial->size(), "-"));
  EXPECT_EQ(requests[1].if_range, "\"v1\"");
  EXPECT_THAT(observer_.notes, ::testing::Contains(HasSubstr("HTTP 206 Partial Content")));
}

TEST_F(DownloadFileTest, AChangedEtagStartsOver) {
  server_.BreakNextAfter(120'000);
  ASSERT_FALSE(Http().ok());
  server_.SetEtag("\"v2\"");
  ASSERT_OK_AND_ASSIGN(const DownloadResult result, Http());
  EXPECT_EQ(result.resumed_from, 0);
  EXPECT_EQ(result.http_status, 200);
  EXPECT_EQ(ReadFile(Path("out.csv")), body_);
  EXPECT_EQ(server_.requests().back().if_range, "\"v1\"");
  EXPECT_THAT(observer_.notes, ::testing::Contains(HasSubstr("starting over")));
}

TEST_F(DownloadFileTest, ACorruptPartialIsDetectedRemovedAndNotRenamed) {
  std::string partial = body_.substr(0, 150'000);
  partial[1234] ^= 1;
  std::ofstream(Path("out.csv.partial"), std::ios::binary) << partial;
  std::ofstream(Path("out.csv.partial.json")) << EncodeSidecar({job_.id(), 0, 300'000, "\"v1\""});
  const absl::StatusOr<DownloadResult> result = Http();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kDataLoss,
                               HasSubstr("out.csv.partial, kept from an earlier run, is corrupt: "
                                         "part 1 (bytes 0-99999): SHA-256 is")));
  EXPECT_EQ(ExitCodeOf(result.status()), kExitVerification);
  EXPECT_FALSE(Exists(Path("out.csv")));
  EXPECT_FALSE(Exists(Path("out.csv.partial")));
  EXPECT_FALSE(Exists(Path("out.csv.partial.json")));
  EXPECT_THAT(server_.requests(), IsEmpty());
}

TEST_F(DownloadFileTest, WrongBytesFromTheServerLeaveNoFile) {
  std::string served = body_;
  served[250'000] ^= 1;
  server_.SetFile(served, sizes_, "\"v1\"");
  const absl::StatusOr<DownloadResult> result = Http();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kDataLoss,
                               HasSubstr("part 3 (bytes 200000-299999): SHA-256 is")));
  EXPECT_EQ(ExitCodeOf(result.status()), kExitVerification);
  EXPECT_THAT(result.status().message(), HasSubstr("was not written"));
  EXPECT_FALSE(Exists(Path("out.csv")));
  EXPECT_FALSE(Exists(Path("out.csv.partial")));
  EXPECT_FALSE(Exists(Path("out.csv.partial.json")));
}

TEST_F(DownloadFileTest, AnExistingFileIsReplacedOnlyWithForce) {
  std::ofstream(Path("out.csv")) << "mine";
  const absl::StatusOr<DownloadResult> refused = Http();
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("--force")));
  EXPECT_EQ(ExitCodeOf(refused.status()), kExitLocalFile);
  EXPECT_EQ(ReadFile(Path("out.csv")), "mine");
  EXPECT_THAT(server_.requests(), IsEmpty());

  request_.force = true;
  ASSERT_THAT(Http(), IsOk());
  EXPECT_EQ(ReadFile(Path("out.csv")), body_);
}

TEST_F(DownloadFileTest, AnHttpErrorIsReportedWithTheServersReason) {
  server_.Refuse(410, "gone: the download URL has expired\n");
  const absl::StatusOr<DownloadResult> result = Http();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kFailedPrecondition,
                               HasSubstr("HTTP 410: gone: the download URL has expired")));
  EXPECT_EQ(ExitCodeOf(result.status()), kExitHttp);
  EXPECT_FALSE(Exists(Path("out.csv")));
}

TEST_F(DownloadFileTest, APartialOfAnotherJobIsNotKept) {
  std::ofstream(Path("out.csv.partial"), std::ios::binary) << body_.substr(0, 5000);
  std::ofstream(Path("out.csv.partial.json")) << EncodeSidecar({"otherjob", 0, 300'000, ""});
  ASSERT_OK_AND_ASSIGN(const DownloadResult result, Http());
  EXPECT_EQ(result.resumed_from, 0);
  EXPECT_EQ(ReadFile(Path("out.csv")), body_);
  EXPECT_EQ(server_.requests().at(0).range, "");
  EXPECT_THAT(observer_.notes, ::testing::Contains(HasSubstr("it holds job otherjob")));
}

TEST_F(DownloadFileTest, OnePartComesFromItsOwnUrl) {
  request_.part = 2;
  ASSERT_OK_AND_ASSIGN(const DownloadResult result, Http());
  EXPECT_EQ(result.parts_verified, 1);
  EXPECT_EQ(ReadFile(Path("out.csv")), body_.substr(100'000, 100'000));
  EXPECT_EQ(server_.requests().at(0).path, "/parts/2");
}

TEST_F(DownloadFileTest, TheDefaultNameFollowsFormatCompressionAndPart) {
  ExportJob job = job_;
  EXPECT_EQ(DefaultDestination(job, 0), "00066155b681fc4d25936487.csv");
  job.set_format(exportjobs::v1::EXPORT_FORMAT_JSONL);
  job.set_compression(exportjobs::v1::COMPRESSION_GZIP);
  EXPECT_EQ(DefaultDestination(job, 0), "00066155b681fc4d25936487.jsonl.gz");
  EXPECT_EQ(DefaultDestination(job, 3), "00066155b681fc4d25936487.part3.jsonl.gz");
}

TEST_F(DownloadFileTest, AnInterruptionKeepsThePartial) {
  int chunks = 0;
  const std::function<bool()> cancel_after_a_chunk = [&chunks] { return ++chunks > 1; };
  const absl::StatusOr<DownloadResult> result =
      DownloadFile(job_, request_, nullptr, observer_, cancel_after_a_chunk);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(ExitCodeOf(result.status()), kExitInterrupted);
  EXPECT_TRUE(Exists(Path("out.csv.partial")));
  EXPECT_TRUE(Exists(Path("out.csv.partial.json")));
  EXPECT_FALSE(Exists(Path("out.csv")));
}

TEST_F(DownloadFileTest, AnEmptyFileNeedsNoRequest) {
  job_ = JobOf("", {}, server_.base_url());
  ASSERT_OK_AND_ASSIGN(const DownloadResult result, Http());
  EXPECT_EQ(result.size_bytes, 0);
  EXPECT_EQ(ReadFile(Path("out.csv")), "");
  EXPECT_THAT(server_.requests(), IsEmpty());
}

// gRPC: the parts one by one from a fetcher.
class GrpcDownloadTest : public DownloadFileTest {
 protected:
  absl::StatusOr<DownloadResult> Grpc() {
    const GrpcPartFetcher fetch = [this](
                                      int part,
                                      const std::function<absl::Status(std::string_view)>& sink) {
      fetched_parts_.push_back(part);
      std::string bytes = body_.substr(static_cast<size_t>((part - 1) * 100'000), 100'000);
      if (part == corrupt_part_) bytes[10] ^= 1;
      for (size_t at = 0; at < bytes.size(); at += 32'768) {
        if (part == fail_part_ && at > 0) return absl::UnavailableError("stream broke");
        if (absl::Status status = sink(std::string_view(bytes).substr(at, 32'768)); !status.ok()) {
          return status;
        }
      }
      return absl::OkStatus();
    };
    return DownloadFile(job_, request_, &fetch, observer_, not_cancelled_);
  }

  std::vector<int> fetched_parts_;
  int corrupt_part_ = 0;
  int fail_part_ = 0;
};

TEST_F(GrpcDownloadTest, FetchesEveryPartAndVerifiesIt) {
  ASSERT_OK_AND_ASSIGN(const DownloadResult result, Grpc());
  EXPECT_EQ(ReadFile(Path("out.csv")), body_);
  EXPECT_EQ(result.parts_verified, 3);
  EXPECT_EQ(result.http_status, 0);
  EXPECT_THAT(fetched_parts_, ElementsAre(1, 2, 3));
  EXPECT_THAT(server_.requests(), IsEmpty());
}

TEST_F(GrpcDownloadTest, ResumesAfterTheLastWholePart) {
  fail_part_ = 2;
  ASSERT_THAT(Grpc(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("stream broke")));
  // Part 1 and the first chunk of part 2 arrived; only part 1 can be kept.
  EXPECT_EQ(ReadFile(Path("out.csv.partial"))->size(), 100'000u + 32'768u);
  fail_part_ = 0;
  fetched_parts_.clear();
  ASSERT_OK_AND_ASSIGN(const DownloadResult result, Grpc());
  EXPECT_EQ(result.resumed_from, 100'000);
  EXPECT_THAT(fetched_parts_, ElementsAre(2, 3));
  EXPECT_EQ(ReadFile(Path("out.csv")), body_);
}

TEST_F(GrpcDownloadTest, ACorruptPartLeavesNoFile) {
  corrupt_part_ = 2;
  const absl::StatusOr<DownloadResult> result = Grpc();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("part 2 (bytes 100000-")));
  EXPECT_EQ(ExitCodeOf(result.status()), kExitVerification);
  EXPECT_THAT(fetched_parts_, ElementsAre(1, 2));
  EXPECT_FALSE(Exists(Path("out.csv")));
  EXPECT_FALSE(Exists(Path("out.csv.partial")));
}

}  // namespace
}  // namespace exportd::exportctl
