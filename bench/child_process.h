// ChildProcess: a helper program the benchmark runs beside the server (export-worker, sqlite3,
// dd), with its stdout captured in memory or written to a file and its stderr kept in a file.
//
// The child is killed with SIGKILL when the thread that started it ends (PR_SET_PDEATHSIG: start
// children from a long-lived thread such as main) and when the ChildProcess is destroyed while
// the child still runs. Waits use a pidfd, never sleeps.
//
// Thread safety: not thread-safe; call its methods from one thread at a time. The background
// thread that drains a captured stdout is internal.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/support/server_process.h"

namespace exportd::bench {

class ChildProcess {
 public:
  struct Options {
    // argv[0] is the program: a path, or a name looked up in $PATH.
    std::vector<std::string> argv;
    // Where stdout goes: empty captures it in memory (StdoutText, WaitForStdoutLine); otherwise
    // the file is created or truncated.
    std::string stdout_path;
    // Where stderr goes: empty inherits this process's stderr; otherwise the file is created or
    // truncated (StderrText reads it back).
    std::string stderr_path;
    // NAME=VALUE entries added to (or replacing in) this process's environment.
    std::vector<std::string> env;
  };

  // Starts the child. Errors: NOT_FOUND when the program is not found in $PATH;
  // INVALID_ARGUMENT when exec fails; INTERNAL when a system call fails.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const Options& options);

  // Kills the child with SIGKILL if it still runs, and reaps it.
  ~ChildProcess();

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Waits until a captured stdout holds a line that starts with `prefix`.
  // Errors: FAILED_PRECONDITION when stdout ended (the child exited) without one, or stdout is
  // not captured; DEADLINE_EXCEEDED after `timeout`.
  absl::Status WaitForStdoutLine(std::string_view prefix, absl::Duration timeout);

  // Waits up to `timeout` for the child to exit and reaps it.
  // Errors: DEADLINE_EXCEEDED (the child still runs); FAILED_PRECONDITION when already reaped.
  absl::StatusOr<test_support::ExitStatus> Wait(absl::Duration timeout);

  // Sends SIGTERM, then waits up to `timeout`; on DEADLINE_EXCEEDED the child is killed.
  absl::StatusOr<test_support::ExitStatus> Terminate(absl::Duration timeout);

  // A captured stdout so far.
  std::string StdoutText() const;
  // The last `max_bytes` of the stderr file (empty when stderr is inherited).
  std::string StderrText(size_t max_bytes = 4096) const;

 private:
  ChildProcess() = default;
  void Drain();  // The stdout thread's body.

  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::string stderr_path_;
  std::optional<test_support::ExitStatus> exit_status_;

  int stdout_fd_ = -1;  // Read end of a captured stdout; owned by the drain thread.
  std::thread drain_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::string stdout_text_;    // Guarded by mu_.
  bool stdout_ended_ = false;  // Guarded by mu_.
};

}  // namespace exportd::bench
