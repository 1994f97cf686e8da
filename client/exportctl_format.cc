#include "client/exportctl_format.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "client/exportctl_progress.h"
#include "common/catalog.h"
#include "common/job_json.h"
#include "common/str_cat.h"
#include "nlohmann/json.hpp"

namespace exportd::exportctl {
namespace {

using exportjobs::v1::ExportJob;
using Json = nlohmann::ordered_json;

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

std::string FormatCount(int64_t n) {
  const bool negative = n < 0;
  // Through unsigned, so that INT64_MIN has a magnitude.
  uint64_t magnitude = negative ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
  std::string digits = std::to_string(magnitude);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return negative ? "-" + out : out;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024 && bytes > -1024) return Cat(bytes, " B");
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  while ((value >= 1024.0 || value <= -1024.0) && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f %s", value, kUnits[unit]);
  return buffer;
}

std::string HumanDuration(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  const int64_t total = absl::ToInt64Seconds(d);
  const int64_t days = total / 86400;
  const int64_t hours = total / 3600 % 24;
  const int64_t minutes = total / 60 % 60;
  const int64_t seconds = total % 60;
  char buffer[48];
  if (days > 0) {
    std::snprintf(buffer, sizeof(buffer), "%" PRId64 "d%02" PRId64 "h", days, hours);
  } else if (hours > 0) {
    std::snprintf(buffer, sizeof(buffer), "%" PRId64 "h%02" PRId64 "m", hours, minutes);
  } else if (minutes > 0) {
    std::snprintf(buffer, sizeof(buffer), "%" PRId64 "m%02" PRId64 "s", minutes, seconds);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%" PRId64 "s", seconds);
  }
  return buffer;
}

std::string Printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\t' || c == '\n' || c == '\r') {
      out.push_back(' ');
    } else if (byte < 0x20 || byte == 0x7F) {
      out.push_back('?');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

size_t DisplayWidth(std::string_view text) {
  return static_cast<size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return !IsContinuationByte(c); }));
}

std::string TruncateToWidth(std::string_view text, size_t width) {
  size_t chars = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (IsContinuationByte(text[i])) continue;
    if (chars == width) return std::string(text.substr(0, i));
    ++chars;
  }
  return std::string(text);
}

std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  size_t columns = header.size();
  for (const auto& row : rows) columns = std::max(columns, row.size());
  std::vector<std::vector<std::string>> cells;
  cells.reserve(rows.size() + 1);
  if (!header.empty()) cells.push_back(header);
  for (const auto& row : rows) cells.push_back(row);
  std::vector<size_t> widths(columns, 0);
  for (auto& row : cells) {
    row.resize(columns);
    for (size_t c = 0; c < columns; ++c) {
      row[c] = Printable(row[c]);
      widths[c] = std::max(widths[c], DisplayWidth(row[c]));
    }
  }
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (size_t c = 0; c < columns; ++c) {
      if (c > 0) line += "  ";
      line += row[c];
      if (c + 1 < columns) line.append(widths[c] - DisplayWidth(row[c]), ' ');
    }
    // An empty last cell would leave padding behind.
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string_view FormatName(exportjobs::v1::ExportFormat format) {
  return format == exportjobs::v1::EXPORT_FORMAT_JSONL ? "jsonl" : "csv";
}

std::string_view CompressionName(exportjobs::v1::Compression compression) {
  return compression == exportjobs::v1::COMPRESSION_GZIP ? "gzip" : "none";
}

std::string RenderJobTable(const ExportJob& job) {
  std::vector<std::vector<std::string>> rows;
  auto add = [&rows](std::string key, std::string value) {
    if (!value.empty()) rows.push_back({std::move(key), std::move(value)});
  };
  auto time = [](const google::protobuf::Timestamp& ts, bool set) {
    return set ? Rfc3339(ts) : std::string();
  };
  add("id", job.id());
  add("entity", std::string(EntityTypeJsonName(job.entity_type())));
  std::string status(StatusJsonName(job.status()));
  if (job.cancel_requested() && job.status() == exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING) {
    status += " (cancel requested)";
  }
  add("status", status);
  std::string fields;
  for (const std::string& field : job.fields()) {
    if (!fields.empty()) fields += ",";
    fields += field;
  }
  add("fields", fields);
  if (job.has_filters() && job.filters().fields_size() > 0) {
    add("filters", Dump(StructJson(job.filters())));
  }
  add("format", Cat(FormatName(job.format()), ", compression ", CompressionName(job.compression()),
                    ", parts of ",
                    job.part_size_bytes() > 0 ? FormatBytes(job.part_size_bytes())
                                              : std::string("the server's default size")));
  if (job.status() == exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING) {
    add("progress", JobProgressText(job));
  }
  if (job.status() == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) {
    add("records", FormatCount(job.record_count()));
    add("file",
        Cat(FormatCount(job.file_size_bytes()), " bytes (", FormatBytes(job.file_size_bytes()),
            ") in ", job.file_parts(), job.file_parts() == 1 ? " part" : " parts"));
  }
  add("created", time(job.created_at(), job.has_created_at()));
  add("started", time(job.started_at(), job.has_started_at()));
  add("completed", time(job.completed_at(), job.has_completed_at()));
  add("expires", time(job.expires_at(), job.has_expires_at()));
  add("download url", job.download_url());
  add("error", job.error_message());
  add("attempt", job.attempt() > 0 ? Cat(job.attempt()) : std::string());
  add("revision", Cat(job.revision()));
  add("request id", job.request_id());
  std::string out = RenderTable({}, rows);
  if (job.parts_size() > 0) {
    std::vector<std::vector<std::string>> parts;
    for (const auto& part : job.parts()) {
      parts.push_back({Cat(part.part_number()), FormatCount(part.size_bytes()),
                       FormatCount(part.record_count()), part.sha256()});
    }
    out += "\n";
    out += RenderTable({"PART", "BYTES", "RECORDS", "SHA-256"}, parts);
  }
  return out;
}

std::string RenderJobListTable(const std::vector<ExportJob>& jobs) {
  if (jobs.empty()) return "no jobs\n";
  std::vector<std::vector<std::string>> rows;
  rows.reserve(jobs.size());
  for (const ExportJob& job : jobs) {
    const bool completed = job.status() == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED;
    rows.push_back({job.id(), std::string(EntityTypeJsonName(job.entity_type())),
                    std::string(StatusJsonName(job.status())),
                    completed ? FormatCount(job.record_count()) : std::string("-"),
                    completed ? FormatBytes(job.file_size_bytes()) : std::string("-"),
                    job.has_created_at() ? Rfc3339(job.created_at()) : std::string()});
  }
  return RenderTable({"ID", "ENTITY", "STATUS", "RECORDS", "SIZE", "CREATED"}, rows);
}

std::string RenderJobListJson(const std::vector<ExportJob>& jobs,
                              std::string_view next_page_token) {
  return Dump(JobListJson(jobs, next_page_token));
}

std::string RenderFieldsTable(const std::vector<exportjobs::v1::ExportableField>& fields) {
  std::vector<std::vector<std::string>> rows;
  rows.reserve(fields.size());
  for (const auto& field : fields) {
    rows.push_back({field.name(), std::string(catalog::FieldTypeName(field.type())),
                    field.default_() ? "yes" : "", field.description()});
  }
  return RenderTable({"NAME", "TYPE", "DEFAULT", "DESCRIPTION"}, rows);
}

std::string RenderFieldsJson(exportjobs::v1::EntityType entity,
                             const std::vector<exportjobs::v1::ExportableField>& fields) {
  Json list = Json::array();
  for (const auto& field : fields) {
    Json item = Json::object();
    item["name"] = field.name();
    item["type"] = std::string(catalog::FieldTypeName(field.type()));
    item["default"] = field.default_();
    item["description"] = field.description();
    list.push_back(std::move(item));
  }
  Json out = Json::object();
  out["entity_type"] = std::string(EntityTypeJsonName(entity));
  out["fields"] = std::move(list);
  return Dump(out);
}

}  // namespace exportd::exportctl
