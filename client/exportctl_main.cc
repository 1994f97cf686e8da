// exportctl: the command-line client of export-server. `exportctl --help` lists the commands,
// options and exit codes; docs/exportctl.md describes them with examples.
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/export_client.h"
#include "client/exportctl_cli.h"
#include "client/exportctl_commands.h"
#include "client/exportctl_exit.h"
#include "common/str_cat.h"

namespace exportd::exportctl {
namespace {

int TerminalWidth() {
  winsize size{};
  for (int fd : {STDOUT_FILENO, STDERR_FILENO}) {
    if (ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  }
  if (const char* columns = std::getenv("COLUMNS"); columns != nullptr && std::atoi(columns) > 0) {
    return std::atoi(columns);
  }
  return 80;
}

// SIGINT and SIGTERM cancel the running command through `cancel` (it then exits with
// kExitInterrupted, keeping what can be resumed); a second one ends the process at once. The
// signals are blocked in every thread and taken by a thread of their own with sigwait, so
// nothing runs in signal-handler context.
class SignalCanceller {
 public:
  // REQUIRES: constructed before any other thread starts (threads inherit the mask).
  explicit SignalCanceller(client::CancelToken* cancel) {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    sigaddset(&signals_, SIGUSR1);  // Stops the thread.
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    thread_ = std::thread([this, cancel] {
      int interruptions = 0;
      while (true) {
        int signal = 0;
        if (sigwait(&signals_, &signal) != 0 || signal == SIGUSR1) return;
        if (++interruptions > 1) _exit(kExitInterrupted);
        cancel->Cancel();
      }
    });
  }

  ~SignalCanceller() {
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }

 private:
  sigset_t signals_;
  std::thread thread_;
};

int Main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  std::optional<std::string> env_server;
  if (const char* server = std::getenv("EXPORT_SERVER"); server != nullptr) env_server = server;
  ParseOutcome parsed = ParseCommandLine(args, env_server);
  std::cout << parsed.out_text << std::flush;
  std::cerr << parsed.err_text << std::flush;
  if (!parsed.invocation.has_value()) return parsed.exit_code;
  const Invocation& invocation = *parsed.invocation;

  client::CancelToken cancel;
  SignalCanceller signals(&cancel);
  client::CallOptions options;
  options.timeout = invocation.timeout;
  std::optional<std::string> env_token;
  if (const char* token = std::getenv("EXPORT_TOKEN"); token != nullptr) env_token = token;
  absl::StatusOr<std::string> token = ResolveToken(invocation, env_token);
  if (!token.ok()) {
    std::cerr << "exportctl: " << ErrorText(token.status()) << "\n";
    return ExitCodeOf(token.status());
  }
  options.token = *std::move(token);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      client::MakeCredentials({.ca_file = invocation.tls_ca,
                               .cert_file = invocation.tls_cert,
                               .key_file = invocation.tls_key});
  if (!credentials.ok()) {
    const absl::Status usage = UsageError(Cat("--", credentials.status().message()));
    std::cerr << "exportctl: " << ErrorText(usage) << "\n";
    return ExitCodeOf(usage);
  }
  client::ExportClient client(client::MakeChannel(invocation.server, *credentials), options);

  Runtime runtime;
  runtime.client = &client;
  runtime.out = &std::cout;
  runtime.err = &std::cerr;
  runtime.terminal.stdout_is_tty = isatty(STDOUT_FILENO) == 1;
  runtime.terminal.stderr_is_tty = isatty(STDERR_FILENO) == 1;
  runtime.terminal.width = TerminalWidth();
  runtime.cancel = &cancel;
  return RunCommand(invocation, runtime);
}

}  // namespace
}  // namespace exportd::exportctl

int main(int argc, char** argv) { return exportd::exportctl::Main(argc, argv); }
