// exportctl's command line: the subcommands and options (CLI11), parsed into an Invocation
// that the commands run, and the requests built from it.
//
//   exportctl [--server HOST:PORT] [--token TOKEN | --token-file FILE] [--tls-ca FILE
//             [--tls-cert FILE --tls-key FILE]] [--output table|json] [--timeout DURATION]
//             COMMAND ...
//
// Global options may also follow the command (`exportctl get ID --output json`). --help (on
// exportctl or any command) prints the usage, with the exit-code table, and exits 0; a wrong
// command line is a usage error (exit kExitUsage) whose text names the option and the reason.
//
// Thread safety: plain functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "exportjobs/v1/export_job.pb.h"
#include "exportjobs/v1/export_service.pb.h"
#include "google/protobuf/struct.pb.h"

namespace exportd::exportctl {

inline constexpr char kDefaultServer[] = "127.0.0.1:50051";

enum class Command { kCreate, kGet, kList, kWatch, kWait, kCancel, kDelete, kDownload, kFields };
enum class OutputFormat { kTable, kJson };

struct CreateArgs {
  exportjobs::v1::EntityType entity = exportjobs::v1::ENTITY_TYPE_UNSPECIFIED;
  std::vector<std::string> fields;
  // JSON text, or "@FILE" for a file holding it; empty: no filters.
  std::string filters;
  exportjobs::v1::ExportFormat format = exportjobs::v1::EXPORT_FORMAT_UNSPECIFIED;
  exportjobs::v1::Compression compression = exportjobs::v1::COMPRESSION_UNSPECIFIED;
  int64_t part_size_bytes = 0;
  std::string request_id;
  // Watch the created job to its end (like `watch`).
  bool wait = false;
};

struct ListArgs {
  exportjobs::v1::ExportJobStatus status = exportjobs::v1::EXPORT_JOB_STATUS_UNSPECIFIED;
  exportjobs::v1::EntityType entity = exportjobs::v1::ENTITY_TYPE_UNSPECIFIED;
  int page_size = 0;
  std::string page_token;
  // Follow next_page_token to the last page.
  bool all = false;
};

struct DownloadArgs {
  std::string output;  // -o; empty: the default name
  int part = 0;
  bool grpc = false;
  bool force = false;
};

struct Invocation {
  Command command = Command::kGet;
  std::string server = kDefaultServer;
  // The bearer token (--token), or the file holding it (--token-file); at most one is set.
  // Neither: the EXPORT_TOKEN environment variable (see ResolveToken).
  std::string token;
  std::string token_file;
  // TLS for the gRPC channel (--tls-ca, --tls-cert, --tls-key); all empty: plaintext.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  OutputFormat output = OutputFormat::kTable;
  // The deadline of each call (and of each wait for bytes of an HTTP download).
  absl::Duration timeout = absl::Seconds(30);
  // watch, wait, create --wait: how long to follow the job at most.
  absl::Duration watch_timeout = absl::Hours(24);
  // download: the deadline of each gRPC DownloadExport stream.
  absl::Duration transfer_timeout = absl::Hours(1);
  // The job id (get, watch, wait, cancel, delete, download).
  std::string id;
  // fields ENTITY.
  exportjobs::v1::EntityType fields_entity = exportjobs::v1::ENTITY_TYPE_UNSPECIFIED;
  CreateArgs create;
  ListArgs list;
  DownloadArgs download;
};

struct ParseOutcome {
  // Set when a command is to run; otherwise exit with exit_code after printing the texts.
  std::optional<Invocation> invocation;
  int exit_code = 0;
  std::string out_text;  // for stdout (--help)
  std::string err_text;  // for stderr (a usage error, "exportctl: INVALID_ARGUMENT: ...")
};

// Parses the arguments after the program name. `env_server` is the EXPORT_SERVER environment
// variable (nullopt or empty when unset): the default of --server.
ParseOutcome ParseCommandLine(const std::vector<std::string>& args,
                              const std::optional<std::string>& env_server);

// The token to send: --token, else the contents of --token-file (surrounding whitespace
// trimmed), else `env_token` (EXPORT_TOKEN); empty when none is given. Usage errors
// (kExitUsage) naming --token-file when it cannot be read or is empty.
absl::StatusOr<std::string> ResolveToken(const Invocation& invocation,
                                         const std::optional<std::string>& env_token);

// "30s", "500ms", "1m30s", "1h" (absl::ParseDuration), or a plain number of seconds. Errors:
// INVALID_ARGUMENT for anything else or a duration that is not positive.
absl::StatusOr<absl::Duration> ParsePositiveDuration(std::string_view text);

// "4096", "64KiB", "64k", "1MiB", "1M", "1GiB", "4G" (binary units, case-insensitive). Errors:
// INVALID_ARGUMENT for anything else or a negative or overflowing size.
absl::StatusOr<int64_t> ParseByteSize(std::string_view text);

// --filters: JSON text or @FILE as a Struct. Errors: usage errors (kExitUsage) naming
// --filters: a file that cannot be read, text that is not JSON, JSON that is not an object.
absl::StatusOr<google::protobuf::Struct> ParseFilters(std::string_view arg);

// The CreateExportJobRequest of `create`; usage errors as ParseFilters.
absl::StatusOr<exportjobs::v1::CreateExportJobRequest> BuildCreateRequest(const CreateArgs& args);

// The ListExportJobsRequest of `list` (without a page token from an earlier page).
exportjobs::v1::ListExportJobsRequest BuildListRequest(const ListArgs& args);

}  // namespace exportd::exportctl
