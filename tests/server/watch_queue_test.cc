#include "server/watch_queue.h"

#include <atomic>
#include <cstdlib>
#include <deque>
#include <memory>
#include <new>
#include <string>

#include "gtest/gtest.h"

// ThreadSanitizer's runtime defines operator new and delete itself (statically linked), so the
// thread build cannot count blocks with its own; the tests that count are skipped there.
#if defined(__SANITIZE_THREAD__)
#define EXPORTD_COUNTS_BLOCKS 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EXPORTD_COUNTS_BLOCKS 0
#endif
#endif
#ifndef EXPORTD_COUNTS_BLOCKS
#define EXPORTD_COUNTS_BLOCKS 1
#endif

// Counts the blocks this program allocates with operator new and has not freed yet.
namespace {
std::atomic<long> live_blocks{0};
constexpr bool kCountsBlocks = EXPORTD_COUNTS_BLOCKS;
}  // namespace

#if EXPORTD_COUNTS_BLOCKS
void* operator new(size_t size) {
  void* block = std::malloc(size == 0 ? 1 : size);
  if (block == nullptr) throw std::bad_alloc();
  live_blocks.fetch_add(1);
  return block;
}
void operator delete(void* block) noexcept {
  if (block == nullptr) return;
  live_blocks.fetch_sub(1);
  std::free(block);
}
void operator delete(void* block, size_t) noexcept { operator delete(block); }
#endif

namespace exportd {
namespace {

using Event = std::shared_ptr<const int>;

// Blocks allocated by `f` and still live when it returns, net of what it freed.
template <typename F>
long LiveBlocksAfter(F f) {
  const long before = live_blocks.load();
  f();
  return live_blocks.load() - before;
}

// An empty queue is one pointer in its stream.
static_assert(sizeof(WatchQueue<Event>) == sizeof(void*));
static_assert(sizeof(WatchQueue<std::string>) == sizeof(void*));

TEST(WatchQueueTest, EmptyQueueHoldsNoMemory) {
  if (!kCountsBlocks) GTEST_SKIP() << "operator new is ThreadSanitizer's in this build";
  std::unique_ptr<WatchQueue<Event>> events;
  std::unique_ptr<WatchQueue<std::string>> ids;
  EXPECT_EQ(LiveBlocksAfter([&] { events = std::make_unique<WatchQueue<Event>>(); }), 1)
      << "only the queue object itself";
  EXPECT_EQ(LiveBlocksAfter([&] { ids = std::make_unique<WatchQueue<std::string>>(); }), 1);
  EXPECT_TRUE(events->empty());
  EXPECT_EQ(events->size(), 0u);
}

// What WatchQueue avoids: libstdc++'s deque allocates when constructed (its map and a block).
TEST(WatchQueueTest, AnEmptyStdDequeHoldsMemory) {
  if (!kCountsBlocks) GTEST_SKIP() << "operator new is ThreadSanitizer's in this build";
  std::unique_ptr<std::deque<Event>> deque;
  EXPECT_GT(LiveBlocksAfter([&] { deque = std::make_unique<std::deque<Event>>(); }), 1);
}

TEST(WatchQueueTest, DrainingFreesTheMemory) {
  if (!kCountsBlocks) GTEST_SKIP() << "operator new is ThreadSanitizer's in this build";
  WatchQueue<Event> queue;
  const Event first = std::make_shared<const int>(1);
  const Event second = std::make_shared<const int>(2);

  const long held = LiveBlocksAfter([&] {
    queue.push_back(first);
    queue.push_back(second);
  });
  EXPECT_GT(held, 0);
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(LiveBlocksAfter([&] {
              EXPECT_EQ(queue.pop_front(), first);
              EXPECT_EQ(queue.pop_front(), second);
            }),
            -held);
  EXPECT_TRUE(queue.empty());
}

TEST(WatchQueueTest, KeepsOrderAcrossRefills) {
  WatchQueue<std::string> queue;
  queue.push_back("a");
  queue.push_back("b");
  EXPECT_EQ(queue.pop_front(), "a");
  queue.push_back("c");
  queue.back() = "c2";
  EXPECT_EQ(queue.front(), "b");
  EXPECT_EQ(queue.pop_front(), "b");
  EXPECT_EQ(queue.pop_front(), "c2");
  EXPECT_TRUE(queue.empty());
  queue.push_back("d");
  EXPECT_EQ(queue.size(), 1u);
  EXPECT_EQ(queue.pop_front(), "d");
}

TEST(WatchQueueTest, ClearFreesTheMemory) {
  if (!kCountsBlocks) GTEST_SKIP() << "operator new is ThreadSanitizer's in this build";
  WatchQueue<Event> queue;
  EXPECT_EQ(LiveBlocksAfter([&] {
              for (int i = 0; i < 100; ++i) queue.push_back(std::make_shared<const int>(i));
              queue.clear();
            }),
            0);
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.size(), 0u);
}

}  // namespace
}  // namespace exportd
