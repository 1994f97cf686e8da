// The one mapping from absl::Status (used everywhere inside) to grpc::Status (at the service
// edge). Codes map one to one; the message is kept.
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace exportd {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace exportd
