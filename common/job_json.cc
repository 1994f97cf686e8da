#include "common/job_json.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/time/time.h"
#include "common/catalog.h"
#include "common/proto_time.h"

namespace exportd {
namespace {

using exportjobs::v1::EntityType;
using exportjobs::v1::ExportJob;
using exportjobs::v1::ExportJobStatus;
using Json = nlohmann::ordered_json;

struct StatusName {
  ExportJobStatus status;
  std::string_view name;
};

constexpr StatusName kStatusNames[] = {
    {exportjobs::v1::EXPORT_JOB_STATUS_PENDING, "pending"},
    {exportjobs::v1::EXPORT_JOB_STATUS_PROCESSING, "processing"},
    {exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED, "completed"},
    {exportjobs::v1::EXPORT_JOB_STATUS_FAILED, "failed"},
    {exportjobs::v1::EXPORT_JOB_STATUS_CANCELLED, "cancelled"},
};

// Largest magnitude at which every integer is exactly a double.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

Json ValueJson(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kNullValue:
    case google::protobuf::Value::KIND_NOT_SET:
      return nullptr;
    case google::protobuf::Value::kNumberValue: {
      const double number = value.number_value();
      if (std::isfinite(number) && std::trunc(number) == number &&
          std::fabs(number) <= kMaxExactInteger) {
        return static_cast<int64_t>(number);
      }
      // JSON has no NaN or infinity; the server never stores them (create rejects them).
      if (!std::isfinite(number)) return nullptr;
      return number;
    }
    case google::protobuf::Value::kStringValue:
      return value.string_value();
    case google::protobuf::Value::kBoolValue:
      return value.bool_value();
    case google::protobuf::Value::kStructValue:
      return StructJson(value.struct_value());
    case google::protobuf::Value::kListValue: {
      Json list = Json::array();
      for (const google::protobuf::Value& item : value.list_value().values()) {
        list.push_back(ValueJson(item));
      }
      return list;
    }
  }
  return nullptr;
}

}  // namespace

Json StructJson(const google::protobuf::Struct& value) {
  // Struct's map has no order; sort the keys so that the same filters always render the same.
  std::vector<const google::protobuf::Map<std::string, google::protobuf::Value>::value_type*>
      entries;
  entries.reserve(value.fields_size());
  for (const auto& entry : value.fields()) entries.push_back(&entry);
  std::sort(entries.begin(), entries.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  Json object = Json::object();
  for (const auto* entry : entries) object[entry->first] = ValueJson(entry->second);
  return object;
}

std::string Rfc3339(const google::protobuf::Timestamp& ts) {
  // %4Y: RFC 3339 years have four digits, also before the year 1000 ("0385-07-25T...").
  return absl::FormatTime("%4Y-%m-%d%ET%H:%M:%E*SZ", FromProtoTime(ts), absl::UTCTimeZone());
}

std::string_view EntityTypeJsonName(EntityType type) {
  const catalog::Entity* entity = catalog::FindEntity(type);
  return entity == nullptr ? std::string_view() : entity->table;
}

std::optional<EntityType> ParseEntityTypeJsonName(std::string_view name) {
  for (const catalog::Entity& entity : catalog::Entities()) {
    if (entity.table == name) return entity.type;
  }
  return std::nullopt;
}

std::string_view StatusJsonName(ExportJobStatus status) {
  for (const StatusName& entry : kStatusNames) {
    if (entry.status == status) return entry.name;
  }
  return {};
}

std::optional<ExportJobStatus> ParseStatusJsonName(std::string_view name) {
  for (const StatusName& entry : kStatusNames) {
    if (entry.name == name) return entry.status;
  }
  return std::nullopt;
}

Json JobJson(const ExportJob& job) {
  Json out = Json::object();
  if (!job.id().empty()) out["id"] = job.id();
  if (std::string_view entity = EntityTypeJsonName(job.entity_type()); !entity.empty()) {
    out["entity_type"] = entity;
  }
  if (std::string_view status = StatusJsonName(job.status()); !status.empty()) {
    out["status"] = status;
  }
  Json fields = Json::array();
  for (const std::string& field : job.fields()) fields.push_back(field);
  out["fields"] = std::move(fields);
  if (job.has_filters() && job.filters().fields_size() > 0) {
    out["filters"] = StructJson(job.filters());
  }
  // The counts are set when the job completes; before that a 0 means "not known yet".
  if (job.status() == exportjobs::v1::EXPORT_JOB_STATUS_COMPLETED) {
    out["record_count"] = job.record_count();
    out["file_size_bytes"] = job.file_size_bytes();
    out["file_parts"] = job.file_parts();
  }
  if (!job.download_url().empty()) out["download_url"] = job.download_url();
  if (job.has_created_at()) out["created_at"] = Rfc3339(job.created_at());
  if (job.has_completed_at()) out["completed_at"] = Rfc3339(job.completed_at());
  if (job.has_expires_at()) out["expires_at"] = Rfc3339(job.expires_at());
  if (!job.error_message().empty()) out["error_message"] = job.error_message();
  return out;
}

Json JobListJson(const std::vector<ExportJob>& jobs, std::string_view next_page_token) {
  Json list = Json::array();
  for (const ExportJob& job : jobs) list.push_back(JobJson(job));
  Json out = Json::object();
  out["export_jobs"] = std::move(list);
  if (!next_page_token.empty()) out["next_page_token"] = next_page_token;
  return out;
}

std::string RenderJobJson(const ExportJob& job, int indent) {
  return JobJson(job).dump(indent, ' ', /*ensure_ascii=*/false,
                           nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace exportd
