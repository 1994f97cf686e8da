#include "server/export_server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/allocator.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/download_signer.h"
#include "server/executor.h"
#include "server/export_service.h"
#include "server/heap_trim.h"
#include "server/http_server.h"
#include "server/job_events.h"
#include "server/job_manager.h"
#include "server/metrics.h"
#include "server/progress_hub.h"
#include "storage/blob_store.h"
#include "storage/rocksdb_job_store.h"

namespace exportd {

namespace {

// A duration as a gRPC channel argument in milliseconds (clamped to int).
int ToMillis(absl::Duration d) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 0, INT32_MAX));
}

// The names gRPC health checking reports, besides the whole server ("").
constexpr const char* kServiceNames[] = {"exportjobs.v1.ExportService",
                                         "exportjobs.v1.WorkerService"};
// The longest an HTTP request of the JSON view waits for its read.
constexpr absl::Duration kViewTimeout = absl::Seconds(10);

// Starts an asynchronous call with a callback and waits for its result, at most `timeout`.
// For the HTTP port's threads, which may block; never on gRPC threads.
template <typename T, typename Start>
absl::StatusOr<T> AwaitResult(Start start, absl::Duration timeout) {
  struct State {
    absl::Mutex mu;
    std::optional<absl::StatusOr<T>> result ABSL_GUARDED_BY(mu);
  };
  // Shared: a result that comes after the timeout still has somewhere to go.
  auto state = std::make_shared<State>();
  start([state](absl::StatusOr<T> result) {
    absl::MutexLock lock(&state->mu);
    state->result = std::move(result);
  });
  absl::MutexLock lock(&state->mu);
  const auto has_result = [&state]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mu) {
    return state->result.has_value();
  };
  if (!state->mu.AwaitWithTimeout(absl::Condition(&has_result), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("the job store did not answer within ", absl::FormatDuration(timeout)));
  }
  return *std::move(state->result);
}

absl::StatusOr<std::string> ReadPemFile(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read \"", path, "\""));
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", path, "\" holds no PEM block (-----BEGIN ...)"));
  }
  return text.str();
}

// The credentials of the gRPC port: plaintext, server TLS, or mutual TLS (see ServerOptions).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerOptions& options) {
  if (options.tls_cert_file.empty() && options.tls_key_file.empty()) {
    if (!options.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError("tls_client_ca: needs --tls_cert and --tls_key too");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("tls_cert, tls_key: give both or neither");
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  EXPORTD_ASSIGN_OR_RETURN(pair.cert_chain, ReadPemFile("tls_cert", options.tls_cert_file));
  EXPORTD_ASSIGN_OR_RETURN(pair.private_key, ReadPemFile("tls_key", options.tls_key_file));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!options.tls_client_ca_file.empty()) {
    EXPORTD_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                             ReadPemFile("tls_client_ca", options.tls_client_ca_file));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::Status PrepareDataDir(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("data_dir: must be set");
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error || !std::filesystem::is_directory(dir)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data_dir: cannot use \"", dir, "\" as a directory",
        error ? absl::StrCat(": ", error.message()) : std::string(": it is not a directory")));
  }
  return absl::OkStatus();
}

}  // namespace

class ExportServer::Impl {
 public:
  // Declaration order is destruction order in reverse: the gRPC server goes first, the store last.
  ServerOptions options;
  // Outlives everything that counts into it (the gRPC server's interceptors included).
  std::unique_ptr<ServerMetrics> metrics;
  // Read by the HTTP port's threads, which start before the JobManager and stop after it: these
  // outlive the HTTP server.
  // `jobs` once it runs; null before.
  std::atomic<JobManager*> serving_jobs{nullptr};
  // Where the server is in its life, for /readyz, gRPC health and the exportd_ready gauge.
  enum class Stage { kLoadingJobs, kStartingGrpc, kReady, kDraining };
  std::atomic<Stage> stage{Stage::kLoadingJobs};

  absl::Status Readiness() const {
    switch (stage.load()) {
      case Stage::kLoadingJobs:
        return absl::UnavailableError("starting: loading the claim queue");
      case Stage::kStartingGrpc:
        return absl::UnavailableError("starting: opening the gRPC port");
      case Stage::kReady:
        return absl::OkStatus();
      case Stage::kDraining:
        break;
    }
    return absl::UnavailableError("draining: the server is shutting down");
  }

  std::unique_ptr<JobStore> store;
  std::unique_ptr<BlobStore> blobs;
  // Two signers with the same key: one verifies requests on the HTTP port; the other, made
  // once the port is bound, writes URLs that name the real port.
  std::unique_ptr<DownloadSigner> verifier;
  std::unique_ptr<DownloadSigner> signer;
  std::unique_ptr<HttpServer> http;
  std::unique_ptr<Executor> readers;
  std::unique_ptr<Executor> io;
  std::unique_ptr<ProgressHub> hub_owner;
  ProgressHub& hub() { return *hub_owner; }
  std::unique_ptr<JobManager> jobs;
  std::unique_ptr<ExportServiceImpl> service;
  std::unique_ptr<WorkerServiceImpl> workers;
  std::unique_ptr<grpc::Server> server;
  std::string address;
  // Runs JobManager::Tick every tick_interval until stopped.
  std::thread ticker;
  absl::Notification stop_ticker;

  std::once_flag shutdown_once;

  // Also after a failed Start: the HTTP port stops before what it reads is destroyed.
  ~Impl() { Shutdown(); }

  void Shutdown() {
    std::call_once(shutdown_once, [this] { ShutdownOnce(); });
  }

  void ShutdownOnce() {
    stage.store(Stage::kDraining);
    if (server) {
      LogEvent(LogLevel::kInfo, "server.draining",
               {{"grpc_address", address},
                {"calls_in_flight", service->calls().in_flight() + workers->calls().in_flight()},
                {"watchers", hub().watcher_count()}});
      // Every name NOT_SERVING, for good.
      server->GetHealthCheckService()->Shutdown();
      // New calls are answered UNAVAILABLE; watchers get what is queued and an UNAVAILABLE
      // end; in-flight calls finish (the committer and readers still run).
      service->calls().StartDraining();
      workers->calls().StartDraining();
      hub().Shutdown();
      jobs->EndWaitingClaims();
      const absl::Time deadline = absl::Now() + options.shutdown_grace;
      const bool drained = service->calls().AwaitIdle(deadline) &&
                           workers->calls().AwaitIdle(deadline) && hub().AwaitNoWatchers(deadline);
      if (!drained) {
        LogEvent(LogLevel::kWarn, "server.drain_timeout",
                 {{"shutdown_grace", absl::FormatDuration(options.shutdown_grace)},
                  {"calls_in_flight", service->calls().in_flight() + workers->calls().in_flight()},
                  {"watchers", hub().watcher_count()}});
      }
      // Nothing is left to wait for: close the connections now rather than wait for idle
      // clients to acknowledge the GOAWAY (whose clients may poll only every few seconds).
      server->Shutdown(std::chrono::system_clock::now());
    }
    if (http) http->Stop();
    serving_jobs.store(nullptr);
    if (ticker.joinable()) {
      stop_ticker.Notify();
      ticker.join();
    }
    if (jobs) jobs->Shutdown();
    if (readers) readers->Shutdown();
    if (io) io->Shutdown();
    if (server) server->Wait();
    server.reset();
    service.reset();
    workers.reset();
    jobs.reset();
    readers.reset();
    io.reset();
    http.reset();
    blobs.reset();
    const bool was_open = store != nullptr;
    store.reset();  // Closes RocksDB.
    if (was_open) LogEvent(LogLevel::kInfo, "server.stopped", {{"data_dir", options.data_dir}});
  }
};

absl::Status CheckLimits(const ServerOptions& options) {
  auto bad = [](const char* flag, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
  };
  const CreateLimits& create = options.create_limits;
  if (create.max_fields < 1) return bad("max_fields", "must be at least 1");
  if (create.max_filters_bytes < 1) return bad("max_filters_bytes", "must be at least 1");
  if (create.max_filters_depth < 1) return bad("max_filters_depth", "must be at least 1");
  if (create.max_part_size_bytes < create.min_part_size_bytes) {
    return bad("max_part_size_bytes",
               absl::StrCat("must be at least ", create.min_part_size_bytes));
  }
  if (create.create_rate_per_tenant < 0) {
    return bad("create_rate_per_tenant", "must not be negative (0: no limit)");
  }
  if (create.create_burst_per_tenant < 1)
    return bad("create_burst_per_tenant", "must be at least 1");
  if (create.max_batch_creates < 1) return bad("max_batch_creates", "must be at least 1");
  if (options.jobs.max_active_jobs_per_tenant < 0) {
    return bad("max_active_jobs_per_tenant", "must not be negative (0: no limit)");
  }
  if (options.jobs.max_page_size < 1) return bad("max_page_size", "must be at least 1");
  if (options.watch_limits.max_watchers_per_tenant < 0 || options.watch_limits.max_watchers < 0) {
    return bad("max_watchers",
               "max_watchers and max_watchers_per_tenant must not be negative "
               "(0: no limit)");
  }
  const int64_t chunk = options.workers.max_chunk_bytes;
  if (chunk < 1024 || chunk > (int64_t{1} << 30)) {
    return bad("max_upload_chunk_bytes", "must be between 1024 and 1073741824");
  }
  if (options.max_metadata_bytes < 1024) return bad("max_metadata_bytes", "must be at least 1024");
  if (options.keepalive_time <= absl::ZeroDuration() ||
      options.keepalive_timeout <= absl::ZeroDuration() ||
      options.min_client_ping_interval < absl::ZeroDuration()) {
    return bad("keepalive_time",
               "keepalive_time and keepalive_timeout must be positive, "
               "min_client_ping_interval not negative");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ExportServer>> ExportServer::Start(const ServerOptions& options) {
  EXPORTD_RETURN_IF_ERROR(CheckLimits(options));
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (options.auth && options.insecure_no_auth) {
    return absl::InvalidArgumentError("insecure_no_auth: cannot be combined with a tokens file");
  }
  if (!options.auth && !options.insecure_no_auth) {
    return absl::InvalidArgumentError(
        "tokens_file: must be set (or run with --insecure_no_auth to accept every caller as an "
        "admin, for development only)");
  }
  if (!options.auth) {
    impl->options.auth = Authenticator::Insecure();
    LogEvent(
        LogLevel::kWarn, "auth.insecure_no_auth",
        {{"message",
          "authentication is off: every caller is an admin of tenant \"\" (development only)"}});
  } else {
    LogEvent(LogLevel::kInfo, "auth.enabled",
             {{"tokens_file", options.auth->tokens_file()},
              {"tokens", static_cast<int64_t>(options.auth->token_count())},
              {"tls", !options.tls_cert_file.empty()},
              {"mtls", !options.tls_client_ca_file.empty()}});
  }
  const Authenticator* auth = impl->options.auth.get();
  EXPORTD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                           MakeServerCredentials(options));
  EXPORTD_RETURN_IF_ERROR(PrepareDataDir(options.data_dir));
  RocksDbJobStore::Options store_options;
  store_options.path = (std::filesystem::path(options.data_dir) / "jobs").string();
  store_options.env = options.store_env;
  EXPORTD_ASSIGN_OR_RETURN(impl->store, RocksDbJobStore::Open(store_options));

  EXPORTD_ASSIGN_OR_RETURN(
      impl->blobs, OpenFileBlobStore((std::filesystem::path(options.data_dir) / "parts").string()));

  const std::string key_file =
      options.signing_key_file.empty()
          ? (std::filesystem::path(options.data_dir) / "signing.key").string()
          : options.signing_key_file;
  EXPORTD_ASSIGN_OR_RETURN(std::string key, LoadOrCreateSigningKey(key_file));
  EXPORTD_ASSIGN_OR_RETURN(impl->verifier, DownloadSigner::Create(key, "http://verifier"));
  HttpServer::Options http_options;
  http_options.address = options.http_address;
  http_options.jobs = impl->store.get();
  http_options.blobs = impl->blobs.get();
  http_options.signer = impl->verifier.get();
  http_options.clock = options.clock;
  http_options.threads = options.http_threads;
  impl->hub_owner = std::make_unique<ProgressHub>(options.progress_interval);
  // The HTTP port serves from here on; what it reads of the rest goes through `served`.
  Impl* served = impl.get();
  ServerMetrics::Sources sources;
  sources.counts = [served]() -> std::optional<JobManager::Counts> {
    JobManager* jobs = served->serving_jobs.load();
    if (jobs == nullptr) return std::nullopt;
    return jobs->counts();
  };
  sources.watchers = [hub = impl->hub_owner.get()] { return hub->watcher_count(); };
  sources.waiting_claims = [served] {
    JobManager* jobs = served->serving_jobs.load();
    return jobs == nullptr ? 0 : jobs->waiting_claims();
  };
  sources.ready = [served] { return served->Readiness().ok(); };
  impl->metrics = std::make_unique<ServerMetrics>(std::move(sources));
  ServerMetrics* metrics = impl->metrics.get();
  http_options.metrics = [metrics] { return metrics->Scrape(); };
  http_options.readiness = [served] { return served->Readiness(); };
  // The JSON view: the checks and reads of GetExportJob and ListExportJobs, for the caller's
  // tenant scope; the same tokens and roles as the gRPC calls (/metrics: admins only).
  http_options.authorize = [auth](const std::optional<std::string>& header,
                                  bool admin_only) -> absl::StatusOr<std::string> {
    std::optional<std::string_view> value;
    if (header) value = *header;
    EXPORTD_ASSIGN_OR_RETURN(Principal caller, auth->Authenticate(value));
    EXPORTD_RETURN_IF_ERROR(Authorize(caller, admin_only ? Access::kAdminOnly : Access::kJobs,
                                      admin_only ? "GET /metrics" : "GET /v1/export-jobs"));
    return caller.scope();
  };
  http_options.get_job = [served](const std::string& id,
                                  const std::string& scope) -> absl::StatusOr<ExportJob> {
    EXPORTD_RETURN_IF_ERROR(ValidateJobId(id));
    JobManager* jobs = served->serving_jobs.load();
    if (jobs == nullptr) return absl::UnavailableError("the server is starting");
    return AwaitResult<ExportJob>(
        [&](JobManager::JobCallback done) { jobs->Get(id, scope, std::move(done)); }, kViewTimeout);
  };
  http_options.list_jobs =
      [served](const exportjobs::v1::ListExportJobsRequest& request,
               const std::string& scope) -> absl::StatusOr<exportjobs::v1::ListExportJobsResponse> {
    JobManager* jobs = served->serving_jobs.load();
    if (jobs == nullptr) return absl::UnavailableError("the server is starting");
    return AwaitResult<exportjobs::v1::ListExportJobsResponse>(
        [&](JobManager::ListCallback done) { jobs->List(request, scope, std::move(done)); },
        kViewTimeout);
  };
  EXPORTD_ASSIGN_OR_RETURN(impl->http, HttpServer::Start(http_options));
  EXPORTD_ASSIGN_OR_RETURN(
      impl->signer, DownloadSigner::Create(key, options.public_url.empty()
                                                    ? absl::StrCat("http://", impl->http->address())
                                                    : options.public_url));

  impl->readers = std::make_unique<Executor>("exportd-read", options.read_threads);
  impl->io = std::make_unique<Executor>("exportd-io", options.io_threads);
  ProgressHub* hub = impl->hub_owner.get();
  BlobStore* blobs = impl->blobs.get();
  Executor* io = impl->io.get();
  JobManager::Options job_options = options.jobs;
  job_options.after_group = [hub] { hub->Flush(); };
  job_options.on_commit = [metrics](const CommitReport& report) { metrics->OnCommit(report); };
  // The log lines are formatted on the answer thread, off the committer; the asynchronous logger
  // writes them.
  job_options.on_commit_answering = [](const CommitReport& report) { LogCommit(report); };
  const DownloadSigner* signer = impl->signer.get();
  job_options.download_url = [signer](const std::string& id, const std::string& tenant,
                                      int32_t part, absl::Time expires) {
    return signer->Url(id, tenant, part, expires);
  };
  job_options.discard_parts = [blobs, io](const std::string& id, int64_t epoch) {
    io->Submit([blobs, id, epoch] {
      if (absl::Status deleted = blobs->DeleteParts(id, epoch); !deleted.ok()) {
        LogEvent(LogLevel::kWarn, "job.parts_delete_failed",
                 {{"job_id", id}, {"epoch", epoch}, {"error", deleted.ToString()}});
      }
    });
  };
  const absl::Time loading_start = absl::Now();
  EXPORTD_ASSIGN_OR_RETURN(
      impl->jobs,
      JobManager::Start(impl->store.get(), options.clock, impl->readers.get(), job_options,
                        [hub](const JobChange& change) { hub->Publish(change); }));
  int64_t queued = 0;
  for (int64_t n : impl->jobs->counts().queued) queued += n;
  LogEvent(LogLevel::kInfo, "server.recovered",
           {{"data_dir", options.data_dir},
            {"queued_jobs", queued},
            {"seconds", absl::ToDoubleSeconds(absl::Now() - loading_start)}});
  impl->serving_jobs.store(impl->jobs.get());
  impl->stage.store(Impl::Stage::kStartingGrpc);
  impl->service = std::make_unique<ExportServiceImpl>(
      impl->jobs.get(), hub, impl->store.get(), blobs, impl->readers.get(), io, options.clock,
      options.create_limits, options.watch_limits, auth);
  WorkerServiceImpl::Options worker_options = options.workers;
  worker_options.on_bytes_written = [metrics](int64_t bytes) { metrics->AddUploadBytes(bytes); };
  impl->workers =
      std::make_unique<WorkerServiceImpl>(impl->jobs.get(), blobs, io, worker_options, auth);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.grpc_address, credentials, &port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(impl->service.get());
  builder.RegisterService(impl->workers.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(metrics->NewRpcInterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // The largest request is a part upload's chunk (max_chunk_bytes) with its header.
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.workers.max_chunk_bytes + (64 << 10)));
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, options.max_metadata_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ToMillis(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ToMillis(options.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ToMillis(options.min_client_ping_interval));
  // Pings without data are allowed at that interval, and any number of them in a row.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  impl->server = builder.BuildAndStart();
  if (!impl->server || port == 0) {
    impl->server.reset();
    return absl::UnavailableError(
        absl::StrCat("grpc_address: cannot listen on ", options.grpc_address));
  }
  impl->ticker = std::thread([impl = impl.get()] {
    absl::Time next_sweep = absl::Now();  // The first sweep runs at start.
    HeapTrimPolicy trim_policy(impl->options.trim_heap_watcher_step);
    while (!impl->stop_ticker.WaitForNotificationWithTimeout(impl->options.tick_interval)) {
      impl->jobs->Tick();
      if (const size_t watchers = impl->hub().watcher_count(); trim_policy.ShouldTrim(watchers)) {
        const absl::Time start = absl::Now();
        ReleaseFreeMemory();
        LogEvent(LogLevel::kDebug, "server.heap_trimmed",
                 {{"watchers", watchers}, {"seconds", absl::ToDoubleSeconds(absl::Now() - start)}});
      }
      if (absl::Now() >= next_sweep) {
        next_sweep = absl::Now() + impl->options.janitor_interval;
        impl->jobs->Sweep(
            impl->options.job_retention,
            [metrics = impl->metrics.get()](absl::StatusOr<std::pair<int, int>> swept) {
              metrics->JanitorRun(swept.ok());
              if (!swept.ok()) {
                LogEvent(LogLevel::kWarn, "janitor.failed", {{"error", swept.status().ToString()}});
              } else {
                LogEvent(LogLevel::kInfo, "janitor.run",
                         {{"expired_files", swept->first}, {"deleted_jobs", swept->second}});
              }
            });
      }
    }
  });
  // Recovery is done and the port accepts calls: ready. (gRPC's health service reports the
  // whole server SERVING from BuildAndStart, when nothing but the ticker was left to start.)
  for (const char* name : kServiceNames) {
    impl->server->GetHealthCheckService()->SetServingStatus(name, true);
  }
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  impl->stage.store(Impl::Stage::kReady);
  const std::string& requested = options.grpc_address;
  impl->address = absl::StrCat(requested.substr(0, requested.rfind(':')), ":", port);
  return std::unique_ptr<ExportServer>(new ExportServer(std::move(impl)));
}

ExportServer::ExportServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ExportServer::~ExportServer() { Shutdown(); }

const std::string& ExportServer::grpc_address() const { return impl_->address; }

std::string ExportServer::http_address() const { return impl_->http->address(); }

JobManager* ExportServer::job_manager() const { return impl_->jobs.get(); }

int ExportServer::calls_in_flight() const { return impl_->service->calls().in_flight(); }

absl::Status ExportServer::Readiness() const { return impl_->Readiness(); }

void ExportServer::Shutdown() { impl_->Shutdown(); }

}  // namespace exportd
