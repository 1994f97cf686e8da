// The read-only JSON view of the jobs on the HTTP port (see server/http_server.h for the routes):
// query parameters parsed into the gRPC request, responses rendered with the one ExportJob JSON
// renderer (common/job_json.h), and errors as one JSON object:
//
//   {"error": {"code": 404, "status": "NOT_FOUND", "message": "job ... not found"}}
//
// `code` is the HTTP status; `status` the canonical error code name (as gRPC names it), or
// METHOD_NOT_ALLOWED for a 405; `message` names the parameter and the reason.
//
// Thread safety: plain functions of their arguments.
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "exportjobs/v1/export_service.pb.h"

namespace exportd {

// Query parameters as httplib hands them over: percent-decoded, in order, repeats kept.
using QueryParams = std::multimap<std::string, std::string>;

// The ListExportJobs request that GET /v1/export-jobs?<params> asks for: status and entity_type
// by the schema's lowercase names ("pending", "buying_groups"), page_size as a decimal integer,
// page_token as given; an empty value counts as absent. INVALID_ARGUMENT naming the parameter for
// an unknown or repeated parameter, an unknown name or a page_size that is not an integer (the
// checks ListExportJobs makes itself, e.g. of a negative page_size or of the token, stay there).
absl::StatusOr<exportjobs::v1::ListExportJobsRequest> ParseListParams(const QueryParams& params);

// INVALID_ARGUMENT naming the first parameter, when there is any (GET /v1/export-jobs/<id> takes
// none).
absl::Status CheckNoParams(const QueryParams& params);

// {"export_jobs": [...], "next_page_token": "..."}; the token is omitted on the last page.
std::string ListJobsJson(const exportjobs::v1::ListExportJobsResponse& page);

// One job in the ExportJob JSON form.
std::string JobJsonText(const exportjobs::v1::ExportJob& job);

// The HTTP status that answers an error with this code (INVALID_ARGUMENT 400, NOT_FOUND 404,
// UNAVAILABLE 503, ...; OK is 200).
int HttpStatusForCode(absl::StatusCode code);

// The error body for `status`. Messages of the server's own failures (5xx) may name internal
// details (paths, store errors), so those answer with a generic message instead.
std::string ErrorJson(const absl::Status& status);

// The error body for a status name that is not a canonical code (e.g. METHOD_NOT_ALLOWED).
std::string ErrorJson(int http_status, const std::string& status_name, const std::string& message);

}  // namespace exportd
