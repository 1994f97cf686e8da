// Authentication of the real export-server binary (EXPORT_SERVER_PATH): it refuses to start
// without a tokens file (unless --insecure_no_auth) or with a bad one, and SIGHUP reloads the
// tokens file atomically, keeping the old tokens when the new file is bad.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "exportjobs/v1/export_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"
#include "tests/support/server_process.h"
#include "tests/support/temp_dir.h"

#ifndef EXPORT_SERVER_PATH
#error "EXPORT_SERVER_PATH must name the export-server binary"
#endif

namespace exportd::testing {
namespace {

using ::exportd::test_support::ExitInfo;
using ::exportd::test_support::ServerProcess;
using ::exportd::test_support::TempDir;
using ::testing::HasSubstr;

constexpr absl::Duration kExitTimeout = absl::Seconds(30);
constexpr absl::Duration kReloadTimeout = absl::Seconds(20);

const std::string kOld = "old-client-token-00001";
const std::string kNew = "new-client-token-00001";

class AuthProcessTest : public ::testing::Test {
 protected:
  ServerProcess::Options Options() {
    ServerProcess::Options options;
    options.binary = EXPORT_SERVER_PATH;
    options.data_dir = dir_.path() + "/data";
    options.tokens_file = tokens_;
    return options;
  }

  // Replaces the tokens file atomically (as an operator's `mv` would).
  void WriteTokens(const std::string& text) {
    const std::string temporary = tokens_ + ".new";
    {
      std::ofstream out(temporary, std::ios::trunc);
      out << text;
    }
    ASSERT_EQ(std::rename(temporary.c_str(), tokens_.c_str()), 0);
  }

  // ListExportJobs with `token`: its status code.
  grpc::StatusCode List(const std::string& token) {
    if (!stub_) {
      stub_ = exportjobs::v1::ExportService::NewStub(
          grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    context.AddMetadata("authorization", "Bearer " + token);
    exportjobs::v1::ListExportJobsRequest request;
    exportjobs::v1::ListExportJobsResponse response;
    return stub_->ListExportJobs(&context, request, &response).error_code();
  }

  // Occurrences of `text` in the server's stderr so far.
  int CountInStderr(const std::string& text) {
    const std::string tail = server_->StderrTail();
    int count = 0;
    for (size_t at = tail.find(text); at != std::string::npos; at = tail.find(text, at + 1)) {
      ++count;
    }
    return count;
  }

  // Sends SIGHUP and waits (with a deadline) until the server logged `event` once more.
  bool ReloadAndAwait(const std::string& event) {
    const int before = CountInStderr(event);
    if (::kill(server_->pid(), SIGHUP) != 0) return false;
    const absl::Time deadline = absl::Now() + kReloadTimeout;
    while (absl::Now() < deadline) {
      if (CountInStderr(event) > before) return true;
      // Each round trip paces the loop; the server is not idle meanwhile.
      List(kOld);
    }
    return false;
  }

  TempDir dir_;
  const std::string tokens_ = dir_.path() + "/tokens";
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<exportjobs::v1::ExportService::Stub> stub_;
};

TEST_F(AuthProcessTest, WithoutTokensFileOrInsecureFlagItRefusesToStart) {
  ServerProcess::Options options = Options();
  options.tokens_file.clear();
  options.insecure_no_auth = false;
  ASSERT_OK_AND_ASSIGN(ExitInfo ended, ServerProcess::RunUntilExit(options, kExitTimeout));
  EXPECT_EQ(ended.status.code, 1);
  EXPECT_THAT(ended.stderr_text, HasSubstr("--tokens_file is required"));
  EXPECT_THAT(ended.stderr_text, HasSubstr("--insecure_no_auth"));
}

TEST_F(AuthProcessTest, ABadTokensFileRefusesToStartNamingTheLine) {
  WriteTokens(absl::StrCat("# tokens\n", kOld, " ui acme client\nshort-token ui acme client\n"));
  ASSERT_OK_AND_ASSIGN(ExitInfo ended, ServerProcess::RunUntilExit(Options(), kExitTimeout));
  EXPECT_EQ(ended.status.code, 1);
  EXPECT_THAT(ended.stderr_text, HasSubstr("line 3: token: 11 characters"));
  EXPECT_THAT(ended.stderr_text, ::testing::Not(HasSubstr("short-token")));

  WriteTokens(absl::StrCat(kOld, " ui acme operator\n"));
  ASSERT_OK_AND_ASSIGN(ended, ServerProcess::RunUntilExit(Options(), kExitTimeout));
  EXPECT_EQ(ended.status.code, 1);
  EXPECT_THAT(ended.stderr_text, HasSubstr("line 1: role: \"operator\""));

  ServerProcess::Options missing = Options();
  missing.tokens_file = dir_.path() + "/no-such-file";
  ASSERT_OK_AND_ASSIGN(ended, ServerProcess::RunUntilExit(missing, kExitTimeout));
  EXPECT_EQ(ended.status.code, 1);
  EXPECT_THAT(ended.stderr_text, HasSubstr("no-such-file"));
}

TEST_F(AuthProcessTest, SighupReloadsTheTokensAndABadFileKeepsTheOldOnes) {
  WriteTokens(absl::StrCat(kOld, " ui acme client\n"));
  ASSERT_OK_AND_ASSIGN(server_, ServerProcess::Start(Options()));
  EXPECT_EQ(List(kOld), grpc::StatusCode::OK);
  EXPECT_EQ(List(kNew), grpc::StatusCode::UNAUTHENTICATED);

  // Add a token.
  WriteTokens(absl::StrCat(kOld, " ui acme client\n", kNew, " batch acme client\n"));
  ASSERT_TRUE(ReloadAndAwait("\"auth.reloaded\"")) << server_->StderrTail();
  EXPECT_EQ(List(kNew), grpc::StatusCode::OK);
  EXPECT_EQ(List(kOld), grpc::StatusCode::OK);

  // Remove one.
  WriteTokens(absl::StrCat(kNew, " batch acme client\n"));
  ASSERT_TRUE(ReloadAndAwait("\"auth.reloaded\"")) << server_->StderrTail();
  EXPECT_EQ(List(kOld), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(List(kNew), grpc::StatusCode::OK);

  // A bad file: an error event, and the tokens stay as they were.
  WriteTokens(absl::StrCat(kOld, " ui acme client\n", kNew, " batch acme client\n", kNew,
                           " again acme client\n"));
  ASSERT_TRUE(ReloadAndAwait("\"auth.reload_failed\"")) << server_->StderrTail();
  EXPECT_THAT(server_->StderrTail(), HasSubstr("line 3: token: duplicate"));
  EXPECT_EQ(List(kOld), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(List(kNew), grpc::StatusCode::OK);
  EXPECT_TRUE(server_->running());
}

TEST_F(AuthProcessTest, InsecureNoAuthLogsAWarningAndLetsEveryoneIn) {
  ServerProcess::Options options = Options();
  options.tokens_file.clear();
  options.insecure_no_auth = true;
  ASSERT_OK_AND_ASSIGN(server_, ServerProcess::Start(options));
  EXPECT_EQ(List("anything-at-all-00000"), grpc::StatusCode::OK);
  const absl::Time deadline = absl::Now() + kReloadTimeout;
  while (CountInStderr("\"auth.insecure_no_auth\"") == 0 && absl::Now() < deadline) {
    List("anything-at-all-00000");
  }
  EXPECT_THAT(server_->StderrTail(), HasSubstr("\"auth.insecure_no_auth\""));
}

}  // namespace
}  // namespace exportd::testing
