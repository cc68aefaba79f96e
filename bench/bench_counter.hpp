// bench/bench_counter.hpp: helpers shared by the multi-threaded benchmarks.
//
// sharded_counter counts completed tasks without making the count itself the bottleneck: each thread adds to
// its own cache line (a thread-local slot index), and the waiting thread sums the slots. A single shared
// fetch_add would bounce one cache line between every worker and make all peers look alike.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace bench {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

class sharded_counter {
 public:
  static constexpr int kSlots = 64;

  // One task done. Thread-safe; threads beyond kSlots share slots, still correctly (the add is atomic).
  void add() noexcept { slots_[this_thread_slot()].value.fetch_add(1, std::memory_order_release); }

  std::int64_t sum() const noexcept {
    std::int64_t total = 0;
    for (const slot& s : slots_) total += s.value.load(std::memory_order_acquire);
    return total;
  }

  // Waits, yielding the CPU (two cores: a spinning waiter would steal a worker's core), until sum() >= target.
  void wait_for(std::int64_t target) const noexcept {
    while (sum() < target) std::this_thread::yield();
  }

 private:
  struct alignas(64) slot {
    std::atomic<std::int64_t> value{0};
  };
  static int this_thread_slot() noexcept {
    static std::atomic<int> next{0};
    thread_local const int index = next.fetch_add(1, std::memory_order_relaxed) % kSlots;
    return index;
  }
  slot slots_[kSlots];
};

}  // namespace bench
