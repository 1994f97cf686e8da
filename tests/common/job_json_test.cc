// The ExportJob JSON form (common/job_json.h): exact renderings, what is omitted, and every
// status's rendering validated against the schema by tests/node/validate_export_job.js.
#include "common/job_json.h"

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/time/time.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace exportd {
namespace {

using exportjobs::v1::ExportJob;
using ::testing::HasSubstr;

google::protobuf::Struct StructOf(const std::string& json) {
  google::protobuf::Struct out;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &out).ok()) << json;
  return out;
}

google::protobuf::Timestamp At(const char* rfc3339) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &error)) << error;
  return ToProtoTime(t);
}

ExportJob PendingJob() {
  ExportJob job;
  job.set_id("0005f1c2a3b4c5d6e7f80911");
  job.set_entity_type(exportjobs::v1::ENTITY_TYPE_BUYING_GROUPS);
  job.set_status(exportjobs::v1::EXPORT_JOB_STATUS_PENDING);
  job.add_fields("id");
  job.add_fields("name");
  *job.mutable_created_at() = At("2026-11-28T12:00:00Z");
  // Fields beyond the schema's 13 never appear.
  job.set_revision(7);
  job.set_request_id("req-1");
  job.set_attempt(2);
  job.mutable_progress()->set_records_processed(5);
  return job;
}

ExportJob CompletedJob() {
  ExportJob job = PendingJob();
  job.set_entity_type(exportjobs::v1::ENTITY_TYPE_ACCOUNTS);
  job.set_status(exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED);
  *job.mutable_filters() = StructOf(R"({"employees":{"gte":100},"industry":{"in":["a","b"]}})");
  job.set_record_count(1234);
  job.set_file_size_bytes(5'000'000'000);
  job.set_file_parts(3);
  job.set_download_url("http://127.0.0.1:8080/v1/export-jobs/x/file?expires=1&sig=ab");
  *job.mutable_completed_at() = At("2026-11-28T12:00:01.25Z");
  *job.mutable_expires_at() = At("2026-12-05T12:00:01.000001Z");
  job.add_parts()->set_part_number(1);
  return job;
}

TEST(JobJson, PendingJobHasOnlyWhatIsSet) {
  EXPECT_EQ(RenderJobJson(PendingJob()),
            R"({"id":"0005f1c2a3b4c5d6e7f80911","entity_type":"buying_groups",)"
            R"("status":"pending","fields":["id","name"],"created_at":"2026-11-28T12:00:00Z"})");
}

TEST(JobJson, CompletedJobHasTheSchemaPropertiesInOrderWithNumbersAsNumbers) {
  EXPECT_EQ(RenderJobJson(CompletedJob()),
            R"({"id":"0005f1c2a3b4c5d6e7f80911","entity_type":"accounts","status":"completed",)"
            R"("fields":["id","name"],)"
            R"("filters":{"employees":{"gte":100},"industry":{"in":["a","b"]}},)"
            R"("record_count":1234,"file_size_bytes":5000000000,"file_parts":3,)"
            R"("download_url":"http://127.0.0.1:8080/v1/export-jobs/x/file?expires=1&sig=ab",)"
            R"("created_at":"2026-11-28T12:00:00Z","completed_at":"2026-11-28T12:00:01.25Z",)"
            R"("expires_at":"2026-12-05T12:00:01.000001Z"})");
}

TEST(JobJson, CompletedJobWithNoRecordsStillHasItsCounts) {
  ExportJob job = CompletedJob();
  job.set_record_count(0);
  job.set_file_size_bytes(0);
  job.set_file_parts(1);
  const nlohmann::ordered_json json = JobJson(job);
  EXPECT_EQ(json.at("record_count"), 0);
  EXPECT_EQ(json.at("file_size_bytes"), 0);
  EXPECT_EQ(json.at("file_parts"), 1);
}

TEST(JobJson, FailedJobHasItsErrorAndNoCounts) {
  ExportJob job = PendingJob();
  job.set_status(exportjobs::v1::EXPORT_JOB_STATUS_FAILED);
  job.set_error_message("source: no such table \"x\"");
  const nlohmann::ordered_json json = JobJson(job);
  EXPECT_EQ(json.at("error_message"), "source: no such table \"x\"");
  EXPECT_FALSE(json.contains("record_count"));
  EXPECT_FALSE(json.contains("file_parts"));
  EXPECT_FALSE(json.contains("download_url"));
  EXPECT_THAT(RenderJobJson(job), HasSubstr(R"("error_message":"source: no such table \"x\"")"));
}

TEST(JobJson, EmptyFiltersAreOmittedAndFieldsAlwaysPresent) {
  ExportJob job = PendingJob();
  job.mutable_filters();  // set, but empty
  job.clear_fields();
  const nlohmann::ordered_json json = JobJson(job);
  EXPECT_FALSE(json.contains("filters"));
  EXPECT_EQ(json.at("fields"), nlohmann::ordered_json::array());
}

TEST(JobJson, FilterNumbersAreIntegersWhenWholeAndFloatsOtherwise) {
  const nlohmann::ordered_json json =
      StructJson(StructOf(R"({"a":{"eq":3},"b":{"lt":2.5},"c":{"eq":-9007199254740992},)"
                          R"("d":{"eq":1e300},"e":{"is_null":true},"f":{"eq":null}})"));
  EXPECT_EQ(json.dump(),
            R"({"a":{"eq":3},"b":{"lt":2.5},"c":{"eq":-9007199254740992},"d":{"eq":1e+300},)"
            R"("e":{"is_null":true},"f":{"eq":null}})");
}

TEST(JobJson, FilterKeysAreSortedSoTheSameFiltersRenderTheSame) {
  EXPECT_EQ(StructJson(StructOf(R"({"z":1,"a":2,"m":3})")).dump(), R"({"a":2,"m":3,"z":1})");
}

TEST(JobJson, StringsAreEscaped) {
  ExportJob job = PendingJob();
  job.set_status(exportjobs::v1::EXPORT_JOB_STATUS_FAILED);
  job.set_error_message("line 1\nline 2\t\"quoted\" \\ \x01");
  EXPECT_THAT(RenderJobJson(job),
              HasSubstr(R"("error_message":"line 1\nline 2\t\"quoted\" \\ \u0001")"));
}

TEST(JobJson, PrettyPrintingKeepsTheOrder) {
  const std::string pretty = RenderJobJson(PendingJob(), 2);
  EXPECT_EQ(pretty.substr(0, 40), "{\n  \"id\": \"0005f1c2a3b4c5d6e7f80911\",\n  ");
  EXPECT_LT(pretty.find("\"entity_type\""), pretty.find("\"created_at\""));
}

TEST(JobJson, TimestampsHaveFourDigitYearsAcrossTheTimestampRange) {
  // The first and last instants google.protobuf.Timestamp allows, and a year below 1000.
  EXPECT_EQ(Rfc3339(ToProtoTime(absl::FromUnixSeconds(-62135596800))), "0001-01-01T00:00:00Z");
  EXPECT_EQ(Rfc3339(ToProtoTime(absl::FromUnixSeconds(-50000000000))), "0385-07-25T07:06:40Z");
  EXPECT_EQ(Rfc3339(ToProtoTime(absl::FromUnixSeconds(253402300799) + absl::Milliseconds(500))),
            "9999-12-31T23:59:59.5Z");
}

TEST(JobJson, UnspecifiedEnumsAreOmitted) {
  ExportJob job;
  job.set_id("x");
  EXPECT_EQ(RenderJobJson(job), R"({"id":"x","fields":[]})");
}

TEST(JobJson, AListHasItsJobsAndATokenOnlyWhenThereIsAnotherPage) {
  ExportJob pending = PendingJob();
  EXPECT_EQ(JobListJson({pending}, "tok").dump(),
            "{\"export_jobs\":[" + RenderJobJson(pending) + "],\"next_page_token\":\"tok\"}");
  EXPECT_EQ(JobListJson({}, "").dump(), R"({"export_jobs":[]})");
}

TEST(JobJson, EnumNamesRoundTrip) {
  for (int value = 1; value <= 6; ++value) {
    const auto type = static_cast<exportjobs::v1::EntityType>(value);
    EXPECT_EQ(ParseEntityTypeJsonName(EntityTypeJsonName(type)), type) << value;
  }
  for (int value = 1; value <= 5; ++value) {
    const auto status = static_cast<exportjobs::v1::ExportJobStatus>(value);
    EXPECT_EQ(ParseStatusJsonName(StatusJsonName(status)), status) << value;
  }
  EXPECT_EQ(EntityTypeJsonName(exportjobs::v1::ENTITY_TYPE_PEOPLE), "people");
  EXPECT_EQ(StatusJsonName(exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED), "cancelled");
  EXPECT_EQ(ParseEntityTypeJsonName("ACCOUNTS"), std::nullopt);
  EXPECT_EQ(ParseEntityTypeJsonName("ENTITY_TYPE_ACCOUNTS"), std::nullopt);
  EXPECT_EQ(ParseStatusJsonName(""), std::nullopt);
  EXPECT_EQ(EntityTypeJsonName(exportjobs::v1::ENTITY_TYPE_UNSPECIFIED), "");
  EXPECT_EQ(StatusJsonName(static_cast<exportjobs::v1::ExportJobStatus>(99)), "");
}

// Runs the schema validator on `jsonl`; returns its exit code and output.
int Validate(const std::string& jsonl, std::string* output) {
  test_support::TempDir dir;
  const std::string input = dir.path() + "/jobs.jsonl";
  const std::string out = dir.path() + "/out.txt";
  std::ofstream(input) << jsonl;
  const std::string command = std::string("node '") + EXPORTD_SOURCE_DIR +
                              "/tests/node/validate_export_job.js' '" + input + "' > '" + out +
                              "' 2>&1";
  const int status = std::system(command.c_str());
  std::stringstream text;
  text << std::ifstream(out).rdbuf();
  *output = text.str();
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(JobJson, EveryStatusValidatesAgainstTheSchema) {
  std::string jsonl;
  for (int value = 1; value <= 5; ++value) {
    ExportJob job = CompletedJob();
    job.set_status(static_cast<exportjobs::v1::ExportJobStatus>(value));
    if (value == exportjobs::v1::EXPORT_JOB_STATUS_FAILED) job.set_error_message("boom");
    jsonl += RenderJobJson(job) + "\n";
  }
  std::string output;
  EXPECT_EQ(Validate(jsonl, &output), 0) << output;
  EXPECT_THAT(output, HasSubstr("ok 5 jobs"));
}

TEST(JobJson, TheValidatorRejectsAFormThatIsNotTheSchemas) {
  // The same job as the proto's own JSON mapping prints it: enum names in capitals, int64 as
  // strings, fields beyond the schema's. The validator must fail it, or the test above proves
  // nothing.
  std::string proto_json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  ASSERT_TRUE(
      google::protobuf::util::MessageToJsonString(CompletedJob(), &proto_json, options).ok());
  std::string output;
  EXPECT_EQ(Validate(proto_json + "\n", &output), 1) << output;
  EXPECT_THAT(output, HasSubstr("/entity_type must be equal to one of the allowed values"));
  EXPECT_THAT(output, HasSubstr("/record_count must be integer"));
  EXPECT_THAT(output, HasSubstr(R"(property "revision" is not in the schema)"));
}

}  // namespace
}  // namespace exportd
