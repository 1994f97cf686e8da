// ExportRunner against a real export-server, in-process over gRPC on loopback, with a small demo
// database: completed exports whose files are exactly what a PartWriter makes of a direct scan
// of the source (csv and jsonl+gzip, one part and many), cancel while processing, data errors
// (a missing source, a source without a requested column), and release at Stop.
//
// Jobs are followed with WatchExportJob until they end; nothing sleeps to synchronise. Exports
// that must still be running when the test acts read from an endless source, so that only the
// test's cancel or Stop can end them.
#include "worker/export_runner.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/catalog.h"
#include "common/filters.h"
#include "common/logging.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/http/http_client.h"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "worker/demo_data.h"
#include "worker/part_writer.h"
#include "worker/sqlite_source.h"

namespace exportd {
namespace {

using ::exportd::test_support::TempDir;
using ::exportd::testing::TestServer;
using exportjobs::v1::Compression;
using exportjobs::v1::CreateExportJobRequest;
using exportjobs::v1::ExportFormat;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobEvent;
using exportjobs::v1::WatchExportJobRequest;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Gt;
using ::testing::HasSubstr;
using ::testing::StartsWith;

using LogJson = nlohmann::ordered_json;

// An event as the runner reports it: {"level": ..., "event": ..., then its fields}.
LogJson EventJson(LogLevel level, std::string_view event, const std::vector<LogField>& fields) {
  LogJson json = {{"level", LogLevelName(level)}, {"event", event}};
  for (const auto& [name, value] : fields) json[std::string(name)] = value;
  return json;
}

// Matches an event's JSON whose `key` is `value`.
MATCHER_P2(HasField, key, value, "") { return arg.contains(key) && arg[key] == LogJson(value); }

constexpr auto kWatchTimeout = std::chrono::seconds(60);
constexpr int64_t kDemoAccounts = 200;

bool IsTerminal(const ExportJob& job) {
  return job.status() == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED ||
         job.status() == exportjobs::v1::EXPORT_JOB_STATUS_FAILED ||
         job.status() == exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED;
}

google::protobuf::Struct Json(const std::string& json) {
  google::protobuf::Struct value;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &value).ok()) << json;
  return value;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The concatenated members of a gzip file (zlib, gzip wrapper, member after member).
std::string Gunzip(const std::string& compressed) {
  std::string out;
  z_stream stream{};
  EXPECT_EQ(inflateInit2(&stream, 15 + 16), Z_OK);
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  char buffer[16384];
  while (true) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    const int result = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer, sizeof(buffer) - stream.avail_out);
    if (result == Z_STREAM_END) {
      if (stream.avail_in == 0) break;
      EXPECT_EQ(inflateReset(&stream), Z_OK);  // The next member.
      continue;
    }
    if (result != Z_OK) {
      ADD_FAILURE() << "inflate: " << result;
      break;
    }
  }
  inflateEnd(&stream);
  return out;
}

// A source whose scan never ends by itself (up to a cap that no test reaches): only a stop of
// the export ends it. Values follow the catalog types.
class EndlessSource : public Source {
 public:
  static constexpr int64_t kCap = 5'000'000;

  absl::Status Scan(const catalog::Entity& entity, const std::vector<std::string>& fields,
                    const filters::Condition&,
                    const std::function<bool(const Row&)>& row) override {
    Row values(fields.size());
    for (int64_t i = 1; i <= kCap; ++i) {
      for (size_t f = 0; f < fields.size(); ++f) {
        const catalog::Field* field = catalog::FindField(entity, fields[f]);
        switch (field == nullptr ? catalog::FieldType() : field->type) {
          case exportjobs::v1::FIELD_TYPE_INTEGER:
            values[f] = i;
            break;
          case exportjobs::v1::FIELD_TYPE_NUMBER:
            values[f] = 0.5 * static_cast<double>(i);
            break;
          case exportjobs::v1::FIELD_TYPE_BOOLEAN:
            values[f] = i % 2 == 0;
            break;
          case exportjobs::v1::FIELD_TYPE_TIMESTAMP:
            values[f] = std::string("2025-01-01T00:00:00Z");
            break;
          default:
            values[f] = absl::StrCat("value ", i);
        }
      }
      if (!row(values)) return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> Count(const catalog::Entity&, const filters::Condition&) override {
    return kCap;
  }
};

ExportRunner::SourceFactory EndlessSources() {
  return
      []() -> absl::StatusOr<std::unique_ptr<Source>> { return std::make_unique<EndlessSource>(); };
}

// The job's events until `done` holds for one (returned), or the stream ends (a failure).
class Watch {
 public:
  Watch(exportjobs::v1::ExportService::Stub& stub, const std::string& id) {
    context_.set_deadline(std::chrono::system_clock::now() + kWatchTimeout);
    WatchExportJobRequest request;
    request.set_id(id);
    reader_ = stub.WatchExportJob(&context_, request);
  }
  ~Watch() {
    context_.TryCancel();
    reader_->Finish();
  }

  ExportJob Until(const std::function<bool(const ExportJob&)>& done) {
    ExportJobEvent event;
    while (reader_->Read(&event)) {
      if (done(event.job())) return event.job();
    }
    ADD_FAILURE() << "the watch ended first; last event: " << event.ShortDebugString();
    return event.job();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<ExportJobEvent>> reader_;
};

// What the export of `job` must be: the joined parts a PartWriter makes of a direct scan of the
// demo database, with the job's format and compression and `part_size`.
struct Expected {
  std::string bytes;
  int parts = 0;
  int64_t records = 0;
};

class ExportRunnerTest : public ::testing::Test {
 protected:
  explicit ExportRunnerTest(ServerOptions options = {}) : server_(std::move(options)) {}

  static void SetUpTestSuite() {
    demo_dir_ = new TempDir();
    DemoDataOptions options;
    options.accounts = kDemoAccounts;
    ASSERT_OK(GenerateDemoData(DemoPath(), options));
  }
  static void TearDownTestSuite() {
    delete demo_dir_;
    demo_dir_ = nullptr;
  }
  static std::string DemoPath() { return demo_dir_->path() + "/demo.db"; }

  void TearDown() override {
    if (runner_ == nullptr) return;
    // A claim is waiting (claim_wait 30 s): Stop must end it at once.
    const absl::Time start = absl::Now();
    runner_->Stop(ExportRunner::StopMode::kFinish);
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
    // Every part file was deleted, uploaded or not.
    EXPECT_TRUE(std::filesystem::is_empty(work_dir_.path()));
  }

  ExportRunner::Options RunnerOptions(ExportRunner::SourceFactory sources) {
    ExportRunner::Options options;
    options.channel = testing::NewChannel(server_.address(), 1);
    options.worker_id = "test-worker";
    options.open_source = std::move(sources);
    options.concurrency = 1;
    options.work_dir = work_dir_.path();
    options.heartbeat_interval = absl::Milliseconds(50);
    options.claim_wait = absl::Seconds(30);
    options.rpc_timeout = absl::Seconds(10);
    options.log = [this](LogLevel level, std::string_view event,
                         const std::vector<LogField>& fields) {
      absl::MutexLock lock(&log_mu_);
      log_.push_back(EventJson(level, event, fields));
    };
    return options;
  }

  void StartRunner(ExportRunner::Options options) {
    absl::StatusOr<std::unique_ptr<ExportRunner>> runner = ExportRunner::Create(std::move(options));
    ASSERT_OK(runner);
    runner_ = *std::move(runner);
    runner_->Start();
  }

  ExportJob Create(const CreateExportJobRequest& request) {
    ExportJob job;
    const grpc::Status status = server_.Create(request, &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  ExportJob WaitUntilTerminal(const std::string& id) {
    return Watch(server_.stub(), id).Until(IsTerminal);
  }

  // The events the runner reported, in order.
  std::vector<LogJson> Log() {
    absl::MutexLock lock(&log_mu_);
    return log_;
  }

  // The completed job's part files, joined in order. The server keeps them in
  // <data_dir>/parts/<job id>/<lease epoch>/<part number>.part; one attempt ran, so there is
  // one epoch directory.
  std::string JoinedParts(const ExportJob& job) {
    const std::filesystem::path job_dir =
        std::filesystem::path(server_.data_dir()) / "parts" / job.id();
    std::vector<std::filesystem::path> attempts;
    for (const auto& entry : std::filesystem::directory_iterator(job_dir)) {
      attempts.push_back(entry.path());
    }
    EXPECT_EQ(attempts.size(), 1u) << job_dir;
    if (attempts.size() != 1) return "";
    std::string joined;
    for (int part = 1; part <= job.file_parts(); ++part) {
      const std::filesystem::path path = attempts[0] / absl::StrCat(part, ".part");
      EXPECT_TRUE(std::filesystem::exists(path)) << path;
      joined += ReadFile(path.string());
    }
    return joined;
  }

  Expected ExpectedExport(const ExportJob& job, ExportFormat format, Compression compression,
                          int64_t part_size) {
    Expected expected;
    const catalog::Entity* entity = catalog::FindEntity(job.entity_type());
    EXPECT_NE(entity, nullptr);
    absl::StatusOr<filters::Condition> condition = filters::Parse(job.filters(), *entity);
    EXPECT_OK(condition);
    std::vector<std::string> fields(job.fields().begin(), job.fields().end());
    PartWriter::Options options;
    for (const std::string& name : fields) {
      options.columns.push_back(Column{name, catalog::FindField(*entity, name)->type});
    }
    options.format = format;
    options.compression = compression;
    options.part_size_bytes = part_size;
    options.work_dir = scratch_dir_.path();
    options.on_part = [&expected](const FinishedPart& part) {
      expected.bytes += ReadFile(part.path);
      ++expected.parts;
      std::filesystem::remove(part.path);
      return absl::OkStatus();
    };
    absl::StatusOr<std::unique_ptr<PartWriter>> writer = PartWriter::Create(options);
    EXPECT_OK(writer);
    absl::StatusOr<std::unique_ptr<SqliteSource>> source = SqliteSource::Open(DemoPath());
    EXPECT_OK(source);
    absl::Status added;
    EXPECT_OK((*source)->Scan(*entity, fields, *condition, [&](const Row& row) {
      added = (*writer)->Add(row);
      return added.ok();
    }));
    EXPECT_OK(added);
    EXPECT_OK((*writer)->Finish());
    expected.records = (*writer)->records();
    absl::StatusOr<int64_t> count = (*source)->Count(*entity, *condition);
    EXPECT_OK(count);
    EXPECT_EQ(*count, expected.records);
    return expected;
  }

  static TempDir* demo_dir_;
  TestServer server_;
  TempDir work_dir_;     // The runner's part files.
  TempDir scratch_dir_;  // The expected exports' part files.
  std::unique_ptr<ExportRunner> runner_;
  absl::Mutex log_mu_;
  std::vector<LogJson> log_ ABSL_GUARDED_BY(log_mu_);
};

TempDir* ExportRunnerTest::demo_dir_ = nullptr;

TEST_F(ExportRunnerTest, CompletesCsvJobWithTheRecordsOfItsFilter) {
  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  for (const char* field : {"id", "name", "domain", "industry", "employee_count", "annual_revenue",
                            "country", "is_customer", "created_at"}) {
    request.add_fields(field);
  }
  *request.mutable_filters() =
      Json(R"({"employee_count": {"gte": 100}, "any_of": [{"region": "EMEA"},
                                                         {"intent_score": {"gt": 50}}]})");
  const ExportJob created = Create(request);
  StartRunner(RunnerOptions(SqliteSourceFactory(DemoPath())));

  const ExportJob job = WaitUntilTerminal(created.id());
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << job.error_message();
  const Expected expected = ExpectedExport(job, exportjobs::v1::EXPORT_FORMAT_CSV,
                                           exportjobs::v1::COMPRESSION_NONE, job.part_size_bytes());
  EXPECT_GT(expected.records, 0);
  EXPECT_LT(expected.records, kDemoAccounts);
  EXPECT_EQ(job.record_count(), expected.records);
  EXPECT_EQ(job.file_parts(), 1);
  EXPECT_EQ(job.file_size_bytes(), static_cast<int64_t>(expected.bytes.size()));
  EXPECT_EQ(JoinedParts(job), expected.bytes);
  runner_->Stop(ExportRunner::StopMode::kFinish);  // The loop logs after the job completed.
  EXPECT_THAT(Log(), Contains(AllOf(
                         HasField("event", "job.completed"), HasField("worker_id", "test-worker"),
                         HasField("job_id", job.id()), HasField("records", expected.records),
                         HasField("parts", 1), HasField("bytes", expected.bytes.size()))));
}

TEST_F(ExportRunnerTest, CompletesCsvJobInManyParts) {
  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_PEOPLE);  // Default fields.
  request.set_format(exportjobs::v1::EXPORT_FORMAT_CSV);
  request.set_part_size_bytes(4096);
  const ExportJob created = Create(request);
  StartRunner(RunnerOptions(SqliteSourceFactory(DemoPath())));

  const ExportJob job = WaitUntilTerminal(created.id());
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << job.error_message();
  const Expected expected = ExpectedExport(job, exportjobs::v1::EXPORT_FORMAT_CSV,
                                           exportjobs::v1::COMPRESSION_NONE, 4096);
  EXPECT_EQ(job.record_count(), expected.records);
  EXPECT_GT(job.file_parts(), 10);
  EXPECT_EQ(job.file_parts(), expected.parts);
  EXPECT_EQ(JoinedParts(job), expected.bytes);
  // Only part 1 has the header, so the joined parts are one CSV file: the single-part export.
  EXPECT_EQ(expected.bytes, ExpectedExport(job, exportjobs::v1::EXPORT_FORMAT_CSV,
                                           exportjobs::v1::COMPRESSION_NONE, int64_t{1} << 40)
                                .bytes);
  int64_t records = 0;
  for (int i = 0; i < job.parts_size(); ++i) {
    EXPECT_EQ(job.parts(i).part_number(), i + 1);
    records += job.parts(i).record_count();
  }
  EXPECT_EQ(records, job.record_count());
}

TEST_F(ExportRunnerTest, CompletesGzipJsonLinesJobInManyParts) {
  CreateExportJobRequest request;
  request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACTIVITIES);
  request.set_format(exportjobs::v1::EXPORT_FORMAT_JSONL);
  request.set_compression(exportjobs::v1::COMPRESSION_GZIP);
  request.set_part_size_bytes(4096);
  *request.mutable_filters() = Json(R"({"type": ["email", "meeting"]})");
  const ExportJob created = Create(request);
  StartRunner(RunnerOptions(SqliteSourceFactory(DemoPath())));

  const ExportJob job = WaitUntilTerminal(created.id());
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << job.error_message();
  const Expected expected = ExpectedExport(job, exportjobs::v1::EXPORT_FORMAT_JSONL,
                                           exportjobs::v1::COMPRESSION_GZIP, 4096);
  EXPECT_EQ(job.record_count(), expected.records);
  EXPECT_GT(job.file_parts(), 10);
  EXPECT_EQ(job.file_parts(), expected.parts);
  const std::string joined = JoinedParts(job);
  EXPECT_EQ(joined, expected.bytes);
  // The parts are gzip members: decompressed together, they are the uncompressed export.
  const std::string jsonl = Gunzip(joined);
  EXPECT_EQ(jsonl, ExpectedExport(job, exportjobs::v1::EXPORT_FORMAT_JSONL,
                                  exportjobs::v1::COMPRESSION_NONE, int64_t{1} << 40)
                       .bytes);
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), job.record_count());
}

TEST_F(ExportRunnerTest, CancelWhileProcessingEndsTheJobCancelled) {
  CreateExportJobRequest request = testing::AccountsRequest();
  const ExportJob created = Create(request);
  Watch watch(server_.stub(), created.id());
  ExportRunner::Options options = RunnerOptions(EndlessSources());
  options.heartbeat_interval = absl::Milliseconds(1);
  StartRunner(std::move(options));

  const ExportJob running = watch.Until([](const ExportJob& job) {
    return job.status() == exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING &&
           job.progress().records_processed() > 0;
  });
  EXPECT_EQ(running.progress().records_total_estimate(), EndlessSource::kCap);
  ExportJob cancelling;
  ASSERT_TRUE(server_.Cancel(created.id(), &cancelling).ok());

  const ExportJob job = watch.Until(IsTerminal);
  EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED);
  EXPECT_LT(job.progress().records_processed(), EndlessSource::kCap);
  runner_->Stop(ExportRunner::StopMode::kFinish);
  EXPECT_EQ(runner_->stats().cancelled, 1);
  EXPECT_THAT(Log(),
              Contains(AllOf(HasField("event", "job.cancelled"), HasField("job_id", job.id()))));
}

TEST_F(ExportRunnerTest, MissingSourceFailsTheJobForGood) {
  const ExportJob created = Create(testing::AccountsRequest());
  const std::string missing = scratch_dir_.path() + "/no-such.db";
  StartRunner(RunnerOptions(SqliteSourceFactory(missing)));

  const ExportJob job = WaitUntilTerminal(created.id());
  EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_FAILED);
  EXPECT_THAT(job.error_message(),
              AllOf(StartsWith("cannot open the data source: "), HasSubstr(missing)));
  EXPECT_EQ(job.attempt(), 1);  // Not retried.
  runner_->Stop(ExportRunner::StopMode::kFinish);
  EXPECT_THAT(Log(), Contains(AllOf(HasField("event", "job.failed"), HasField("level", "warn"),
                                    HasField("job_id", job.id()), HasField("retryable", false),
                                    HasField("will_retry", false),
                                    HasField("error", job.error_message()))));
}

TEST_F(ExportRunnerTest, SourceWithoutARequestedColumnFailsTheJob) {
  // An accounts table with only some of the catalog's columns.
  const std::string path = scratch_dir_.path() + "/partial.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT);"
                         "INSERT INTO accounts VALUES (1, 'Acme');",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  const ExportJob created = Create(testing::AccountsRequest());  // name, domain.
  StartRunner(RunnerOptions(SqliteSourceFactory(path)));

  const ExportJob job = WaitUntilTerminal(created.id());
  EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_FAILED);
  EXPECT_THAT(job.error_message(),
              AllOf(StartsWith("cannot read the data source: "), HasSubstr("domain")));
  EXPECT_EQ(job.attempt(), 1);
}

TEST_F(ExportRunnerTest, StopWithReleaseMakesTheRunningJobPendingAgain) {
  const ExportJob created = Create(testing::AccountsRequest());
  ASSERT_EQ(created.attempt(), 0);
  Watch watch(server_.stub(), created.id());
  StartRunner(RunnerOptions(EndlessSources()));
  watch.Until([](const ExportJob& job) {
    return job.status() == exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING &&
           job.progress().records_processed() > 0;
  });

  const absl::Time start = absl::Now();
  runner_->Stop(ExportRunner::StopMode::kRelease);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));

  // Stop returns after the release was answered.
  ExportJob job;
  ASSERT_TRUE(server_.Get(created.id(), &job).ok());
  EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  EXPECT_EQ(job.attempt(), created.attempt());
  EXPECT_EQ(runner_->stats().released, 1);
  EXPECT_THAT(Log(),
              Contains(AllOf(HasField("event", "job.released"), HasField("job_id", job.id()))));
}

TEST_F(ExportRunnerTest, RunsJobsConcurrentlyAndClaimsOnlyItsEntityTypes) {
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(Create(testing::AccountsRequest()).id());
  const std::string people =
      Create(testing::AccountsRequest(exportjobs::v1::ENTITY_TYPE_PEOPLE)).id();
  ExportRunner::Options options = RunnerOptions(SqliteSourceFactory(DemoPath()));
  options.concurrency = 3;
  options.entity_types = {exportjobs::v1::ENTITY_TYPE_ACCOUNTS};
  StartRunner(std::move(options));

  for (const std::string& id : ids) {
    const ExportJob job = WaitUntilTerminal(id);
    EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << job.error_message();
    EXPECT_EQ(job.record_count(), kDemoAccounts);
  }
  runner_->Stop(ExportRunner::StopMode::kFinish);
  EXPECT_EQ(runner_->stats().completed, 4);
  ExportJob job;
  ASSERT_TRUE(server_.Get(people, &job).ok());
  EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
}

// The idle loops share their claims (max_jobs): every job claimed goes to a loop and runs once.
TEST_F(ExportRunnerTest, LoopsSharingClaimsRunEveryJobOnce) {
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(Create(testing::AccountsRequest()).id());
  ExportRunner::Options options = RunnerOptions(SqliteSourceFactory(DemoPath()));
  options.concurrency = 4;
  StartRunner(std::move(options));

  for (const std::string& id : ids) {
    const ExportJob job = WaitUntilTerminal(id);
    EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << job.error_message();
    EXPECT_EQ(job.attempt(), 1);
  }
  runner_->Stop(ExportRunner::StopMode::kFinish);
  const ExportRunner::Stats stats = runner_->stats();
  EXPECT_EQ(stats.claimed, 12);
  EXPECT_EQ(stats.completed, 12);
  EXPECT_EQ(stats.dropped, 0);
}

// A completion claims the loop's next job in the same call (BatchReportExportJobs): one loop
// runs three jobs with one ClaimExportJob that returned a job.
TEST_F(ExportRunnerTest, ACompletionBringsTheLoopItsNextJob) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Create(testing::AccountsRequest()).id());
  ExportRunner::Options options = RunnerOptions(SqliteSourceFactory(DemoPath()));
  options.concurrency = 1;
  StartRunner(std::move(options));

  for (const std::string& id : ids) {
    const ExportJob job = WaitUntilTerminal(id);
    EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << job.error_message();
  }
  runner_->Stop(ExportRunner::StopMode::kFinish);  // Every call has ended.
  const testing::Reply reply = testing::HttpGet(server_.server().http_address(), "/metrics");
  auto handled = [&](const std::string& method) {
    const std::string series =
        absl::StrCat("exportd_grpc_server_handled_total{code=\"OK\",method=\"", method,
                     "\",service=\"exportjobs.v1.WorkerService\"} ");
    const size_t at = reply.body.find(series);
    if (at == std::string::npos) return -1;
    return std::stoi(reply.body.substr(at + series.size()));
  };

  EXPECT_EQ(runner_->stats().completed, 3);
  EXPECT_EQ(handled("BatchReportExportJobs"), 3) << reply.body;
  EXPECT_EQ(handled("CompleteExportJob"), 0);
  // The first job's claim, and at most the claim waiting when the runner stopped.
  EXPECT_LE(handled("ClaimExportJob"), 2) << reply.body;
}

// Without Options::log the events go to the process's logger: one JSON object per line, the
// job's events with its job_id and request_id.
TEST_F(ExportRunnerTest, LogsEachJobEventAsAJsonLineWithJobAndRequestId) {
  LogCapture capture;
  CreateExportJobRequest request = testing::AccountsRequest();
  request.set_request_id("req-log-lines-1");
  const ExportJob created = Create(request);
  ExportRunner::Options options = RunnerOptions(SqliteSourceFactory(DemoPath()));
  options.log = nullptr;
  StartRunner(std::move(options));

  const ExportJob job = WaitUntilTerminal(created.id());
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << job.error_message();
  runner_->Stop(ExportRunner::StopMode::kFinish);
  const std::vector<std::string> lines = capture.Lines();
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    const LogJson parsed = LogJson::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(parsed.is_object()) << line;
    EXPECT_TRUE(parsed.contains("ts") && parsed.contains("level") && parsed.contains("event"))
        << line;
  }
  // The in-process server logs job events of the same names, each with the job's revision.
  auto worker_events = [&capture](std::string_view event) {
    std::vector<LogJson> events;
    for (LogJson& json : capture.Events(event)) {
      if (!json.contains("revision")) events.push_back(std::move(json));
    }
    return events;
  };
  const std::vector<LogJson> claimed = worker_events("job.claimed");
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_THAT(claimed[0],
              AllOf(HasField("level", "info"), HasField("job_id", job.id()),
                    HasField("request_id", "req-log-lines-1"), HasField("worker_id", "test-worker"),
                    HasField("entity_type", "accounts"), HasField("attempt", 1)));
  const std::vector<LogJson> completed = worker_events("job.completed");
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_THAT(completed[0],
              AllOf(HasField("job_id", job.id()), HasField("request_id", "req-log-lines-1"),
                    HasField("records", job.record_count()), HasField("parts", job.file_parts()),
                    HasField("bytes", job.file_size_bytes())));
  ASSERT_TRUE(completed[0].contains("seconds"));
  EXPECT_TRUE(completed[0]["seconds"].is_number());
  EXPECT_GE(completed[0]["seconds"].get<double>(), 0.0);
}

TEST_F(ExportRunnerTest, ExportWithoutRecordsCompletesWithOneEmptyPart) {
  CreateExportJobRequest request = testing::AccountsRequest();
  request.set_format(exportjobs::v1::EXPORT_FORMAT_JSONL);
  *request.mutable_filters() = Json(R"({"employee_count": {"lt": 0}})");
  const ExportJob created = Create(request);
  StartRunner(RunnerOptions(SqliteSourceFactory(DemoPath())));

  const ExportJob job = WaitUntilTerminal(created.id());
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << job.error_message();
  EXPECT_EQ(job.record_count(), 0);
  EXPECT_EQ(job.file_parts(), 1);
  EXPECT_EQ(job.file_size_bytes(), 0);
  EXPECT_EQ(JoinedParts(job), "");
}

// Leases of 100 ms that progress every 2 s cannot extend: each attempt's lease expires, the
// worker's next report is refused (ABORTED) and it drops the job without another call.
class ExportRunnerLeaseTest : public ExportRunnerTest {
 protected:
  static ServerOptions ShortLeases() {
    ServerOptions options;
    options.jobs.lease_duration = absl::Milliseconds(100);
    options.jobs.retry_backoff = absl::Milliseconds(10);
    options.jobs.max_attempts = 2;
    return options;
  }
  ExportRunnerLeaseTest() : ExportRunnerTest(ShortLeases()) {}
};

TEST_F(ExportRunnerLeaseTest, LostLeaseDropsTheJob) {
  const ExportJob created = Create(testing::AccountsRequest());
  ExportRunner::Options options = RunnerOptions(EndlessSources());
  options.concurrency = 2;
  options.heartbeat_interval = absl::Seconds(2);
  StartRunner(std::move(options));

  const ExportJob job = WaitUntilTerminal(created.id());
  EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_FAILED);
  EXPECT_THAT(job.error_message(), HasSubstr("lease expired"));
  EXPECT_EQ(job.attempt(), 2);
  // Both loops find out at their next report.
  runner_->Stop(ExportRunner::StopMode::kFinish);
  EXPECT_EQ(runner_->stats().claimed, 2);
  EXPECT_EQ(runner_->stats().dropped, 2);
  EXPECT_EQ(runner_->stats().failed, 0);
  EXPECT_THAT(
      Log(),
      Contains(AllOf(
          HasField("event", "job.dropped"), HasField("level", "warn"), HasField("job_id", job.id()),
          ::testing::ResultOf(
              [](const LogJson& event) { return event.value("why", ""); },
              AllOf(StartsWith("lease lost"), HasSubstr("is not the job's current lease"))))));
}

// A port on which nothing listens (yet).
int UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), size), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size), 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

TEST(ExportRunnerRetryTest, KeepsClaimingUntilTheServerIsUp) {
  TempDir demo_dir;
  DemoDataOptions demo;
  demo.accounts = 10;
  const std::string demo_path = demo_dir.path() + "/demo.db";
  ASSERT_OK(GenerateDemoData(demo_path, demo));
  const std::string address = absl::StrCat("127.0.0.1:", UnusedPort());

  TempDir work_dir;
  absl::Notification claim_failed;
  ExportRunner::Options options;
  grpc::ChannelArguments channel_args;
  channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  options.channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), channel_args);
  options.worker_id = "test-worker";
  options.open_source = SqliteSourceFactory(demo_path);
  options.concurrency = 1;
  options.work_dir = work_dir.path();
  options.claim_wait = absl::Seconds(30);
  options.max_backoff = absl::Milliseconds(200);
  options.log = [&claim_failed](LogLevel level, std::string_view event,
                                const std::vector<LogField>& fields) {
    const LogJson json = EventJson(level, event, fields);
    if (event == "worker.claim_failed" && json.value("code", "") == "UNAVAILABLE" &&
        json.value("failures", 0) == 1 && level == LogLevel::kWarn &&
        !claim_failed.HasBeenNotified()) {
      claim_failed.Notify();
    }
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ExportRunner> runner, ExportRunner::Create(options));
  runner->Start();
  ASSERT_TRUE(claim_failed.WaitForNotificationWithTimeout(absl::Seconds(30)));

  TempDir data_dir;
  ServerOptions server_options;
  server_options.insecure_no_auth = true;
  server_options.data_dir = data_dir.path();
  server_options.grpc_address = address;
  server_options.shutdown_grace = absl::Seconds(5);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ExportServer> server, ExportServer::Start(server_options));
  auto stub = exportjobs::v1::ExportService::NewStub(testing::NewChannel(address));
  ExportJob created;
  ASSERT_TRUE(
      stub->CreateExportJob(testing::Deadlined().get(), testing::AccountsRequest(), &created).ok());

  const ExportJob job = Watch(*stub, created.id()).Until(IsTerminal);
  EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) << job.error_message();
  EXPECT_EQ(job.record_count(), 10);
  runner->Stop(ExportRunner::StopMode::kFinish);
}

TEST(ExportRunnerOptionsTest, RefusesUnusableOptions) {
  TempDir dir;
  ExportRunner::Options options;
  options.channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  options.worker_id = "w";
  options.open_source = SqliteSourceFactory("x.db");
  options.work_dir = dir.path();
  EXPECT_OK(ExportRunner::Create(options));

  ExportRunner::Options no_id = options;
  no_id.worker_id = "";
  EXPECT_THAT(ExportRunner::Create(no_id),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("worker_id")));
  ExportRunner::Options no_dir = options;
  no_dir.work_dir = dir.path() + "/missing";
  EXPECT_THAT(ExportRunner::Create(no_dir),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("work_dir")));
  ExportRunner::Options long_wait = options;
  long_wait.claim_wait = absl::Seconds(31);
  EXPECT_THAT(ExportRunner::Create(long_wait),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("claim_wait")));
}

}  // namespace
}  // namespace exportd
