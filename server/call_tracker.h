// CallTracker: counts a service's calls in flight so that shutdown can refuse new calls and wait
// for the running ones.
//
// Thread safety: all methods are thread-safe.
#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace exportd {

class CallTracker {
 public:
  // Counts a call in; false (and nothing counted) once draining has begun.
  bool Enter() {
    absl::MutexLock lock(&mu_);
    if (draining_) return false;
    ++in_flight_;
    return true;
  }

  // Counts a call out; once per successful Enter, after the call's Finish.
  void Exit() {
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }

  // From now on Enter refuses.
  void StartDraining() {
    absl::MutexLock lock(&mu_);
    draining_ = true;
  }

  // Waits until no call is in flight, or until `deadline`. True when none is.
  bool AwaitIdle(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(
                                     +[](int* in_flight) { return *in_flight == 0; }, &in_flight_),
                                 deadline);
  }

  int in_flight() {
    absl::MutexLock lock(&mu_);
    return in_flight_;
  }

 private:
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace exportd
