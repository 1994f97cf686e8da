#include "common/allocator.h"

#include <malloc.h>

#include <cstddef>

// jemalloc's control interface, declared weak: present (non-null) only in a binary that links
// jemalloc, whose malloc then replaces glibc's for the whole process.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace exportd {

std::string AllocatorName() {
  if (mallctl == nullptr) return "glibc";
  const char* version = nullptr;
  size_t size = sizeof(version);
  if (mallctl("version", &version, &size, nullptr, 0) != 0 || version == nullptr) {
    return "jemalloc";
  }
  return std::string("jemalloc ") + version;
}

void ReleaseFreeMemory() {
  if (mallctl != nullptr) {
    // Arena 4096 is MALLCTL_ARENAS_ALL: every arena.
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return;
  }
  malloc_trim(0);
}

}  // namespace exportd
