// B11: deferred_lock and deferred_semaphore against std::mutex and std::counting_semaphore.
//
//   BM_AcquireRelease   one thread, never contended: acquire, then release. anydefer's acquire() returns a
//                       deferred that has already fired (made, checked, dropped), the std ones return when they
//                       hold the lock.
//   BM_LockRun          one thread: deferred_lock::run(f), the everyday form (acquire, call f, release, pass its
//                       result on), read at once; std: a lock_guard around the same call.
//   BM_ContendedLock    every pool worker (workers = hardware threads) runs kSections critical sections on one
//                       shared lock, each bumping a shared counter; per_section is the wall time per section.
//                       anydefer: acquire().add_callback(section, then release): a worker never blocks, and a
//                       section whose lock is busy runs on the thread that releases it. std: lock, section,
//                       unlock (blocking).
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <semaphore>
#include <thread>
#include <vector>

#include <anydefer/deferred.hpp>
#include <anydefer/deferred_lock.hpp>
#include <anydefer/executors/thread_pool.hpp>

#include "bench_env.hpp"

namespace {

constexpr std::int64_t kSections = 1 << 14;  // per worker, per iteration

unsigned hardware_threads() { return std::max(1U, std::thread::hardware_concurrency()); }

// --- uncontended -------------------------------------------------------------------------------------------------

// One acquire + release of an anydefer lock or semaphore; acquire() hands back a deferred that already fired.
template <class Permits>
void acquire_release_anydefer(benchmark::State& state, Permits& permits) {
  for (auto _ : state) {
    anydefer::deferred<void> held = permits.acquire();
    benchmark::DoNotOptimize(held.fired());
    permits.release();
  }
}

void acquire_release_anydefer_lock(benchmark::State& state) {
  anydefer::deferred_lock lock;
  acquire_release_anydefer(state, lock);
}

void acquire_release_anydefer_semaphore(benchmark::State& state) {
  anydefer::deferred_semaphore permits(4);
  acquire_release_anydefer(state, permits);
}

void acquire_release_std_mutex(benchmark::State& state) {
  std::mutex m;
  for (auto _ : state) {
    m.lock();
    benchmark::ClobberMemory();
    m.unlock();
  }
}

void acquire_release_std_counting_semaphore(benchmark::State& state) {
  std::counting_semaphore<> permits(4);
  for (auto _ : state) {
    permits.acquire();
    benchmark::ClobberMemory();
    permits.release();
  }
}

void lock_run_anydefer(benchmark::State& state) {
  anydefer::deferred_lock lock;
  int shared = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(lock.run([&shared] { return ++shared; }).get());
  }
}

void lock_run_std_mutex(benchmark::State& state) {
  std::mutex m;
  int shared = 0;
  for (auto _ : state) {
    std::lock_guard<std::mutex> guard(m);
    benchmark::DoNotOptimize(++shared);
  }
}

// --- contended across the pool's workers -----------------------------------------------------------------------

// Per iteration: one task per worker, each running kSections sections through `section_loop`; the iteration ends
// when every section has run (`done` counts them: with anydefer a section may run after its task returned).
template <class SectionLoop>
void contended(benchmark::State& state, SectionLoop section_loop) {
  const unsigned workers = hardware_threads();
  anydefer::thread_pool pool(workers);
  std::atomic<std::int64_t> done{0};
  const std::int64_t total = kSections * workers;
  for (auto _ : state) {
    done.store(0, std::memory_order_relaxed);
    std::vector<anydefer::deferred<void>> tasks;
    tasks.reserve(workers);
    for (unsigned w = 0; w < workers; ++w) {
      tasks.push_back(anydefer::submit(pool, [&] { section_loop(done); }));
    }
    for (auto& t : tasks) t.get();
    while (done.load(std::memory_order_acquire) < total) std::this_thread::yield();
  }
  state.counters["workers"] = workers;
  state.counters["per_section"] = benchmark::Counter(
      static_cast<double>(total), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// Sections through an anydefer lock or semaphore of one permit: a section whose lock is busy runs on the thread
// that releases it.
template <class Permits>
void contended_anydefer(benchmark::State& state, Permits& permits) {
  std::int64_t shared = 0;  // guarded by the permit
  contended(state, [&](std::atomic<std::int64_t>& done) {
    for (std::int64_t i = 0; i < kSections; ++i) {
      (void)permits.acquire().add_callback([&] {
        ++shared;
        permits.release();
        done.fetch_add(1, std::memory_order_release);
      });
    }
  });
  benchmark::DoNotOptimize(shared);
}

void contended_anydefer_lock(benchmark::State& state) {
  anydefer::deferred_lock lock;
  contended_anydefer(state, lock);
}

void contended_anydefer_semaphore(benchmark::State& state) {
  anydefer::deferred_semaphore permits(1);
  contended_anydefer(state, permits);
}

void contended_std_mutex(benchmark::State& state) {
  std::mutex m;
  std::int64_t shared = 0;
  contended(state, [&](std::atomic<std::int64_t>& done) {
    for (std::int64_t i = 0; i < kSections; ++i) {
      m.lock();
      ++shared;
      m.unlock();
      done.fetch_add(1, std::memory_order_release);
    }
  });
  benchmark::DoNotOptimize(shared);
}

void contended_std_counting_semaphore(benchmark::State& state) {
  std::counting_semaphore<> permits(1);
  std::int64_t shared = 0;
  contended(state, [&](std::atomic<std::int64_t>& done) {
    for (std::int64_t i = 0; i < kSections; ++i) {
      permits.acquire();
      ++shared;
      permits.release();
      done.fetch_add(1, std::memory_order_release);
    }
  });
  benchmark::DoNotOptimize(shared);
}

}  // namespace

BENCHMARK(acquire_release_anydefer_lock)
    ->Name("BM_AcquireRelease/anydefer_lock")
    ->Apply(bench::fixed_iterations_from_env);
BENCHMARK(acquire_release_anydefer_semaphore)
    ->Name("BM_AcquireRelease/anydefer_semaphore")
    ->Apply(bench::fixed_iterations_from_env);
BENCHMARK(acquire_release_std_mutex)->Name("BM_AcquireRelease/std_mutex")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(acquire_release_std_counting_semaphore)
    ->Name("BM_AcquireRelease/std_counting_semaphore")
    ->Apply(bench::fixed_iterations_from_env);
BENCHMARK(lock_run_anydefer)->Name("BM_LockRun/anydefer_lock")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(lock_run_std_mutex)->Name("BM_LockRun/std_mutex")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(contended_anydefer_lock)->Name("BM_ContendedLock/anydefer_lock")->UseRealTime();
BENCHMARK(contended_anydefer_semaphore)->Name("BM_ContendedLock/anydefer_semaphore")->UseRealTime();
BENCHMARK(contended_std_mutex)->Name("BM_ContendedLock/std_mutex")->UseRealTime();
BENCHMARK(contended_std_counting_semaphore)->Name("BM_ContendedLock/std_counting_semaphore")->UseRealTime();
