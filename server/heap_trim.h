// Returning the heap's free memory to the system after many watch streams opened or closed.
//
// The server keeps freed heap memory instead of giving it back: glibc returns only the top of a
// heap, and only beyond the trim threshold (server/main.cc fixes it at 64 MiB, so that part
// uploads' large blocks stay in the heap), while freed streams leave holes all over it. After
// 10,000 idle watch streams closed, the server stayed at 230 MB resident (35 MB before they
// opened); a trim took it to 68 MB. The ticker asks HeapTrimPolicy, once per tick, whether the
// number of open streams has moved by `step` since the last trim and has stopped moving, and if
// so calls ReleaseFreeMemory (common/allocator.h): on the ticker's thread, holding no lock of
// ours. (Trims while streams were still opening gave nothing back that lasted: the pages were
// reused before the burst ended.) These figures are glibc's malloc. jemalloc, the server's
// allocator unless built with a sanitizer, gives freed pages back over about ten seconds of
// further allocation; the purge makes it at once, idle server or not.
//
// Thread safety: HeapTrimPolicy is not thread-safe (the ticker alone uses it).
#pragma once

#include <cstddef>

namespace exportd {

class HeapTrimPolicy {
 public:
  // step: how far the number of open streams must move from its value at the last trim (up or
  // down) for the next trim. 0: never trim.
  explicit HeapTrimPolicy(size_t step) : step_(step) {}

  // Called once per tick with the current number of open streams. True when it is at least
  // `step` away from the number at the last trim (0 before the first) and unchanged since the
  // previous call: a burst of opens or closes is over.
  bool ShouldTrim(size_t watchers);

 private:
  const size_t step_;
  size_t at_last_trim_ = 0;
  size_t at_last_check_ = 0;
};

}  // namespace exportd
