// Clock: the source of wall-clock time for everything that stores or compares timestamps.
// Tests use FakeClock to move time without sleeping.
//
// Thread safety: all implementations are safe to call from any thread.
#pragma once

#include <atomic>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace exportd {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // The process-wide real clock; never deleted.
  static Clock* Real();
};

// A clock that moves only when told to. Starts at `start`.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000))
      : micros_(absl::ToUnixMicros(start)) {}
  absl::Time Now() const override { return absl::FromUnixMicros(micros_.load()); }
  void Advance(absl::Duration d) { micros_ += absl::ToInt64Microseconds(d); }
  void Set(absl::Time t) { micros_ = absl::ToUnixMicros(t); }

 private:
  std::atomic<int64_t> micros_;
};

}  // namespace exportd
