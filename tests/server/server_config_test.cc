// The real export-server binary's configuration: --help documents every flag with its default
// and the environment/config-file rule, and the command line wins over the environment, which
// wins over the config file; a bad config file stops it with a message naming file, line and
// flag. (Fast: the binary starts once; the other runs exit before serving.)
#include <stdlib.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"
#include "tests/support/server_process.h"
#include "tests/support/temp_dir.h"

namespace exportd::testing {
namespace {

using ::exportd::test_support::ExitInfo;
using ::exportd::test_support::ServerProcess;
using ::exportd::test_support::TempDir;
using ::testing::HasSubstr;

constexpr absl::Duration kExitTimeout = absl::Seconds(20);

class ServerConfigTest : public ::testing::Test {
 protected:
  ~ServerConfigTest() override {
    for (const std::string& name : variables_) unsetenv(name.c_str());
  }

  ServerProcess::Options Options(std::vector<std::string> extra_args) {
    ServerProcess::Options options;
    options.binary = EXPORT_SERVER_PATH;
    options.data_dir = dir_.path() + "/data";
    options.extra_args = std::move(extra_args);
    return options;
  }

  std::string ConfigFile(const std::string& text) {
    const std::string path = dir_.path() + "/export-server.conf";
    std::ofstream(path) << text;
    return path;
  }

  // Set in this process, so inherited by the server; removed after the test.
  void SetEnv(const std::string& name, const std::string& value) {
    setenv(name.c_str(), value.c_str(), 1);
    variables_.push_back(name);
  }

  TempDir dir_;
  std::vector<std::string> variables_;
};

TEST_F(ServerConfigTest, HelpDocumentsEveryFlagItsDefaultAndTheRule) {
  ASSERT_OK_AND_ASSIGN(ExitInfo help,
                       ServerProcess::RunUntilExit(Options({"--help"}), kExitTimeout));
  const std::string& text = help.stdout_text;
  for (const char* flag :
       {"data_dir", "grpc_address", "http_address", "public_url", "signing_key_file", "retention",
        "lease_duration", "max_attempts", "retry_backoff", "job_retention", "janitor_interval",
        "max_claim_wait", "shutdown_grace", "read_threads", "log_level", "config"}) {
    const std::string option = std::string("--") + flag + " (";
    const size_t at = text.find(option);
    ASSERT_NE(at, std::string::npos) << flag << " is missing from:\n" << text;
    // Each entry ends with its default.
    const size_t next = text.find("\n    --", at + 1);
    EXPECT_THAT(text.substr(at, next - at), HasSubstr("default: ")) << flag;
  }
  EXPECT_THAT(text, HasSubstr("EXPORTD_LOG_LEVEL=debug"));
  EXPECT_THAT(text, HasSubstr("--config=FILE or EXPORTD_CONFIG=FILE"));
  EXPECT_THAT(text, HasSubstr("The command line wins over the environment, the environment over "
                              "the config file, the config file over the default."));
}

TEST_F(ServerConfigTest, CommandLineOverEnvironmentOverConfigFile) {
  // read_threads = 0 is refused at start, so which source won shows in whether it starts.
  const std::string file = ConfigFile("# threads\nread_threads = 0\nlog_level = warn\n");
  ASSERT_OK_AND_ASSIGN(ExitInfo from_file,
                       ServerProcess::RunUntilExit(Options({"--config=" + file}), kExitTimeout));
  EXPECT_EQ(from_file.status.code, 1);
  EXPECT_THAT(from_file.stderr_text, HasSubstr("read_threads: must be at least 1"));

  SetEnv("EXPORTD_READ_THREADS", "3");  // The environment wins over the file: it starts.
  {
    ServerProcess::Options options = Options({"--config=" + file});
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServerProcess> server, ServerProcess::Start(options));
    ASSERT_OK_AND_ASSIGN(test_support::ExitStatus stopped, server->Terminate(kExitTimeout));
    EXPECT_TRUE(stopped.success()) << stopped.ToString();
    // log_level = warn from the file: no info lines.
    EXPECT_THAT(server->StderrTail(), ::testing::Not(HasSubstr("\"level\":\"info\"")));
  }

  // The command line wins over the environment.
  ASSERT_OK_AND_ASSIGN(
      ExitInfo from_command_line,
      ServerProcess::RunUntilExit(Options({"--config=" + file, "--read_threads=0"}), kExitTimeout));
  EXPECT_EQ(from_command_line.status.code, 1);
  EXPECT_THAT(from_command_line.stderr_text, HasSubstr("read_threads: must be at least 1"));
}

TEST_F(ServerConfigTest, ABadConfigFileStopsItNamingFileLineAndFlag) {
  const std::string file = ConfigFile("data_dir = /tmp/x\n\nlease_duration = forever\n");
  ASSERT_OK_AND_ASSIGN(ExitInfo bad,
                       ServerProcess::RunUntilExit(Options({"--config=" + file}), kExitTimeout));
  EXPECT_TRUE(bad.status.exited);
  EXPECT_EQ(bad.status.code, 1);
  EXPECT_THAT(bad.stderr_text, HasSubstr("export-server: " + file + ":3: flag lease_duration: "));

  const std::string unknown = ConfigFile("lease = 30s\n");
  ASSERT_OK_AND_ASSIGN(ExitInfo named,
                       ServerProcess::RunUntilExit(Options({"--config=" + unknown}), kExitTimeout));
  EXPECT_EQ(named.status.code, 1);
  EXPECT_THAT(named.stderr_text, HasSubstr(unknown + ":1: unknown flag \"lease\""));
}

TEST_F(ServerConfigTest, ABadEnvironmentValueStopsItNamingTheVariable) {
  SetEnv("EXPORTD_MAX_ATTEMPTS", "three");
  ASSERT_OK_AND_ASSIGN(ExitInfo bad, ServerProcess::RunUntilExit(Options({}), kExitTimeout));
  EXPECT_EQ(bad.status.code, 1);
  EXPECT_THAT(bad.stderr_text,
              HasSubstr("environment variable EXPORTD_MAX_ATTEMPTS: flag max_attempts: "));
}

TEST_F(ServerConfigTest, AnUnusableLimitStopsItNamingTheFlag) {
  ASSERT_OK_AND_ASSIGN(ExitInfo bad,
                       ServerProcess::RunUntilExit(Options({"--max_fields=0"}), kExitTimeout));
  EXPECT_EQ(bad.status.code, 1);
  EXPECT_THAT(bad.stderr_text, HasSubstr("export-server: max_fields: must be at least 1"));

  ASSERT_OK_AND_ASSIGN(ExitInfo chunk, ServerProcess::RunUntilExit(
                                           Options({"--max_upload_chunk_bytes=10"}), kExitTimeout));
  EXPECT_EQ(chunk.status.code, 1);
  EXPECT_THAT(chunk.stderr_text, HasSubstr("max_upload_chunk_bytes: must be between 1024"));
}

}  // namespace
}  // namespace exportd::testing
