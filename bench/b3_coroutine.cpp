// B3: deferred coroutines. One thread; every resumption is inline (on the thread that fires).
//
//   BM_CoAwaitFired          co_await of an already fired deferred, in a loop inside one coroutine (the fired
//                            deferreds are made outside the timed region); per_await is the cost of one.
//   BM_SuspendResume         one long-lived coroutine awaits a fresh unfired deferred, the benchmark fires it,
//                            the coroutine resumes inline, makes the next deferred and suspends again.
//   BM_MakeFiredBatch        BM_CoAwaitFired's untimed setup alone (for instruction counts: see there).
//   BM_CoroutineCall         a coroutine that co_returns at once: the call, its deferred, reading it.
//   BM_AwaitChain32          32 coroutines each awaiting the next; the innermost awaits an unfired deferred,
//                            woken at once with a value (/value) or an error caught at the top (/error).
// Peers: raw_* are hand-written minimal coroutines (no result object, no thread-safety): the floor.
// Heap allocations per operation (allocs_per_op) are counted in a short pass of their own with anydefer's state
// cache off, so that each state shows as the allocation it is; the timed loops run with the cache on, as a
// program does.
#include <benchmark/benchmark.h>

#include <coroutine>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <utility>
#include <vector>

#include <anydefer/coroutine.hpp>
#include <anydefer/deferred.hpp>

#include "alloc_counter.hpp"
#include "bench_env.hpp"

namespace {

constexpr int kBatch = 1024;
constexpr int kDepth = 32;

constexpr int kCountedOps = 256;

// Runs `op` kCountedOps times with the state cache off and reports the heap allocations per run as allocs_per_op.
template <class Op>
void count_allocs(benchmark::State& state, Op&& op) {
  bench::alloc_scope scope;
  for (int i = 0; i < kCountedOps; ++i) op();
  state.counters["allocs_per_op"] = benchmark::Counter(static_cast<double>(scope.allocations()) / kCountedOps);
}

// --- a minimal eager coroutine: the floor ------------------------------------------------------------------
template <class T>
class raw_task {
 public:
  struct promise_type {
    T value{};
    raw_task get_return_object() noexcept { return raw_task(std::coroutine_handle<promise_type>::from_promise(*this)); }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_value(T v) noexcept { value = v; }
    void unhandled_exception() noexcept { std::terminate(); }
  };
  explicit raw_task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  raw_task(raw_task&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  raw_task(const raw_task&) = delete;
  ~raw_task() {
    if (h_) h_.destroy();
  }
  bool done() const noexcept { return h_.done(); }
  T value() const noexcept { return h_.promise().value; }

 private:
  std::coroutine_handle<promise_type> h_;
};

struct ready_value {
  int v;
  bool await_ready() const noexcept { return true; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  int await_resume() const noexcept { return v; }
};

// A one-shot event a raw coroutine suspends on; set() resumes it inline.
struct raw_event {
  std::coroutine_handle<> waiter;
  int value = 0;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept { waiter = h; }
  int await_resume() const noexcept { return value; }
  void set(int v) {
    value = v;
    std::exchange(waiter, nullptr).resume();
  }
};

// --- BM_CoAwaitFired -----------------------------------------------------------------------------------------
anydefer::deferred<long> await_all(const std::vector<anydefer::deferred<int>>& inputs) {
  long sum = 0;
  for (const auto& d : inputs) sum += co_await d;
  co_return sum;
}

void co_await_fired_anydefer(benchmark::State& state) {
  std::vector<anydefer::deferred<int>> inputs;
  inputs.reserve(kBatch);
  for (auto _ : state) {
    state.PauseTiming();
    inputs.clear();
    for (int i = 0; i < kBatch; ++i) inputs.push_back(anydefer::succeed(i));
    state.ResumeTiming();
    anydefer::deferred<long> sum = await_all(inputs);
    benchmark::DoNotOptimize(sum.get());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["per_await"] =
      benchmark::Counter(kBatch, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// BM_CoAwaitFired's untimed part alone (making the 1024 fired deferreds, and destroying the previous batch), for
// instruction counts: callgrind counts what PauseTiming() leaves out, so BM_CoAwaitFired minus this is the awaits.
void make_fired_batch_anydefer(benchmark::State& state) {
  std::vector<anydefer::deferred<int>> inputs;
  inputs.reserve(kBatch);
  for (auto _ : state) {
    inputs.clear();
    for (int i = 0; i < kBatch; ++i) inputs.push_back(anydefer::succeed(i));
    benchmark::DoNotOptimize(inputs.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

raw_task<long> raw_await_all(const std::vector<int>& inputs) {
  long sum = 0;
  for (int v : inputs) {
    benchmark::DoNotOptimize(v);
    sum += co_await ready_value{v};
  }
  co_return sum;
}

void co_await_fired_raw(benchmark::State& state) {
  std::vector<int> inputs(kBatch);
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < kBatch; ++i) inputs[static_cast<std::size_t>(i)] = i;
    state.ResumeTiming();
    raw_task<long> sum = raw_await_all(inputs);
    benchmark::DoNotOptimize(sum.value());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["per_await"] =
      benchmark::Counter(kBatch, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// --- BM_SuspendResume ----------------------------------------------------------------------------------------
struct next_slot {
  anydefer::deferred<int> next;
};

anydefer::deferred<long> resume_loop(next_slot& slot, std::int64_t count) {
  long sum = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    anydefer::deferred<int> d;
    slot.next = d;
    sum += co_await d;
  }
  co_return sum;
}

// One suspension and resumption of a loop started by resume_loop(slot, ...).
void fire_next(next_slot& slot) {
  anydefer::deferred<int> d = std::move(slot.next);  // keeps d's state alive while callback() runs
  d.callback(1);
}

void suspend_resume_anydefer(benchmark::State& state) {
  {
    next_slot slot;
    // One more await than counted fires: each counted fire resumes the loop into making its next deferred.
    anydefer::deferred<long> counted = resume_loop(slot, kCountedOps + 1);
    count_allocs(state, [&] { fire_next(slot); });
    fire_next(slot);
    benchmark::DoNotOptimize(counted.get());
  }
  next_slot slot;
  anydefer::deferred<long> loop = resume_loop(slot, static_cast<std::int64_t>(state.max_iterations));
  for (auto _ : state) fire_next(slot);
  benchmark::DoNotOptimize(loop.get());
}

raw_task<long> raw_resume_loop(raw_event& event, std::int64_t count) {
  long sum = 0;
  for (std::int64_t i = 0; i < count; ++i) sum += co_await event;
  co_return sum;
}

void suspend_resume_raw(benchmark::State& state) {
  {
    raw_event event;
    raw_task<long> counted = raw_resume_loop(event, kCountedOps + 1);
    count_allocs(state, [&] { event.set(1); });
    event.set(1);
  }
  raw_event event;
  raw_task<long> loop = raw_resume_loop(event, static_cast<std::int64_t>(state.max_iterations));
  for (auto _ : state) event.set(1);
  if (!loop.done()) state.SkipWithError("raw loop did not finish");
  benchmark::DoNotOptimize(loop.value());
}

// --- BM_CoroutineCall ----------------------------------------------------------------------------------------
anydefer::deferred<int> plus_one(int x) { co_return x + 1; }

int call_plus_one(int x) {
  anydefer::deferred<int> d = plus_one(x);
  return d.get();
}

void coroutine_call_anydefer(benchmark::State& state) {
  int x = 0;
  count_allocs(state, [&] { x = call_plus_one(x); });
  for (auto _ : state) {
    x = call_plus_one(x);
    benchmark::DoNotOptimize(x);
  }
}

raw_task<int> raw_plus_one(int x) { co_return x + 1; }

int call_raw_plus_one(int x) {
  raw_task<int> t = raw_plus_one(x);
  return t.value();
}

void coroutine_call_raw(benchmark::State& state) {
  int x = 0;
  count_allocs(state, [&] { x = call_raw_plus_one(x); });
  for (auto _ : state) {
    x = call_raw_plus_one(x);
    benchmark::DoNotOptimize(x);
  }
}

// --- BM_AwaitChain32 -----------------------------------------------------------------------------------------
anydefer::deferred<int> nested(int depth, const anydefer::deferred<int>& innermost) {
  if (depth == 0) co_return co_await innermost;
  co_return co_await nested(depth - 1, innermost) + 1;
}

anydefer::deferred<int> guarded(const anydefer::deferred<int>& innermost) {
  try {
    co_return co_await nested(kDepth - 2, innermost);  // this frame + 31 more
  } catch (const std::runtime_error&) {
    co_return -1;
  }
}

int wake_chain_with_value() {
  anydefer::deferred<int> innermost;
  anydefer::deferred<int> top = guarded(innermost);
  innermost.callback(1);
  return top.get();
}

void await_chain_value(benchmark::State& state) {
  count_allocs(state, [] { benchmark::DoNotOptimize(wake_chain_with_value()); });
  for (auto _ : state) benchmark::DoNotOptimize(wake_chain_with_value());
  state.counters["per_level"] =
      benchmark::Counter(kDepth, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

int wake_chain_with_error() {
  anydefer::deferred<int> innermost;
  anydefer::deferred<int> top = guarded(innermost);
  innermost.errback(std::runtime_error("woken with an error"));
  return top.get();
}

void await_chain_error(benchmark::State& state) {
  count_allocs(state, [] { benchmark::DoNotOptimize(wake_chain_with_error()); });
  for (auto _ : state) benchmark::DoNotOptimize(wake_chain_with_error());
  state.counters["per_level"] =
      benchmark::Counter(kDepth, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

BENCHMARK(co_await_fired_anydefer)->Name("BM_CoAwaitFired/anydefer")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(make_fired_batch_anydefer)->Name("BM_MakeFiredBatch/anydefer")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(co_await_fired_raw)->Name("BM_CoAwaitFired/raw_ready_awaiter")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(suspend_resume_anydefer)->Name("BM_SuspendResume/anydefer")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(suspend_resume_raw)->Name("BM_SuspendResume/raw_coroutine_handle")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(coroutine_call_anydefer)->Name("BM_CoroutineCall/anydefer")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(coroutine_call_raw)->Name("BM_CoroutineCall/raw_task")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(await_chain_value)->Name("BM_AwaitChain32/anydefer_value")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(await_chain_error)->Name("BM_AwaitChain32/anydefer_error")->Apply(bench::fixed_iterations_from_env);

}  // namespace
