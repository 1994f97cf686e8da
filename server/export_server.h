// ExportServer: one running export-server — the job store, the job manager, the progress hub and
// the gRPC server with ExportService, health checking and reflection — assembled from options.
// Used by main() and by tests that want a real server in-process.
//
// Thread safety: Shutdown may be called from any thread, once or more.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "server/auth.h"
#include "server/job_manager.h"
#include "server/validation.h"
#include "server/watch_reactor.h"
#include "server/worker_service.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace exportd {

struct ServerOptions {
  // Holds the RocksDB database (jobs/) and the part files (parts/). Created when missing.
  std::string data_dir = "data";
  // HOST:PORT; port 0 picks a free port (see ExportServer::grpc_address()).
  std::string grpc_address = "127.0.0.1:50051";
  // HOST:PORT of the HTTP port (signed downloads); port 0 picks a free port.
  std::string http_address = "127.0.0.1:8080";
  // The scheme, host and port download URLs start with; empty: http://<the HTTP address>.
  std::string public_url;
  // The key download URLs are signed with; created (32 random bytes) when missing. Empty:
  // <data_dir>/signing.key.
  std::string signing_key_file;
  int http_threads = 8;
  // Time in-flight calls get to finish at shutdown before they are cancelled.
  absl::Duration shutdown_grace = absl::Seconds(10);
  int read_threads = 2;
  // Threads writing and reading part files.
  int io_threads = 2;
  CreateLimits create_limits;
  WatchLimits watch_limits;
  // The largest metadata (headers) of a call; larger calls are refused (RESOURCE_EXHAUSTED).
  int max_metadata_bytes = 16 << 10;
  // Keepalive: the server pings a connection idle this long, and closes it when the ping is not
  // answered within keepalive_timeout. Clients may ping as often as min_client_ping_interval,
  // also without calls in flight (export-worker and the client library ping every 30 s);
  // clients pinging more often are sent GOAWAY (too_many_pings).
  absl::Duration keepalive_time = absl::Minutes(1);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  // Leases, retries, retention and download URLs (see JobManager::Options).
  JobManager::Options jobs;
  WorkerServiceImpl::Options workers;
  // Who may call (server/auth.h): every gRPC call and the JSON view and /metrics need a bearer
  // token from this authenticator. Shared so that its owner can Reload it (SIGHUP). Start refuses
  // to run without one unless insecure_no_auth is set.
  std::shared_ptr<Authenticator> auth;
  // No authentication: every caller is an admin of tenant "" (logs a warning at start).
  // Only when auth is null.
  bool insecure_no_auth = false;
  // TLS for the gRPC port (PEM files). Cert and key: server TLS; with client_ca as well, every
  // client must present a certificate that CA signed (mutual TLS). All empty: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Progress reports of one job reach watchers at most this often (the latest always does).
  absl::Duration progress_interval = absl::Milliseconds(250);
  // How often leases are checked for expiry and waiting claims for their end.
  absl::Duration tick_interval = absl::Milliseconds(100);
  // After the number of open watch streams has moved (up or down) by this many since the last
  // time, the ticker gives the heap's free memory back to the system (server/heap_trim.h).
  // 0: never.
  size_t trim_heap_watcher_step = 1000;
  // How often the janitor runs (see JobManager::Sweep), and how long finished jobs are kept.
  absl::Duration janitor_interval = absl::Hours(1);
  absl::Duration job_retention = absl::Hours(24 * 30);
  // Not owned; must outlive the server.
  const Clock* clock = Clock::Real();
  // The Env the job store does its file I/O through (RocksDbJobStore::Options::env); nullptr
  // for the local file system. For tests that make the store's writes fail. Not owned; must
  // outlive the server.
  rocksdb::Env* store_env = nullptr;
};

// Checks the limits of `options` (ranges of the flags in docs/operations.md, "Limits"):
// INVALID_ARGUMENT naming the first bad one. ExportServer::Start checks them too.
absl::Status CheckLimits(const ServerOptions& options);

class ExportServer {
 public:
  // Opens the store and starts serving. Errors: INVALID_ARGUMENT for unusable options (no
  // auth and no insecure_no_auth, both, or unreadable TLS files),
  // UNAVAILABLE when the data directory cannot be opened (e.g. another server holds it) or the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<ExportServer>> Start(const ServerOptions& options);

  // Shuts down gracefully (see Shutdown).
  ~ExportServer();

  // The address the gRPC server listens on, with the real port.
  const std::string& grpc_address() const;

  // The address the HTTP port listens on, with the real port.
  std::string http_address() const;

  // The job state machine, for services embedded in the same process (and tests).
  JobManager* job_manager() const;

  // Unary calls received and not yet answered.
  int calls_in_flight() const;

  // OK while the server is ready to serve: the store is open, the jobs are loaded, the gRPC
  // port accepts calls and it is not shutting down. Otherwise UNAVAILABLE with the reason
  // ("starting: ...", "draining: ..."). /readyz, gRPC health and exportd_ready report this.
  absl::Status Readiness() const;

  // Stops taking calls, ends watch streams after their queued state (UNAVAILABLE, to resume),
  // lets in-flight calls finish within shutdown_grace, then closes the store. Idempotent.
  void Shutdown();

  class Impl;

 private:
  explicit ExportServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace exportd
