// Tests for the state allocator's per-thread caches and the depot between them. In the release lane the cache
// is compiled in and these tests drive blocks through it; in the sanitizer lanes every block is a heap block
// the sanitizer tracks, and the same checks hold.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "anydefer/detail/state_allocator.hpp"

namespace {

using anydefer::detail::allocate_state;
using anydefer::detail::deallocate_state;

struct block {
  void* p;
  std::size_t size;
};

void fill(const block& b, unsigned char tag) { std::memset(b.p, tag, b.size); }

bool holds(const block& b, unsigned char tag) {
  const auto* bytes = static_cast<const unsigned char*>(b.p);
  for (std::size_t i = 0; i < b.size; ++i) {
    if (bytes[i] != tag) return false;
  }
  return true;
}

// One thread makes blocks, another frees them: the producer's cache runs dry and the consumer's overflows, so
// whole batches travel through the depot. No block may be handed out twice while live, and none may be
// written by the allocator while it is live.
TEST(StateAllocatorTest, BlocksMadeOnOneThreadAndFreedOnAnotherAreNeverHandedOutTwice) {
  constexpr int kRounds = 20;
  constexpr int kPerRound = 3000;                                            // more than a thread's cache of any class
  const std::size_t sizes[] = {24, 64, 80, 160, 304, 512, 600, 1024, 1100};  // 1100: beyond the cached classes
  for (int round = 0; round < kRounds; ++round) {
    std::vector<block> live;
    live.reserve(kPerRound);
    const auto tag = static_cast<unsigned char>(round + 1);
    std::thread producer([&] {
      for (int i = 0; i < kPerRound; ++i) {
        const std::size_t size = sizes[static_cast<std::size_t>(i) % std::size(sizes)];
        live.push_back(block{allocate_state(size), size});
        fill(live.back(), tag);
      }
    });
    producer.join();
    std::set<void*> distinct;
    for (const block& b : live) distinct.insert(b.p);
    ASSERT_EQ(distinct.size(), live.size()) << "a block was handed out twice in round " << round;
    std::thread consumer([&] {
      for (const block& b : live) {
        EXPECT_TRUE(holds(b, tag)) << "a live block was overwritten in round " << round;
        deallocate_state(b.p, b.size);
      }
    });
    consumer.join();
  }
}

// A thread that frees more than it keeps and then allocates again gets intact, distinct blocks (its own cache
// refilled from the depot, or the heap).
TEST(StateAllocatorTest, OneThreadFreeingAndReallocatingManyKeepsBlocksDistinct) {
  constexpr int kBlocks = 5000;
  std::vector<block> first;
  for (int i = 0; i < kBlocks; ++i) first.push_back(block{allocate_state(96), 96});
  for (const block& b : first) deallocate_state(b.p, b.size);
  std::vector<block> second;
  std::set<void*> distinct;
  for (int i = 0; i < kBlocks; ++i) {
    second.push_back(block{allocate_state(96), 96});
    fill(second.back(), static_cast<unsigned char>(i));
    distinct.insert(second.back().p);
  }
  EXPECT_EQ(distinct.size(), second.size());
  for (int i = 0; i < kBlocks; ++i)
    EXPECT_TRUE(holds(second[static_cast<std::size_t>(i)], static_cast<unsigned char>(i)));
  for (const block& b : second) deallocate_state(b.p, b.size);
}

// A block of 64 bytes or more starts on a cache line however it was obtained: fresh from the heap, again from
// this thread's cache, from a batch another thread freed into the depot, or with the cache turned off.
TEST(StateAllocatorTest, BlocksOfACacheLineOrMoreStartOnALine) {
  constexpr std::size_t kLine = 64;
  const std::size_t sizes[] = {64, 65, 100, 128, 144, 320, 1024};
  auto off_a_line = [](void* p) { return reinterpret_cast<std::uintptr_t>(p) % kLine != 0; };
  constexpr int kBlocks = 3000;  // more than a thread's cache of any class: batches go through the depot

  for (std::size_t size : sizes) {
    std::vector<void*> made(kBlocks);
    std::thread maker([&] {
      for (void*& p : made) p = allocate_state(size);
    });
    maker.join();
    EXPECT_EQ(std::count_if(made.begin(), made.end(), off_a_line), 0) << size << " bytes, fresh";
    for (void* p : made) deallocate_state(p, size);  // this thread's cache, then the depot
    for (void*& p : made) p = allocate_state(size);
    EXPECT_EQ(std::count_if(made.begin(), made.end(), off_a_line), 0) << size << " bytes, recycled";
    for (void* p : made) deallocate_state(p, size);
  }

  const bool was_enabled = anydefer::detail::set_state_cache_enabled(false);
  for (std::size_t size : sizes) {
    void* p = allocate_state(size);
    EXPECT_FALSE(off_a_line(p)) << size << " bytes, cache off";
    deallocate_state(p, size);
  }
  anydefer::detail::set_state_cache_enabled(was_enabled);
}

}  // namespace
