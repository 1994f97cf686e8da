#include "common/job_id.h"

#include <algorithm>
#include <cstdio>

namespace exportd {
namespace {

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

int64_t ParseHex(std::string_view s) {
  uint64_t v = 0;
  for (char c : s) v = (v << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  return static_cast<int64_t>(v);
}

}  // namespace

bool IsWellFormedJobId(std::string_view id) {
  return id.size() == kJobIdLength && std::all_of(id.begin(), id.end(), IsLowerHex);
}

absl::Time JobIdTime(std::string_view id) {
  return absl::FromUnixMicros(ParseHex(id.substr(0, 16)));
}

std::string FirstJobIdAt(absl::Time t) {
  char buf[kJobIdLength + 1];
  std::snprintf(buf, sizeof(buf), "%016llx%08x",
                static_cast<unsigned long long>(std::max<int64_t>(0, absl::ToUnixMicros(t))), 0u);
  return std::string(buf, kJobIdLength);
}

JobIdGenerator::JobIdGenerator(const Clock* clock)
    : clock_(clock), random_(std::random_device{}()) {}

void JobIdGenerator::ObserveExisting(std::string_view id) {
  if (!IsWellFormedJobId(id)) return;
  std::lock_guard<std::mutex> lock(mu_);
  last_micros_ = std::max(last_micros_, ParseHex(id.substr(0, 16)));
}

std::string JobIdGenerator::Next() {
  int64_t micros;
  uint32_t suffix;
  {
    std::lock_guard<std::mutex> lock(mu_);
    micros = std::max(absl::ToUnixMicros(clock_->Now()), last_micros_ + 1);
    last_micros_ = micros;
    suffix = static_cast<uint32_t>(random_());
  }
  char buf[kJobIdLength + 1];
  std::snprintf(buf, sizeof(buf), "%016llx%08x", static_cast<unsigned long long>(micros), suffix);
  return std::string(buf, kJobIdLength);
}

}  // namespace exportd
