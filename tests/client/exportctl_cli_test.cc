// exportctl's command line: subcommands and options into an Invocation, usage errors with exit
// code 3 naming the option, --help with the exit-code table, and the values built from it
// (sizes, durations, filters, the create and list requests, exit codes of errors).

#include "client/exportctl_cli.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/exportctl_exit.h"
#include "google/protobuf/util/json_util.h"
#include "tests/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace exportd::exportctl {
namespace {

using ::exportd::testing::IsOkAndHolds;
using ::exportd::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

Invocation MustParse(const std::vector<std::string>& args,
                     const std::optional<std::string>& env_server = std::nullopt) {
  ParseOutcome outcome = ParseCommandLine(args, env_server);
  EXPECT_TRUE(outcome.invocation.has_value()) << outcome.err_text;
  EXPECT_EQ(outcome.err_text, "");
  return outcome.invocation.value_or(Invocation{});
}

// The outcome of a command line that must not run: its exit code and texts.
ParseOutcome MustRefuse(const std::vector<std::string>& args) {
  ParseOutcome outcome = ParseCommandLine(args, std::nullopt);
  EXPECT_FALSE(outcome.invocation.has_value());
  return outcome;
}

TEST(ParseCommandLineTest, GetWithDefaults) {
  const Invocation inv = MustParse({"get", "0123"});
  EXPECT_EQ(inv.command, Command::kGet);
  EXPECT_EQ(inv.id, "0123");
  EXPECT_EQ(inv.server, "127.0.0.1:50051");
  EXPECT_EQ(inv.output, OutputFormat::kTable);
  EXPECT_EQ(inv.timeout, absl::Seconds(30));
}

TEST(ParseCommandLineTest, ServerComesFromTheEnvironmentUnlessGiven) {
  EXPECT_EQ(MustParse({"get", "1"}, "envhost:1").server, "envhost:1");
  EXPECT_EQ(MustParse({"get", "1"}, "").server, "127.0.0.1:50051");
  EXPECT_EQ(MustParse({"--server", "flag:2", "get", "1"}, "envhost:1").server, "flag:2");
}

TEST(ParseCommandLineTest, GlobalOptionsGoBeforeOrAfterTheCommand) {
  const Invocation before =
      MustParse({"--server", "h:1", "--output", "json", "--timeout", "5s", "get", "7"});
  const Invocation after =
      MustParse({"get", "7", "--server", "h:1", "--output", "json", "--timeout", "5s"});
  for (const Invocation& inv : {before, after}) {
    EXPECT_EQ(inv.server, "h:1");
    EXPECT_EQ(inv.output, OutputFormat::kJson);
    EXPECT_EQ(inv.timeout, absl::Seconds(5));
    EXPECT_EQ(inv.id, "7");
  }
}

TEST(ParseCommandLineTest, TokenAndTlsOptions) {
  const Invocation inv = MustParse({"--token", "t0k3n", "--tls-ca", "ca.pem", "--tls-cert", "c.pem",
                                    "--tls-key", "k.pem", "get", "1"});
  EXPECT_EQ(inv.token, "t0k3n");
  EXPECT_EQ(inv.tls_ca, "ca.pem");
  EXPECT_EQ(inv.tls_cert, "c.pem");
  EXPECT_EQ(inv.tls_key, "k.pem");
  // The underscore spellings of the flags that export-worker also has.
  EXPECT_EQ(MustParse({"get", "1", "--token_file", "f"}).token_file, "f");
  EXPECT_EQ(MustParse({"get", "1", "--tls_ca", "a"}).tls_ca, "a");

  const ParseOutcome both = MustRefuse({"--token", "a", "--token-file", "f", "get", "1"});
  EXPECT_EQ(both.exit_code, kExitUsage);
  EXPECT_THAT(both.err_text, HasSubstr("--token, --token-file: give at most one"));
  const ParseOutcome half = MustRefuse({"--tls-cert", "c.pem", "get", "1"});
  EXPECT_EQ(half.exit_code, kExitUsage);
  EXPECT_THAT(half.err_text, HasSubstr("--tls-cert, --tls-key: give both or neither"));
}

TEST(ResolveTokenTest, FlagThenFileThenEnvironment) {
  test_support::TempDir dir;
  const std::string file = dir.path() + "/token";
  std::ofstream(file) << "  from-file-token \n";
  Invocation inv;
  EXPECT_THAT(ResolveToken(inv, std::nullopt), ::exportd::testing::IsOkAndHolds(""));
  EXPECT_THAT(ResolveToken(inv, "from-env"), ::exportd::testing::IsOkAndHolds("from-env"));
  inv.token_file = file;
  EXPECT_THAT(ResolveToken(inv, "from-env"), ::exportd::testing::IsOkAndHolds("from-file-token"));
  inv.token = "from-flag";
  EXPECT_THAT(ResolveToken(inv, "from-env"), ::exportd::testing::IsOkAndHolds("from-flag"));

  Invocation missing;
  missing.token_file = dir.path() + "/none";
  absl::StatusOr<std::string> unread = ResolveToken(missing, "from-env");
  EXPECT_THAT(unread, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--token-file")));
  EXPECT_EQ(ExitCodeOf(unread.status()), kExitUsage);
  Invocation empty;
  empty.token_file = dir.path() + "/empty";
  std::ofstream(empty.token_file) << "\n";
  EXPECT_THAT(ResolveToken(empty, std::nullopt),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is empty")));
}

TEST(ParseCommandLineTest, CreateWithEveryOption) {
  const Invocation inv =
      MustParse({"create", "--entity", "buying_groups", "--fields", "id,name,account_id",
                 "--filters", R"({"name": "x"})", "--format", "jsonl", "--compression", "gzip",
                 "--part-size", "64KiB", "--request-id", "r-1", "--wait", "--watch-timeout", "2m"});
  EXPECT_EQ(inv.command, Command::kCreate);
  EXPECT_EQ(inv.create.entity, exportjobs::v1::ENTITY_TYPE_BUYING_GROUPS);
  EXPECT_EQ(inv.create.fields, (std::vector<std::string>{"id", "name", "account_id"}));
  EXPECT_EQ(inv.create.filters, R"({"name": "x"})");
  EXPECT_EQ(inv.create.format, exportjobs::v1::EXPORT_FORMAT_JSONL);
  EXPECT_EQ(inv.create.compression, exportjobs::v1::COMPRESSION_GZIP);
  EXPECT_EQ(inv.create.part_size_bytes, 65536);
  EXPECT_EQ(inv.create.request_id, "r-1");
  EXPECT_TRUE(inv.create.wait);
  EXPECT_EQ(inv.watch_timeout, absl::Minutes(2));
}

TEST(ParseCommandLineTest, CreateDefaultsLeaveTheServerToChoose) {
  const Invocation inv = MustParse({"create", "--entity", "accounts"});
  EXPECT_TRUE(inv.create.fields.empty());
  EXPECT_EQ(inv.create.format, exportjobs::v1::EXPORT_FORMAT_UNSPECIFIED);
  EXPECT_EQ(inv.create.compression, exportjobs::v1::COMPRESSION_UNSPECIFIED);
  EXPECT_EQ(inv.create.part_size_bytes, 0);
  EXPECT_FALSE(inv.create.wait);
}

TEST(ParseCommandLineTest, ListFilters) {
  const Invocation inv = MustParse({"list", "--status", "completed", "--entity", "people",
                                    "--page-size", "10", "--page-token", "tok", "--all"});
  EXPECT_EQ(inv.command, Command::kList);
  EXPECT_EQ(inv.list.status, exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  EXPECT_EQ(inv.list.entity, exportjobs::v1::ENTITY_TYPE_PEOPLE);
  EXPECT_EQ(inv.list.page_size, 10);
  EXPECT_EQ(inv.list.page_token, "tok");
  EXPECT_TRUE(inv.list.all);
}

TEST(ParseCommandLineTest, DownloadOptions) {
  const Invocation inv =
      MustParse({"download", "9", "-o", "out.csv", "--part", "2", "--grpc", "--force"});
  EXPECT_EQ(inv.command, Command::kDownload);
  EXPECT_EQ(inv.id, "9");
  EXPECT_EQ(inv.download.output, "out.csv");
  EXPECT_EQ(inv.download.part, 2);
  EXPECT_TRUE(inv.download.grpc);
  EXPECT_TRUE(inv.download.force);
}

TEST(ParseCommandLineTest, EveryCommandWithAnId) {
  const std::pair<const char*, Command> commands[] = {
      {"get", Command::kGet},       {"watch", Command::kWatch},   {"wait", Command::kWait},
      {"cancel", Command::kCancel}, {"delete", Command::kDelete}, {"download", Command::kDownload}};
  for (const auto& [name, command] : commands) {
    const Invocation inv = MustParse({name, "abc"});
    EXPECT_EQ(inv.command, command) << name;
    EXPECT_EQ(inv.id, "abc") << name;
  }
}

TEST(ParseCommandLineTest, FieldsTakesAnEntity) {
  const Invocation inv = MustParse({"fields", "opportunities"});
  EXPECT_EQ(inv.command, Command::kFields);
  EXPECT_EQ(inv.fields_entity, exportjobs::v1::ENTITY_TYPE_OPPORTUNITIES);
}

TEST(ParseCommandLineTest, HelpPrintsTheExitCodesAndExitsZero) {
  const ParseOutcome outcome = MustRefuse({"--help"});
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.err_text, "");
  for (const char* text : {"create", "download", "EXPORT_SERVER",
                           "Exit codes:", "3        usage error", "10+N", "130"}) {
    EXPECT_THAT(outcome.out_text, HasSubstr(text));
  }
  const ParseOutcome create = MustRefuse({"create", "--help"});
  EXPECT_EQ(create.exit_code, 0);
  EXPECT_THAT(create.out_text, HasSubstr("--entity"));
  EXPECT_THAT(create.out_text, HasSubstr("--part-size"));
}

struct UsageCase {
  std::vector<std::string> args;
  std::string message;  // What the error must say.
};

TEST(ParseCommandLineTest, UsageErrorsExitWithThreeAndNameTheOption) {
  const UsageCase cases[] = {
      {{}, "a command is required: create, get, list,"},
      {{"--server", "h:1"}, "a command is required"},
      {{"frobnicate"}, "frobnicate"},
      {{"get"}, "ID is required"},
      {{"create"}, "--entity is required"},
      {{"create", "--entity", "planets"},
       "--entity: \"planets\" is not an entity type (one of accounts, people, opportunities, "
       "activities, campaigns, buying_groups)"},
      {{"fields", "planets"}, "\"planets\" is not an entity type"},
      {{"list", "--status", "done"}, "--status: \"done\" is not a job status"},
      {{"--output", "xml", "get", "1"}, "--output: \"xml\" is not one of table|json"},
      {{"get", "1", "--timeout", "soon"}, "--timeout: \"soon\" is not a duration"},
      {{"get", "1", "--timeout", "0s"}, "--timeout: \"0s\" is not a positive"},
      {{"create", "--entity", "accounts", "--format", "xml"}, "--format"},
      {{"create", "--entity", "accounts", "--part-size", "big"}, "--part-size: \"big\""},
      {{"download", "1", "--part", "0"}, "--part"},
      {{"get", "1", "--bogus"}, "--bogus"},
      {{"--server", "", "get", "1"}, "--server: must not be empty"},
  };
  for (const UsageCase& c : cases) {
    const ParseOutcome outcome = MustRefuse(c.args);
    EXPECT_EQ(outcome.exit_code, kExitUsage) << c.message;
    EXPECT_THAT(outcome.err_text, StartsWith("exportctl: INVALID_ARGUMENT: "));
    EXPECT_THAT(outcome.err_text, HasSubstr(c.message));
    EXPECT_EQ(outcome.out_text, "") << c.message;
  }
}

TEST(ParseByteSizeTest, UnitsAreBinaryAndCaseInsensitive) {
  EXPECT_THAT(ParseByteSize("0"), IsOkAndHolds(0));
  EXPECT_THAT(ParseByteSize("4096"), IsOkAndHolds(4096));
  EXPECT_THAT(ParseByteSize("4096B"), IsOkAndHolds(4096));
  EXPECT_THAT(ParseByteSize("64KiB"), IsOkAndHolds(64 * 1024));
  EXPECT_THAT(ParseByteSize("64k"), IsOkAndHolds(64 * 1024));
  EXPECT_THAT(ParseByteSize("1MiB"), IsOkAndHolds(1 << 20));
  EXPECT_THAT(ParseByteSize("1m"), IsOkAndHolds(1 << 20));
  EXPECT_THAT(ParseByteSize("4GiB"), IsOkAndHolds(int64_t{4} << 30));
  EXPECT_THAT(ParseByteSize("4G"), IsOkAndHolds(int64_t{4} << 30));
}

TEST(ParseByteSizeTest, RefusesOtherText) {
  for (const char* text : {"", "KiB", "-1", "1.5MiB", "1TiB", "12 KiB", "0x10", "1e3",
                           "99999999999999999999", "9999999999999GiB"}) {
    EXPECT_THAT(ParseByteSize(text), StatusIs(absl::StatusCode::kInvalidArgument)) << text;
  }
}

TEST(ParsePositiveDurationTest, UnitsOrPlainSeconds) {
  EXPECT_THAT(ParsePositiveDuration("30s"), IsOkAndHolds(absl::Seconds(30)));
  EXPECT_THAT(ParsePositiveDuration("500ms"), IsOkAndHolds(absl::Milliseconds(500)));
  EXPECT_THAT(ParsePositiveDuration("1h30m"), IsOkAndHolds(absl::Minutes(90)));
  EXPECT_THAT(ParsePositiveDuration("2.5"), IsOkAndHolds(absl::Milliseconds(2500)));
  for (const char* text : {"", "0", "0s", "-1s", "inf", "soon", "10 s"}) {
    EXPECT_THAT(ParsePositiveDuration(text), StatusIs(absl::StatusCode::kInvalidArgument)) << text;
  }
}

TEST(ParseFiltersTest, AJsonObjectBecomesAStruct) {
  ASSERT_OK_AND_ASSIGN(const google::protobuf::Struct filters,
                       ParseFilters(R"({"country": "DE", "employee_count": {"gte": 100}})"));
  EXPECT_EQ(filters.fields().at("country").string_value(), "DE");
  EXPECT_EQ(filters.fields().at("employee_count").struct_value().fields().at("gte").number_value(),
            100);
}

TEST(ParseFiltersTest, FromAFile) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/filters.json";
  std::ofstream(path) << R"({"any_of": [{"region": "EMEA"}, {"country": null}]})";
  ASSERT_OK_AND_ASSIGN(const google::protobuf::Struct filters, ParseFilters("@" + path));
  EXPECT_EQ(filters.fields().at("any_of").list_value().values_size(), 2);
}

TEST(ParseFiltersTest, ErrorsAreUsageErrorsNamingFilters) {
  const std::pair<std::string, std::string> cases[] = {
      {"{\"country\": ", "--filters: not valid JSON"},
      {"[1, 2]", "--filters: must be a JSON object ({\"field\": value, ...}), got an array"},
      {"\"DE\"", "got a string"},
      {"@/nonexistent/filters.json", "--filters: cannot read /nonexistent/filters.json"},
  };
  for (const auto& [arg, message] : cases) {
    const absl::StatusOr<google::protobuf::Struct> filters = ParseFilters(arg);
    EXPECT_THAT(filters, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message))) << arg;
    EXPECT_EQ(ExitCodeOf(filters.status()), kExitUsage) << arg;
  }
}

TEST(BuildCreateRequestTest, CarriesEveryArgument) {
  CreateArgs args;
  args.entity = exportjobs::v1::ENTITY_TYPE_ACCOUNTS;
  args.fields = {"id", "name"};
  args.filters = R"({"country": ["DE", "FR"]})";
  args.format = exportjobs::v1::EXPORT_FORMAT_CSV;
  args.compression = exportjobs::v1::COMPRESSION_GZIP;
  args.part_size_bytes = 4096;
  args.request_id = "abc";
  ASSERT_OK_AND_ASSIGN(const exportjobs::v1::CreateExportJobRequest request,
                       BuildCreateRequest(args));
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(request, &json).ok());
  EXPECT_EQ(json,
            R"({"entityType":"ENTITY_TYPE_ACCOUNTS","fields":["id","name"],)"
            R"("filters":{"country":["DE","FR"]},"requestId":"abc","format":"EXPORT_FORMAT_CSV",)"
            R"("compression":"COMPRESSION_GZIP","partSizeBytes":"4096"})");
}

TEST(BuildCreateRequestTest, NoFiltersMeansNone) {
  CreateArgs args;
  args.entity = exportjobs::v1::ENTITY_TYPE_PEOPLE;
  ASSERT_OK_AND_ASSIGN(const exportjobs::v1::CreateExportJobRequest request,
                       BuildCreateRequest(args));
  EXPECT_FALSE(request.has_filters());
}

TEST(BuildListRequestTest, CarriesTheFilters) {
  ListArgs args;
  args.status = exportjobs::v1::EXPORT_JOB_STATUS_FAILED;
  args.entity = exportjobs::v1::ENTITY_TYPE_CAMPAIGNS;
  args.page_size = 3;
  args.page_token = "t";
  const exportjobs::v1::ListExportJobsRequest request = BuildListRequest(args);
  EXPECT_EQ(request.status(), exportjobs::v1::EXPORT_JOB_STATUS_FAILED);
  EXPECT_EQ(request.entity_type(), exportjobs::v1::ENTITY_TYPE_CAMPAIGNS);
  EXPECT_EQ(request.page_size(), 3);
  EXPECT_EQ(request.page_token(), "t");
}

TEST(ExitCodeTest, GrpcCodesAreTenPlusTheCode) {
  EXPECT_EQ(ExitCodeOf(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeOf(absl::InvalidArgumentError("x")), 13);
  EXPECT_EQ(ExitCodeOf(absl::DeadlineExceededError("x")), 14);
  EXPECT_EQ(ExitCodeOf(absl::NotFoundError("x")), 15);
  EXPECT_EQ(ExitCodeOf(absl::FailedPreconditionError("x")), 19);
  EXPECT_EQ(ExitCodeOf(absl::UnavailableError("x")), 24);
}

TEST(ExitCodeTest, AnAttachedCodeWins) {
  EXPECT_EQ(ExitCodeOf(UsageError("x")), kExitUsage);
  EXPECT_EQ(ExitCodeOf(WithExitCode(absl::DataLossError("x"), kExitVerification)), 5);
  EXPECT_EQ(ExitCodeOf(WithExitCode(absl::UnavailableError("x"), kExitHttp)), 7);
  EXPECT_TRUE(WithExitCode(absl::OkStatus(), 5).ok());
}

TEST(ExitCodeTest, ErrorTextIsTheCodeNameAndTheMessage) {
  EXPECT_EQ(ErrorText(absl::NotFoundError("job 01 not found")), "NOT_FOUND: job 01 not found");
  EXPECT_EQ(ErrorText(UsageError("--part: bad")), "INVALID_ARGUMENT: --part: bad");
}

}  // namespace
}  // namespace exportd::exportctl
