// fork() on a real thread pool: continuations stolen by other workers while children run, children that
// suspend on deferreds fired from other threads, and joins that race with the child's completion. Each test
// checks every value and that every coroutine frame was freed.
//
// ANYDEFER_STRESS_SCALE (a float, default 1) scales the repetitions; sanitizer lanes use 0.1.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "anydefer/executors.hpp"

namespace {

using anydefer::deferred;

int scaled(int n) {
  double scale = 1.0;
  if (const char* env = std::getenv("ANYDEFER_STRESS_SCALE")) scale = std::strtod(env, nullptr);
  const int v = static_cast<int>(n * scale);
  return v < 2 ? 2 : v;
}

std::atomic<long> live_frames{0};
struct frame_counter {
  frame_counter() { live_frames.fetch_add(1, std::memory_order_relaxed); }
  frame_counter(const frame_counter&) = delete;
  ~frame_counter() { live_frames.fetch_sub(1, std::memory_order_relaxed); }
};

constexpr long fib_value(int n) { return n < 2 ? n : fib_value(n - 1) + fib_value(n - 2); }

deferred<long> fib(anydefer::thread_pool& pool, int n) {
  frame_counter counted;
  if (n < 2) co_return n;
  deferred<long> left = co_await anydefer::fork(pool, fib, pool, n - 1);
  const long right = co_await fib(pool, n - 2);
  co_return co_await std::move(left) + right;
}

class ForkStressTest : public ::testing::TestWithParam<int> {};

TEST_P(ForkStressTest, FibWithStolenContinuationsJoinsEveryChild) {
  anydefer::thread_pool pool(static_cast<std::size_t>(GetParam()));
  const int rounds = scaled(40);
  for (int i = 0; i < rounds; ++i) {
    const int n = 14 + i % 6;
    ASSERT_EQ(anydefer::submit(pool, [&pool, n] { return fib(pool, n); }).get(), fib_value(n)) << "round " << i;
  }
  pool.stop();
  EXPECT_EQ(live_frames.load(), 0);
}

// A child that awaits a deferred another thread fires: it suspends inside fork(), the parent goes on (here or
// on a thief), and the join waits for a result published from the firing thread.
deferred<long> leaf_waiting(deferred<long> gate) { co_return co_await gate; }

deferred<long> sum_of_gates(anydefer::thread_pool& pool, std::vector<deferred<long>>& gates, int lo, int hi) {
  frame_counter counted;
  if (hi - lo == 1) co_return co_await leaf_waiting(gates[static_cast<std::size_t>(lo)]);
  const int mid = (lo + hi) / 2;
  deferred<long> left = co_await anydefer::fork(pool, sum_of_gates, pool, gates, lo, mid);
  const long right = co_await sum_of_gates(pool, gates, mid, hi);
  co_return co_await std::move(left) + right;
}

TEST_P(ForkStressTest, ChildrenSuspendedOnDeferredsFiredElsewhereAreJoined) {
  anydefer::thread_pool pool(static_cast<std::size_t>(GetParam()));
  const int rounds = scaled(200);
  for (int r = 0; r < rounds; ++r) {
    std::vector<deferred<long>> gates(64);
    deferred<long> total = anydefer::submit(pool, [&] { return sum_of_gates(pool, gates, 0, 64); });
    std::thread firer([&gates] {
      for (std::size_t i = 0; i < gates.size(); ++i) gates[i].callback(static_cast<long>(i));
    });
    ASSERT_EQ(total.get(), 63 * 64 / 2) << "round " << r;
    firer.join();
  }
  pool.stop();
  EXPECT_EQ(live_frames.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Workers, ForkStressTest, ::testing::Values(2, 4));

}  // namespace
