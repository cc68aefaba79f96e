// B5: fork-join recursion. fib(n) with one asynchronous result per call: fib(n-1) goes to the pool as a task,
// fib(n-2) runs inline on the calling worker, then the two are joined. No serial cutoff.
//
//   anydefer            coroutine: left = submit(pool, fib(n-1)); right = co_await fib(n-2); co_await left.
//                       No worker ever blocks: a join that is not ready suspends the coroutine.
//   anydefer_resume_on  coroutine: left = fib(n-1), which starts with co_await resume_on(pool) (onto the
//                       worker's deque, stealable); right = co_await fib(n-2); co_await left. One deferred per call.
//   anydefer_fork       coroutine: left = co_await fork(pool, fib, pool, n-1) runs fib(n-1) at once and offers the
//                       rest of the caller to the other workers (continuation stealing); right = co_await
//                       fib(n-2); co_await left. Where nothing is stolen, one locked instruction per fork: the
//                       fence of the deque's pop.
//   anydefer_fork_symmetric  the same with the asymmetric fences turned off (a worker's every push then pays a
//                       seq_cst fence before it checks for sleepers): the A/B that shows what membarrier buys
//   anydefer_callbacks  the same without coroutines: fib(n-2).add_callback(right -> left.add_callback(sum)).
//   onetbb              tbb::task_group: run(fib(n-1)), fib(n-2) inline, wait() (TBB's wait runs other tasks).
//   std_async           std::async(launch::async) for fib(n-1): a thread per call, so only n = 15.
// Sizes n = 15 (where std::async can join), 20 and 25; n = 30 only in a full run (ANYDEFER_BENCH_FULL=1, which
// tools/bench sets). Both anydefer and oneTBB get the machine's hardware threads (anydefer: that many workers, the
// benchmark thread blocks in get(); TBB: the benchmark thread joins its arena).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <future>

#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#include <anydefer/coroutine.hpp>
#include <anydefer/deferred.hpp>
#include <anydefer/detail/sync/asymmetric_fence.hpp>
#include <anydefer/executors/thread_pool.hpp>

#include "bench_env.hpp"

namespace {

constexpr std::int64_t fib_value(int n) { return n < 2 ? n : fib_value(n - 1) + fib_value(n - 2); }

// The expected values, computed once: checking a result must not add a recursion of its own to every iteration
// (instruction counts per fib call include everything the process does).
constexpr std::int64_t expected_fib[] = {fib_value(15), fib_value(20), fib_value(25), fib_value(30)};

void check(benchmark::State& state, std::int64_t got, int n) {
  const std::int64_t want = n == 15   ? expected_fib[0]
                            : n == 20 ? expected_fib[1]
                            : n == 25 ? expected_fib[2]
                            : n == 30 ? expected_fib[3]
                                      : fib_value(n);
  if (got != want) state.SkipWithError("wrong fib value");
}

// --- anydefer -----------------------------------------------------------------------------------------------
anydefer::deferred<std::int64_t> fib_coro(anydefer::thread_pool& pool, int n) {
  if (n < 2) co_return n;
  anydefer::deferred<std::int64_t> left = anydefer::submit(pool, [&pool, n] { return fib_coro(pool, n - 1); });
  const std::int64_t right = co_await fib_coro(pool, n - 2);
  co_return co_await left + right;
}

// The child starts on the calling worker and at once hops onto the pool (the worker's own deque, where another
// worker can steal it), so the coroutine's own deferred is the only one per call: one allocation, the frame.
anydefer::deferred<std::int64_t> fib_hop(anydefer::thread_pool& pool, int n, bool spawned) {
  if (spawned) co_await anydefer::resume_on(pool);
  if (n < 2) co_return n;
  anydefer::deferred<std::int64_t> left = fib_hop(pool, n - 1, true);
  const std::int64_t right = co_await fib_hop(pool, n - 2, false);
  co_return co_await std::move(left) + right;
}

anydefer::deferred<std::int64_t> fib_fork(anydefer::thread_pool& pool, int n) {
  if (n < 2) co_return n;
  anydefer::deferred<std::int64_t> left = co_await anydefer::fork(pool, fib_fork, pool, n - 1);
  const std::int64_t right = co_await fib_fork(pool, n - 2);
  co_return co_await std::move(left) + right;
}

anydefer::deferred<std::int64_t> fib_callbacks(anydefer::thread_pool& pool, int n) {
  if (n < 2) return anydefer::succeed(static_cast<std::int64_t>(n));
  anydefer::deferred<std::int64_t> left = anydefer::submit(pool, [&pool, n] { return fib_callbacks(pool, n - 1); });
  return fib_callbacks(pool, n - 2).add_callback([left = std::move(left)](std::int64_t right) {
    return left.add_callback([right](std::int64_t l) { return l + right; });
  });
}

void fib_anydefer(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  anydefer::thread_pool pool;
  for (auto _ : state) {
    auto result = anydefer::submit(pool, [&pool, n] { return fib_coro(pool, n); });
    std::int64_t v = result.get();
    benchmark::DoNotOptimize(v);
    check(state, v, n);
  }
  state.counters["workers"] = static_cast<double>(pool.size());
}

void fib_anydefer_resume_on(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  anydefer::thread_pool pool;
  for (auto _ : state) {
    std::int64_t v = fib_hop(pool, n, true).get();
    benchmark::DoNotOptimize(v);
    check(state, v, n);
  }
  state.counters["workers"] = static_cast<double>(pool.size());
}

void fib_anydefer_fork(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  anydefer::thread_pool pool;
  for (auto _ : state) {
    std::int64_t v = anydefer::submit(pool, [&pool, n] { return fib_fork(pool, n); }).get();
    benchmark::DoNotOptimize(v);
    check(state, v, n);
  }
  state.counters["workers"] = static_cast<double>(pool.size());
}

void fib_anydefer_fork_symmetric(benchmark::State& state) {
  const bool was_on = anydefer::detail::set_asymmetric_fences_for_measurement(false);  // no executor exists now
  fib_anydefer_fork(state);
  anydefer::detail::set_asymmetric_fences_for_measurement(was_on);  // the pool is gone again
}

void fib_anydefer_callbacks(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  anydefer::thread_pool pool;
  for (auto _ : state) {
    auto result = anydefer::submit(pool, [&pool, n] { return fib_callbacks(pool, n); });
    std::int64_t v = result.get();
    benchmark::DoNotOptimize(v);
    check(state, v, n);
  }
  state.counters["workers"] = static_cast<double>(pool.size());
}

// --- oneTBB -------------------------------------------------------------------------------------------------
std::int64_t fib_tbb(int n) {
  if (n < 2) return n;
  std::int64_t left = 0;
  tbb::task_group group;
  group.run([&left, n] { left = fib_tbb(n - 1); });
  const std::int64_t right = fib_tbb(n - 2);
  group.wait();
  return left + right;
}

void fib_onetbb(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::int64_t v = fib_tbb(n);
    benchmark::DoNotOptimize(v);
    check(state, v, n);
  }
  state.counters["workers"] = static_cast<double>(tbb::this_task_arena::max_concurrency());
}

// --- std::async ---------------------------------------------------------------------------------------------
std::int64_t fib_async(int n) {
  if (n < 2) return n;
  std::future<std::int64_t> left = std::async(std::launch::async, fib_async, n - 1);
  const std::int64_t right = fib_async(n - 2);
  return left.get() + right;
}

void fib_std_async(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::int64_t v = fib_async(n);
    benchmark::DoNotOptimize(v);
    check(state, v, n);
  }
}

// ANYDEFER_BENCH_ITERATIONS (unset in a normal run) fixes the iteration count: tools/bench --instructions counts
// one fib call as the difference between runs of 1 and 4 iterations under callgrind.
void sizes(benchmark::internal::Benchmark* b) {
  b->Arg(15)->Arg(20)->Arg(25);
  if (bench::full_run()) b->Arg(30);
  b->Unit(benchmark::kMillisecond)->UseRealTime();
  bench::fixed_iterations_from_env(b);
}

BENCHMARK(fib_anydefer)->Name("BM_Fib/anydefer")->Apply(sizes);
BENCHMARK(fib_anydefer_resume_on)->Name("BM_Fib/anydefer_resume_on")->Apply(sizes);
BENCHMARK(fib_anydefer_fork)->Name("BM_Fib/anydefer_fork")->Apply(sizes);
BENCHMARK(fib_anydefer_fork_symmetric)->Name("BM_Fib/anydefer_fork_symmetric")->Apply(sizes);
BENCHMARK(fib_anydefer_callbacks)->Name("BM_Fib/anydefer_callbacks")->Apply(sizes);
BENCHMARK(fib_onetbb)->Name("BM_Fib/onetbb")->Apply(sizes);
BENCHMARK(fib_std_async)->Name("BM_Fib/std_async")->Arg(15)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
