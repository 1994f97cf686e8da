// Fuzzes the ExportJob JSON renderer (common/job_json.h) with any ExportJob.
//
// Input: a serialized exportjobs.v1.ExportJob (inputs that do not parse are skipped), also
// read as a serialized ListExportJobsResponse for JobListJson.
//
// Invariants, for RenderJobJson on one line and pretty-printed:
//  - the text parses as JSON (nlohmann) and is an object;
//  - its keys are among the schema's 13, each at most once, in the schema's order;
//  - "fields" is always there, an array of strings equal to the job's fields;
//  - id, download_url, error_message: strings equal to the job's, present iff non-empty;
//  - entity_type / status: one of the schema's lowercase names, present iff the job's value
//    has one; record_count, file_size_bytes, file_parts: JSON integers (never strings or
//    floats), equal to the job's, present iff the job is completed;
//  - filters: an object, present iff the job has a non-empty filters Struct;
//  - created_at, completed_at, expires_at: present iff set; for a timestamp in the range
//    google.protobuf.Timestamp allows, RFC 3339 UTC text that names that instant;
//  - JobListJson: {"export_jobs": [...], "next_page_token"?} where each element equals
//    JobJson(job) and the token is there iff non-empty; its dump parses back to the same.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "common/job_json.h"
#include "common/proto_time.h"
#include "exportjobs/v1/export_service.pb.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using exportjobs::v1::ExportJob;
using Json = nlohmann::ordered_json;  // keeps the order of keys as rendered

constexpr std::string_view kSchemaKeys[] = {
    "id",           "entity_type",     "status",        "fields",       "filters",
    "record_count", "file_size_bytes", "file_parts",    "download_url", "created_at",
    "completed_at", "expires_at",      "error_message",
};

int SchemaIndex(std::string_view key) {
  for (size_t i = 0; i < std::size(kSchemaKeys); ++i) {
    if (kSchemaKeys[i] == key) return static_cast<int>(i);
  }
  return -1;
}

// google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
bool InTimestampRange(const google::protobuf::Timestamp& ts) {
  return ts.seconds() >= -62135596800 && ts.seconds() <= 253402300799 && ts.nanos() >= 0 &&
         ts.nanos() <= 999999999;
}

void CheckTimestamp(const Json& object, std::string_view key, bool has,
                    const google::protobuf::Timestamp& ts, const std::string& text) {
  const auto it = object.find(std::string(key));
  FUZZ_CHECK(has == (it != object.end()), key, text);
  if (!has) return;
  FUZZ_CHECK(it->is_string(), key, text);
  if (!InTimestampRange(ts)) return;
  const std::string value = it->get<std::string>();
  // YYYY-MM-DDTHH:MM:SS[.fraction]Z
  FUZZ_CHECK(value.size() >= 20 && value[4] == '-' && value[7] == '-' && value[10] == 'T' &&
                 value[13] == ':' && value[16] == ':' && value.back() == 'Z',
             key, value);
  absl::Time parsed;
  std::string error;
  FUZZ_CHECK(absl::ParseTime(absl::RFC3339_full, value, &parsed, &error), key, value);
  // Rfc3339 prints whole nanoseconds (absl truncates to them), so the instant is exact.
  FUZZ_CHECK(parsed == exportd::FromProtoTime(ts), key, value);
}

void CheckJob(const ExportJob& job, const Json& object, const std::string& text) {
  FUZZ_CHECK(object.is_object(), "rendered", text);
  int previous = -1;
  for (const auto& [key, value] : object.items()) {
    const int index = SchemaIndex(key);
    FUZZ_CHECK(index >= 0, "key not in the schema", key);
    FUZZ_CHECK(index > previous, "key out of the schema's order", key);
    previous = index;
  }

  const auto string_member = [&](std::string_view key, const std::string& expected) {
    const auto it = object.find(std::string(key));
    FUZZ_CHECK(expected.empty() == (it == object.end()), key, text);
    if (!expected.empty()) FUZZ_CHECK(it->is_string() && *it == expected, key, text);
  };
  string_member("id", job.id());
  string_member("download_url", job.download_url());
  string_member("error_message", job.error_message());
  string_member("entity_type", std::string(exportd::EntityTypeJsonName(job.entity_type())));
  string_member("status", std::string(exportd::StatusJsonName(job.status())));
  if (object.contains("entity_type")) {
    FUZZ_CHECK(exportd::ParseEntityTypeJsonName(object["entity_type"].get<std::string>()) ==
                   job.entity_type(),
               "entity_type", text);
  }
  if (object.contains("status")) {
    FUZZ_CHECK(exportd::ParseStatusJsonName(object["status"].get<std::string>()) == job.status(),
               "status", text);
  }

  FUZZ_CHECK(object.contains("fields") && object["fields"].is_array(), "fields", text);
  const Json& fields = object["fields"];
  FUZZ_CHECK(fields.size() == static_cast<size_t>(job.fields_size()), "fields", text);
  for (int i = 0; i < job.fields_size(); ++i) {
    FUZZ_CHECK(fields[i].is_string() && fields[i] == job.fields(i), "fields", text);
  }

  const bool has_filters = job.has_filters() && job.filters().fields_size() > 0;
  FUZZ_CHECK(has_filters == object.contains("filters"), "filters", text);
  if (has_filters) {
    FUZZ_CHECK(object["filters"].is_object(), "filters", text);
    FUZZ_CHECK(object["filters"].size() == static_cast<size_t>(job.filters().fields_size()),
               "filters", text);
  }

  const bool completed = job.status() == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED;
  const auto integer_member = [&](std::string_view key, int64_t expected) {
    const auto it = object.find(std::string(key));
    FUZZ_CHECK(completed == (it != object.end()), key, text);
    if (!completed) return;
    FUZZ_CHECK(it->is_number_integer(), key, text);
    FUZZ_CHECK(it->get<int64_t>() == expected, key, text);
  };
  integer_member("record_count", job.record_count());
  integer_member("file_size_bytes", job.file_size_bytes());
  integer_member("file_parts", job.file_parts());

  CheckTimestamp(object, "created_at", job.has_created_at(), job.created_at(), text);
  CheckTimestamp(object, "completed_at", job.has_completed_at(), job.completed_at(), text);
  CheckTimestamp(object, "expires_at", job.has_expires_at(), job.expires_at(), text);
}

Json ParseOrDie(const std::string& text) {
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!parsed.is_discarded(), "not JSON", text);
  return parsed;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  exportd::fuzz::SilenceProtobufLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ExportJob job;
  if (job.ParseFromArray(data, static_cast<int>(size))) {
    for (int indent : {-1, 2}) {
      const std::string text = exportd::RenderJobJson(job, indent);
      if (indent < 0) FUZZ_CHECK(text.find('\n') == std::string::npos, "not one line", text);
      CheckJob(job, ParseOrDie(text), text);
    }
  }

  exportjobs::v1::ListExportJobsResponse page;
  if (page.ParseFromArray(data, static_cast<int>(size))) {
    const std::vector<ExportJob> jobs(page.jobs().begin(), page.jobs().end());
    const nlohmann::ordered_json list = exportd::JobListJson(jobs, page.next_page_token());
    const std::string text = list.dump(-1, ' ', /*ensure_ascii=*/false,
                                       nlohmann::ordered_json::error_handler_t::replace);
    const Json parsed = ParseOrDie(text);
    FUZZ_CHECK(parsed.is_object(), "list", text);
    const size_t expected_keys = page.next_page_token().empty() ? 1 : 2;
    FUZZ_CHECK(parsed.size() == expected_keys, "list keys", text);
    FUZZ_CHECK(parsed.contains("export_jobs") && parsed["export_jobs"].is_array() &&
                   parsed["export_jobs"].size() == jobs.size(),
               "export_jobs", text);
    if (!page.next_page_token().empty()) {
      FUZZ_CHECK(
          parsed.contains("next_page_token") && parsed["next_page_token"] == page.next_page_token(),
          "next_page_token", text);
    }
    for (size_t i = 0; i < jobs.size(); ++i) {
      FUZZ_CHECK(list["export_jobs"][i] == exportd::JobJson(jobs[i]), "export_jobs element", text);
      CheckJob(jobs[i], parsed["export_jobs"][i], text);
    }
  }
  return 0;
}
