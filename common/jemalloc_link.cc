// Compiled into each binary that runs on jemalloc (CMakeLists.txt, exportd_link_malloc): a
// reference to one of jemalloc's own symbols, so that a linker dropping the libraries nothing
// names (--as-needed) keeps it, and with it its malloc and free for the whole process.
#include <cstddef>

extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen);

namespace {
[[maybe_unused]] __attribute__((used)) int (*const kJemalloc)(const char*, void*, size_t*, void*,
                                                              size_t) = &mallctl;
}  // namespace
