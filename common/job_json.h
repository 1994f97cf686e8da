// The ExportJob JSON form: a job rendered exactly as the ExportJob JSON schema
// (proto/exportjobs/v1/export_job.schema.json) describes it. One renderer serves every caller
// that prints or returns JSON (exportctl --output json, the HTTP /v1/export-jobs view), so the
// form is the same everywhere:
//   - only the schema's 13 properties, in the schema's order: id, entity_type, status, fields,
//     filters, record_count, file_size_bytes, file_parts, download_url, created_at,
//     completed_at, expires_at, error_message;
//   - enum values as the schema's lowercase names ("accounts", "buying_groups", "pending");
//   - timestamps in RFC 3339, UTC, with as many fractional digits as needed ("...T12:00:00Z",
//     "...T12:00:00.25Z");
//   - integers as JSON numbers, never strings;
//   - unset values omitted: filters when the job has none, record_count, file_size_bytes and
//     file_parts until the job completes, empty strings and unset timestamps.
//
// Thread safety: plain functions of their arguments.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "exportjobs/v1/export_job.pb.h"
#include "nlohmann/json.hpp"

namespace exportd {

// The job as an ordered JSON object in the ExportJob form.
nlohmann::ordered_json JobJson(const exportjobs::v1::ExportJob& job);

// JobJson(job) serialised: on one line when indent < 0, else pretty-printed with that indent.
std::string RenderJobJson(const exportjobs::v1::ExportJob& job, int indent = -1);

// A page of jobs: {"export_jobs": [JobJson(job), ...], "next_page_token": "..."}, the token
// left out when it is empty (the last page).
nlohmann::ordered_json JobListJson(const std::vector<exportjobs::v1::ExportJob>& jobs,
                                   std::string_view next_page_token);

// The schema's name of an entity type ("buying_groups"); "" for UNSPECIFIED or unknown values.
std::string_view EntityTypeJsonName(exportjobs::v1::EntityType type);
// The entity type with that schema name; nullopt for any other text.
std::optional<exportjobs::v1::EntityType> ParseEntityTypeJsonName(std::string_view name);

// The schema's name of a status ("pending"); "" for UNSPECIFIED or unknown values.
std::string_view StatusJsonName(exportjobs::v1::ExportJobStatus status);
// The status with that schema name; nullopt for any other text.
std::optional<exportjobs::v1::ExportJobStatus> ParseStatusJsonName(std::string_view name);

// google.protobuf.Value / Struct as plain JSON. Numbers that are whole and within ±2^53 become
// JSON integers ("100", not "100.0"); other numbers stay floating point.
nlohmann::ordered_json StructJson(const google::protobuf::Struct& value);

// RFC 3339 in UTC ("2026-11-28T12:00:00.5Z").
std::string Rfc3339(const google::protobuf::Timestamp& ts);

}  // namespace exportd
