// export-server: serves ExportService over gRPC and keeps the jobs in RocksDB.
//
//   export-server --data_dir=data --grpc_address=127.0.0.1:50051
//   EXPORTD_DATA_DIR=/var/lib/exportd export-server --config=/etc/exportd/export-server.conf
//
// Every flag can also come from the environment (EXPORTD_<NAME>) or a config file; see
// common/config.h for the precedence.
//
// Prints "http listening on HOST:PORT" and then "grpc listening on HOST:PORT" to stdout once
// serving, and logs one JSON object per line to stderr (common/logging.h; --log_level).
// Unusable flags are reported as plain text on stderr before anything runs. SIGINT or SIGTERM
// shut it down gracefully; it exits 0 after a clean shutdown and 1 when it cannot start.
// SIGHUP reloads --tokens_file (a bad file keeps the old tokens and logs auth.reload_failed).
// Without --tokens_file it refuses to start unless --insecure_no_auth says so.
#include <malloc.h>
#include <signal.h>

#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/synchronization/mutex.h"
#include "common/allocator.h"
#include "common/config.h"
#include "common/logging.h"
#include "server/auth.h"
#include "server/export_server.h"

ABSL_FLAG(std::string, data_dir, "data", "Directory for the job database (created when missing).");
ABSL_FLAG(std::string, grpc_address, "127.0.0.1:50051",
          "HOST:PORT for the gRPC API; port 0 picks a free port.");
ABSL_FLAG(std::string, http_address, "127.0.0.1:8080",
          "HOST:PORT of the HTTP port (signed downloads, the JSON view of the jobs, /metrics, "
          "/healthz, /readyz); port 0 picks a free port.");
ABSL_FLAG(std::string, public_url, "",
          "Scheme, host and port that download URLs start with; empty: http://<http_address>.");
ABSL_FLAG(std::string, signing_key_file, "",
          "Key that signs download URLs; created when missing. Empty: <data_dir>/signing.key.");
ABSL_FLAG(absl::Duration, retention, absl::Hours(24 * 7),
          "How long a completed export stays downloadable.");
ABSL_FLAG(absl::Duration, lease_duration, absl::Seconds(30),
          "How long a worker's claim or progress report keeps its lease.");
ABSL_FLAG(int, max_attempts, 3, "Claims of a job before a failure or lease expiry fails it.");
ABSL_FLAG(absl::Duration, retry_backoff, absl::Seconds(1),
          "Backoff before a job's first retry; doubles with each attempt, at most 5 minutes.");
ABSL_FLAG(absl::Duration, job_retention, absl::Hours(24 * 30),
          "How long finished jobs are kept before the janitor deletes them.");
ABSL_FLAG(absl::Duration, janitor_interval, absl::Hours(1),
          "How often expired files and old jobs are removed.");
ABSL_FLAG(absl::Duration, max_claim_wait, absl::Seconds(30), "Longest long-poll of a claim.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "Time in-flight calls get to finish at shutdown.");
ABSL_FLAG(int, read_threads, 2, "Threads serving reads from the job database.");
ABSL_FLAG(std::string, tokens_file, "",
          "Bearer tokens of the callers: one `<token> <principal> <tenant> <role>` per line (role "
          "client, worker or admin; see docs/operations.md). Reloaded on SIGHUP. Required unless "
          "--insecure_no_auth.");
ABSL_FLAG(bool, insecure_no_auth, false,
          "Development only: no authentication; every caller is an admin of tenant \"\".");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain of the gRPC port (enables TLS).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates; when set, every gRPC client must present a certificate they "
          "signed (mutual TLS). Needs --tls_cert and --tls_key.");

// Limits (docs/operations.md, "Limits"). A refused call is RESOURCE_EXHAUSTED naming the limit,
// with a google.rpc.RetryInfo in its error details when waiting helps.
ABSL_FLAG(int64_t, max_active_jobs_per_tenant, 10'000,
          "Most pending or processing jobs of one tenant; 0: no limit.");
ABSL_FLAG(double, create_rate_per_tenant, 1000,
          "Creates per second of one tenant, on average; 0: no limit.");
ABSL_FLAG(int, create_burst_per_tenant, 2000,
          "Creates one tenant may make at once above create_rate_per_tenant.");
ABSL_FLAG(int, max_watchers_per_tenant, 10'000,
          "Most open watch streams of one tenant; 0: no limit.");
ABSL_FLAG(int, max_watchers, 20'000, "Most open watch streams of the server; 0: no limit.");
ABSL_FLAG(int, max_batch_creates, 1000, "Most jobs one BatchCreateExportJobs call may create.");
ABSL_FLAG(int, max_fields, 500, "Most fields of one export.");
ABSL_FLAG(int64_t, max_filters_bytes, 64 << 10, "Largest filters of one export, in bytes.");
ABSL_FLAG(int, max_filters_depth, 8, "Deepest nesting of an export's filters.");
ABSL_FLAG(int64_t, max_part_size_bytes, int64_t{4} << 30,
          "Largest part_size_bytes of an export, and largest uploaded part.");
ABSL_FLAG(int64_t, max_upload_chunk_bytes, 4 << 20,
          "Largest data message of a part upload; every request is limited to this plus 64 KiB.");
ABSL_FLAG(int, max_metadata_bytes, 16 << 10, "Largest metadata (headers) of a call, in bytes.");
ABSL_FLAG(int, max_page_size, 1000, "Largest page_size of ListExportJobs.");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Minutes(1),
          "The server pings a connection idle this long.");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(20),
          "Closes a connection whose keepalive ping is not answered within this.");
ABSL_FLAG(absl::Duration, min_client_ping_interval, absl::Seconds(10),
          "Shortest interval of client keepalive pings accepted (also without calls); clients "
          "pinging more often get GOAWAY too_many_pings.");

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG, which leaves Mutex's deadlock detector on: a
  // process-wide graph of lock order, updated under a global lock on every acquisition. The
  // tests keep it; the service does not pay for it (docs/performance.md, "watch delivery").
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Part uploads allocate and free a chunk (1 MiB, up to --max_upload_chunk_bytes) per message,
  // on different threads. Keep such blocks in the heap instead of mapping, faulting in and
  // unmapping each one (about 0.3 CPU-s per GiB uploaded): the values glibc's own adaptive
  // thresholds reach at their maximum, fixed from the start (docs/performance.md, "Part upload").
  // Only glibc's malloc reads these; jemalloc (common/allocator.h) keeps such blocks by itself.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  absl::StatusOr<std::vector<char*>> positional = exportd::LoadConfig(
      argc, argv, "export-server",
      "Serves export jobs: the gRPC API (ExportService, WorkerService, health, reflection) and "
      "an HTTP port for downloads, the JSON view of the jobs, /metrics, /healthz and /readyz.");
  if (!positional.ok()) {
    std::cerr << "export-server: " << positional.status().message() << "\n";
    return 1;
  }
  if (positional->size() > 1) {
    std::cerr << "export-server: unexpected argument \"" << (*positional)[1]
              << "\" (every setting is a flag; see --help)\n";
    return 1;
  }

  const std::string tokens_file = absl::GetFlag(FLAGS_tokens_file);
  const bool insecure_no_auth = absl::GetFlag(FLAGS_insecure_no_auth);
  if (tokens_file.empty() && !insecure_no_auth) {
    std::cerr << "export-server: --tokens_file is required: every call needs a bearer token "
                 "(see docs/operations.md); for development only, --insecure_no_auth accepts "
                 "every caller as an admin\n";
    return 1;
  }
  if (!tokens_file.empty() && insecure_no_auth) {
    std::cerr << "export-server: --tokens_file and --insecure_no_auth exclude each other\n";
    return 1;
  }

  // Block the shutdown signals and SIGHUP (reload the tokens) in every thread; this thread
  // waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  exportd::ServerOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.read_threads = absl::GetFlag(FLAGS_read_threads);
  options.http_address = absl::GetFlag(FLAGS_http_address);
  options.public_url = absl::GetFlag(FLAGS_public_url);
  options.signing_key_file = absl::GetFlag(FLAGS_signing_key_file);
  options.jobs.retention = absl::GetFlag(FLAGS_retention);
  options.jobs.lease_duration = absl::GetFlag(FLAGS_lease_duration);
  options.jobs.max_attempts = absl::GetFlag(FLAGS_max_attempts);
  options.jobs.retry_backoff = absl::GetFlag(FLAGS_retry_backoff);
  options.workers.max_claim_wait = absl::GetFlag(FLAGS_max_claim_wait);
  options.job_retention = absl::GetFlag(FLAGS_job_retention);
  options.janitor_interval = absl::GetFlag(FLAGS_janitor_interval);
  options.jobs.max_active_jobs_per_tenant = absl::GetFlag(FLAGS_max_active_jobs_per_tenant);
  options.jobs.max_page_size = absl::GetFlag(FLAGS_max_page_size);
  options.create_limits.create_rate_per_tenant = absl::GetFlag(FLAGS_create_rate_per_tenant);
  options.create_limits.create_burst_per_tenant = absl::GetFlag(FLAGS_create_burst_per_tenant);
  options.create_limits.max_batch_creates = absl::GetFlag(FLAGS_max_batch_creates);
  options.create_limits.max_fields = absl::GetFlag(FLAGS_max_fields);
  options.create_limits.max_filters_bytes = absl::GetFlag(FLAGS_max_filters_bytes);
  options.create_limits.max_filters_depth = absl::GetFlag(FLAGS_max_filters_depth);
  options.create_limits.max_part_size_bytes = absl::GetFlag(FLAGS_max_part_size_bytes);
  options.workers.max_part_bytes = absl::GetFlag(FLAGS_max_part_size_bytes);
  options.workers.max_chunk_bytes = absl::GetFlag(FLAGS_max_upload_chunk_bytes);
  options.watch_limits.max_watchers_per_tenant = absl::GetFlag(FLAGS_max_watchers_per_tenant);
  options.watch_limits.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  options.max_metadata_bytes = absl::GetFlag(FLAGS_max_metadata_bytes);
  options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  options.min_client_ping_interval = absl::GetFlag(FLAGS_min_client_ping_interval);
  if (absl::Status limits = exportd::CheckLimits(options); !limits.ok()) {
    std::cerr << "export-server: " << limits.message() << "\n";
    return 1;
  }
  options.insecure_no_auth = insecure_no_auth;
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  if (options.jobs.lease_duration <= absl::ZeroDuration() || options.jobs.max_attempts < 1 ||
      options.jobs.retention <= absl::ZeroDuration() ||
      options.jobs.retry_backoff < absl::ZeroDuration()) {
    std::cerr << "export-server: lease_duration and retention must be positive, max_attempts at "
                 "least 1, retry_backoff not negative\n";
    return 1;
  }
  if (options.read_threads < 1) {
    std::cerr << "export-server: read_threads: must be at least 1\n";
    return 1;
  }

  // Job events are logged on the committer thread and RPC errors on gRPC threads: neither may
  // wait for stderr, so lines are queued and written by spdlog's background thread.
  exportd::InitLogging(
      {.level = absl::GetFlag(FLAGS_log_level), .async = true, .process = "export-server"});
  exportd::LogEvent(exportd::LogLevel::kInfo, "server.starting",
                    {{"data_dir", options.data_dir},
                     {"grpc_address", options.grpc_address},
                     {"http_address", options.http_address},
                     {"malloc", exportd::AllocatorName()}});
  if (!tokens_file.empty()) {
    // A bad tokens file at start refuses to start (one on reload keeps the old tokens).
    auto auth = exportd::Authenticator::FromFile(tokens_file);
    if (!auth.ok()) {
      exportd::LogEvent(exportd::LogLevel::kError, "server.start_failed",
                        {{"error", auth.status().ToString()}});
      exportd::ShutdownLogging();
      std::cerr << "export-server: " << auth.status().message() << "\n";
      return 1;
    }
    options.auth = *std::move(auth);
  }
  auto server = exportd::ExportServer::Start(options);
  if (!server.ok()) {
    exportd::LogEvent(exportd::LogLevel::kError, "server.start_failed",
                      {{"error", server.status().ToString()}});
    exportd::ShutdownLogging();
    return 1;
  }
  // The HTTP line first: a reader that waits for the gRPC line has both.
  std::printf("http listening on %s\n", (*server)->http_address().c_str());
  std::printf("grpc listening on %s\n", (*server)->grpc_address().c_str());
  std::fflush(stdout);
  exportd::LogEvent(exportd::LogLevel::kInfo, "server.listening",
                    {{"grpc_address", (*server)->grpc_address()},
                     {"http_address", (*server)->http_address()},
                     {"data_dir", options.data_dir}});

  int received = 0;
  while (sigwait(&signals, &received) == 0 && received == SIGHUP) {
    if (!options.auth) {
      exportd::LogEvent(exportd::LogLevel::kWarn, "auth.reload_skipped",
                        {{"reason", "no --tokens_file (running with --insecure_no_auth)"}});
      continue;
    }
    // The tokens swap atomically; a bad file keeps the old ones.
    if (absl::Status reloaded = options.auth->Reload(); !reloaded.ok()) {
      exportd::LogEvent(exportd::LogLevel::kError, "auth.reload_failed",
                        {{"tokens_file", tokens_file},
                         {"error", reloaded.ToString()},
                         {"tokens", static_cast<int64_t>(options.auth->token_count())}});
    } else {
      exportd::LogEvent(exportd::LogLevel::kInfo, "auth.reloaded",
                        {{"tokens_file", tokens_file},
                         {"tokens", static_cast<int64_t>(options.auth->token_count())}});
    }
  }
  exportd::LogEvent(exportd::LogLevel::kInfo, "server.signal",
                    {{"signal", received == SIGINT ? "SIGINT" : "SIGTERM"}});
  (*server)->Shutdown();
  exportd::ShutdownLogging();
  return 0;
}
