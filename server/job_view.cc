#include "server/job_view.h"

#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/job_json.h"
#include "common/str_cat.h"
#include "nlohmann/json.hpp"

namespace exportd {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kListParams[] = {"status", "entity_type", "page_size", "page_token"};

std::string Dump(const Json& json) {
  // Job fields hold caller-supplied text: never throw on invalid UTF-8, replace it.
  return json.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string Quoted(const std::string& value) { return Cat("\"", value.substr(0, 64), "\""); }

}  // namespace

absl::StatusOr<exportjobs::v1::ListExportJobsRequest> ParseListParams(const QueryParams& params) {
  exportjobs::v1::ListExportJobsRequest request;
  for (auto it = params.begin(); it != params.end(); it = params.upper_bound(it->first)) {
    const std::string& name = it->first;
    bool known = false;
    for (std::string_view list_param : kListParams) known = known || name == list_param;
    if (!known) {
      return absl::InvalidArgumentError(
          Cat(Quoted(name),
              ": unknown parameter; the list takes status, entity_type, page_size and page_token"));
    }
    if (params.count(name) > 1) {
      return absl::InvalidArgumentError(Cat(name, ": given more than once"));
    }
    const std::string& value = it->second;
    if (value.empty()) continue;
    if (name == "status") {
      std::optional<exportjobs::v1::ExportJobStatus> status = ParseStatusJsonName(value);
      if (!status) {
        return absl::InvalidArgumentError(
            Cat("status: unknown value ", Quoted(value),
                "; one of pending, processing, completed, failed, cancelled"));
      }
      request.set_status(*status);
    } else if (name == "entity_type") {
      std::optional<exportjobs::v1::EntityType> type = ParseEntityTypeJsonName(value);
      if (!type) {
        return absl::InvalidArgumentError(
            Cat("entity_type: unknown value ", Quoted(value),
                "; one of accounts, people, opportunities, activities, campaigns, "
                "buying_groups"));
      }
      request.set_entity_type(*type);
    } else if (name == "page_size") {
      int32_t page_size = 0;
      if (!absl::SimpleAtoi(value, &page_size)) {
        return absl::InvalidArgumentError(
            Cat("page_size: must be an integer (at most 2147483647), got ", Quoted(value)));
      }
      request.set_page_size(page_size);
    } else {
      request.set_page_token(value);
    }
  }
  return request;
}

absl::Status CheckNoParams(const QueryParams& params) {
  if (params.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      Cat(Quoted(params.begin()->first), ": unknown parameter; a job's view takes none"));
}

std::string ListJobsJson(const exportjobs::v1::ListExportJobsResponse& page) {
  return Dump(JobListJson({page.jobs().begin(), page.jobs().end()}, page.next_page_token()));
}

std::string JobJsonText(const exportjobs::v1::ExportJob& job) { return Dump(JobJson(job)); }

int HttpStatusForCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string ErrorJson(int http_status, const std::string& status_name, const std::string& message) {
  Json error = Json::object();
  error["code"] = http_status;
  error["status"] = status_name;
  error["message"] = message;
  Json body = Json::object();
  body["error"] = std::move(error);
  return Dump(body);
}

std::string ErrorJson(const absl::Status& status) {
  const int http_status = HttpStatusForCode(status.code());
  std::string message(status.message());
  if (http_status >= 500) {
    message = status.code() == absl::StatusCode::kUnavailable ||
                      status.code() == absl::StatusCode::kDeadlineExceeded
                  ? "the jobs cannot be read now; retry later"
                  : "the jobs cannot be read";
  }
  return ErrorJson(http_status, absl::StatusCodeToString(status.code()), message);
}

}  // namespace exportd
