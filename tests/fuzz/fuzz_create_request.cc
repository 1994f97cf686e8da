// Fuzzes the validation of ExportService requests (server/validation.h).
//
// Input, used in every way that applies:
//  - as a serialized CreateExportJobRequest (any fields, any filters Struct), validated with
//    the default limits and with small ones;
//  - as JSON text: an object becomes the filters of a create request for each entity;
//  - as the argument of ValidateJobId, and its first 8 bytes as the (status, entity_type) of
//    ValidateJobFilters.
//
// Invariants:
//  - ValidateAndNormalizeCreate answers OK or INVALID_ARGUMENT, whose message starts with
//    the name of a request field (entity_type, fields, filters, request_id, format,
//    compression, part_size_bytes) and a colon;
//  - an accepted request comes back normalized: a known entity; 1..max_fields fields, each in
//    the entity's catalog, no duplicates; a known format and compression, neither
//    UNSPECIFIED; part_size_bytes within the limits; request_id and filters unchanged;
//  - normalizing is idempotent: the normalized request is accepted and normalizes to
//    itself, with the same fingerprint;
//  - the fingerprint ignores request_id, and is 32 bytes (SHA-256);
//  - the filters of an accepted request parse and compile to SQL (what the worker will do);
//  - ValidateJobId accepts exactly the well-formed job ids; ValidateJobFilters accepts
//    exactly the known enum values.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "common/catalog.h"
#include "common/filters.h"
#include "common/job_id.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/validation.h"
#include "tests/fuzz/fuzz_support.h"
#include "worker/sql_query.h"

namespace {

using exportjobs::v1::CreateExportJobRequest;
using google::protobuf::util::MessageDifferencer;
namespace catalog = exportd::catalog;

void CheckError(const absl::Status& status) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, status.ToString());
  static constexpr std::string_view kFields[] = {
      "entity_type", "fields", "filters", "request_id", "format", "compression", "part_size_bytes"};
  const std::string_view message(status.message().data(), status.message().size());
  const size_t colon = message.find(": ");
  FUZZ_CHECK(colon != std::string_view::npos && colon + 2 < message.size(),
             "message without \"<field>: <reason>\"", message);
  const std::string_view field = message.substr(0, colon);
  bool named = false;
  for (std::string_view name : kFields) {
    // "fields[3]", "filters.any_of[0].country", "filters[\"bad key\"]"
    if (field == name || (field.substr(0, name.size()) == name && field.size() > name.size() &&
                          (field[name.size()] == '[' || field[name.size()] == '.'))) {
      named = true;
    }
  }
  FUZZ_CHECK(named, "error does not start with a request field", message);
}

void CheckAccepted(const CreateExportJobRequest& request, const CreateExportJobRequest& normalized,
                   const exportd::CreateLimits& limits) {
  const std::string text = normalized.ShortDebugString();
  const catalog::Entity* entity = catalog::FindEntity(normalized.entity_type());
  FUZZ_CHECK(entity != nullptr, "entity_type", text);
  FUZZ_CHECK(normalized.entity_type() == request.entity_type(), "entity_type changed", text);

  // The request's own fields, or (none given) the entity's defaults.
  if (request.fields_size() > 0) {
    FUZZ_CHECK(request.fields_size() <= limits.max_fields, "field count", text);
    FUZZ_CHECK(normalized.fields_size() == request.fields_size(), "fields changed", text);
    for (int i = 0; i < request.fields_size(); ++i) {
      FUZZ_CHECK(normalized.fields(i) == request.fields(i), "fields changed", text);
    }
  } else {
    const std::vector<std::string> defaults = catalog::DefaultFields(*entity);
    FUZZ_CHECK(!defaults.empty() && std::vector<std::string>(normalized.fields().begin(),
                                                             normalized.fields().end()) == defaults,
               "not the default fields", text);
  }
  std::set<std::string> seen;
  std::vector<std::string> fields;
  for (const std::string& name : normalized.fields()) {
    FUZZ_CHECK(catalog::FindField(*entity, name) != nullptr, "field not in the catalog", name);
    FUZZ_CHECK(seen.insert(name).second, "duplicate field", name);
    fields.push_back(name);
  }

  FUZZ_CHECK(exportjobs::v1::ExportFormat_IsValid(normalized.format()) &&
                 normalized.format() != exportjobs::v1::EXPORT_FORMAT_UNSPECIFIED,
             "format", text);
  FUZZ_CHECK(exportjobs::v1::Compression_IsValid(normalized.compression()) &&
                 normalized.compression() != exportjobs::v1::COMPRESSION_UNSPECIFIED,
             "compression", text);
  FUZZ_CHECK(normalized.part_size_bytes() >= limits.min_part_size_bytes &&
                 normalized.part_size_bytes() <= limits.max_part_size_bytes,
             "part_size_bytes", text);
  FUZZ_CHECK(normalized.request_id() == request.request_id(), "request_id changed", text);
  FUZZ_CHECK(static_cast<int>(normalized.request_id().size()) <= limits.max_request_id_length,
             "request_id", text);
  FUZZ_CHECK(normalized.has_filters() == request.has_filters() &&
                 MessageDifferencer::Equals(normalized.filters(), request.filters()),
             "filters changed", text);

  // Idempotent.
  absl::StatusOr<CreateExportJobRequest> again =
      exportd::ValidateAndNormalizeCreate(normalized, limits);
  FUZZ_CHECK(again.ok(), "the normalized request is refused", again.status().ToString());
  FUZZ_CHECK(MessageDifferencer::Equals(*again, normalized), "normalizing is not idempotent", text);
  const std::string fingerprint = exportd::CreateFingerprint(normalized);
  FUZZ_CHECK(fingerprint.size() == 32, "fingerprint size", text);
  FUZZ_CHECK(exportd::CreateFingerprint(*again) == fingerprint, "fingerprint", text);
  CreateExportJobRequest retry = normalized;
  retry.set_request_id(normalized.request_id() + "-retry");
  FUZZ_CHECK(exportd::CreateFingerprint(retry) == fingerprint, "fingerprint uses request_id", text);

  // What the worker will do with it.
  absl::StatusOr<exportd::filters::Condition> condition =
      exportd::filters::Parse(normalized.filters(), *entity);
  FUZZ_CHECK(condition.ok(), "accepted filters do not parse", condition.status().ToString());
  absl::StatusOr<exportd::SqlQuery> query = exportd::CompileQuery(*entity, fields, *condition);
  FUZZ_CHECK(query.ok(), "accepted request does not compile", query.status().ToString());
}

void CheckCreate(const CreateExportJobRequest& request, const exportd::CreateLimits& limits) {
  absl::StatusOr<CreateExportJobRequest> normalized =
      exportd::ValidateAndNormalizeCreate(request, limits);
  if (!normalized.ok()) {
    CheckError(normalized.status());
    return;
  }
  CheckAccepted(request, *normalized, limits);
}

exportd::CreateLimits SmallLimits() {
  exportd::CreateLimits limits;
  // Still admitting every entity's default fields and every catalog name: a normalized
  // request must pass again.
  limits.max_fields = 1;
  limits.max_field_name_length = 1;
  for (const catalog::Entity& entity : catalog::Entities()) {
    limits.max_fields =
        std::max(limits.max_fields, static_cast<int>(catalog::DefaultFields(entity).size()));
    for (const catalog::Field& field : entity.fields) {
      limits.max_field_name_length =
          std::max(limits.max_field_name_length, static_cast<int>(field.name.size()));
    }
  }
  limits.max_filters_bytes = 64;
  limits.max_filters_depth = 2;
  limits.max_request_id_length = 4;
  limits.min_part_size_bytes = 10;
  limits.max_part_size_bytes = 100;
  limits.default_part_size_bytes = 50;
  return limits;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  exportd::fuzz::SilenceProtobufLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const exportd::CreateLimits defaults;
  const exportd::CreateLimits small = SmallLimits();

  CreateExportJobRequest request;
  if (request.ParseFromArray(data, static_cast<int>(size))) {
    CheckCreate(request, defaults);
    CheckCreate(request, small);
  }

  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (std::optional<google::protobuf::Struct> filters = exportd::fuzz::JsonToStruct(text)) {
    for (const catalog::Entity& entity : catalog::Entities()) {
      CreateExportJobRequest with_filters;
      with_filters.set_entity_type(entity.type);
      *with_filters.mutable_filters() = *filters;
      CheckCreate(with_filters, defaults);
    }
  }

  const std::string id(text);
  const absl::Status id_status = exportd::ValidateJobId(id);
  FUZZ_CHECK(id_status.ok() == exportd::IsWellFormedJobId(id), "ValidateJobId", id);
  if (!id_status.ok()) {
    FUZZ_CHECK(id_status.code() == absl::StatusCode::kInvalidArgument &&
                   absl::StartsWith(id_status.message(), "id: "),
               id_status.ToString());
  }

  if (size >= 8) {
    int32_t status = 0, entity_type = 0;
    std::memcpy(&status, data, 4);
    std::memcpy(&entity_type, data + 4, 4);
    const absl::Status filters_status = exportd::ValidateJobFilters(status, entity_type);
    FUZZ_CHECK(filters_status.ok() == (exportjobs::v1::ExportJobStatus_IsValid(status) &&
                                       exportjobs::v1::EntityType_IsValid(entity_type)),
               filters_status.ToString());
  }
  return 0;
}
