// The toolkit under contention, for ThreadSanitizer: deferred_semaphore, deferred_queue, looping_call and
// add_timeout used from several threads at once, with cancels racing grants, stops racing timers and fires
// racing timeouts. Each test checks that nothing is lost or granted twice.
// ANYDEFER_STRESS_SCALE (a float, default 1) scales the repetitions; sanitizer lanes use 0.1.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "anydefer/executors.hpp"

namespace {

using anydefer::deferred;
using namespace std::chrono_literals;

int scaled(int n) {
  double scale = 1.0;
  if (const char* env = std::getenv("ANYDEFER_STRESS_SCALE")) scale = std::strtod(env, nullptr);
  const int v = static_cast<int>(n * scale);
  return v < 1 ? 1 : v;
}

TEST(ToolkitStressTest, SemaphoreNeverLetsMoreThanItsPermitsInAndLosesNoneToCancels) {
  constexpr std::size_t permits = 2;
  anydefer::deferred_semaphore sem(permits);
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::atomic<int> ran{0};
  std::atomic<int> values{0};
  std::atomic<int> cancelled{0};
  const int per_thread = scaled(5000);
  auto worker = [&](unsigned seed) {
    std::minstd_rand rng(seed);
    std::vector<deferred<void>> mine;
    for (int i = 0; i < per_thread; ++i) {
      deferred<void> d = sem.run([&] {
        const int now = ++inside;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        ++ran;
        --inside;
      });
      if (rng() % 4 == 0) d.cancel();  // races with a release handing it the permit
      mine.push_back(std::move(d));
    }
    for (deferred<void>& d : mine) {
      try {
        d.get();
        ++values;
      } catch (const anydefer::cancelled_error&) {
        ++cancelled;
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, t + 1);
  for (std::thread& t : threads) t.join();
  EXPECT_LE(most.load(), static_cast<int>(permits));
  // Every run settles, with f's result or cancelled_error. A cancel that lands on another thread after the grant
  // but before f's deferred is known (f may be running) finds nothing pending to forward to and still fails the
  // run: cancel() is a request racing the work, as everywhere else. So f ran for every value, and at most once
  // for each run.
  EXPECT_EQ(values.load() + cancelled.load(), 4 * per_thread);
  EXPECT_GE(ran.load(), values.load());
  EXPECT_LE(ran.load(), 4 * per_thread);
  EXPECT_EQ(sem.free_permits(), permits);  // every permit came back
  EXPECT_EQ(sem.waiting(), 0U);
}

TEST(ToolkitStressTest, QueueDeliversEveryItemOnceDespiteCancelledGetters) {
  anydefer::deferred_queue<int> q;
  const int per_producer = scaled(20000);
  constexpr int producers = 2;
  std::atomic<long long> received_sum{0};
  std::atomic<int> received{0};
  std::atomic<bool> producing{true};
  std::atomic<bool> consumer_done{false};
  std::thread consumer([&] {
    std::minstd_rand rng(7);
    while (producing.load() || q.size() > 0) {
      deferred<int> got = q.get();
      if (rng() % 3 == 0) got.cancel();  // races with a put() handing it an item
      try {
        const int v = got.get();
        received_sum += v;
        ++received;
      } catch (const anydefer::cancelled_error&) {
      }
    }
    consumer_done.store(true);
  });
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 1; i <= per_producer; ++i) q.put(p * per_producer + i);
    });
  }
  for (std::thread& t : threads) t.join();
  producing.store(false);
  // The consumer may be parked on a get() whose item never comes: put sentinels (0) until it leaves.
  while (!consumer_done.load()) {
    q.put(0);
    std::this_thread::sleep_for(1ms);
  }
  consumer.join();
  EXPECT_GE(received.load(), 1);
  long long left_sum = 0;
  while (q.size() > 0) left_sum += q.get().get();
  const long long n = static_cast<long long>(producers) * per_producer;
  EXPECT_EQ(received_sum.load() + left_sum, n * (n + 1) / 2);  // every item exactly once (sentinels add 0)
}

TEST(ToolkitStressTest, LoopingCallStopRacesItsTimerAndFiresItsDeferredOnce) {
  anydefer::reactor reactor;
  reactor.start();
  const int rounds = scaled(300);
  std::minstd_rand rng(3);
  for (int r = 0; r < rounds; ++r) {
    std::atomic<int> calls{0};
    anydefer::looping_call loop(reactor, [&calls] { ++calls; });
    deferred<void> done = loop.start(0s, /*now=*/false);  // as fast as the reactor goes
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
    loop.stop();
    EXPECT_NO_THROW(done.get());
    const int at_done = calls.load();
    std::this_thread::sleep_for(200us);
    EXPECT_EQ(calls.load(), at_done) << "a call after the looping call finished";
  }
}

TEST(ToolkitStressTest, AddTimeoutRacingTheFireGivesExactlyOneOutcome) {
  anydefer::reactor reactor;
  reactor.start();
  const int rounds = scaled(2000);
  int values = 0;
  int timeouts = 0;
  for (int r = 0; r < rounds; ++r) {
    deferred<int> d;
    deferred<int> guarded = anydefer::add_timeout(d, std::chrono::microseconds(r % 50), reactor);
    std::thread producer([d, r] {
      try {
        d.callback(r);
      } catch (const anydefer::already_called_error&) {
        // the timeout cancelled it first (a cancel without canceller swallows one late fire, so this is rare)
      }
    });
    try {
      EXPECT_EQ(guarded.get(), r);
      ++values;
    } catch (const anydefer::timeout_error&) {
      ++timeouts;
    }
    producer.join();
  }
  EXPECT_EQ(values + timeouts, rounds);
  reactor.stop();
}

}  // namespace
