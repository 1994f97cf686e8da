// export-server: serves ExportService over gRPC and keeps the jobs in RocksDB.
//
//   export-server --data_dir=data --grpc_address=127.0.0.1:50051
//
// Prints "grpc listening on HOST:PORT" to stdout once serving. SIGINT or SIGTERM shut it down
// gracefully; it exits 0 after a clean shutdown and 1 when it cannot start.
#include <signal.h>

#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "server/export_server.h"

ABSL_FLAG(std::string, data_dir, "data", "Directory for the job database (created when missing).");
ABSL_FLAG(std::string, grpc_address, "127.0.0.1:50051",
          "HOST:PORT for the gRPC API; port 0 picks a free port.");
ABSL_FLAG(std::string, http_address, "127.0.0.1:8080",
          "HOST:PORT reserved for the HTTP port (downloads, metrics, health).");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "Time in-flight calls get to finish at shutdown.");
ABSL_FLAG(int, read_threads, 2, "Threads serving reads from the job database.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Serves export jobs over gRPC. Flags:");
  absl::ParseCommandLine(argc, argv);

  // Block the shutdown signals in every thread; this thread waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  exportd::ServerOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.read_threads = absl::GetFlag(FLAGS_read_threads);
  if (options.read_threads < 1) {
    std::cerr << "export-server: read_threads: must be at least 1\n";
    return 1;
  }

  auto server = exportd::ExportServer::Start(options);
  if (!server.ok()) {
    std::cerr << "export-server: cannot start: " << server.status().message() << "\n";
    return 1;
  }
  std::printf("grpc listening on %s\n", (*server)->grpc_address().c_str());
  std::fflush(stdout);
  std::cerr << "export-server: serving jobs from " << options.data_dir << "\n";

  int received = 0;
  sigwait(&signals, &received);
  std::cerr << "export-server: " << (received == SIGINT ? "SIGINT" : "SIGTERM")
            << ", shutting down\n";
  (*server)->Shutdown();
  std::cerr << "export-server: stopped\n";
  return 0;
}
