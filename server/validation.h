// Validation of ExportService requests. Each function returns OK or INVALID_ARGUMENT whose
// message starts with the offending field (e.g. "fields[3]: duplicate of fields[1] (\"name\")").
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "exportjobs/v1/export_service.pb.h"

namespace exportd {

struct CreateLimits {
  int max_fields = 500;
  int max_field_name_length = 128;
  int64_t max_filters_bytes = 64 * 1024;
  int max_filters_depth = 8;
  int max_request_id_length = 128;
  int64_t min_part_size_bytes = 1024;
  int64_t max_part_size_bytes = int64_t{4} << 30;
  int64_t default_part_size_bytes = int64_t{64} << 20;
  // Creates per second per tenant, refilling a bucket of create_burst_per_tenant (checked by
  // the service, see CreateRateLimiter in server/limits.h); <= 0: no limit.
  double create_rate_per_tenant = 0;
  int create_burst_per_tenant = 1;
  // Most items of one BatchCreateExportJobs call; a larger batch is INVALID_ARGUMENT naming
  // `requests`.
  int max_batch_creates = 1000;
};

// Checks a create request (fields against the entity's catalog, filters against the filter
// grammar) and returns it with defaults applied (the entity's default fields, format CSV,
// compression none, the default part size), so that two requests meaning the same thing
// compare equal.
absl::StatusOr<exportjobs::v1::CreateExportJobRequest> ValidateAndNormalizeCreate(
    const exportjobs::v1::CreateExportJobRequest& request, const CreateLimits& limits);

// A stable digest of a normalized create request without its request_id: equal for a retry of
// the same request, different for a different request.
std::string CreateFingerprint(const exportjobs::v1::CreateExportJobRequest& normalized);

// Checks the status and entity_type filters of List and WatchExportJobs (UNSPECIFIED = all).
absl::Status ValidateJobFilters(int status, int entity_type);

// Checks a job id argument named `field` ("id").
absl::Status ValidateJobId(const std::string& id, const char* field = "id");

}  // namespace exportd
