// export-worker: claims export jobs from an export-server, exports them from an SQLite database
// and uploads the files in parts.
//
//   export-worker --server=127.0.0.1:50051 --source=demo.db [--concurrency=2]
//   export-worker seed-demo --source=demo.db --accounts=100000 [--seed=1] [--overwrite]
//   EXPORTD_SERVER=10.0.0.5:50051 export-worker --config=/etc/exportd/export-worker.conf
//
// Every flag can also come from the environment (EXPORTD_<NAME>) or a config file; see
// common/config.h for the precedence.
//
// Prints "export-worker <worker_id> ready" to stdout once it claims jobs, and logs one JSON
// object per line to stderr (common/logging.h; --log_level): worker.starting, worker.ready,
// worker.stopping, worker.stopped and the job events of ExportRunner (export_runner.h).
// SIGINT or SIGTERM release the jobs in progress (they are pending again at once, for any
// worker) and exit 0.
// Exit codes, with a message on stderr as plain text before anything runs:
//   1  the settings cannot be parsed: an unknown flag or a value its flag cannot parse, on the
//      command line (absl's parser), in the config file or in the environment (the message
//      names the file and line, or the variable, and the flag), or a config file that cannot be
//      read. As export-server does.
//   2  a setting it refuses: a value out of range, a --source it cannot open, a --work_dir it
//      cannot use, an unexpected argument.
//   1  also when seed-demo cannot write the database.
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/export_client.h"
#include "common/allocator.h"
#include "common/catalog.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/str_cat.h"
#include "worker/demo_data.h"
#include "worker/export_runner.h"
#include "worker/sqlite_source.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "HOST:PORT of the export-server's gRPC API.");
ABSL_FLAG(std::string, source, "",
          "Path of the SQLite database to export from (required); seed-demo writes it.");
ABSL_FLAG(std::string, worker_id, "",
          "Names this worker in leases and logs; default HOSTNAME-PID.");
ABSL_FLAG(int, concurrency, 2, "Jobs exported at once.");
ABSL_FLAG(std::string, entity_types, "",
          "Comma-separated entity types to claim (accounts, people, opportunities, activities, "
          "campaigns, buying_groups); empty for any.");
ABSL_FLAG(int64_t, part_size_bytes, 0,
          "Part size for jobs that carry none; 0 for 64 MiB. (Jobs normally carry their own.)");
ABSL_FLAG(std::string, work_dir, "",
          "Directory in which a fresh export-worker-XXXXXX directory holds part files until they "
          "are uploaded (removed at exit); default $TMPDIR or /tmp.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5),
          "Most time between progress reports of a job (they extend its lease).");
ABSL_FLAG(absl::Duration, claim_wait, absl::Seconds(20),
          "How long one claim waits for a job (long poll; at most 30s).");
ABSL_FLAG(absl::Duration, rpc_timeout, absl::Seconds(30), "Deadline of each call to the server.");
ABSL_FLAG(std::string, token_file, "",
          "File holding the worker's bearer token (a token of role worker in the server's "
          "tokens file). Empty: no token (a server run with --insecure_no_auth).");
ABSL_FLAG(std::string, tls_ca, "",
          "Use TLS, trusting the server certificate's CA in this PEM file.");
ABSL_FLAG(std::string, tls_cert, "",
          "Client certificate (PEM) for a server that requires mutual TLS; with --tls_key.");
ABSL_FLAG(std::string, tls_key, "", "Private key (PEM) of --tls_cert.");
// seed-demo:
ABSL_FLAG(int64_t, accounts, 1000, "seed-demo: number of accounts (other tables scale with it).");
ABSL_FLAG(uint64_t, seed, 1, "seed-demo: different seeds give different data sets.");
ABSL_FLAG(bool, overwrite, false, "seed-demo: replace an existing --source file.");

namespace exportd {
namespace {

constexpr int kUsageError = 2;

int UsageError(const std::string& message) {
  std::cerr << "export-worker: " << message << "\n";
  return kUsageError;
}

// Parses --entity_types into *types; false (with *error) for an unknown name.
bool ParseEntityTypes(const std::string& flag, std::vector<exportjobs::v1::EntityType>* types,
                      std::string* error) {
  for (absl::string_view piece : absl::StrSplit(flag, ',')) {
    const absl::string_view name = absl::StripAsciiWhitespace(piece);
    if (name.empty()) continue;
    const catalog::Entity* found = nullptr;
    std::string known;
    for (const catalog::Entity& entity : catalog::Entities()) {
      if (entity.table == std::string_view(name.data(), name.size())) found = &entity;
      Append(&known, known.empty() ? "" : ", ", entity.table);
    }
    if (found == nullptr) {
      *error =
          absl::StrCat("--entity_types: unknown entity type \"", name, "\" (known: ", known, ")");
      return false;
    }
    types->push_back(found->type);
  }
  return true;
}

std::string DefaultWorkerId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::strcpy(host, "worker");
  return absl::StrCat(host, "-", getpid());
}

int SeedDemo() {
  const std::string path = absl::GetFlag(FLAGS_source);
  if (path.empty()) return UsageError("seed-demo: --source: the database path is required");
  DemoDataOptions options;
  options.accounts = absl::GetFlag(FLAGS_accounts);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.overwrite = absl::GetFlag(FLAGS_overwrite);
  if (options.accounts < 0 || options.accounts > 10'000'000) {
    return UsageError(absl::StrCat("seed-demo: --accounts: must be between 0 and 10000000, got ",
                                   options.accounts));
  }
  if (const absl::Status status = GenerateDemoData(path, options); !status.ok()) {
    if (status.code() == absl::StatusCode::kAlreadyExists) {
      std::cerr << "export-worker seed-demo: " << path
                << " already exists; pass --overwrite to replace it\n";
    } else {
      std::cerr << "export-worker seed-demo: " << status.message() << "\n";
    }
    return 1;
  }
  const DemoDataSizes sizes = DemoSizes(options);
  std::cout << "seeded " << path << " (seed " << options.seed << ")\n"
            << "accounts " << sizes.accounts << "\n"
            << "people " << sizes.people << "\n"
            << "opportunities " << sizes.opportunities << "\n"
            << "activities " << sizes.activities << "\n"
            << "campaigns " << sizes.campaigns << "\n"
            << "buying_groups " << sizes.buying_groups << std::endl;
  return 0;
}

int Run(const sigset_t& signals) {
  ExportRunner::Options options;
  const std::string server = absl::GetFlag(FLAGS_server);
  if (server.empty()) return UsageError("--server: must be HOST:PORT");
  const std::string source = absl::GetFlag(FLAGS_source);
  if (source.empty()) {
    return UsageError(
        "--source: the SQLite database to export from is required (create a demo one with "
        "`export-worker seed-demo --source demo.db --accounts 1000`)");
  }
  if (absl::StatusOr<std::unique_ptr<SqliteSource>> opened = SqliteSource::Open(source);
      !opened.ok()) {
    return UsageError(absl::StrCat("--source: ", opened.status().message()));
  }
  options.worker_id = absl::GetFlag(FLAGS_worker_id);
  if (options.worker_id.empty()) options.worker_id = DefaultWorkerId();
  if (options.worker_id.size() > 128) return UsageError("--worker_id: at most 128 characters");
  options.concurrency = absl::GetFlag(FLAGS_concurrency);
  if (options.concurrency < 1 || options.concurrency > 1024) {
    return UsageError(
        absl::StrCat("--concurrency: must be between 1 and 1024, got ", options.concurrency));
  }
  std::string error;
  if (!ParseEntityTypes(absl::GetFlag(FLAGS_entity_types), &options.entity_types, &error)) {
    return UsageError(error);
  }
  const int64_t part_size = absl::GetFlag(FLAGS_part_size_bytes);
  if (part_size < 0) {
    return UsageError(absl::StrCat("--part_size_bytes: must not be negative, got ", part_size));
  }
  if (part_size > 0) options.default_part_size_bytes = part_size;
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  if (options.heartbeat_interval <= absl::ZeroDuration()) {
    return UsageError("--heartbeat_interval: must be more than 0");
  }
  options.claim_wait = absl::GetFlag(FLAGS_claim_wait);
  if (options.claim_wait <= absl::ZeroDuration() || options.claim_wait > absl::Seconds(30)) {
    return UsageError(absl::StrCat("--claim_wait: must be more than 0 and at most 30s, got ",
                                   absl::FormatDuration(options.claim_wait)));
  }
  options.rpc_timeout = absl::GetFlag(FLAGS_rpc_timeout);
  if (options.rpc_timeout <= absl::ZeroDuration()) {
    return UsageError("--rpc_timeout: must be more than 0");
  }

  std::string parent = absl::GetFlag(FLAGS_work_dir);
  if (parent.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    parent = tmpdir != nullptr && tmpdir[0] != '\0' ? tmpdir : "/tmp";
  }
  std::string work_dir = absl::StrCat(parent, "/export-worker-XXXXXX");
  if (mkdtemp(work_dir.data()) == nullptr) {
    return UsageError(
        absl::StrCat("--work_dir: cannot create a directory in ", parent, ": ", strerror(errno)));
  }
  // Removes the work directory on every return from here on.
  struct RemoveDir {
    std::string path;
    ~RemoveDir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } remove_work_dir{work_dir};
  options.work_dir = work_dir;
  options.open_source = SqliteSourceFactory(source);
  if (const std::string token_file = absl::GetFlag(FLAGS_token_file); !token_file.empty()) {
    std::ifstream in(token_file, std::ios::binary);
    if (!in) return UsageError(absl::StrCat("--token_file: cannot read \"", token_file, "\""));
    std::ostringstream text;
    text << in.rdbuf();
    options.token = std::string(absl::StripAsciiWhitespace(text.str()));
    if (options.token.empty()) {
      return UsageError(absl::StrCat("--token_file: \"", token_file, "\" is empty"));
    }
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      client::MakeCredentials({.ca_file = absl::GetFlag(FLAGS_tls_ca),
                               .cert_file = absl::GetFlag(FLAGS_tls_cert),
                               .key_file = absl::GetFlag(FLAGS_tls_key)});
  if (!credentials.ok()) return UsageError(absl::StrCat("--", credentials.status().message()));
  // Reconnects within seconds once a server that was down is back.
  options.channel = client::MakeChannel(server, *credentials);
  const std::string worker_id = options.worker_id;

  absl::StatusOr<std::unique_ptr<ExportRunner>> runner = ExportRunner::Create(std::move(options));
  if (!runner.ok()) return UsageError(std::string(runner.status().message()));
  LogEvent(LogLevel::kInfo, "worker.starting",
           {{"worker_id", worker_id},
            {"server", server},
            {"source", source},
            {"concurrency", absl::GetFlag(FLAGS_concurrency)},
            {"entity_types", absl::GetFlag(FLAGS_entity_types)},
            {"work_dir", work_dir},
            {"malloc", AllocatorName()}});
  (*runner)->Start();
  // Scripts and tests wait for this line: keep its form.
  std::cout << "export-worker " << worker_id << " ready" << std::endl;
  LogEvent(LogLevel::kInfo, "worker.ready", {{"worker_id", worker_id}});

  // main() blocked these signals before any thread started; this thread waits for them.
  int signal = 0;
  sigwait(&signals, &signal);
  LogEvent(LogLevel::kInfo, "worker.stopping",
           {{"worker_id", worker_id},
            {"signal", signal == SIGINT ? "SIGINT" : "SIGTERM"},
            {"action", "releasing the jobs in progress"}});
  (*runner)->Stop(ExportRunner::StopMode::kRelease);
  const ExportRunner::Stats stats = (*runner)->stats();
  runner->reset();
  LogEvent(LogLevel::kInfo, "worker.stopped",
           {{"worker_id", worker_id},
            {"claimed", stats.claimed},
            {"completed", stats.completed},
            {"failed", stats.failed},
            {"released", stats.released},
            {"cancelled", stats.cancelled},
            {"dropped", stats.dropped}});
  return 0;
}

}  // namespace
}  // namespace exportd

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG, which leaves Mutex's deadlock detector on: a
  // process-wide graph of lock order, updated under a global lock on every acquisition. The
  // tests keep it; the service does not pay for it (docs/performance.md, "watch delivery").
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::StatusOr<std::vector<char*>> positional = exportd::LoadConfig(
      argc, argv, "export-worker",
      "Exports jobs claimed from an export-server.\n"
      "  export-worker --server=HOST:PORT --source=DB.sqlite [flags]\n"
      "  export-worker seed-demo --source=DB.sqlite --accounts=N [--seed=S] [--overwrite]");
  if (!positional.ok()) {
    std::cerr << "export-worker: " << positional.status().message() << "\n";
    return 1;
  }
  const std::vector<char*>& args = *positional;
  const bool seed_demo = args.size() >= 2 && std::string_view(args[1]) == "seed-demo";
  if (args.size() > (seed_demo ? 2u : 1u)) {
    return exportd::UsageError(absl::StrCat("unexpected argument \"", args[seed_demo ? 2 : 1],
                                            "\" (the only command is seed-demo; see --help)"));
  }
  if (seed_demo) return exportd::SeedDemo();

  // Block the shutdown signals in every thread (before any starts); Run waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Job events are logged on the job loops' threads: lines are queued and written by spdlog's
  // background thread, so an export never waits for a slow reader of stderr.
  exportd::InitLogging(
      {.level = absl::GetFlag(FLAGS_log_level), .async = true, .process = "export-worker"});
  const int code = exportd::Run(signals);
  exportd::ShutdownLogging();
  return code;
}
