#include "bench/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace exportd::bench {
namespace {

std::string ErrnoMessage(const std::string& what, int error) {
  return absl::StrCat(what, ": ", std::strerror(error));
}

void CloseIfOpen(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// The program to exec: a name without a slash is looked up in $PATH.
absl::StatusOr<std::string> ResolveProgram(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/", program);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError(absl::StrCat(program, ": not found in $PATH"));
}

// This process's environment with `extra` (NAME=VALUE) added or replacing.
std::vector<std::string> Environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text(*entry);
    const std::string name = text.substr(0, text.find('='));
    const bool replaced = std::any_of(extra.begin(), extra.end(), [&](const std::string& e) {
      return e.substr(0, e.find('=')) == name;
    });
    if (!replaced) env.emplace_back(text);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// Polls `fd` for input until `deadline`; false on timeout.
bool PollUntil(int fd, absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p{fd, POLLIN, 0};
    const int timeout_ms = static_cast<int>(std::min<int64_t>(
        absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 1 << 30));
    const int n = poll(&p, 1, timeout_ms);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // Let the caller's read or waitid see the error.
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(const Options& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("no program to run");
  absl::StatusOr<std::string> program = ResolveProgram(options.argv[0]);
  if (!program.ok()) return program.status();

  const char* const program_path = program->c_str();
  std::vector<std::string> args = options.argv;
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = Environment(options.env);
  std::vector<char*> envp;
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);

  int out[2] = {-1, -1};         // A captured stdout.
  int exec_error[2] = {-1, -1};  // The child writes errno here when exec fails.
  int out_file = -1;
  int err_file = -1;
  auto close_all = [&] {
    for (int* fds : {out, exec_error}) {
      CloseIfOpen(fds[0]);
      CloseIfOpen(fds[1]);
    }
    CloseIfOpen(out_file);
    CloseIfOpen(err_file);
  };
  if (pipe2(exec_error, O_CLOEXEC) != 0 ||
      (options.stdout_path.empty() && pipe2(out, O_CLOEXEC) != 0)) {
    const int error = errno;
    close_all();
    return absl::InternalError(ErrnoMessage("pipe2", error));
  }
  if (!options.stdout_path.empty()) {
    out_file = open(options.stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_file < 0) {
      const int error = errno;
      close_all();
      return absl::InternalError(ErrnoMessage(options.stdout_path, error));
    }
  }
  if (!options.stderr_path.empty()) {
    err_file = open(options.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (err_file < 0) {
      const int error = errno;
      close_all();
      return absl::InternalError(ErrnoMessage(options.stderr_path, error));
    }
  }
  const int child_out = options.stdout_path.empty() ? out[1] : out_file;

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int error = errno;
    close_all();
    return absl::InternalError(ErrnoMessage("fork", error));
  }
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t no_signals;
    sigemptyset(&no_signals);
    sigprocmask(SIG_SETMASK, &no_signals, nullptr);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(child_out, STDOUT_FILENO) < 0 ||
        (err_file >= 0 && dup2(err_file, STDERR_FILENO) < 0)) {
      int error = errno;
      [[maybe_unused]] ssize_t n = write(exec_error[1], &error, sizeof(error));
      _exit(127);
    }
    execve(program_path, argv.data(), envp.data());
    int error = errno;
    [[maybe_unused]] ssize_t n = write(exec_error[1], &error, sizeof(error));
    _exit(127);
  }

  CloseIfOpen(out[1]);
  CloseIfOpen(out_file);
  CloseIfOpen(err_file);
  CloseIfOpen(exec_error[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(exec_error[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  CloseIfOpen(exec_error[0]);
  if (n > 0) {
    int wait_status;
    while (waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
    }
    close_all();
    return absl::InvalidArgumentError(ErrnoMessage(absl::StrCat("exec ", *program), child_errno));
  }

  auto child = std::unique_ptr<ChildProcess>(new ChildProcess());
  child->pid_ = pid;
  child->stderr_path_ = options.stderr_path;
  child->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (child->pidfd_ < 0) {
    const int error = errno;
    kill(pid, SIGKILL);
    int wait_status;
    while (waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
    }
    child->exit_status_ = test_support::ExitStatus::FromWaitStatus(wait_status);
    close_all();
    return absl::InternalError(ErrnoMessage("pidfd_open", error));
  }
  if (options.stdout_path.empty()) {
    child->stdout_fd_ = out[0];
    out[0] = -1;
    child->drain_ = std::thread([c = child.get()] { c->Drain(); });
  } else {
    std::lock_guard<std::mutex> lock(child->mu_);
    child->stdout_ended_ = true;
  }
  return child;
}

ChildProcess::~ChildProcess() {
  if (!exit_status_.has_value() && pid_ > 0) {
    kill(pid_, SIGKILL);
    int wait_status;
    while (waitpid(pid_, &wait_status, 0) < 0 && errno == EINTR) {
    }
  }
  if (drain_.joinable()) drain_.join();
  CloseIfOpen(pidfd_);
}

void ChildProcess::Drain() {
  char buffer[4096];
  while (true) {
    const ssize_t n = read(stdout_fd_, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (n <= 0) {
      stdout_ended_ = true;
      changed_.notify_all();
      break;
    }
    stdout_text_.append(buffer, static_cast<size_t>(n));
    changed_.notify_all();
  }
  CloseIfOpen(stdout_fd_);
}

absl::Status ChildProcess::WaitForStdoutLine(std::string_view prefix, absl::Duration timeout) {
  if (!drain_.joinable()) return absl::FailedPreconditionError("stdout is not captured");
  const std::string wanted(prefix);
  auto has_line = [&] {
    for (absl::string_view line : absl::StrSplit(stdout_text_, '\n')) {
      if (absl::StartsWith(line, wanted)) return true;
    }
    return false;
  };
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                    [&] { return has_line() || stdout_ended_; });
  if (has_line()) return absl::OkStatus();
  if (stdout_ended_) {
    return absl::FailedPreconditionError(
        absl::StrCat("stdout ended without a line starting with \"", wanted, "\""));
  }
  return absl::DeadlineExceededError(absl::StrCat("no line starting with \"", wanted, "\" within ",
                                                  absl::FormatDuration(timeout)));
}

absl::StatusOr<test_support::ExitStatus> ChildProcess::Wait(absl::Duration timeout) {
  if (exit_status_.has_value()) return absl::FailedPreconditionError("already reaped");
  if (!PollUntil(pidfd_, absl::Now() + timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("pid ", pid_, " still runs after ", absl::FormatDuration(timeout)));
  }
  int wait_status;
  while (waitpid(pid_, &wait_status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(ErrnoMessage("waitpid", errno));
  }
  exit_status_ = test_support::ExitStatus::FromWaitStatus(wait_status);
  if (drain_.joinable()) drain_.join();
  return *exit_status_;
}

absl::StatusOr<test_support::ExitStatus> ChildProcess::Terminate(absl::Duration timeout) {
  if (exit_status_.has_value()) return absl::FailedPreconditionError("already reaped");
  if (kill(pid_, SIGTERM) != 0) return absl::InternalError(ErrnoMessage("kill", errno));
  absl::StatusOr<test_support::ExitStatus> status = Wait(timeout);
  if (absl::IsDeadlineExceeded(status.status())) {
    kill(pid_, SIGKILL);
    (void)Wait(absl::InfiniteDuration());
  }
  return status;
}

std::string ChildProcess::StdoutText() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stdout_text_;
}

std::string ChildProcess::StderrText(size_t max_bytes) const {
  if (stderr_path_.empty()) return "";
  std::ifstream in(stderr_path_, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  return all.size() > max_bytes ? all.substr(all.size() - max_bytes) : all;
}

}  // namespace exportd::bench
