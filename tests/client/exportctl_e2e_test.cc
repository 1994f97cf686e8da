// End-to-end tests of the real exportctl binary (EXPORTCTL_PATH) against the real export-server
// (EXPORT_SERVER_PATH) and export-worker (EXPORT_WORKER_PATH) on a seeded demo database, all on
// loopback with ports picked by the kernel. One server and one worker serve the whole suite;
// the worker claims every entity type but campaigns, so a campaigns job stays pending for as
// long as a test needs it to.
//
// What is checked against what:
//   - exit codes and stderr against the documented table ("exportctl: CODE: message");
//   - --output json of get, list and watch against the ExportJob JSON schema with
//     tests/node/validate_export_job.js (node as a child process), and against the job read
//     over gRPC and rendered by common/job_json.h;
//   - downloads against the same URL fetched directly with the real curl, --grpc against HTTP,
//     one part against its slice of the file; a resumed download against the file, and the
//     Range request it sent by the 206 exportctl reports and the bytes it fetched;
//   - a corrupted partial file: exit 5, no destination file, the partial removed.
// Waits read exportctl's own output or its exit; nothing sleeps.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "client/export_client.h"
#include "client/exportctl_resume.h"
#include "common/job_json.h"
#include "common/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/support/server_process.h"
#include "tests/support/temp_dir.h"

#ifndef EXPORTCTL_PATH
#error "EXPORTCTL_PATH must name the exportctl binary"
#endif
#ifndef EXPORT_SERVER_PATH
#error "EXPORT_SERVER_PATH must name the export-server binary"
#endif
#ifndef EXPORT_WORKER_PATH
#error "EXPORT_WORKER_PATH must name the export-worker binary"
#endif
#ifndef EXPORTD_SOURCE_DIR
#error "EXPORTD_SOURCE_DIR must name the source tree"
#endif
#ifndef EXPORTD_NODE
#error "EXPORTD_NODE must name the node binary"
#endif

namespace exportd::exportctl {
namespace {

using exportjobs::v1::ExportJob;
using test_support::ExitStatus;
using test_support::ServerProcess;
using test_support::TempDir;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr absl::Duration kRunTimeout = absl::Seconds(60);
// The suite's tokens: exportctl's (tenant acme), the worker's, another tenant's client.
const std::string kClientToken = "e2e-client-token-000001";
const std::string kWorkerToken = "e2e-worker-token-000001";
const std::string kOtherToken = "e2e-other-token-0000001";

// ---------------------------------------------------------------------------------------------
// Child processes: any binary, its stdout and stderr drained by a thread of its own.

class Child {
 public:
  // Runs args[0] (PATH is searched when it has no slash) with `env` added to this process's
  // environment; stdin is /dev/null. The child is killed when this is destroyed, and when the
  // starting thread ends (PR_SET_PDEATHSIG).
  static std::unique_ptr<Child> Start(std::vector<std::string> args,
                                      const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      if (!env.contains(entry.substr(0, entry.find('=')))) environment.push_back(entry);
    }
    for (const auto& [name, value] : env) environment.push_back(name + "=" + value);
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (std::string& entry : environment) envp.push_back(entry.data());
    envp.push_back(nullptr);

    int out[2];
    int err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return nullptr;
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      const int null_fd = open("/dev/null", O_RDONLY);
      if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) {
        _exit(127);
      }
      execvpe(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
      close(out[0]);
      close(err[0]);
      return nullptr;
    }
    return std::unique_ptr<Child>(new Child(pid, out[0], err[0]));
  }

  ~Child() {
    if (!exit_.has_value()) {
      kill(pid_, SIGKILL);
      Reap();
    }
    close(out_fd_);
    close(err_fd_);
  }

  // True once stdout contains `text`; false when it did not within `timeout` or ended first.
  bool AwaitStdout(const std::string& text, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return eof_ || absl::StrContains(stdout_, text);
    };
    mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
    return absl::StrContains(stdout_, text);
  }

  // Waits for the exit (the pipes closing, then waitpid); nullopt (after SIGKILL) when the
  // child still ran after `timeout`.
  std::optional<ExitStatus> Wait(absl::Duration timeout) {
    bool closed;
    {
      absl::MutexLock lock(&mu_);
      closed = mu_.AwaitWithTimeout(absl::Condition(&eof_), timeout);
    }
    if (!closed) kill(pid_, SIGKILL);
    Reap();
    if (!closed) return std::nullopt;
    return exit_;
  }

  void Terminate() {
    if (!exit_.has_value()) kill(pid_, SIGTERM);
  }

  std::string Stdout() const {
    absl::MutexLock lock(&mu_);
    return stdout_;
  }
  std::string Stderr() const {
    absl::MutexLock lock(&mu_);
    return stderr_;
  }

 private:
  Child(pid_t pid, int out_fd, int err_fd) : pid_(pid), out_fd_(out_fd), err_fd_(err_fd) {
    thread_ = std::thread([this] { Drain(); });
  }

  void Drain() {
    bool open[2] = {true, true};
    const int fds[2] = {out_fd_, err_fd_};
    char buffer[8192];
    while (open[0] || open[1]) {
      pollfd polled[2] = {{open[0] ? fds[0] : -1, POLLIN, 0}, {open[1] ? fds[1] : -1, POLLIN, 0}};
      if (poll(polled, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (int i = 0; i < 2; ++i) {
        if (polled[i].fd < 0 || polled[i].revents == 0) continue;
        const ssize_t n = read(fds[i], buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        absl::MutexLock lock(&mu_);
        if (n <= 0) {
          open[i] = false;
        } else {
          (i == 0 ? stdout_ : stderr_).append(buffer, static_cast<size_t>(n));
        }
      }
    }
    absl::MutexLock lock(&mu_);
    eof_ = true;
  }

  void Reap() {
    if (exit_.has_value()) return;
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    exit_ = ExitStatus::FromWaitStatus(status);
    if (thread_.joinable()) thread_.join();
  }

  const pid_t pid_;
  const int out_fd_;
  const int err_fd_;
  std::thread thread_;
  std::optional<ExitStatus> exit_;
  mutable absl::Mutex mu_;
  std::string stdout_ ABSL_GUARDED_BY(mu_);
  std::string stderr_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

struct RunResult {
  int code = -1;  // The exit code; -1 when the process did not exit normally.
  std::string out;
  std::string err;

  std::string Describe() const {
    return Cat("exit ", code, "\nstdout:\n", out, "\nstderr:\n", err);
  }
};

RunResult RunCommand(std::vector<std::string> args,
                     const std::map<std::string, std::string>& env = {}) {
  std::unique_ptr<Child> child = Child::Start(std::move(args), env);
  if (child == nullptr) return RunResult{-1, "", "cannot start"};
  const std::optional<ExitStatus> status = child->Wait(kRunTimeout);
  RunResult run;
  run.out = child->Stdout();
  run.err = child->Stderr();
  if (status.has_value() && status->exited) run.code = status->code;
  return run;
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// A loopback port that nothing listens on (bound, then closed).
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  close(fd);
  return ntohs(address.sin_port);
}

// ---------------------------------------------------------------------------------------------
// The suite's server, worker and helpers.

class ExportctlE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string db = dir_->path() + "/demo.db";
    const RunResult seed = RunCommand(
        {EXPORT_WORKER_PATH, "seed-demo", "--source=" + db, "--accounts=1500", "--seed=7"});
    ASSERT_EQ(seed.code, 0) << seed.Describe();

    // Tokens: exportctl's (tenant acme), the worker's, and a client of another tenant.
    WriteFile(TokenFile(), kClientToken + "\n");
    WriteFile(dir_->path() + "/worker.token", kWorkerToken + "\n");
    WriteFile(dir_->path() + "/tokens",
              Cat(kClientToken, " exportctl acme client\n", kWorkerToken, " w1 ops worker\n",
                  kOtherToken, " other globex client\n"));
    ServerProcess::Options options;
    options.binary = EXPORT_SERVER_PATH;
    options.data_dir = dir_->path() + "/server";
    options.tokens_file = dir_->path() + "/tokens";
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();

    worker_ = Child::Start({EXPORT_WORKER_PATH, "--server=" + server_->address(), "--source=" + db,
                            "--worker_id=w1", "--concurrency=2",
                            "--entity_types=accounts,people,opportunities,activities,buying_groups",
                            "--heartbeat_interval=200ms", "--claim_wait=5s", "--rpc_timeout=10s",
                            "--work_dir=" + dir_->path(),
                            "--token_file=" + dir_->path() + "/worker.token"})
                  .release();
    ASSERT_NE(worker_, nullptr);
    ASSERT_TRUE(worker_->AwaitStdout("export-worker w1 ready", kRunTimeout))
        << worker_->Stdout() << worker_->Stderr();

    client::CallOptions call;
    call.timeout = absl::Seconds(10);
    call.token = kClientToken;
    client_ = new client::ExportClient(client::MakeChannel(server_->address()), call);
  }

  static void TearDownTestSuite() {
    delete client_;
    if (worker_ != nullptr) {
      worker_->Terminate();
      const std::optional<ExitStatus> exit = worker_->Wait(kRunTimeout);
      EXPECT_TRUE(exit.has_value() && exit->success()) << worker_->Stderr();
      delete worker_;
    }
    if (server_ != nullptr) {
      const absl::StatusOr<ExitStatus> exit = server_->Terminate(kRunTimeout);
      EXPECT_TRUE(exit.ok() && exit->success()) << server_->StderrTail();
      delete server_;
    }
    delete dir_;
  }

  static std::string Path(const std::string& name) { return test_dir_.path() + "/" + name; }

  static std::string TokenFile() { return dir_->path() + "/client.token"; }

  // exportctl --server <the server> --token-file <the client token> ARGS...
  static RunResult Exportctl(std::vector<std::string> args) {
    args.insert(args.begin(),
                {EXPORTCTL_PATH, "--server", server_->address(), "--token-file", TokenFile()});
    return RunCommand(std::move(args));
  }

  // `exportctl create ... --wait` of a small accounts export; the job, completed.
  static ExportJob CompletedJob(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "create", "--entity", "accounts", "--fields", "id,name,domain,country", "--wait"};
    args.insert(args.end(), extra.begin(), extra.end());
    const RunResult run = Exportctl(args);
    EXPECT_EQ(run.code, 0) << run.Describe();
    return GetJob(CreatedId(run));
  }

  // The id in "created job <id>".
  static std::string CreatedId(const RunResult& run) {
    const std::string marker = "created job ";
    const size_t at = run.out.find(marker);
    if (at == std::string::npos) return "";
    return run.out.substr(at + marker.size(), run.out.find('\n', at) - at - marker.size());
  }

  static ExportJob GetJob(const std::string& id) {
    absl::StatusOr<ExportJob> job = client_->Get(id);
    EXPECT_TRUE(job.ok()) << id << ": " << job.status();
    return job.value_or(ExportJob{});
  }

  // Runs the schema validator on `json`; its output in the failure message.
  static ::testing::AssertionResult ValidJobs(const std::string& json,
                                              const std::string& list_key = "") {
    const std::string path = Path(Cat("validate-", ++validations_, ".json"));
    WriteFile(path, json);
    std::vector<std::string> args = {EXPORTD_NODE,
                                     EXPORTD_SOURCE_DIR "/tests/node/validate_export_job.js"};
    if (!list_key.empty()) args.insert(args.end(), {"--list", list_key});
    args.push_back(path);
    const RunResult run = RunCommand(args);
    if (run.code != 0) {
      return ::testing::AssertionFailure() << "the validator refused:\n"
                                           << run.Describe() << "\ninput:\n"
                                           << json;
    }
    return ::testing::AssertionSuccess() << run.out;
  }

  // GET `url` with curl into `path` (extra arguments before the URL); curl's exit code.
  static RunResult Curl(const std::string& url, const std::string& path,
                        std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"curl", "-sS", "--max-time", "20", "-o", path};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(url);
    return RunCommand(args);
  }

  // The ETag the server sends for `url` (from a HEAD request).
  static std::string Etag(const std::string& url) {
    const RunResult head = RunCommand({"curl", "-sS", "--max-time", "20", "-I", url});
    for (absl::string_view line : absl::StrSplit(head.out, '\n')) {
      if (absl::StartsWithIgnoreCase(line, "etag:")) {
        return std::string(absl::StripAsciiWhitespace(line.substr(5)));
      }
    }
    ADD_FAILURE() << "no ETag for " << url << ":\n" << head.Describe();
    return "";
  }

  // The file of a completed job, fetched directly with curl.
  static std::string CurlFile(const ExportJob& job) {
    const std::string path = Path(Cat("curl-", job.id()));
    const RunResult run = Curl(job.download_url(), path);
    EXPECT_EQ(run.code, 0) << run.Describe();
    return ReadFile(path).value_or("");
  }

  static TempDir* dir_;
  static ServerProcess* server_;
  static Child* worker_;
  static client::ExportClient* client_;
  static int validations_;
  static TempDir test_dir_;
};

TempDir* ExportctlE2eTest::dir_ = nullptr;
ServerProcess* ExportctlE2eTest::server_ = nullptr;
Child* ExportctlE2eTest::worker_ = nullptr;
client::ExportClient* ExportctlE2eTest::client_ = nullptr;
int ExportctlE2eTest::validations_ = 0;
TempDir ExportctlE2eTest::test_dir_;

// ---------------------------------------------------------------------------------------------

TEST_F(ExportctlE2eTest, CreateWaitEndsCompletedWithExitZero) {
  const RunResult run = Exportctl({"create", "--entity", "accounts", "--fields", "id,name,country",
                                   "--filters", R"({"country": ["DE", "US"]})", "--wait"});
  ASSERT_EQ(run.code, 0) << run.Describe();
  const std::string id = CreatedId(run);
  ASSERT_FALSE(id.empty()) << run.Describe();
  // Piped: plain lines, no control characters, the last line the summary.
  EXPECT_EQ(run.out.find_first_of("\r\x1b"), std::string::npos) << run.out;
  EXPECT_THAT(run.out, HasSubstr("\ncompleted  records "));
  EXPECT_THAT(run.out, EndsWith(Cat("job ", id,
                                    " completed; download it with: exportctl "
                                    "download ",
                                    id, "\n")));
  EXPECT_EQ(run.err, "");
  const ExportJob job = GetJob(id);
  EXPECT_EQ(job.status(), exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  EXPECT_GT(job.record_count(), 0);
  EXPECT_EQ(job.filters().fields().at("country").list_value().values_size(), 2);
}

TEST_F(ExportctlE2eTest, GetAndListJsonAreTheSchemaForm) {
  const ExportJob job = CompletedJob();
  const RunResult get = Exportctl({"get", job.id(), "--output", "json"});
  ASSERT_EQ(get.code, 0) << get.Describe();
  EXPECT_EQ(get.out, RenderJobJson(job) + "\n");
  EXPECT_TRUE(ValidJobs(get.out));

  const RunResult list = Exportctl({"--output", "json", "list", "--all", "--page-size", "2"});
  ASSERT_EQ(list.code, 0) << list.Describe();
  EXPECT_TRUE(ValidJobs(list.out, "export_jobs"));
  const nlohmann::json parsed = nlohmann::json::parse(list.out);
  exportjobs::v1::ListExportJobsRequest request;
  request.set_page_size(1000);
  absl::StatusOr<exportjobs::v1::ListExportJobsResponse> all = client_->List(request);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(parsed["export_jobs"].size(), static_cast<size_t>(all->jobs_size()));
  EXPECT_EQ(parsed["export_jobs"][0]["id"], all->jobs(0).id());
  EXPECT_FALSE(parsed.contains("next_page_token"));  // --all ends on the last page

  const RunResult completed = Exportctl({"list", "--status", "completed", "--entity", "accounts"});
  ASSERT_EQ(completed.code, 0) << completed.Describe();
  EXPECT_THAT(completed.out, StartsWith("ID "));
  EXPECT_THAT(completed.out, HasSubstr(job.id() + "  accounts  completed  "));
}

TEST_F(ExportctlE2eTest, WatchJsonIsOneSchemaJobPerLine) {
  const RunResult create =
      Exportctl({"create", "--entity", "people", "--wait", "--output", "json"});
  ASSERT_EQ(create.code, 0) << create.Describe();
  EXPECT_TRUE(ValidJobs(create.out));
  std::vector<std::string> lines = absl::StrSplit(create.out, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u) << create.out;  // At least the snapshot and the completion.
  const nlohmann::json first = nlohmann::json::parse(lines.front());
  const nlohmann::json last = nlohmann::json::parse(lines.back());
  EXPECT_EQ(first["id"], last["id"]);
  EXPECT_EQ(last["status"], "completed");

  const RunResult watch = Exportctl({"watch", last["id"].get<std::string>(), "--output", "json"});
  ASSERT_EQ(watch.code, 0) << watch.Describe();
  EXPECT_TRUE(ValidJobs(watch.out));
  EXPECT_EQ(watch.out, lines.back() + "\n");  // A finished job: its snapshot only.
}

TEST_F(ExportctlE2eTest, ACancelledJobMakesWatchExitTwo) {
  // The worker does not claim campaigns: the job stays pending until it is cancelled.
  const RunResult create = Exportctl({"create", "--entity", "campaigns", "--output", "json"});
  ASSERT_EQ(create.code, 0) << create.Describe();
  EXPECT_TRUE(ValidJobs(create.out));
  const std::string job_id = nlohmann::json::parse(create.out)["id"].get<std::string>();

  std::unique_ptr<Child> watch = Child::Start({EXPORTCTL_PATH, "--server", server_->address(),
                                               "--token-file", TokenFile(), "watch", job_id});
  ASSERT_NE(watch, nullptr);
  ASSERT_TRUE(watch->AwaitStdout("pending\n", kRunTimeout)) << watch->Stderr();

  const RunResult cancel = Exportctl({"cancel", job_id, "--output", "json"});
  ASSERT_EQ(cancel.code, 0) << cancel.Describe();
  EXPECT_TRUE(ValidJobs(cancel.out));
  EXPECT_EQ(nlohmann::json::parse(cancel.out)["status"], "cancelled");

  const std::optional<ExitStatus> exit = watch->Wait(kRunTimeout);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->code, 2) << watch->Stdout() << watch->Stderr();
  EXPECT_EQ(watch->Stdout(), Cat("pending\ncancelled\njob ", job_id, " was cancelled\n"));

  // wait on the finished job: the job, and the same code.
  const RunResult wait = Exportctl({"wait", job_id, "--output", "json"});
  EXPECT_EQ(wait.code, 2) << wait.Describe();
  EXPECT_TRUE(ValidJobs(wait.out));

  // A second cancel is refused; delete removes it.
  const RunResult again = Exportctl({"cancel", job_id});
  EXPECT_EQ(again.code, 19) << again.Describe();
  EXPECT_THAT(again.err, StartsWith("exportctl: FAILED_PRECONDITION: "));
  const RunResult remove = Exportctl({"delete", job_id});
  EXPECT_EQ(remove.code, 0) << remove.Describe();
  EXPECT_EQ(remove.out, Cat("deleted job ", job_id, "\n"));
  const RunResult gone = Exportctl({"get", job_id});
  EXPECT_EQ(gone.code, 15) << gone.Describe();
  EXPECT_EQ(gone.err, Cat("exportctl: NOT_FOUND: job ", job_id, " not found\n"));
}

TEST_F(ExportctlE2eTest, FieldsListsTheCatalog) {
  const RunResult table = Exportctl({"fields", "accounts"});
  ASSERT_EQ(table.code, 0) << table.Describe();
  EXPECT_THAT(table.out, StartsWith("NAME "));
  EXPECT_THAT(table.out, ::testing::ContainsRegex("\nemployee_count +integer +yes +"));

  const RunResult json = Exportctl({"fields", "accounts", "--output", "json"});
  ASSERT_EQ(json.code, 0) << json.Describe();
  absl::StatusOr<std::vector<exportjobs::v1::ExportableField>> fields =
      client_->ListFields(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  ASSERT_TRUE(fields.ok()) << fields.status();
  const nlohmann::json parsed = nlohmann::json::parse(json.out);
  EXPECT_EQ(parsed["entity_type"], "accounts");
  ASSERT_EQ(parsed["fields"].size(), fields->size());
  for (size_t i = 0; i < fields->size(); ++i) {
    EXPECT_EQ(parsed["fields"][i]["name"], (*fields)[i].name());
    EXPECT_EQ(parsed["fields"][i]["default"], (*fields)[i].default_());
  }
}

TEST_F(ExportctlE2eTest, ErrorsNameTheProblemAndExitWithTheDocumentedCode) {
  const RunResult unknown = Exportctl({"get", "0000000000000000deadbeef"});
  EXPECT_EQ(unknown.code, 15) << unknown.Describe();
  EXPECT_EQ(unknown.err, "exportctl: NOT_FOUND: job 0000000000000000deadbeef not found\n");
  EXPECT_EQ(unknown.out, "");

  const RunResult entity = Exportctl({"create", "--entity", "planets"});
  EXPECT_EQ(entity.code, 3) << entity.Describe();
  EXPECT_THAT(entity.err, StartsWith("exportctl: INVALID_ARGUMENT: --entity: \"planets\""));

  const RunResult field = Exportctl({"create", "--entity", "accounts", "--fields", "id,colour"});
  EXPECT_EQ(field.code, 13) << field.Describe();
  EXPECT_THAT(field.err, StartsWith("exportctl: INVALID_ARGUMENT: fields[1]: "));
  EXPECT_THAT(field.err, HasSubstr("colour"));

  const RunResult filter =
      Exportctl({"create", "--entity", "accounts", "--filters", R"({"employee_count": "ten"})"});
  EXPECT_EQ(filter.code, 13) << filter.Describe();
  EXPECT_THAT(
      filter.err,
      StartsWith("exportctl: INVALID_ARGUMENT: filters.employee_count: expects an integer"));
}

TEST_F(ExportctlE2eTest, TokensComeFromFlagsFileOrEnvironmentAndAuthErrorsHaveTheirCodes) {
  const std::vector<std::string> base = {EXPORTCTL_PATH, "--server", server_->address()};
  const auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> args = base;
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  // No token: UNAUTHENTICATED (10 + 16) with a hint.
  const RunResult none = RunCommand(with({"list"}));
  EXPECT_EQ(none.code, 26) << none.Describe();
  EXPECT_THAT(none.err, StartsWith("exportctl: UNAUTHENTICATED: authorization: missing"));
  EXPECT_THAT(none.err, HasSubstr("hint: the server needs a bearer token: pass --token"));
  const RunResult unknown = RunCommand(with({"--token", "not-a-known-token-0000", "list"}));
  EXPECT_EQ(unknown.code, 26) << unknown.Describe();
  EXPECT_THAT(unknown.err, HasSubstr("unknown token"));
  // The worker's token: PERMISSION_DENIED (10 + 7) naming the role and the method.
  const RunResult worker = RunCommand(with({"--token", kWorkerToken, "list"}));
  EXPECT_EQ(worker.code, 17) << worker.Describe();
  EXPECT_THAT(worker.err, HasSubstr("role worker"));
  EXPECT_THAT(worker.err, HasSubstr("ListExportJobs"));
  EXPECT_THAT(worker.err, HasSubstr("hint: this token's role may not do that"));
  // --token, EXPORT_TOKEN and --token-file all work; the flag wins over the variable.
  EXPECT_EQ(RunCommand(with({"--token", kClientToken, "list"})).code, 0);
  EXPECT_EQ(RunCommand(with({"list"}), {{"EXPORT_TOKEN", kClientToken}}).code, 0);
  EXPECT_EQ(RunCommand(with({"--token-file", TokenFile(), "list"})).code, 0);
  EXPECT_EQ(RunCommand(with({"--token", kClientToken, "list"}), {{"EXPORT_TOKEN", "bad"}}).code, 0);
  // Usage errors: both flags, an unreadable token file.
  const RunResult both =
      RunCommand(with({"--token", kClientToken, "--token-file", TokenFile(), "list"}));
  EXPECT_EQ(both.code, 3) << both.Describe();
  const RunResult missing = RunCommand(with({"--token-file", Path("no-such.token"), "list"}));
  EXPECT_EQ(missing.code, 3) << missing.Describe();
  EXPECT_THAT(missing.err, HasSubstr("--token-file: cannot read"));

  // Another tenant's job does not exist for this client.
  const RunResult created = Exportctl({"--output", "json", "create", "--entity", "people"});
  ASSERT_EQ(created.code, 0) << created.Describe();
  const std::string id = nlohmann::json::parse(created.out).at("id").get<std::string>();
  const RunResult other = RunCommand(with({"--token", kOtherToken, "get", id}));
  EXPECT_EQ(other.code, 15) << other.Describe();
  EXPECT_EQ(RunCommand(with({"--token", kOtherToken, "cancel", id})).code, 15);
  EXPECT_EQ(Exportctl({"get", id}).code, 0);
}

TEST_F(ExportctlE2eTest, TheServerComesFromExportServerAndDownIsUnavailable) {
  const std::string down = Cat("127.0.0.1:", ClosedPort());
  const RunResult unavailable =
      RunCommand({EXPORTCTL_PATH, "--timeout", "20s", "list"},
                 {{"EXPORT_SERVER", down}, {"EXPORT_TOKEN", kClientToken}});
  EXPECT_EQ(unavailable.code, 24) << unavailable.Describe();
  EXPECT_THAT(unavailable.err, StartsWith("exportctl: UNAVAILABLE: "));

  const RunResult listed =
      RunCommand({EXPORTCTL_PATH, "list"},
                 {{"EXPORT_SERVER", server_->address()}, {"EXPORT_TOKEN", kClientToken}});
  EXPECT_EQ(listed.code, 0) << listed.Describe();
  // --server wins over the variable.
  const RunResult flag = RunCommand({EXPORTCTL_PATH, "--server", server_->address(), "list"},
                                    {{"EXPORT_SERVER", down}, {"EXPORT_TOKEN", kClientToken}});
  EXPECT_EQ(flag.code, 0) << flag.Describe();
}

TEST_F(ExportctlE2eTest, DownloadsEqualTheFileFetchedDirectly) {
  const ExportJob job = CompletedJob({"--part-size", "4KiB"});
  ASSERT_GT(job.file_parts(), 2);
  const std::string direct = CurlFile(job);
  ASSERT_EQ(static_cast<int64_t>(direct.size()), job.file_size_bytes());

  const RunResult http =
      Exportctl({"download", job.id(), "-o", Path("http.csv"), "--output", "json"});
  ASSERT_EQ(http.code, 0) << http.Describe();
  EXPECT_EQ(ReadFile(Path("http.csv")), direct);
  const nlohmann::json result = nlohmann::json::parse(http.out);
  EXPECT_EQ(result["parts_verified"], job.file_parts());
  EXPECT_EQ(result["transport"], "http");
  EXPECT_FALSE(Exists(Path("http.csv.partial")));
  EXPECT_FALSE(Exists(Path("http.csv.partial.json")));

  const RunResult grpc = Exportctl({"download", job.id(), "-o", Path("grpc.csv"), "--grpc"});
  ASSERT_EQ(grpc.code, 0) << grpc.Describe();
  EXPECT_EQ(ReadFile(Path("grpc.csv")), direct);
  EXPECT_THAT(grpc.out, HasSubstr(Cat(job.file_parts(), " parts verified by SHA-256")));

  const RunResult part = Exportctl({"download", job.id(), "--part", "2", "-o", Path("part2.csv")});
  ASSERT_EQ(part.code, 0) << part.Describe();
  EXPECT_EQ(ReadFile(Path("part2.csv")),
            direct.substr(static_cast<size_t>(job.parts(0).size_bytes()),
                          static_cast<size_t>(job.parts(1).size_bytes())));

  const RunResult exists = Exportctl({"download", job.id(), "-o", Path("http.csv")});
  EXPECT_EQ(exists.code, 6) << exists.Describe();
  EXPECT_THAT(exists.err, HasSubstr("exists; pass --force to overwrite it"));

  const RunResult no_part = Exportctl({"download", job.id(), "--part", "999"});
  EXPECT_EQ(no_part.code, 3) << no_part.Describe();
  EXPECT_THAT(no_part.err, HasSubstr("--part: job " + job.id() + " has "));
}

TEST_F(ExportctlE2eTest, AResumedDownloadSendsARangeAndGetsTheSameBytes) {
  const ExportJob job = CompletedJob({"--part-size", "4KiB"});
  const std::string direct = CurlFile(job);
  const size_t kept = direct.size() / 2 + 7;  // Inside a part, not at its boundary.
  // What an interrupted run leaves: a prefix, and the record of what it is.
  WriteFile(Path("resumed.csv.partial"), direct.substr(0, kept));
  WriteFile(Path("resumed.csv.partial.json"),
            EncodeSidecar({job.id(), 0, job.file_size_bytes(), Etag(job.download_url())}));

  const RunResult run =
      Exportctl({"download", job.id(), "-o", Path("resumed.csv"), "--output", "json"});
  ASSERT_EQ(run.code, 0) << run.Describe();
  EXPECT_EQ(ReadFile(Path("resumed.csv")), direct);
  EXPECT_THAT(run.err, HasSubstr(Cat("resumed at byte ", kept, ": HTTP 206 Partial Content")));
  const nlohmann::json result = nlohmann::json::parse(run.out);
  EXPECT_EQ(result["resumed_from"], kept);
  EXPECT_EQ(result["fetched_bytes"], direct.size() - kept);  // Only the rest came.
  EXPECT_FALSE(Exists(Path("resumed.csv.partial")));
  EXPECT_FALSE(Exists(Path("resumed.csv.partial.json")));
}

TEST_F(ExportctlE2eTest, ACorruptedPartialIsDetectedAndNotRenamedIntoPlace) {
  const ExportJob job = CompletedJob({"--part-size", "4KiB"});
  const std::string direct = CurlFile(job);
  std::string partial = direct.substr(0, direct.size() / 2);
  partial[100] = partial[100] == 'x' ? 'y' : 'x';  // In part 1.
  WriteFile(Path("bad.csv.partial"), partial);
  WriteFile(Path("bad.csv.partial.json"),
            EncodeSidecar({job.id(), 0, job.file_size_bytes(), Etag(job.download_url())}));

  const RunResult run = Exportctl({"download", job.id(), "-o", Path("bad.csv")});
  EXPECT_EQ(run.code, 5) << run.Describe();
  EXPECT_THAT(run.err, StartsWith("exportctl: DATA_LOSS: "));
  EXPECT_THAT(run.err, HasSubstr("part 1 (bytes 0-"));
  EXPECT_THAT(run.err, HasSubstr("SHA-256 is"));
  EXPECT_FALSE(Exists(Path("bad.csv")));
  EXPECT_FALSE(Exists(Path("bad.csv.partial")));
  EXPECT_FALSE(Exists(Path("bad.csv.partial.json")));

  // The next run starts from the beginning and succeeds.
  const RunResult again = Exportctl({"download", job.id(), "-o", Path("bad.csv")});
  ASSERT_EQ(again.code, 0) << again.Describe();
  EXPECT_EQ(ReadFile(Path("bad.csv")), direct);
}

}  // namespace
}  // namespace exportd::exportctl
