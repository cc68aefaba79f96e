// B4: fan-in. Per iteration: make N unfired results, combine them into one, fire each, read the combined values.
// Everything (creation, combining, firing, reading, destruction) is timed; per_input is the cost per input.
//
// Peers:
//   boost_when_all   boost::when_all(first, last) over N boost::futures. Boost implements it by starting a
//                    thread that waits on each future in turn; that is its cost, and it is measured as is.
//   std_future_loop  N std::promise/std::future pairs, set, then get() each in a loop (no combinator exists).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <future>
#include <vector>

#include <anydefer/combinators.hpp>
#include <anydefer/deferred.hpp>

#include "boost_future.hpp"

namespace {

void set_counters(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["per_input"] = benchmark::Counter(
      static_cast<double>(state.range(0)), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void gather_anydefer(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    std::vector<anydefer::deferred<int>> inputs(n);
    anydefer::deferred<std::vector<int>> all = anydefer::gather(inputs);
    for (std::size_t i = 0; i < n; ++i) inputs[i].callback(static_cast<int>(i));
    std::int64_t sum = 0;
    for (int v : all.get()) sum += v;
    benchmark::DoNotOptimize(sum);
  }
  set_counters(state);
}

void gather_boost_when_all(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    std::vector<boost::promise<int>> promises(n);
    std::vector<boost::future<int>> futures;
    futures.reserve(n);
    for (auto& p : promises) futures.push_back(p.get_future());
    auto all = boost::when_all(futures.begin(), futures.end());
    for (std::size_t i = 0; i < n; ++i) promises[i].set_value(static_cast<int>(i));
    std::int64_t sum = 0;
    for (auto& f : all.get()) sum += f.get();
    benchmark::DoNotOptimize(sum);
  }
  set_counters(state);
}

void gather_std_future_loop(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    std::vector<std::promise<int>> promises(n);
    std::vector<std::future<int>> futures;
    futures.reserve(n);
    for (auto& p : promises) futures.push_back(p.get_future());
    for (std::size_t i = 0; i < n; ++i) promises[i].set_value(static_cast<int>(i));
    std::int64_t sum = 0;
    for (auto& f : futures) sum += f.get();
    benchmark::DoNotOptimize(sum);
  }
  set_counters(state);
}

void sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {1'000, 10'000, 100'000, 1'000'000}) b->Arg(n);
  b->Unit(benchmark::kMicrosecond);
}

BENCHMARK(gather_anydefer)->Name("BM_Gather/anydefer")->Apply(sizes);
BENCHMARK(gather_boost_when_all)->Name("BM_Gather/boost_when_all")->Apply(sizes);
BENCHMARK(gather_std_future_loop)->Name("BM_Gather/std_future_loop")->Apply(sizes);

}  // namespace
