// Which malloc the process runs on, and giving its free memory back to the system.
//
// export-server, export-worker and exportd-bench link jemalloc (CMake's EXPORTD_MALLOC, on by
// default; sanitizer builds keep glibc's malloc, which their runtimes replace): with many threads
// allocating and freeing small blocks, glibc's malloc spent about a sixth of the server's CPU per
// create (docs/performance.md, "durable create"). Everything else, the tests and fuzz targets
// among them, runs on glibc's. The code here works with either, deciding at run time.
//
// Thread safety: both functions may be called from any thread.
#pragma once

#include <string>

namespace exportd {

// "jemalloc <version>" when the process runs on jemalloc, else "glibc".
std::string AllocatorName();

// Gives the allocator's free memory back to the system: jemalloc purges the unused pages of
// every arena; glibc's malloc trims every arena (malloc_trim(0)). Takes milliseconds for a heap
// of a few hundred MB; never call it on a gRPC thread.
void ReleaseFreeMemory();

}  // namespace exportd
