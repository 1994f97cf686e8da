#include "server/limits.h"

#include <algorithm>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"

namespace exportd {
namespace {

// The payload LimitExceeded attaches: a QuotaFailure and the retry delay, as a RetryInfo.
constexpr char kRetryInfoUrl[] = "type.googleapis.com/google.rpc.RetryInfo";
constexpr char kQuotaFailureUrl[] = "type.googleapis.com/google.rpc.QuotaFailure";

}  // namespace

absl::Status LimitExceeded(const std::string& message, absl::Duration retry_after,
                           const std::string& subject, const std::string& description) {
  absl::Status status = absl::ResourceExhaustedError(message);
  google::rpc::RetryInfo retry;
  const int64_t nanos = absl::ToInt64Nanoseconds(std::max(retry_after, absl::ZeroDuration()));
  retry.mutable_retry_delay()->set_seconds(nanos / 1'000'000'000);
  retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  status.SetPayload(kRetryInfoUrl, absl::Cord(retry.SerializeAsString()));
  google::rpc::QuotaFailure quota;
  google::rpc::QuotaFailure::Violation* violation = quota.add_violations();
  violation->set_subject(subject);
  violation->set_description(description);
  status.SetPayload(kQuotaFailureUrl, absl::Cord(quota.SerializeAsString()));
  return status;
}

std::optional<LimitHint> LimitHintOf(const absl::Status& status) {
  auto retry_payload = status.GetPayload(kRetryInfoUrl);
  if (!retry_payload) return std::nullopt;
  google::rpc::RetryInfo retry;
  if (!retry.ParseFromString(std::string(*retry_payload))) return std::nullopt;
  LimitHint hint;
  hint.retry_after =
      absl::Seconds(retry.retry_delay().seconds()) + absl::Nanoseconds(retry.retry_delay().nanos());
  if (auto quota_payload = status.GetPayload(kQuotaFailureUrl)) {
    google::rpc::QuotaFailure quota;
    if (quota.ParseFromString(std::string(*quota_payload)) && quota.violations_size() > 0) {
      hint.subject = quota.violations(0).subject();
      hint.description = quota.violations(0).description();
    }
  }
  return hint;
}

std::string TenantSubject(const std::string& tenant) {
  return absl::StrCat("tenant:", tenant.empty() ? "(default)" : tenant);
}

CreateRateLimiter::CreateRateLimiter(double per_second, int burst, const Clock* clock)
    : per_second_(per_second), burst_(std::max(burst, 1)), clock_(clock) {}

absl::Status CreateRateLimiter::Acquire(const std::string& tenant) {
  if (per_second_ <= 0) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  double missing = 0;
  {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = buckets_.try_emplace(tenant, Bucket{burst_, now});
    Bucket& bucket = it->second;
    if (now > bucket.refilled) {
      bucket.tokens = std::min(
          burst_, bucket.tokens + absl::ToDoubleSeconds(now - bucket.refilled) * per_second_);
      bucket.refilled = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return absl::OkStatus();
    }
    missing = 1 - bucket.tokens;
  }
  const absl::Duration wait = absl::Seconds(missing / per_second_);
  return LimitExceeded(absl::StrCat("create rate of ", TenantSubject(tenant), " is over ",
                                    per_second_, " creates/s (burst ", burst_, "); retry after ",
                                    absl::FormatDuration(absl::Ceil(wait, absl::Milliseconds(1)))),
                       wait, TenantSubject(tenant),
                       absl::StrCat(per_second_, " creates/s per tenant, burst ", burst_,
                                    " (--create_rate_per_tenant, --create_burst_per_tenant)"));
}

WatcherSlots::WatcherSlots(int per_tenant, int per_server)
    : per_tenant_(per_tenant), per_server_(per_server) {}

absl::StatusOr<WatcherSlots::Slot> WatcherSlots::Acquire(const std::string& tenant) {
  {
    absl::MutexLock lock(&state_->mu);
    if (per_server_ > 0 && state_->open >= per_server_) {
      return LimitExceeded(
          absl::StrCat("the server has ", state_->open,
                       " open watch streams, its limit; "
                       "retry later or watch with fewer streams (WatchExportJobs watches many "
                       "jobs in one)"),
          absl::Seconds(1), "server",
          absl::StrCat(per_server_, " watch streams per server (--max_watchers)"));
    }
    int& mine = state_->by_tenant[tenant];
    if (per_tenant_ > 0 && mine >= per_tenant_) {
      const int open = mine;
      if (mine == 0) state_->by_tenant.erase(tenant);
      return LimitExceeded(
          absl::StrCat(TenantSubject(tenant), " has ", open,
                       " open watch streams, its limit; close some or use WatchExportJobs, "
                       "which watches many jobs in one stream"),
          absl::Seconds(1), TenantSubject(tenant),
          absl::StrCat(per_tenant_, " watch streams per tenant (--max_watchers_per_tenant)"));
    }
    ++mine;
    ++state_->open;
  }
  return Slot(static_cast<void*>(nullptr), [state = state_, tenant](void*) {
    absl::MutexLock lock(&state->mu);
    --state->open;
    auto it = state->by_tenant.find(tenant);
    if (it != state->by_tenant.end() && --it->second == 0) state->by_tenant.erase(it);
  });
}

int WatcherSlots::open() const {
  absl::MutexLock lock(&state_->mu);
  return state_->open;
}

int WatcherSlots::open(const std::string& tenant) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->by_tenant.find(tenant);
  return it == state_->by_tenant.end() ? 0 : it->second;
}

}  // namespace exportd
