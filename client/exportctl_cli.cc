#include "client/exportctl_cli.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "client/exportctl_exit.h"
#include "common/catalog.h"
#include "common/job_json.h"
#include "common/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace exportd::exportctl {
namespace {

std::string EntityNames() {
  std::string names;
  for (const catalog::Entity& entity : catalog::Entities()) {
    if (!names.empty()) names += ", ";
    names += entity.table;
  }
  return names;
}

constexpr char kStatusNames[] = "pending, processing, completed, failed, cancelled";

// CLI11 validators return "" when the value is good, else the reason.
CLI::Validator EntityValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (ParseEntityTypeJsonName(value).has_value()) return "";
        return Cat("\"", value, "\" is not an entity type (one of ", EntityNames(), ")");
      },
      "");
}

CLI::Validator StatusValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (ParseStatusJsonName(value).has_value()) return "";
        return Cat("\"", value, "\" is not a job status (one of ", kStatusNames, ")");
      },
      "");
}

CLI::Validator DurationValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        absl::StatusOr<absl::Duration> parsed = ParsePositiveDuration(value);
        return parsed.ok() ? "" : std::string(parsed.status().message());
      },
      "");
}

CLI::Validator ByteSizeValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        absl::StatusOr<int64_t> parsed = ParseByteSize(value);
        return parsed.ok() ? "" : std::string(parsed.status().message());
      },
      "");
}

CLI::Validator OneOf(std::vector<std::string> values) {
  std::string names;
  for (const std::string& value : values) names += (names.empty() ? "" : "|") + value;
  return CLI::Validator(
      [values, names](std::string& value) -> std::string {
        if (std::find(values.begin(), values.end(), value) != values.end()) return "";
        return Cat("\"", value, "\" is not one of ", names);
      },
      "");
}

std::string Footer() {
  return Cat(
      "\nThe server is --server, else the EXPORT_SERVER environment variable, else ",
      kDefaultServer,
      ".\nDurations: 30s, 500ms, 2m, 1h30m (or plain seconds). Sizes: 4096, 64KiB, 1MiB, 1GiB.\n"
      "--output json prints jobs in the ExportJob JSON form: one object for a job, one object\n"
      "{\"export_jobs\":[...],\"next_page_token\":\"...\"} for list, one object per line for\n"
      "watch and create --wait.\n\n",
      ExitCodeHelp());
}

}  // namespace

absl::StatusOr<std::string> ResolveToken(const Invocation& invocation,
                                         const std::optional<std::string>& env_token) {
  if (!invocation.token.empty()) return invocation.token;
  if (!invocation.token_file.empty()) {
    std::ifstream in(invocation.token_file, std::ios::binary);
    if (!in) return UsageError(Cat("--token-file: cannot read \"", invocation.token_file, "\""));
    std::ostringstream text;
    text << in.rdbuf();
    std::string token(absl::StripAsciiWhitespace(text.str()));
    if (token.empty())
      return UsageError(Cat("--token-file: \"", invocation.token_file, "\" is empty"));
    return token;
  }
  return env_token.value_or("");
}

absl::StatusOr<absl::Duration> ParsePositiveDuration(std::string_view text) {
  absl::Duration duration;
  double seconds = 0;
  const absl::string_view piece(text.data(), text.size());
  if (absl::SimpleAtod(piece, &seconds) && std::isfinite(seconds)) {
    duration = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(piece, &duration)) {
    return absl::InvalidArgumentError(
        Cat("\"", text, "\" is not a duration (like 30s, 500ms, 2m, 1h30m)"));
  }
  if (duration <= absl::ZeroDuration() || duration == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(Cat("\"", text, "\" is not a positive, finite duration"));
  }
  return duration;
}

absl::StatusOr<int64_t> ParseByteSize(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  std::string unit(text.substr(digits));
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  int shift = -1;
  if (unit.empty() || unit == "b") {
    shift = 0;
  } else if (unit == "k" || unit == "kib") {
    shift = 10;
  } else if (unit == "m" || unit == "mib") {
    shift = 20;
  } else if (unit == "g" || unit == "gib") {
    shift = 30;
  }
  uint64_t value = 0;
  if (digits == 0 || shift < 0 ||
      !absl::SimpleAtoi(absl::string_view(text.data(), digits), &value)) {
    return absl::InvalidArgumentError(
        Cat("\"", text, "\" is not a size (like 4096, 64KiB, 1MiB, 1GiB)"));
  }
  if (value > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) >> shift)) {
    return absl::InvalidArgumentError(Cat("\"", text, "\" is too large"));
  }
  return static_cast<int64_t>(value << shift);
}

absl::StatusOr<google::protobuf::Struct> ParseFilters(std::string_view arg) {
  std::string text(arg);
  std::string source = "--filters";
  if (!arg.empty() && arg.front() == '@') {
    const std::string path(arg.substr(1));
    std::ifstream in(path, std::ios::binary);
    if (!in) return UsageError(Cat("--filters: cannot read ", path, ": ", std::strerror(errno)));
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    source = Cat("--filters ", arg);
  }
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return UsageError(Cat(source, ": not valid JSON: ", e.what()));
  }
  if (!json.is_object()) {
    return UsageError(Cat(source, ": must be a JSON object ({\"field\": value, ...}), got ",
                          json.type_name() == std::string("array") ? "an " : "a ",
                          json.type_name()));
  }
  google::protobuf::Struct filters;
  const auto status = google::protobuf::util::JsonStringToMessage(json.dump(), &filters);
  if (!status.ok()) {
    return UsageError(Cat(source, ": ", std::string(status.message())));
  }
  return filters;
}

absl::StatusOr<exportjobs::v1::CreateExportJobRequest> BuildCreateRequest(const CreateArgs& args) {
  exportjobs::v1::CreateExportJobRequest request;
  request.set_entity_type(args.entity);
  for (const std::string& field : args.fields) request.add_fields(field);
  if (!args.filters.empty()) {
    absl::StatusOr<google::protobuf::Struct> filters = ParseFilters(args.filters);
    if (!filters.ok()) return filters.status();
    *request.mutable_filters() = *std::move(filters);
  }
  request.set_format(args.format);
  request.set_compression(args.compression);
  request.set_part_size_bytes(args.part_size_bytes);
  request.set_request_id(args.request_id);
  return request;
}

exportjobs::v1::ListExportJobsRequest BuildListRequest(const ListArgs& args) {
  exportjobs::v1::ListExportJobsRequest request;
  request.set_status(args.status);
  request.set_entity_type(args.entity);
  request.set_page_size(args.page_size);
  request.set_page_token(args.page_token);
  return request;
}

ParseOutcome ParseCommandLine(const std::vector<std::string>& args,
                              const std::optional<std::string>& env_server) {
  Invocation inv;
  if (env_server.has_value() && !env_server->empty()) inv.server = *env_server;
  std::string output = "table";
  std::string timeout = "30s";
  std::string watch_timeout = "24h";
  std::string transfer_timeout = "1h";
  std::string entity;
  std::string list_status;
  std::string list_entity;
  std::string format;
  std::string compression;
  std::string part_size;

  CLI::App app("exportctl: create, follow and download exportd's export jobs.", "exportctl");
  app.require_subcommand(0, 1);
  app.footer(Footer());
  app.add_option("--server", inv.server, "HOST:PORT (or a gRPC target) of export-server")
      ->type_name("HOST:PORT");
  app.add_option("--token", inv.token,
                 "Bearer token sent with every call (default: the EXPORT_TOKEN environment "
                 "variable)")
      ->type_name("TOKEN");
  app.add_option("--token-file,--token_file", inv.token_file, "File holding the bearer token")
      ->type_name("FILE");
  app.add_option("--tls-ca,--tls_ca", inv.tls_ca,
                 "Use TLS, trusting the server certificate's CA in this PEM file")
      ->type_name("FILE");
  app.add_option("--tls-cert,--tls_cert", inv.tls_cert,
                 "Client certificate (PEM) for servers that require mutual TLS")
      ->type_name("FILE");
  app.add_option("--tls-key,--tls_key", inv.tls_key, "Private key (PEM) of --tls-cert")
      ->type_name("FILE");
  app.add_option("--output", output, "Output form: table or json")
      ->check(OneOf({"table", "json"}))
      ->type_name("FORM");
  app.add_option("--timeout", timeout, "Deadline of each call to the server (default 30s)")
      ->check(DurationValidator())
      ->type_name("DURATION");

  auto subcommand = [&](const std::string& name, const std::string& description) {
    CLI::App* sub = app.add_subcommand(name, description);
    // The global options are the top level's; given after the command, they reach it.
    sub->fallthrough();
    sub->footer(
        "\nGlobal options (--server, --token, --output, --timeout, ...) go before or after the "
        "command; "
        "exit codes: exportctl --help.");
    return sub;
  };
  auto add_watch_timeout = [&](CLI::App* sub) {
    sub->add_option("--watch-timeout", watch_timeout,
                    "Follow the job at most this long (default 24h)")
        ->check(DurationValidator())
        ->type_name("DURATION");
  };

  CLI::App* create = subcommand("create", "Create an export job");
  create->add_option("--entity", entity, Cat("Entity type: ", EntityNames()))
      ->required()
      ->check(EntityValidator())
      ->type_name("ENTITY");
  create
      ->add_option("--fields", inv.create.fields,
                   "Comma-separated fields to export (default: the entity's default fields; "
                   "see `exportctl fields ENTITY`)")
      ->delimiter(',')
      ->type_name("FIELD,...");
  create
      ->add_option("--filters", inv.create.filters,
                   "Filters as a JSON object, or @FILE holding one (see docs/filters.md)")
      ->type_name("JSON|@FILE");
  create->add_option("--format", format, "csv (default) or jsonl")
      ->check(OneOf({"csv", "jsonl"}))
      ->type_name("FORMAT");
  create->add_option("--compression", compression, "none (default) or gzip")
      ->check(OneOf({"none", "gzip"}))
      ->type_name("COMPRESSION");
  create
      ->add_option("--part-size", part_size,
                   "Start a new part after this many bytes (1KiB..4GiB; default: the server's)")
      ->check(ByteSizeValidator())
      ->type_name("BYTES");
  create
      ->add_option("--request-id", inv.create.request_id,
                   "Idempotency key: a retry with the same key returns the same job")
      ->type_name("KEY");
  create->add_flag("--wait", inv.create.wait,
                   "Then follow the job like `watch` and exit with its end's code");
  add_watch_timeout(create);

  CLI::App* get = subcommand("get", "Show a job");
  get->add_option("ID", inv.id, "Job id")->required()->type_name("");

  CLI::App* list = subcommand("list", "List jobs, newest first");
  list->add_option("--status", list_status, Cat("Only jobs in this status: ", kStatusNames))
      ->check(StatusValidator())
      ->type_name("STATUS");
  list->add_option("--entity", list_entity, "Only jobs of this entity type")
      ->check(EntityValidator())
      ->type_name("ENTITY");
  list->add_option("--page-size", inv.list.page_size, "Jobs per page (default 50, at most 1000)")
      ->check(CLI::Range(0, 1000))
      ->type_name("N");
  list->add_option("--page-token", inv.list.page_token, "Continue after an earlier page")
      ->type_name("TOKEN");
  list->add_flag("--all", inv.list.all, "Follow the pages to the last one");

  CLI::App* watch =
      subcommand("watch",
                 "Follow a job to its end: a live progress line on a terminal, a line per change "
                 "otherwise; exits with the code of how the job ended");
  watch->add_option("ID", inv.id, "Job id")->required()->type_name("");
  add_watch_timeout(watch);

  CLI::App* wait =
      subcommand("wait",
                 "Wait for a job's end without progress output, print the job, and exit with the "
                 "code of how it ended");
  wait->add_option("ID", inv.id, "Job id")->required()->type_name("");
  add_watch_timeout(wait);

  CLI::App* cancel = subcommand("cancel", "Cancel a pending or processing job");
  cancel->add_option("ID", inv.id, "Job id")->required()->type_name("");

  CLI::App* remove = subcommand("delete", "Delete a finished job and its files");
  remove->add_option("ID", inv.id, "Job id")->required()->type_name("");

  CLI::App* download =
      subcommand("download",
                 "Download a completed job's file, verified against its parts' SHA-256, "
                 "resuming an interrupted download");
  download->add_option("ID", inv.id, "Job id")->required()->type_name("");
  download
      ->add_option("-o,--output-file", inv.download.output,
                   "Destination (default: <ID>.csv, <ID>.jsonl.gz, ...)")
      ->type_name("FILE");
  download->add_option("--part", inv.download.part, "Download part N alone (from 1)")
      ->check(CLI::PositiveNumber)
      ->type_name("N");
  download->add_flag("--grpc", inv.download.grpc,
                     "Download over gRPC (DownloadExport), part by part, instead of HTTP");
  download->add_flag("--force", inv.download.force, "Overwrite an existing destination");
  download
      ->add_option("--transfer-timeout", transfer_timeout,
                   "--grpc: deadline of each part's stream (default 1h)")
      ->check(DurationValidator())
      ->type_name("DURATION");

  CLI::App* fields = subcommand("fields", "List the fields an entity type can export");
  fields->add_option("ENTITY", entity, Cat("Entity type: ", EntityNames()))
      ->required()
      ->check(EntityValidator())
      ->type_name("");

  ParseOutcome outcome;
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out;
    std::ostringstream err;
    const int code = app.exit(e, out, err);
    outcome.out_text = out.str();
    if (code == 0) {
      outcome.exit_code = kExitOk;
      return outcome;
    }
    outcome.exit_code = kExitUsage;
    outcome.err_text = Cat("exportctl: ", ErrorText(absl::InvalidArgumentError(e.what())),
                           "\nRun 'exportctl --help' or 'exportctl COMMAND --help' for usage.\n");
    return outcome;
  }

  const struct {
    CLI::App* app;
    Command command;
  } kCommands[] = {
      {create, Command::kCreate}, {get, Command::kGet},           {list, Command::kList},
      {watch, Command::kWatch},   {wait, Command::kWait},         {cancel, Command::kCancel},
      {remove, Command::kDelete}, {download, Command::kDownload}, {fields, Command::kFields}};
  bool have_command = false;
  for (const auto& entry : kCommands) {
    if (!entry.app->parsed()) continue;
    inv.command = entry.command;
    have_command = true;
  }
  if (!have_command) {
    outcome.exit_code = kExitUsage;
    outcome.err_text =
        Cat("exportctl: INVALID_ARGUMENT: a command is required: create, get, list, watch, wait, "
            "cancel, delete, download or fields\nRun 'exportctl --help' for usage.\n");
    return outcome;
  }
  // The validators accepted every value, so these conversions succeed.
  inv.output = output == "json" ? OutputFormat::kJson : OutputFormat::kTable;
  inv.timeout = *ParsePositiveDuration(timeout);
  inv.watch_timeout = *ParsePositiveDuration(watch_timeout);
  inv.transfer_timeout = *ParsePositiveDuration(transfer_timeout);
  if (!entity.empty()) {
    inv.create.entity = *ParseEntityTypeJsonName(entity);
    inv.fields_entity = inv.create.entity;
  }
  if (!list_status.empty()) inv.list.status = *ParseStatusJsonName(list_status);
  if (!list_entity.empty()) inv.list.entity = *ParseEntityTypeJsonName(list_entity);
  if (format == "csv") inv.create.format = exportjobs::v1::EXPORT_FORMAT_CSV;
  if (format == "jsonl") inv.create.format = exportjobs::v1::EXPORT_FORMAT_JSONL;
  if (compression == "none") inv.create.compression = exportjobs::v1::COMPRESSION_NONE;
  if (compression == "gzip") inv.create.compression = exportjobs::v1::COMPRESSION_GZIP;
  if (!part_size.empty()) inv.create.part_size_bytes = *ParseByteSize(part_size);
  if (!inv.token.empty() && !inv.token_file.empty()) {
    outcome.exit_code = kExitUsage;
    outcome.err_text =
        "exportctl: INVALID_ARGUMENT: --token, --token-file: give at most one of them\n";
    return outcome;
  }
  if (inv.tls_cert.empty() != inv.tls_key.empty()) {
    outcome.exit_code = kExitUsage;
    outcome.err_text = "exportctl: INVALID_ARGUMENT: --tls-cert, --tls-key: give both or neither\n";
    return outcome;
  }
  if (inv.server.empty()) {
    outcome.exit_code = kExitUsage;
    outcome.err_text = "exportctl: INVALID_ARGUMENT: --server: must not be empty\n";
    return outcome;
  }
  outcome.invocation = std::move(inv);
  return outcome;
}

}  // namespace exportd::exportctl
