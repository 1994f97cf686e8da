// The real export-worker binary's configuration: --help documents every flag with its default
// and the environment/config-file rule; the command line wins over the environment, which wins
// over the config file; seed-demo takes its flags from them too; a bad config file or
// environment value stops it with exit code 1 (as export-server) and a message naming the file and
// line (or the variable) and the flag; a started worker logs JSON lines. (Fast: no server is
// needed: a worker prints its ready line and retries its claims while nothing listens.)
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/temp_dir.h"

#ifndef EXPORT_WORKER_PATH
#error "EXPORT_WORKER_PATH must name the export-worker binary"
#endif

namespace exportd {
namespace {

using ::exportd::test_support::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kReadyTimeout = absl::Seconds(20);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A running export-worker: stdout is a pipe read by the test, stderr a file.
class Worker {
 public:
  // Starts EXPORT_WORKER_PATH with `args`; stderr goes to `stderr_path`. It inherits this
  // process's environment.
  Worker(const std::vector<std::string>& args, std::string stderr_path)
      : stderr_path_(std::move(stderr_path)) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return;
    std::vector<std::string> all = {EXPORT_WORKER_PATH};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : all) argv.push_back(arg.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int err = open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(out[1], STDOUT_FILENO);
      dup2(err, STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    stdout_fd_ = out[0];
  }

  ~Worker() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_fd_ >= 0) close(stdout_fd_);
  }

  // Reads stdout until a line equal to `line` arrives; false at its end or after `timeout`.
  bool AwaitLine(const std::string& line, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      for (absl::string_view got : absl::StrSplit(stdout_, '\n')) {
        if (got == line) return true;
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      pollfd fd = {stdout_fd_, POLLIN, 0};
      if (poll(&fd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <= 0) return false;
      char buffer[4096];
      const ssize_t n = read(stdout_fd_, buffer, sizeof(buffer));
      if (n <= 0) return false;
      stdout_.append(buffer, static_cast<size_t>(n));
    }
  }

  // Sends `signal` (0: none) and waits for the exit; the exit code, or -1 when a signal ended
  // it.
  int Wait(int signal = 0) {
    if (signal != 0) kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_ = true;
    char buffer[4096];
    ssize_t n;
    while ((n = read(stdout_fd_, buffer, sizeof(buffer))) > 0) {
      stdout_.append(buffer, static_cast<size_t>(n));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  bool started() const { return pid_ > 0; }
  const std::string& stdout_text() const { return stdout_; }
  std::string stderr_text() const { return ReadFile(stderr_path_); }

 private:
  const std::string stderr_path_;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  bool exited_ = false;
  std::string stdout_;
};

struct Finished {
  int code = -1;
  std::string stdout_text;
  std::string stderr_text;
};

class WorkerConfigTest : public ::testing::Test {
 protected:
  ~WorkerConfigTest() override {
    for (const std::string& name : variables_) unsetenv(name.c_str());
  }

  // Runs the worker to its end (every run here ends by itself).
  Finished RunWorker(const std::vector<std::string>& args) {
    Worker worker(args, dir_.path() + "/stderr.txt");
    EXPECT_TRUE(worker.started());
    Finished run;
    run.code = worker.Wait();
    run.stdout_text = worker.stdout_text();
    run.stderr_text = worker.stderr_text();
    return run;
  }

  std::string ConfigFile(const std::string& text) {
    const std::string path = dir_.path() + "/export-worker.conf";
    std::ofstream(path) << text;
    return path;
  }

  // Set in this process, so inherited by the worker; removed after the test.
  void SetEnv(const std::string& name, const std::string& value) {
    setenv(name.c_str(), value.c_str(), 1);
    variables_.push_back(name);
  }

  // A small demo database, written by the binary's seed-demo.
  std::string SeedDemo() {
    const std::string path = dir_.path() + "/demo.db";
    const Finished seeded = RunWorker({"seed-demo", "--source=" + path, "--accounts=5"});
    EXPECT_EQ(seeded.code, 0) << seeded.stderr_text;
    return path;
  }

  TempDir dir_;
  std::vector<std::string> variables_;
};

TEST_F(WorkerConfigTest, HelpDocumentsEveryFlagItsDefaultAndTheRule) {
  const Finished help = RunWorker({"--help"});
  const std::string& text = help.stdout_text;
  for (const char* flag : {"server", "source", "worker_id", "concurrency", "entity_types",
                           "part_size_bytes", "work_dir", "heartbeat_interval", "claim_wait",
                           "rpc_timeout", "accounts", "seed", "overwrite", "log_level", "config"}) {
    const std::string option = std::string("--") + flag + " (";
    const size_t at = text.find(option);
    ASSERT_NE(at, std::string::npos) << flag << " is missing from:\n" << text;
    // Each entry ends with its default.
    const size_t next = text.find("\n    --", at + 1);
    EXPECT_THAT(text.substr(at, next - at), HasSubstr("default: ")) << flag;
  }
  EXPECT_THAT(text, HasSubstr("export-worker seed-demo"));
  EXPECT_THAT(text, HasSubstr("--config=FILE or EXPORTD_CONFIG=FILE"));
  EXPECT_THAT(text, HasSubstr("The command line wins over the environment, the environment over "
                              "the config file, the config file over the default."));
}

TEST_F(WorkerConfigTest, CommandLineOverEnvironmentOverConfigFile) {
  const std::string source = SeedDemo();
  // --concurrency is checked before anything connects, and the refusal names the value: which
  // source won shows in the message.
  const std::string file =
      ConfigFile("# a worker\nserver = 127.0.0.1:1\nsource = " + source + "\nconcurrency = 0\n");
  const Finished from_file = RunWorker({"--config=" + file});
  EXPECT_EQ(from_file.code, 2);
  EXPECT_THAT(from_file.stderr_text,
              HasSubstr("export-worker: --concurrency: must be between 1 and 1024, got 0"));

  SetEnv("EXPORTD_CONCURRENCY", "2000");
  const Finished from_environment = RunWorker({"--config=" + file});
  EXPECT_EQ(from_environment.code, 2);
  EXPECT_THAT(from_environment.stderr_text, HasSubstr("got 2000"));

  const Finished from_command_line = RunWorker({"--config=" + file, "--concurrency=1500"});
  EXPECT_EQ(from_command_line.code, 2);
  EXPECT_THAT(from_command_line.stderr_text, HasSubstr("got 1500"));

  // EXPORTD_CONFIG names the file as --config does.
  SetEnv("EXPORTD_CONFIG", file);
  const Finished config_from_environment = RunWorker({"--concurrency=1100"});
  EXPECT_EQ(config_from_environment.code, 2);
  EXPECT_THAT(config_from_environment.stderr_text, HasSubstr("got 1100"));
}

TEST_F(WorkerConfigTest, SeedDemoTakesItsFlagsFromTheConfigFile) {
  const std::string path = dir_.path() + "/seeded.db";
  const std::string file = ConfigFile("source = " + path + "\naccounts = 7\nseed = 3\n");
  const Finished seeded = RunWorker({"seed-demo", "--config=" + file});
  ASSERT_EQ(seeded.code, 0) << seeded.stderr_text;
  EXPECT_THAT(seeded.stdout_text, HasSubstr("seeded " + path + " (seed 3)\naccounts 7\n"));

  const Finished extra = RunWorker({"seed-demo", "more", "--config=" + file});
  EXPECT_EQ(extra.code, 2);
  EXPECT_THAT(extra.stderr_text, HasSubstr("unexpected argument \"more\""));
}

TEST_F(WorkerConfigTest, ABadConfigFileStopsItNamingFileLineAndFlag) {
  const std::string file = ConfigFile("server = 127.0.0.1:1\n\nclaim_wait = forever\n");
  const Finished bad = RunWorker({"--config=" + file});
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.stderr_text, HasSubstr("export-worker: " + file + ":3: flag claim_wait: "));
  EXPECT_THAT(bad.stdout_text, Not(HasSubstr("ready")));

  const std::string unknown = ConfigFile("concurency = 3\n");
  const Finished named = RunWorker({"--config=" + unknown});
  EXPECT_EQ(named.code, 1);
  EXPECT_THAT(named.stderr_text, HasSubstr(unknown + ":1: unknown flag \"concurency\""));

  // As on the command line, where absl's parser refuses it.
  const Finished on_command_line = RunWorker({"--concurency=3"});
  EXPECT_EQ(on_command_line.code, 1);
  EXPECT_THAT(on_command_line.stderr_text, HasSubstr("concurency"));

  const Finished missing = RunWorker({"--config=" + dir_.path() + "/no-such.conf"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.stderr_text, HasSubstr("no-such.conf"));
}

TEST_F(WorkerConfigTest, AnUnusableTokenFileOrTlsSettingStopsItWithCodeTwo) {
  const std::string db = SeedDemo();
  const Finished missing =
      RunWorker({"--source=" + db, "--token_file=" + dir_.path() + "/no-such.token"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_THAT(missing.stderr_text, HasSubstr("--token_file: cannot read"));
  const std::string empty = dir_.path() + "/empty.token";
  std::ofstream(empty) << "\n";
  const Finished blank = RunWorker({"--source=" + db, "--token_file=" + empty});
  EXPECT_EQ(blank.code, 2);
  EXPECT_THAT(blank.stderr_text, HasSubstr("is empty"));
  const Finished half = RunWorker({"--source=" + db, "--tls_cert=" + empty});
  EXPECT_EQ(half.code, 2);
  EXPECT_THAT(half.stderr_text, HasSubstr("--tls_cert, tls_key: give both or neither"));
}

TEST_F(WorkerConfigTest, ABadEnvironmentValueStopsItNamingTheVariable) {
  SetEnv("EXPORTD_RPC_TIMEOUT", "soon");
  const Finished bad = RunWorker({});
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.stderr_text,
              HasSubstr("environment variable EXPORTD_RPC_TIMEOUT: flag rpc_timeout: "));
}

// Settings from the environment and the file reach a running worker, which logs one JSON
// object per line from worker.starting to worker.stopped.
TEST_F(WorkerConfigTest, ARunningWorkerLogsJsonLinesWithItsSettings) {
  const std::string source = SeedDemo();
  // Nothing listens on port 1: the worker is ready and retries its claims until stopped.
  const std::string file = ConfigFile("server = 127.0.0.1:1\nsource = " + source +
                                      "\nclaim_wait = 1s\nlog_level = debug\n");
  SetEnv("EXPORTD_WORKER_ID", "env-worker");
  SetEnv("EXPORTD_WORK_DIR", dir_.path());
  Worker worker({"--config=" + file}, dir_.path() + "/worker-stderr.txt");
  ASSERT_TRUE(worker.started());
  ASSERT_TRUE(worker.AwaitLine("export-worker env-worker ready", kReadyTimeout))
      << worker.stdout_text() << "\n"
      << worker.stderr_text();
  EXPECT_EQ(worker.Wait(SIGTERM), 0) << worker.stderr_text();

  std::vector<std::string> events;
  for (absl::string_view line : absl::StrSplit(worker.stderr_text(), '\n', absl::SkipEmpty())) {
    const nlohmann::json event = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(event.is_object()) << line;
    events.push_back(event.value("event", ""));
    EXPECT_EQ(event.value("process", ""), "export-worker") << line;
    if (events.back() == "worker.starting") {
      EXPECT_EQ(event.value("worker_id", ""), "env-worker") << line;
      EXPECT_EQ(event.value("server", ""), "127.0.0.1:1") << line;
      EXPECT_EQ(event.value("source", ""), source) << line;
    }
  }
  EXPECT_THAT(events, ::testing::IsSupersetOf({"worker.starting", "worker.ready", "worker.stopping",
                                               "worker.stopped"}));
  EXPECT_EQ(events.front(), "worker.starting");
  EXPECT_EQ(events.back(), "worker.stopped");
}

}  // namespace
}  // namespace exportd
