// Job ids: 24 lowercase hex characters, the first 16 the creation time in microseconds since the
// Unix epoch and the last 8 random. Ids of one generator strictly increase, so they sort by
// creation time, also when the clock stalls or steps back.
//
// Thread safety: JobIdGenerator is thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace exportd {

inline constexpr size_t kJobIdLength = 24;

// True when `id` has the form of a job id. Says nothing about whether the job exists.
bool IsWellFormedJobId(std::string_view id);

// The creation time encoded in a well-formed id.
// REQUIRES: IsWellFormedJobId(id).
absl::Time JobIdTime(std::string_view id);

// The smallest id of `t`: every job created at or after `t` has an id >= it.
std::string FirstJobIdAt(absl::Time t);

class JobIdGenerator {
 public:
  explicit JobIdGenerator(const Clock* clock);

  // Makes every later id sort after `id` (the largest id already stored).
  // Ignores ids that are not well-formed.
  void ObserveExisting(std::string_view id);

  std::string Next();

 private:
  const Clock* clock_;
  std::mutex mu_;
  int64_t last_micros_ ABSL_GUARDED_BY(mu_) = 0;
  std::mt19937_64 random_ ABSL_GUARDED_BY(mu_);
};

}  // namespace exportd
