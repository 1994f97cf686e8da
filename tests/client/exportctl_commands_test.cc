// exportctl's commands (RunCommand) against a real in-process export-server over loopback gRPC,
// with jobs driven through their lifecycle by a WorkerClient: the output forms, the live and
// plain progress of watch, the exit code of every way a job ends, list paging, errors, and a
// download of a job whose part the test uploaded.

#include "client/exportctl_commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "client/export_client.h"
#include "client/exportctl_exit.h"
#include "client/exportctl_verify.h"
#include "common/job_json.h"
#include "common/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "nlohmann/json.hpp"
#include "tests/server/test_server.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::exportctl {
namespace {

using exportd::testing::TestServer;
using exportjobs::v1::ExportJob;
using ::testing::ContainsRegex;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A stream buffer that several threads may write, and that a test can wait on for some text.
class WatchedBuffer : public std::streambuf {
 public:
  std::string text() const {
    absl::MutexLock lock(&mu_);
    return text_;
  }

  // True once the text contains `needle`; false when it did not within `timeout`.
  bool Await(const std::string& needle, absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&mu_);
    auto found = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return text_.find(needle) != std::string::npos;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&found), timeout);
  }

 protected:
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) {
      absl::MutexLock lock(&mu_);
      text_.push_back(static_cast<char>(c));
    }
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    absl::MutexLock lock(&mu_);
    text_.append(s, static_cast<size_t>(n));
    return n;
  }

 private:
  mutable absl::Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
};

class CommandsTest : public ::testing::Test {
 protected:
  CommandsTest()
      : client_(client::MakeChannel(server_.address()), Options()),
        worker_(client::MakeChannel(server_.address()), Options()) {}

  static client::CallOptions Options() {
    client::CallOptions options;
    options.timeout = absl::Seconds(10);
    options.retry.initial_backoff = absl::Milliseconds(10);
    return options;
  }

  // Runs exportctl with `args` (after the program name) against the server.
  int Run(std::vector<std::string> args, Terminal terminal = {}) {
    args.insert(args.begin(), {"--server", server_.address(), "--timeout", "10s"});
    ParseOutcome parsed = ParseCommandLine(args, std::nullopt);
    EXPECT_TRUE(parsed.invocation.has_value()) << parsed.err_text;
    if (!parsed.invocation.has_value()) return -1;
    Runtime runtime;
    runtime.client = &client_;
    runtime.out = &out_;
    runtime.err = &err_;
    runtime.terminal = terminal;
    runtime.cancel = &cancel_;
    return RunCommand(*parsed.invocation, runtime);
  }

  std::string Out() const { return out_buffer_.text(); }
  std::string Err() const { return err_buffer_.text(); }

  ExportJob CreateAccounts() {
    exportjobs::v1::CreateExportJobRequest request;
    request.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
    request.add_fields("id");
    request.add_fields("name");
    absl::StatusOr<ExportJob> job = client_.Create(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.value_or(ExportJob{});
  }

  // Claims the next job as a worker; the lease token.
  std::string Claim(const std::string& id) {
    exportjobs::v1::ClaimExportJobRequest request;
    request.set_worker_id("test-worker");
    *request.mutable_wait() = google::protobuf::util::TimeUtil::SecondsToDuration(5);
    absl::StatusOr<exportjobs::v1::ClaimExportJobResponse> claimed = worker_.Claim(request);
    EXPECT_TRUE(claimed.ok()) << claimed.status();
    if (!claimed.ok()) return "";
    EXPECT_EQ(claimed->job().id(), id);
    return claimed->lease().token();
  }

  void Progress(const std::string& id, const std::string& lease, int64_t records,
                int64_t estimate) {
    exportjobs::v1::ReportProgressRequest request;
    request.set_job_id(id);
    request.set_lease_token(lease);
    request.set_records_processed(records);
    request.set_records_total_estimate(estimate);
    ASSERT_TRUE(worker_.ReportProgress(request).ok());
  }

  void FailJob(const std::string& id, const std::string& lease, const std::string& message) {
    exportjobs::v1::FailExportJobRequest request;
    request.set_job_id(id);
    request.set_lease_token(lease);
    request.set_error_message(message);
    request.set_retryable(false);
    ASSERT_TRUE(worker_.Fail(request).ok());
  }

  // Uploads `body` as the job's only part and completes it.
  ExportJob Complete(const std::string& id, const std::string& lease, const std::string& body,
                     int64_t records) {
    client::WorkerClient::PartUpload upload;
    upload.header.set_job_id(id);
    upload.header.set_lease_token(lease);
    upload.header.set_part_number(1);
    upload.header.set_record_count(records);
    upload.trailer.set_size_bytes(static_cast<int64_t>(body.size()));
    upload.trailer.set_sha256(Sha256Hex(body));
    auto sent = std::make_shared<bool>(false);
    upload.read = [sent, body]() -> absl::StatusOr<std::string> {
      if (*sent) return std::string();
      *sent = true;
      return body;
    };
    absl::StatusOr<exportjobs::v1::UploadExportPartResponse> uploaded = worker_.Upload(upload);
    EXPECT_TRUE(uploaded.ok()) << uploaded.status();
    exportjobs::v1::CompleteExportJobRequest request;
    request.set_job_id(id);
    request.set_lease_token(lease);
    request.set_record_count(records);
    *request.add_parts() = uploaded.ok() ? uploaded->part() : exportjobs::v1::ExportPart{};
    absl::StatusOr<ExportJob> job = worker_.Complete(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.value_or(ExportJob{});
  }

  TestServer server_;
  client::ExportClient client_;
  client::WorkerClient worker_;
  client::CancelToken cancel_;
  WatchedBuffer out_buffer_;
  WatchedBuffer err_buffer_;
  std::ostream out_{&out_buffer_};
  std::ostream err_{&err_buffer_};
};

TEST_F(CommandsTest, WatchOnATerminalRedrawsOneLineAndExitsOneWhenTheJobFails) {
  const ExportJob job = CreateAccounts();
  int code = -1;
  std::thread watch([&] {
    code = Run({"watch", job.id()}, Terminal{.stdout_is_tty = true, .width = 120});
  });
  ASSERT_TRUE(out_buffer_.Await("\rpending\x1b[K")) << Out();
  const std::string lease = Claim(job.id());
  Progress(job.id(), lease, 50, 200);
  ASSERT_TRUE(out_buffer_.Await("records 50 / 200 (25.0%)")) << Out();
  FailJob(job.id(), lease, "the source went away");
  watch.join();
  EXPECT_EQ(code, kExitJobFailed);
  const std::string out = Out();
  EXPECT_THAT(out, StartsWith("\rpending\x1b[K\rprocessing"));
  EXPECT_THAT(out, HasSubstr("\rfailed: the source went away\x1b[K\n"));
  EXPECT_THAT(out, EndsWith(Cat("\njob ", job.id(), " failed: the source went away\n")));
  // One line: the only newlines are after the live line and the summary.
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2);
  EXPECT_EQ(Err(), "");
}

TEST_F(CommandsTest, WatchIntoAPipePrintsPlainLinesAndExitsTwoWhenCancelled) {
  const ExportJob job = CreateAccounts();
  int code = -1;
  std::thread watch([&] { code = Run({"watch", job.id()}); });
  ASSERT_TRUE(out_buffer_.Await("pending\n")) << Out();
  ASSERT_TRUE(client_.Cancel(job.id()).ok());
  watch.join();
  EXPECT_EQ(code, kExitJobCancelled);
  EXPECT_EQ(Out(), Cat("pending\ncancelled\njob ", job.id(), " was cancelled\n"));
}

TEST_F(CommandsTest, WatchJsonPrintsOneJobPerEvent) {
  const ExportJob job = CreateAccounts();
  ASSERT_TRUE(client_.Cancel(job.id()).ok());
  EXPECT_EQ(Run({"watch", job.id(), "--output", "json"}), kExitJobCancelled);
  absl::StatusOr<ExportJob> cancelled = client_.Get(job.id());
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(Out(), RenderJobJson(*cancelled) + "\n");
}

TEST_F(CommandsTest, WaitPrintsOnlyTheFinalJob) {
  const ExportJob job = CreateAccounts();
  const std::string lease = Claim(job.id());
  FailJob(job.id(), lease, "boom");
  EXPECT_EQ(Run({"wait", job.id()}), kExitJobFailed);
  EXPECT_THAT(Out(), ContainsRegex("\nstatus +failed\n"));
  EXPECT_THAT(Out(), ContainsRegex("\nerror +boom\n"));
}

TEST_F(CommandsTest, AnInterruptedWatchExits130) {
  const ExportJob job = CreateAccounts();
  cancel_.Cancel();
  EXPECT_EQ(Run({"watch", job.id()}), kExitInterrupted);
  EXPECT_THAT(Err(), StartsWith("exportctl: CANCELLED: "));
}

TEST_F(CommandsTest, GetAndCancelPrintTheJob) {
  const ExportJob job = CreateAccounts();
  EXPECT_EQ(Run({"get", job.id(), "--output", "json"}), kExitOk);
  EXPECT_EQ(Out(), RenderJobJson(job) + "\n");
  EXPECT_EQ(Run({"cancel", job.id()}), kExitOk);
  EXPECT_THAT(Out(), ContainsRegex("\nstatus +cancelled\n"));
  EXPECT_EQ(Run({"cancel", job.id()}),
            10 + static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Err(), StartsWith("exportctl: FAILED_PRECONDITION: "));
  EXPECT_EQ(Run({"delete", job.id()}), kExitOk);
  EXPECT_THAT(Out(), EndsWith(Cat("deleted job ", job.id(), "\n")));
  EXPECT_EQ(Run({"get", job.id()}), 15);
  EXPECT_THAT(Err(), EndsWith(Cat("exportctl: NOT_FOUND: job ", job.id(), " not found\n")));
}

TEST_F(CommandsTest, ListFollowsPagesWithAll) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(CreateAccounts().id());
  EXPECT_EQ(Run({"list", "--page-size", "2", "--output", "json"}), kExitOk);
  nlohmann::json page = nlohmann::json::parse(Out());
  EXPECT_EQ(page["export_jobs"].size(), 2u);
  EXPECT_NE(page["next_page_token"], "");

  out_buffer_.pubsync();
  WatchedBuffer all_buffer;
  out_.rdbuf(&all_buffer);
  EXPECT_EQ(Run({"list", "--page-size", "2", "--all", "--output", "json"}), kExitOk);
  const nlohmann::json all = nlohmann::json::parse(all_buffer.text());
  ASSERT_EQ(all["export_jobs"].size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(all["export_jobs"][i]["id"], ids[4 - i]);  // Newest first.
  EXPECT_FALSE(all.contains("next_page_token"));  // --all ends on the last page

  WatchedBuffer table_buffer;
  out_.rdbuf(&table_buffer);
  EXPECT_EQ(Run({"list", "--page-size", "2"}), kExitOk);
  EXPECT_THAT(table_buffer.text(), StartsWith("ID   "));
  EXPECT_THAT(table_buffer.text(), HasSubstr("\nmore jobs: exportctl list --page-token "));
  out_.rdbuf(&out_buffer_);
}

TEST_F(CommandsTest, FieldsOfAnEntity) {
  EXPECT_EQ(Run({"fields", "accounts"}), kExitOk);
  EXPECT_THAT(Out(), StartsWith("NAME "));
  EXPECT_THAT(Out(), ContainsRegex("\nemployee_count +integer +yes "));
}

TEST_F(CommandsTest, CreateRefusedByTheServerNamesTheField) {
  EXPECT_EQ(Run({"create", "--entity", "accounts", "--fields", "id,colour"}), 13);
  EXPECT_THAT(Err(), StartsWith("exportctl: INVALID_ARGUMENT: fields[1]: "));
  EXPECT_THAT(Err(), HasSubstr("colour"));
  EXPECT_EQ(Out(), "");
}

TEST_F(CommandsTest, DownloadOnATerminalShowsProgressOnStderr) {
  const ExportJob created = CreateAccounts();
  const std::string lease = Claim(created.id());
  const std::string body = "id,name\r\n1,Acme\r\n2,Initech\r\n";
  const ExportJob job = Complete(created.id(), lease, body, 2);
  ASSERT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  test_support::TempDir dir;
  const std::string path = dir.path() + "/out.csv";
  EXPECT_EQ(Run({"download", job.id(), "-o", path}, Terminal{.stderr_is_tty = true, .width = 80}),
            kExitOk)
      << Err();
  std::ifstream in(path, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()),
            body);
  EXPECT_EQ(Out(), Cat("wrote ", path, ": 28 bytes (28 B), 1 part verified by SHA-256\n"));
  EXPECT_THAT(Err(), HasSubstr("28 B / 28 B (100.0%)\x1b[K\n"));
  EXPECT_THAT(Err(), StartsWith("\r"));

  // Again: the file exists.
  EXPECT_EQ(Run({"download", job.id(), "-o", path}), kExitLocalFile);
  EXPECT_THAT(Err(), HasSubstr("exportctl: ALREADY_EXISTS: " + path + " exists; pass --force"));
  // Over gRPC, replacing it.
  EXPECT_EQ(Run({"download", job.id(), "-o", path, "--grpc", "--force", "--output", "json"}),
            kExitOk);
  EXPECT_THAT(Out(), HasSubstr("\"transport\":\"grpc\""));
}

TEST_F(CommandsTest, DownloadOfAnUnfinishedJobIsRefused) {
  const ExportJob job = CreateAccounts();
  EXPECT_EQ(Run({"download", job.id()}), 19);
  EXPECT_THAT(Err(), HasSubstr("only a completed job can be downloaded"));
}

}  // namespace
}  // namespace exportd::exportctl
