// ServerProcess: a real export-server child process, for end-to-end tests and the benchmark.
//
// Start() runs the binary with --data_dir and --grpc_address, then reads its stdout until the
// server announces `grpc listening on HOST:PORT`; address() is that HOST:PORT. A background
// thread keeps draining the child's stdout and stderr for its whole life (so a chatty server
// never blocks on a full pipe) and keeps the last bytes of each for error messages.
//
// The child is killed with SIGKILL when the thread that started it ends (PR_SET_PDEATHSIG: start
// servers from a long-lived thread such as main) and when the ServerProcess is destroyed while the
// child still runs, so a failing test leaks no servers.
//
// Thread safety: a ServerProcess is not thread-safe: call its methods from one thread at a time
// (the background drain thread is internal). address(), pid(), StdoutText() and StderrTail()
// may be called from any thread while no other method runs..
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tests/support/temp_dir.h"

namespace exportd::test_support {

// How a child process ended.
struct ExitStatus {
  // True when the process called exit (or returned from main); false when a signal ended it.
  bool exited = false;
  // The exit code when exited; otherwise 0.
  int code = 0;
  // The signal that ended the process when !exited; otherwise 0.
  int signal = 0;

  // True for exit code 0.
  bool success() const { return exited && code == 0; }
  // "exit code 1" or "signal 9 (Killed)".
  std::string ToString() const;
  // Decodes a status from waitpid.
  static ExitStatus FromWaitStatus(int wait_status);
};

// Everything a process that ended produced.
struct ExitInfo {
  ExitStatus status;
  std::string stdout_text;
  std::string stderr_text;  // The last ServerProcess::kTailBytes bytes only.
};

class ServerProcess {
 public:
  struct Options {
    // Path of the export-server binary.
    std::string binary;
    // Passed as --data_dir.
    std::string data_dir;
    // Passed as --grpc_address; port 0 lets the server pick a free port.
    std::string grpc_address = "127.0.0.1:0";
    // Passed as --http_address; port 0 lets the server pick a free port.
    std::string http_address = "127.0.0.1:0";
    // Authentication: with a tokens_file, passed as --tokens_file; otherwise --insecure_no_auth
    // when insecure_no_auth (the default, for tests of everything but authentication); neither
    // when both are unset (the server then refuses to start).
    std::string tokens_file;
    bool insecure_no_auth = true;
    // More arguments, appended as given (e.g. "--lease_duration=2s").
    std::vector<std::string> extra_args;
    // How long Start() waits for the listening line.
    absl::Duration start_timeout = absl::Seconds(30);
    // When true, the child's stderr is also copied to this process's stderr as it arrives.
    bool echo_stderr = false;
  };

  // How much of the child's stderr (and stdout) is kept.
  static constexpr size_t kTailBytes = 16 * 1024;

  // Starts the server and waits until it prints `grpc listening on HOST:PORT`.
  // On success the server is serving at address().
  // Errors: INVALID_ARGUMENT when the binary cannot be executed; FAILED_PRECONDITION when the
  // process exited before listening (the message carries its exit status and stderr tail);
  // DEADLINE_EXCEEDED when it printed no listening line within options.start_timeout (the
  // process is then killed; the message carries its stderr tail).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(const Options& options);

  // Runs the server expecting it to fail to start, and waits for it to exit.
  // On success returns how it ended and what it printed, whatever its exit code.
  // Errors: INVALID_ARGUMENT when the binary cannot be executed; DEADLINE_EXCEEDED when it was
  // still running after `timeout` (it is then killed; the message says whether it was serving
  // and carries its output).
  static absl::StatusOr<ExitInfo> RunUntilExit(const Options& options, absl::Duration timeout);

  // Kills the child with SIGKILL if it still runs.
  ~ServerProcess();

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // HOST:PORT from the listening line, with the real port.
  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  // True until the child has been reaped by Kill9() or Terminate().
  bool running() const { return !exit_status_.has_value(); }

  // Sends SIGKILL and reaps the child. On success the child is gone and exit_status() is set.
  // Errors: FAILED_PRECONDITION when the child was already reaped; INTERNAL when kill or waitpid
  // fail.
  [[nodiscard]] absl::Status Kill9();

  // Sends SIGTERM and waits up to `timeout` for the child to exit; returns how it ended.
  // Errors: FAILED_PRECONDITION when the child was already reaped; DEADLINE_EXCEEDED when it did
  // not exit in time (it is then killed with SIGKILL and reaped; the message carries its stderr
  // tail); INTERNAL when kill or waitpid fail.
  absl::StatusOr<ExitStatus> Terminate(absl::Duration timeout);

  // How the child ended; nullopt while it runs.
  const std::optional<ExitStatus>& exit_status() const { return exit_status_; }

  // The last kTailBytes of the child's stdout and of its stderr so far.
  std::string StdoutText() const;
  std::string StderrTail() const;

 private:
  class Output;  // Buffers of the child's stdout and stderr, filled by the drain thread.

  ServerProcess(pid_t pid, std::unique_ptr<Output> output);

  // Polls waitpid until the child exits or `timeout` passes. True when it was reaped.
  absl::StatusOr<bool> WaitForExit(absl::Duration timeout);
  // Reaps the child after SIGKILL and joins the drain thread.
  absl::Status KillAndReap();

  pid_t pid_;
  std::unique_ptr<Output> output_;
  std::string address_;
  std::optional<ExitStatus> exit_status_;
};

}  // namespace exportd::test_support
