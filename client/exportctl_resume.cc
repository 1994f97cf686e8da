#include "client/exportctl_resume.h"

#include "absl/strings/numbers.h"
#include "client/exportctl_exit.h"
#include "client/exportctl_format.h"
#include "common/str_cat.h"
#include "nlohmann/json.hpp"

namespace exportd::exportctl {

std::string PartialPath(std::string_view destination) { return Cat(destination, ".partial"); }

std::string SidecarPath(std::string_view destination) { return Cat(destination, ".partial.json"); }

std::string EncodeSidecar(const PartialInfo& info) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  json["job_id"] = info.job_id;
  json["part"] = info.part;
  json["size_bytes"] = info.size_bytes;
  json["etag"] = info.etag;
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

absl::StatusOr<PartialInfo> DecodeSidecar(std::string_view text) {
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json.contains("job_id") || !json["job_id"].is_string() ||
      !json.contains("part") || !json["part"].is_number_integer() || !json.contains("size_bytes") ||
      !json["size_bytes"].is_number_integer() || !json.contains("etag") ||
      !json["etag"].is_string()) {
    return absl::InvalidArgumentError(
        "not a partial-download record ({\"job_id\",\"part\",\"size_bytes\",\"etag\"})");
  }
  PartialInfo info;
  info.job_id = json["job_id"].get<std::string>();
  info.part = json["part"].get<int>();
  info.size_bytes = json["size_bytes"].get<int64_t>();
  info.etag = json["etag"].get<std::string>();
  return info;
}

ResumePlan PlanResume(const std::optional<PartialInfo>& sidecar, int64_t partial_size,
                      const PartialInfo& want) {
  ResumePlan plan;
  if (partial_size <= 0) return plan;
  if (!sidecar.has_value()) {
    plan.discard_reason = "it has no readable record of what it holds";
  } else if (sidecar->job_id != want.job_id || sidecar->part != want.part) {
    plan.discard_reason = Cat("it holds job ", sidecar->job_id, " part ", sidecar->part);
  } else if (sidecar->size_bytes != want.size_bytes) {
    plan.discard_reason =
        Cat("it was for a download of ", sidecar->size_bytes, " bytes, not ", want.size_bytes);
  } else if (partial_size > want.size_bytes) {
    plan.discard_reason =
        Cat("it has ", partial_size, " bytes, more than the download's ", want.size_bytes);
  } else {
    plan.keep_bytes = partial_size;
    plan.if_range = sidecar->etag;
  }
  return plan;
}

std::vector<std::pair<std::string, std::string>> ResumeHeaders(int64_t offset,
                                                               std::string_view etag) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (offset <= 0) return headers;
  headers.emplace_back("Range", Cat("bytes=", offset, "-"));
  if (!etag.empty()) headers.emplace_back("If-Range", std::string(etag));
  return headers;
}

absl::Status HttpStatusError(int status, std::string_view body) {
  std::string_view first_line = body.substr(0, body.find('\n'));
  if (first_line.size() > 300) first_line = first_line.substr(0, 300);
  std::string message = Cat("HTTP ", status);
  if (!first_line.empty()) Append(&message, ": ", Printable(first_line));
  absl::StatusCode code = absl::StatusCode::kUnknown;
  if (status == 403) {
    code = absl::StatusCode::kPermissionDenied;
  } else if (status == 404) {
    code = absl::StatusCode::kNotFound;
  } else if (status == 409 || status == 410) {
    code = absl::StatusCode::kFailedPrecondition;
  } else if (status == 416) {
    code = absl::StatusCode::kOutOfRange;
  } else if (status >= 500 && status <= 599) {
    code = absl::StatusCode::kUnavailable;
  }
  return WithExitCode(absl::Status(code, message), kExitHttp);
}

absl::StatusOr<ResponseAction> DecideResponse(int status, std::string_view content_range,
                                              int64_t offset, int64_t total,
                                              std::string_view body) {
  if (status == 200) return offset == 0 ? ResponseAction::kAppend : ResponseAction::kRestart;
  if (status != 206) return HttpStatusError(status, body);
  // "bytes FIRST-LAST/TOTAL" must be exactly the rest of the download.
  const std::string expected = Cat("bytes ", offset, "-", total - 1, "/", total);
  if (offset == 0 || content_range != expected) {
    return WithExitCode(
        absl::DataLossError(Cat("HTTP 206 with Content-Range \"", Printable(content_range),
                                "\", asked for \"", expected, "\"")),
        kExitHttp);
  }
  return ResponseAction::kAppend;
}

}  // namespace exportd::exportctl
