// exportctl's human-readable output: numbers, sizes and durations as text, aligned tables, and
// the table and JSON forms of jobs, job lists and field catalogs. A job's JSON form is always
// common/job_json.h's (the ExportJob schema's form); this file only wraps it for lists.
//
// Every function returns the whole text (ending with a newline where it is several lines) and
// writes nothing. Table cells are made printable: a tab, CR or LF in a value becomes a space,
// any other control character "?", so a value cannot move the cursor or break the table.
//
// Thread safety: plain functions of their arguments.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "exportjobs/v1/export_job.pb.h"
#include "exportjobs/v1/export_service.pb.h"

namespace exportd::exportctl {

// 1234567 -> "1,234,567"; negative numbers keep their sign.
std::string FormatCount(int64_t n);

// Binary units with one decimal from KiB up: 512 -> "512 B", 1536 -> "1.5 KiB",
// 67108864 -> "64.0 MiB".
std::string FormatBytes(int64_t bytes);

// Whole seconds, two units at most: "0s", "45s", "1m05s", "2h03m", "3d04h".
std::string HumanDuration(absl::Duration d);

// `text` with control characters replaced (see above).
std::string Printable(std::string_view text);

// The number of characters (UTF-8 code points) in `text`.
size_t DisplayWidth(std::string_view text);

// At most `width` characters of `text`, cut at a character boundary.
std::string TruncateToWidth(std::string_view text, size_t width);

// An aligned table: the header row, then the rows; columns are separated by two spaces and
// padded to their widest cell, except the last, which is never padded. Cells are made
// printable. Rows shorter than the header are padded with empty cells.
std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

// "csv" / "jsonl" (UNSPECIFIED is the server's default, csv); "none" / "gzip".
std::string_view FormatName(exportjobs::v1::ExportFormat format);
std::string_view CompressionName(exportjobs::v1::Compression compression);

// One job as a two-column table (one line per property; unset ones left out), followed by a
// table of its parts when it has any.
std::string RenderJobTable(const exportjobs::v1::ExportJob& job);

// Jobs as a table, one row each: ID, ENTITY, STATUS, RECORDS, SIZE, CREATED. "no jobs" when
// there are none.
std::string RenderJobListTable(const std::vector<exportjobs::v1::ExportJob>& jobs);

// A job list as one JSON object on one line:
//   {"export_jobs":[<job>,...],"next_page_token":"<token or empty>"}
// with every job in the ExportJob JSON form.
std::string RenderJobListJson(const std::vector<exportjobs::v1::ExportJob>& jobs,
                              std::string_view next_page_token);

// The fields of an entity as a table: NAME, TYPE, DEFAULT ("yes" or empty), DESCRIPTION.
std::string RenderFieldsTable(const std::vector<exportjobs::v1::ExportableField>& fields);

// The fields as one JSON object on one line:
//   {"entity_type":"accounts","fields":[{"name":..,"type":"string","default":true,
//    "description":..},...]}
std::string RenderFieldsJson(exportjobs::v1::EntityType entity,
                             const std::vector<exportjobs::v1::ExportableField>& fields);

}  // namespace exportd::exportctl
