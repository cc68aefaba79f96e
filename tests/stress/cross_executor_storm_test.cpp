// Storms across executors: chains that hop pool -> reactor -> pool -> reactor, started from several threads at
// once, and executors stopped while chains are still arriving. Every test counts: each hop ran exactly once, each
// chain settled exactly once (with its value or with executor_stopped_error), and every object the chains carried
// was destroyed by the end.
//
// ANYDEFER_STRESS_SCALE (a float, default 1) scales the number of chains; sanitizer lanes use 0.1.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "anydefer/executors.hpp"

namespace {

using anydefer::deferred;

long scaled(long n) {
  double scale = 1.0;
  if (const char* env = std::getenv("ANYDEFER_STRESS_SCALE")) scale = std::strtod(env, nullptr);
  const long v = static_cast<long>(static_cast<double>(n) * scale);
  return v < 100 ? 100 : v;
}

// Counts live instances: what the chains carry must all be destroyed once they settle.
struct tracked {
  static std::atomic<long> live;
  tracked() { live.fetch_add(1, std::memory_order_relaxed); }
  tracked(const tracked&) { live.fetch_add(1, std::memory_order_relaxed); }
  ~tracked() { live.fetch_sub(1, std::memory_order_relaxed); }
};
std::atomic<long> tracked::live{0};

struct hop_counts {
  std::atomic<long> on_reactor_a{0};
  std::atomic<long> on_pool{0};
  std::atomic<long> on_reactor_b{0};
  std::atomic<long> wrong_thread{0};
};

// One chain: starts on reactor A, hops to the pool, to reactor B, back to the pool. Each hop checks its thread.
deferred<long> hop_chain(long i, anydefer::reactor& a, anydefer::thread_pool& pool, anydefer::reactor& b,
                         hop_counts& counts) {
  auto payload = std::make_shared<tracked>();
  return anydefer::submit(a,
                          [&, i, payload] {
                            if (!a.running_in_this_thread()) counts.wrong_thread.fetch_add(1);
                            counts.on_reactor_a.fetch_add(1, std::memory_order_relaxed);
                            return i;
                          })
      .add_callback(pool,
                    [&, payload](long v) {
                      if (!pool.running_in_this_thread()) counts.wrong_thread.fetch_add(1);
                      counts.on_pool.fetch_add(1, std::memory_order_relaxed);
                      return v + 1;
                    })
      .add_callback(b,
                    [&, payload](long v) {
                      if (!b.running_in_this_thread()) counts.wrong_thread.fetch_add(1);
                      counts.on_reactor_b.fetch_add(1, std::memory_order_relaxed);
                      return v + 1;
                    })
      .add_callback(pool, [&, payload](long v) {
        if (!pool.running_in_this_thread()) counts.wrong_thread.fetch_add(1);
        counts.on_pool.fetch_add(1, std::memory_order_relaxed);
        return v + 1;
      });
}

TEST(CrossExecutorStormTest, ChainsFromManyThreadsEachHopExactlyOnce) {
  const long chains = scaled(40'000);
  constexpr int producers = 3;
  hop_counts counts;
  std::atomic<long> settled{0};
  std::atomic<long> sum{0};
  {
    anydefer::reactor a;
    anydefer::reactor b;
    anydefer::thread_pool pool(2);
    a.start();
    b.start();
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&, p] {
        std::vector<deferred<void>> mine;
        for (long i = p; i < chains; i += producers) {
          mine.push_back(hop_chain(i, a, pool, b, counts).add_callback([&](long v) {
            sum.fetch_add(v, std::memory_order_relaxed);
            settled.fetch_add(1, std::memory_order_relaxed);
          }));
        }
        for (auto& d : mine) d.wait();
      });
    }
    for (auto& t : threads) t.join();
    a.stop();
    b.stop();
    pool.stop();
  }
  EXPECT_EQ(settled.load(), chains);
  EXPECT_EQ(counts.on_reactor_a.load(), chains);
  EXPECT_EQ(counts.on_pool.load(), 2 * chains);
  EXPECT_EQ(counts.on_reactor_b.load(), chains);
  EXPECT_EQ(counts.wrong_thread.load(), 0);
  EXPECT_EQ(sum.load(), chains * (chains - 1) / 2 + 3 * chains);  // each chain: i + 3
  EXPECT_EQ(tracked::live.load(), 0);
}

TEST(CrossExecutorStormTest, StoppingExecutorsMidStormSettlesEveryChainOnce) {
  const long chains = scaled(20'000);
  hop_counts counts;
  std::atomic<long> succeeded{0};
  std::atomic<long> stopped{0};
  std::atomic<long> other{0};
  {
    anydefer::reactor a;
    anydefer::reactor b;
    anydefer::thread_pool pool(2);
    a.start();
    b.start();
    std::vector<deferred<void>> all;
    all.reserve(static_cast<std::size_t>(chains));
    auto start_chain = [&](long i) {
      all.push_back(hop_chain(i, a, pool, b, counts).add_both([&](anydefer::result<long>&& r) {
        if (r.has_value()) {
          succeeded.fetch_add(1, std::memory_order_relaxed);
        } else if (r.error().check<anydefer::executor_stopped_error>()) {
          stopped.fetch_add(1, std::memory_order_relaxed);
        } else {
          other.fetch_add(1, std::memory_order_relaxed);
        }
      }));
    };
    // The first half is in flight (some done, some queued on b, some still on a or the pool) when b stops;
    // the second half is started after the stop, so all of it must be rejected at its hop to b.
    for (long i = 0; i < chains / 2; ++i) start_chain(i);
    while (counts.on_reactor_b.load(std::memory_order_relaxed) == 0) std::this_thread::yield();
    b.stop();
    for (long i = chains / 2; i < chains; ++i) start_chain(i);
    for (auto& d : all) d.wait();
    a.stop();
    pool.stop();
  }
  EXPECT_EQ(succeeded.load() + stopped.load(), chains);  // every chain settled, exactly once
  EXPECT_EQ(other.load(), 0);
  EXPECT_GE(stopped.load(), chains - chains / 2);  // at least every chain started after the stop
  EXPECT_EQ(counts.on_reactor_b.load(), succeeded.load());
  EXPECT_EQ(counts.wrong_thread.load(), 0);
  EXPECT_EQ(tracked::live.load(), 0);
}

}  // namespace
