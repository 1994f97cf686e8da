#include "server/heap_trim.h"

namespace exportd {

bool HeapTrimPolicy::ShouldTrim(size_t watchers) {
  const bool settled = watchers == at_last_check_;
  at_last_check_ = watchers;
  if (step_ == 0 || !settled) return false;
  const size_t moved =
      watchers > at_last_trim_ ? watchers - at_last_trim_ : at_last_trim_ - watchers;
  if (moved < step_) return false;
  at_last_trim_ = watchers;
  return true;
}

}  // namespace exportd
