#include "server/heap_trim.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "common/allocator.h"
#include "gtest/gtest.h"

namespace exportd {
namespace {

TEST(HeapTrimPolicyTest, TrimsOnceTheWatchersGrewByAStepAndSettled) {
  HeapTrimPolicy policy(1000);

  EXPECT_FALSE(policy.ShouldTrim(0));
  EXPECT_FALSE(policy.ShouldTrim(999));
  EXPECT_FALSE(policy.ShouldTrim(999));   // Settled, but not a step away.
  EXPECT_FALSE(policy.ShouldTrim(1000));  // A step away, but still moving.
  EXPECT_FALSE(policy.ShouldTrim(1500));
  EXPECT_TRUE(policy.ShouldTrim(1500));
  EXPECT_FALSE(policy.ShouldTrim(1500));  // Trimmed at 1500: counted from there.
  EXPECT_FALSE(policy.ShouldTrim(2499));
  EXPECT_FALSE(policy.ShouldTrim(2499));
  EXPECT_FALSE(policy.ShouldTrim(2500));
  EXPECT_TRUE(policy.ShouldTrim(2500));
}

TEST(HeapTrimPolicyTest, TrimsOnceTheWatchersFellByAStepAndSettled) {
  HeapTrimPolicy policy(1000);
  ASSERT_FALSE(policy.ShouldTrim(10'000));
  ASSERT_TRUE(policy.ShouldTrim(10'000));

  EXPECT_FALSE(policy.ShouldTrim(9'001));
  EXPECT_FALSE(policy.ShouldTrim(9'001));
  EXPECT_FALSE(policy.ShouldTrim(5'000));
  EXPECT_FALSE(policy.ShouldTrim(0));
  EXPECT_TRUE(policy.ShouldTrim(0));
  EXPECT_FALSE(policy.ShouldTrim(0));
}

TEST(HeapTrimPolicyTest, StepZeroNeverTrims) {
  HeapTrimPolicy policy(0);

  EXPECT_FALSE(policy.ShouldTrim(0));
  EXPECT_FALSE(policy.ShouldTrim(1'000'000));
  EXPECT_FALSE(policy.ShouldTrim(1'000'000));
}

// Resident memory of this process, from /proc/self/status.
long ResidentKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Sanitizer builds replace malloc with their own allocator, which malloc_trim does not reach.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizerAllocator = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitizerAllocator = true;
#else
constexpr bool kSanitizerAllocator = false;
#endif
#else
constexpr bool kSanitizerAllocator = false;
#endif

TEST(HeapTrimTest, GivesFreedHeapPagesBack) {
  if (kSanitizerAllocator) GTEST_SKIP() << "glibc's heap is not in use in a sanitizer build";
  // 32 MiB of heap blocks, touched, then every other one freed: holes inside the heap, which
  // free() keeps and only a trim gives back.
  constexpr size_t kBlock = 64 << 10;
  std::vector<char*> blocks;
  for (int i = 0; i < 512; ++i) {
    blocks.push_back(static_cast<char*>(std::malloc(kBlock)));
    ASSERT_NE(blocks.back(), nullptr);
    std::memset(blocks.back(), 1, kBlock);
  }
  for (size_t i = 0; i < blocks.size(); i += 2) std::free(std::exchange(blocks[i], nullptr));
  const long before = ResidentKib();
  ASSERT_GT(before, 0);

  ReleaseFreeMemory();

  // 256 holes of 64 KiB: nearly all of their 16 MiB goes back.
  EXPECT_LT(ResidentKib(), before - 8 * 1024);
  for (char* block : blocks) std::free(block);
}

}  // namespace
}  // namespace exportd
