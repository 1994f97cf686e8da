#include "tests/support/server_process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace exportd::test_support {
namespace {

constexpr char kListeningPrefix[] = "grpc listening on ";

// Appends `data` to `buffer`, keeping only its last `limit` bytes.
void AppendTail(std::string& buffer, const char* data, size_t size, size_t limit) {
  buffer.append(data, size);
  if (buffer.size() > limit) buffer.erase(0, buffer.size() - limit);
}

std::string ErrnoMessage(const char* what, int error) {
  return absl::StrCat(what, ": ", strerror(error));
}

void CloseIfOpen(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

std::string ExitStatus::ToString() const {
  if (exited) return absl::StrCat("exit code ", code);
  return absl::StrCat("signal ", signal, " (", strsignal(signal), ")");
}

ExitStatus ExitStatus::FromWaitStatus(int wait_status) {
  ExitStatus status;
  if (WIFEXITED(wait_status)) {
    status.exited = true;
    status.code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    status.signal = WTERMSIG(wait_status);
  }
  return status;
}

// The child's stdout and stderr, read by a thread of its own until both pipes reach EOF (that
// is, until the child and anything that inherited its pipes are gone).
class ServerProcess::Output {
 public:
  Output(int stdout_fd, int stderr_fd, bool echo_stderr)
      : stdout_fd_(stdout_fd), stderr_fd_(stderr_fd), echo_stderr_(echo_stderr) {
    thread_ = std::thread([this] { Drain(); });
  }

  ~Output() {
    Join();
    CloseIfOpen(stdout_fd_);
    CloseIfOpen(stderr_fd_);
  }

  // Waits until the listening line arrived, stdout reached EOF, or `timeout` passed.
  // Returns the address from the listening line, or nullopt.
  std::optional<std::string> AwaitListening(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](Output* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                               return self->address_.has_value() || self->stdout_eof_;
                             },
                             this),
                         timeout);
    return address_;
  }

  bool listening() const {
    absl::MutexLock lock(&mu_);
    return address_.has_value();
  }

  bool stdout_closed() const {
    absl::MutexLock lock(&mu_);
    return stdout_eof_;
  }

  // Waits for the drain thread to finish. REQUIRES: the child has exited (else this may block).
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  std::string StdoutText() const {
    absl::MutexLock lock(&mu_);
    return stdout_;
  }

  std::string StderrTail() const {
    absl::MutexLock lock(&mu_);
    return stderr_;
  }

 private:
  void Drain() {
    char buffer[4096];
    bool stdout_open = true;
    bool stderr_open = true;
    while (stdout_open || stderr_open) {
      pollfd fds[2] = {{stdout_open ? stdout_fd_ : -1, POLLIN, 0},
                       {stderr_open ? stderr_fd_ : -1, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        absl::MutexLock lock(&mu_);
        if (n <= 0) {
          if (i == 0) {
            stdout_open = false;
            stdout_eof_ = true;
          } else {
            stderr_open = false;
          }
          continue;
        }
        if (i == 0) {
          OnStdout(buffer, static_cast<size_t>(n));
        } else {
          AppendTail(stderr_, buffer, static_cast<size_t>(n), kTailBytes);
          if (echo_stderr_) {
            // Best effort: a lost echo only loses a debugging aid.
            [[maybe_unused]] ssize_t written = write(STDERR_FILENO, buffer, n);
          }
        }
      }
    }
    absl::MutexLock lock(&mu_);
    stdout_eof_ = true;
  }

  void OnStdout(const char* data, size_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    AppendTail(stdout_, data, size, kTailBytes);
    if (address_.has_value()) return;
    partial_line_.append(data, size);
    size_t newline;
    while ((newline = partial_line_.find('\n')) != std::string::npos) {
      std::string line = partial_line_.substr(0, newline);
      partial_line_.erase(0, newline + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (absl::StartsWith(line, kListeningPrefix)) {
        address_ = line.substr(sizeof(kListeningPrefix) - 1);
        partial_line_.clear();
        return;
      }
    }
  }

  int stdout_fd_;
  int stderr_fd_;
  const bool echo_stderr_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::string stdout_ ABSL_GUARDED_BY(mu_);
  std::string stderr_ ABSL_GUARDED_BY(mu_);
  std::string partial_line_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> address_ ABSL_GUARDED_BY(mu_);
  bool stdout_eof_ ABSL_GUARDED_BY(mu_) = false;
};

namespace {

struct Spawned {
  pid_t pid;
  int stdout_fd;
  int stderr_fd;
};

// Forks and execs `options.binary` with its stdin on /dev/null and its stdout and stderr on
// pipes. Errors: INVALID_ARGUMENT when exec fails (e.g. no such binary); INTERNAL otherwise.
absl::StatusOr<Spawned> Spawn(const ServerProcess::Options& options) {
  std::vector<std::string> args = {options.binary, absl::StrCat("--data_dir=", options.data_dir),
                                   absl::StrCat("--grpc_address=", options.grpc_address),
                                   absl::StrCat("--http_address=", options.http_address)};
  if (!options.tokens_file.empty()) {
    args.push_back(absl::StrCat("--tokens_file=", options.tokens_file));
  } else if (options.insecure_no_auth) {
    args.push_back("--insecure_no_auth");
  }
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  int exec_error[2] = {-1, -1};  // The child writes errno here when exec fails.
  auto close_all = [&] {
    for (int* fds : {out, err, exec_error}) {
      CloseIfOpen(fds[0]);
      CloseIfOpen(fds[1]);
    }
  };
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
      pipe2(exec_error, O_CLOEXEC) != 0) {
    int error = errno;
    close_all();
    return absl::InternalError(ErrnoMessage("pipe2", error));
  }

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    int error = errno;
    close_all();
    return absl::InternalError(ErrnoMessage("fork", error));
  }
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    // The server gets the default signal mask, whatever this thread blocks.
    sigset_t no_signals;
    sigemptyset(&no_signals);
    sigprocmask(SIG_SETMASK, &no_signals, nullptr);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0 ||
        dup2(err[1], STDERR_FILENO) < 0) {
      int error = errno;
      [[maybe_unused]] ssize_t n = write(exec_error[1], &error, sizeof(error));
      _exit(127);
    }
    execv(argv[0], argv.data());
    int error = errno;
    [[maybe_unused]] ssize_t n = write(exec_error[1], &error, sizeof(error));
    _exit(127);
  }

  CloseIfOpen(out[1]);
  CloseIfOpen(err[1]);
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
    return absl::InvalidArgumentError(
        absl::StrCat("cannot execute ", options.binary, ": ", strerror(child_errno)));
  }
  return Spawned{pid, out[0], err[0]};
}

}  // namespace

ServerProcess::ServerProcess(pid_t pid, std::unique_ptr<Output> output)
    : pid_(pid), output_(std::move(output)) {}

ServerProcess::~ServerProcess() {
  if (running()) {
    // Best effort: the destructor has nobody to report to.
    [[maybe_unused]] absl::Status status = KillAndReap();
  }
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(const Options& options) {
  absl::StatusOr<Spawned> spawned = Spawn(options);
  if (!spawned.ok()) return spawned.status();
  std::unique_ptr<ServerProcess> process(new ServerProcess(
      spawned->pid,
      std::make_unique<Output>(spawned->stdout_fd, spawned->stderr_fd, options.echo_stderr)));

  std::optional<std::string> address = process->output_->AwaitListening(options.start_timeout);
  if (address.has_value()) {
    process->address_ = *std::move(address);
    return process;
  }
  // Stdout closed or the timeout passed: the server will not listen. When stdout closed, give
  // the process a moment to exit on its own, so that its exit status can be reported.
  absl::StatusOr<bool> exited = false;
  if (process->output_->stdout_closed()) exited = process->WaitForExit(absl::Seconds(10));
  if (!exited.ok()) return exited.status();
  if (!*exited) {
    absl::Status killed = process->KillAndReap();
    if (!killed.ok()) return killed;
    return absl::DeadlineExceededError(
        absl::StrCat(options.binary, " printed no '", kListeningPrefix, "HOST:PORT' line within ",
                     absl::FormatDuration(options.start_timeout), "; stdout:\n",
                     process->StdoutText(), "\nstderr:\n", process->StderrTail()));
  }
  return absl::FailedPreconditionError(
      absl::StrCat(options.binary, " exited with ", process->exit_status_->ToString(),
                   " before listening; stderr:\n", process->StderrTail()));
}

absl::StatusOr<ExitInfo> ServerProcess::RunUntilExit(const Options& options,
                                                     absl::Duration timeout) {
  absl::StatusOr<Spawned> spawned = Spawn(options);
  if (!spawned.ok()) return spawned.status();
  ServerProcess process(
      spawned->pid,
      std::make_unique<Output>(spawned->stdout_fd, spawned->stderr_fd, options.echo_stderr));
  absl::StatusOr<bool> exited = process.WaitForExit(timeout);
  if (!exited.ok()) return exited.status();
  if (!*exited) {
    bool listening = process.output_->listening();
    absl::Status killed = process.KillAndReap();
    if (!killed.ok()) return killed;
    return absl::DeadlineExceededError(
        absl::StrCat(options.binary, " was still running after ", absl::FormatDuration(timeout),
                     listening ? " and serving" : " and not serving", "; stdout:\n",
                     process.StdoutText(), "\nstderr:\n", process.StderrTail()));
  }
  ExitInfo info;
  info.status = *process.exit_status_;
  info.stdout_text = process.StdoutText();
  info.stderr_text = process.StderrTail();
  return info;
}

absl::StatusOr<bool> ServerProcess::WaitForExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int wait_status;
    pid_t reaped = waitpid(pid_, &wait_status, WNOHANG);
    if (reaped == pid_) {
      exit_status_ = ExitStatus::FromWaitStatus(wait_status);
      output_->Join();
      return true;
    }
    if (reaped < 0 && errno != EINTR) {
      return absl::InternalError(ErrnoMessage("waitpid", errno));
    }
    if (absl::Now() >= deadline) return false;
    // Polling for the exit with a deadline; nothing else waits on this.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

absl::Status ServerProcess::KillAndReap() {
  if (kill(pid_, SIGKILL) != 0 && errno != ESRCH) {
    return absl::InternalError(ErrnoMessage("kill", errno));
  }
  int wait_status;
  pid_t reaped;
  do {
    reaped = waitpid(pid_, &wait_status, 0);
  } while (reaped < 0 && errno == EINTR);
  if (reaped != pid_) return absl::InternalError(ErrnoMessage("waitpid", errno));
  exit_status_ = ExitStatus::FromWaitStatus(wait_status);
  output_->Join();
  return absl::OkStatus();
}

absl::Status ServerProcess::Kill9() {
  if (!running()) return absl::FailedPreconditionError("the server process was already reaped");
  return KillAndReap();
}

absl::StatusOr<ExitStatus> ServerProcess::Terminate(absl::Duration timeout) {
  if (!running()) return absl::FailedPreconditionError("the server process was already reaped");
  if (kill(pid_, SIGTERM) != 0) return absl::InternalError(ErrnoMessage("kill", errno));
  absl::StatusOr<bool> exited = WaitForExit(timeout);
  if (!exited.ok()) return exited.status();
  if (*exited) return *exit_status_;
  absl::Status killed = KillAndReap();
  if (!killed.ok()) return killed;
  return absl::DeadlineExceededError(
      absl::StrCat("the server did not exit within ", absl::FormatDuration(timeout),
                   " of SIGTERM and was killed; stderr:\n", StderrTail()));
}

std::string ServerProcess::StdoutText() const { return output_->StdoutText(); }

std::string ServerProcess::StderrTail() const { return output_->StderrTail(); }

}  // namespace exportd::test_support
