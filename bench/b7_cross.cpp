// B7: crossing threads. A round trip: a value fired on thread A is continued on thread B, and the result comes
// back to A. Each benchmark iteration is kRounds round trips back to back (the next starts when the previous
// came back); per_round_trip is the time of one.
//
//   anydefer        two shards of a reactor_group, each on its own thread: on A, deferred<int> d;
//                   d.add_callback(B, f).add_callback(A, next_round); d.callback(v).
//   anydefer_execute the executors alone: two caller-owned task nodes that the shards execute() on each other.
//   anydefer_execute_standalone  the same between two reactors that are not a group (no shard channel: each
//                   hop goes through the target's general inbox).
//   asio_post       two io_contexts, each run by its own thread: post to B, which posts back to A.
//   raw_atomic      the floor: two threads spinning on one atomic, each waiting for the other's write.
//   condvar         two threads handing a turn over with a mutex and a condition variable.
#include <benchmark/benchmark.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <mutex>
#include <thread>

#include <anydefer/deferred.hpp>
#include <anydefer/executors/reactor.hpp>
#include <anydefer/executors/reactor_group.hpp>
#include <asio.hpp>

#include "bench_counter.hpp"

namespace {

constexpr std::int64_t kRounds = 1000;

void set_counters(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * kRounds);
  state.counters["per_round_trip"] =
      benchmark::Counter(kRounds, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// --- anydefer: reactor A -> reactor B -> reactor A --------------------------------------------------------------
struct alignas(64) reactor_round_trips {  // written on A every round: a line of its own
  anydefer::reactor& a;
  anydefer::reactor& b;
  std::int64_t remaining = 0;
  std::int64_t checksum = 0;
  anydefer::deferred<void> done;
};

// Runs on reactor A.
void start_round(reactor_round_trips* rt) {
  anydefer::deferred<int> d;
  d.add_callback(rt->b, [](int v) { return v + 1; }).add_callback(rt->a, [rt](int v) {
    rt->checksum += v;
    if (--rt->remaining > 0) {
      start_round(rt);
    } else {
      // A local handle: the benchmark thread may destroy *rt as soon as the fire is visible.
      anydefer::deferred<void> done = rt->done;
      done.callback();
    }
  });
  d.callback(1);
}

void cross_anydefer(benchmark::State& state) {
  anydefer::reactor_group shards(2);
  anydefer::reactor& a = shards.shard(0);
  anydefer::reactor& b = shards.shard(1);
  for (auto _ : state) {
    reactor_round_trips rt{a, b, kRounds, 0, anydefer::deferred<void>()};
    anydefer::deferred<void> done = rt.done;
    anydefer::submit(a, [&rt] { start_round(&rt); });
    done.get();
    benchmark::DoNotOptimize(rt.checksum);
    if (rt.checksum != 2 * kRounds) state.SkipWithError("wrong checksum");
  }
  shards.stop();
  set_counters(state);
}

// --- anydefer executors alone: reactor A -> reactor B -> reactor A with caller-owned tasks -------------------
// The executor's share of a hop: two task nodes that execute() each other, no deferred.
// alignas(64): each task, and the counter, on a line of its own, as the reactors keep them; neighbours on the
// benchmark's stack would otherwise share lines written on the other thread.
struct alignas(64) bouncing_task final : anydefer::task {
  bouncing_task() noexcept : task(&ops) {}
  anydefer::reactor* target = nullptr;  // where this task's run() sends the ball next
  bouncing_task* partner = nullptr;
  std::int64_t* remaining = nullptr;  // owned by the task that runs on A
  std::promise<void>* done = nullptr;

  static void run(task& self) noexcept {
    auto& t = static_cast<bouncing_task&>(self);
    if (t.remaining != nullptr && --*t.remaining == 0) {
      t.done->set_value();  // the benchmark thread may destroy the tasks once it is set
      return;
    }
    t.target->execute(*t.partner);
  }
  static void reject(task&, std::exception_ptr) noexcept { std::terminate(); }
  static constexpr operations ops{&run, &reject};
};

void bounce(benchmark::State& state, anydefer::reactor& a, anydefer::reactor& b) {
  for (auto _ : state) {
    alignas(64) std::int64_t remaining = kRounds + 1;  // the serve below is not a round trip
    std::promise<void> done;
    std::future<void> finished = done.get_future();
    bouncing_task on_a;  // runs on A, sends to B
    bouncing_task on_b;  // runs on B, sends back to A
    on_a.target = &b;
    on_a.partner = &on_b;
    on_a.remaining = &remaining;
    on_a.done = &done;
    on_b.target = &a;
    on_b.partner = &on_a;
    a.execute(on_a);
    finished.get();
  }
  set_counters(state);
}

void cross_reactor_execute(benchmark::State& state) {
  anydefer::reactor_group shards(2);
  bounce(state, shards.shard(0), shards.shard(1));
}

void cross_reactor_execute_standalone(benchmark::State& state) {
  anydefer::reactor a;
  anydefer::reactor b;
  a.start();
  b.start();
  bounce(state, a, b);
}

// --- Asio: io_context A -> io_context B -> io_context A --------------------------------------------------------
struct alignas(64) asio_round_trips {  // as reactor_round_trips
  asio::io_context& a;
  asio::io_context& b;
  std::int64_t remaining = 0;
  std::int64_t checksum = 0;
  std::promise<void> done;
};

void asio_start_round(asio_round_trips* rt) {
  int v = 1;
  asio::post(rt->b, [rt, v] {
    const int w = v + 1;
    asio::post(rt->a, [rt, w] {
      rt->checksum += w;
      if (--rt->remaining > 0) {
        asio_start_round(rt);
      } else {
        std::promise<void> done = std::move(rt->done);  // the benchmark thread may destroy *rt once it is set
        done.set_value();
      }
    });
  });
}

void cross_asio(benchmark::State& state) {
  asio::io_context a(1);
  asio::io_context b(1);
  auto guard_a = asio::make_work_guard(a);
  auto guard_b = asio::make_work_guard(b);
  std::thread ta([&a] { a.run(); });
  std::thread tb([&b] { b.run(); });
  for (auto _ : state) {
    asio_round_trips rt{a, b, kRounds, 0, {}};
    std::future<void> done = rt.done.get_future();
    asio::post(a, [&rt] { asio_start_round(&rt); });
    done.get();
    benchmark::DoNotOptimize(rt.checksum);
    if (rt.checksum != 2 * kRounds) state.SkipWithError("wrong checksum");
  }
  guard_a.reset();
  guard_b.reset();
  ta.join();
  tb.join();
  set_counters(state);
}

// --- raw atomic ping-pong: the floor ------------------------------------------------------------------------
void cross_raw_atomic(benchmark::State& state) {
  std::atomic<std::int64_t> ball{0};  // odd: the benchmark thread served; even: the other thread returned it
  std::atomic<bool> stop{false};
  std::thread other([&] {
    std::int64_t expect = 1;
    for (;;) {
      while (ball.load(std::memory_order_acquire) != expect) {
        if (stop.load(std::memory_order_relaxed)) return;
        bench::cpu_relax();
      }
      ball.store(expect + 1, std::memory_order_release);
      expect += 2;
    }
  });
  std::int64_t served = 0;
  for (auto _ : state) {
    for (std::int64_t r = 0; r < kRounds; ++r) {
      ball.store(2 * served + 1, std::memory_order_release);
      while (ball.load(std::memory_order_acquire) != 2 * served + 2) bench::cpu_relax();
      ++served;
    }
  }
  stop.store(true, std::memory_order_relaxed);
  other.join();
  set_counters(state);
}

// --- condition-variable ping-pong ---------------------------------------------------------------------------
void cross_condvar(benchmark::State& state) {
  std::mutex m;
  std::condition_variable cv;
  std::int64_t ball = 0;
  bool stop = false;
  std::thread other([&] {
    std::int64_t expect = 1;
    std::unique_lock lock(m);
    for (;;) {
      cv.wait(lock, [&] { return ball == expect || stop; });
      if (stop) return;
      ball = expect + 1;
      expect += 2;
      cv.notify_all();
    }
  });
  std::int64_t served = 0;
  for (auto _ : state) {
    for (std::int64_t r = 0; r < kRounds; ++r) {
      std::unique_lock lock(m);
      ball = 2 * served + 1;
      cv.notify_all();
      cv.wait(lock, [&] { return ball == 2 * served + 2; });
      ++served;
    }
  }
  {
    std::lock_guard lock(m);
    stop = true;
  }
  cv.notify_all();
  other.join();
  set_counters(state);
}

BENCHMARK(cross_anydefer)->Name("BM_CrossRoundTrip/anydefer")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(cross_reactor_execute)
    ->Name("BM_CrossRoundTrip/anydefer_execute")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(cross_reactor_execute_standalone)
    ->Name("BM_CrossRoundTrip/anydefer_execute_standalone")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(cross_asio)->Name("BM_CrossRoundTrip/asio_post")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(cross_raw_atomic)->Name("BM_CrossRoundTrip/raw_atomic")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(cross_condvar)->Name("BM_CrossRoundTrip/condvar")->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
