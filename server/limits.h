// Per-tenant and per-server limits of the public API, checked on the gRPC thread (CPU only, no
// I/O under their locks), and the error every limit answers with: RESOURCE_EXHAUSTED naming the
// limit and its flag, with a google.rpc.RetryInfo (how long to wait) and a google.rpc.QuotaFailure
// (which limit, for whom) in the call's error details. ToGrpcStatus (server/grpc_status.h) turns
// the hint attached here into those details.
//
// Thread safety: CreateRateLimiter and WatcherSlots are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace exportd {

// A limit's refusal: RESOURCE_EXHAUSTED with `message`, carrying `retry_after` and the
// violated limit (`subject`, e.g. "tenant:acme"; `description`, e.g. "10 creates/s per
// tenant (--create_rate_per_tenant)").
absl::Status LimitExceeded(const std::string& message, absl::Duration retry_after,
                           const std::string& subject, const std::string& description);

// The hint LimitExceeded attached, if any.
struct LimitHint {
  absl::Duration retry_after;
  std::string subject;
  std::string description;
};
std::optional<LimitHint> LimitHintOf(const absl::Status& status);

// How a tenant is named in errors and QuotaFailure subjects ("tenant:acme", "tenant:(default)").
std::string TenantSubject(const std::string& tenant);

// Creates per tenant: a token bucket of `burst` creates refilled at `per_second`. A refused
// create takes no token.
class CreateRateLimiter {
 public:
  // per_second <= 0: no limit. burst < 1 is taken as 1.
  CreateRateLimiter(double per_second, int burst, const Clock* clock);

  // OK and takes a token; or LimitExceeded with the time until the next token.
  absl::Status Acquire(const std::string& tenant);

 private:
  struct Bucket {
    double tokens;
    absl::Time refilled;
  };
  const double per_second_;
  const double burst_;
  const Clock* const clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

// Open watch streams, per tenant and in all. A slot is held from the start of a stream until
// gRPC is done with it.
class WatcherSlots {
 public:
  using Slot = std::shared_ptr<void>;

  // A limit <= 0 is no limit.
  WatcherSlots(int per_tenant, int per_server);

  // A slot that is given back when the last copy is destroyed; or LimitExceeded.
  absl::StatusOr<Slot> Acquire(const std::string& tenant);

  int open() const;
  int open(const std::string& tenant) const;

 private:
  // Shared with the slots, so that a slot may outlive the WatcherSlots.
  struct State {
    absl::Mutex mu;
    int open ABSL_GUARDED_BY(mu) = 0;
    absl::flat_hash_map<std::string, int> by_tenant ABSL_GUARDED_BY(mu);
  };
  const int per_tenant_;
  const int per_server_;
  const std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace exportd
