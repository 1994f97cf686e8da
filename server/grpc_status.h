// The one mapping from absl::Status (used everywhere inside) to grpc::Status (at the service
// edge). Codes map one to one; the message is kept; payloads (error details, see
// server/limits.h) are sent as a google.rpc.Status in the grpc-status-details-bin trailer.
#pragma once

#include "absl/status/status.h"
#include "exportjobs/v1/export_service.pb.h"
#include "grpcpp/support/status.h"

namespace exportd {

grpc::Status ToGrpcStatus(const absl::Status& status);

// True for the outcomes of normal operation: OK, CANCELLED (a caller that went away) and the
// domain errors the API answers (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
// FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE). Anything else is logged as an rpc.error.
bool IsExpectedOutcome(absl::StatusCode code);

// The same mapping for one failed item of a batch: code, message and payloads (as details).
// REQUIRES: !status.ok().
exportjobs::v1::ItemError ToItemError(const absl::Status& status);

}  // namespace exportd
