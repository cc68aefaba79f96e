// B2: chains of N continuations, attached before the first link fires (the chain runs inside callback()) and
// after it fired (each link runs as it is attached). One thread. The per_link counter is the time per
// continuation (seconds; the report shows nanoseconds).
//
// Peer: boost_future, .then(launch::sync) chains (each link is a new shared state, like anydefer's).
#include <benchmark/benchmark.h>

#include <anydefer/deferred.hpp>

#include "bench_env.hpp"
#include "boost_future.hpp"

namespace {

const auto kPerLink = benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert;

void set_counters(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["per_link"] = benchmark::Counter(static_cast<double>(state.range(0)), kPerLink);
}

void chain_before_fire_anydefer(benchmark::State& state) {
  const auto links = state.range(0);
  for (auto _ : state) {
    anydefer::deferred<int> head;
    anydefer::deferred<int> tail = head;
    for (std::int64_t i = 0; i < links; ++i) tail = tail.add_callback([](int v) { return v + 1; });
    head.callback(0);
    benchmark::DoNotOptimize(tail.get());
  }
  set_counters(state);
}

void chain_after_fire_anydefer(benchmark::State& state) {
  const auto links = state.range(0);
  for (auto _ : state) {
    anydefer::deferred<int> head;
    head.callback(0);
    anydefer::deferred<int> tail = head;
    for (std::int64_t i = 0; i < links; ++i) tail = tail.add_callback([](int v) { return v + 1; });
    benchmark::DoNotOptimize(tail.get());
  }
  set_counters(state);
}

void chain_before_fire_boost(benchmark::State& state) {
  const auto links = state.range(0);
  for (auto _ : state) {
    boost::promise<int> head;
    boost::future<int> tail = head.get_future();
    for (std::int64_t i = 0; i < links; ++i) {
      tail = tail.then(boost::launch::sync, [](boost::future<int> f) { return f.get() + 1; });
    }
    head.set_value(0);
    benchmark::DoNotOptimize(tail.get());
  }
  set_counters(state);
}

void chain_after_fire_boost(benchmark::State& state) {
  const auto links = state.range(0);
  for (auto _ : state) {
    boost::promise<int> head;
    head.set_value(0);
    boost::future<int> tail = head.get_future();
    for (std::int64_t i = 0; i < links; ++i) {
      tail = tail.then(boost::launch::sync, [](boost::future<int> f) { return f.get() + 1; });
    }
    benchmark::DoNotOptimize(tail.get());
  }
  set_counters(state);
}

BENCHMARK(chain_before_fire_anydefer)
    ->Name("BM_ChainBeforeFire/anydefer")
    ->Apply(bench::fixed_iterations_from_env)
    ->Arg(1)
    ->Arg(4)
    ->Arg(100);
BENCHMARK(chain_before_fire_boost)
    ->Name("BM_ChainBeforeFire/boost_future")
    ->Apply(bench::fixed_iterations_from_env)
    ->Arg(1)
    ->Arg(4)
    ->Arg(100);
BENCHMARK(chain_after_fire_anydefer)
    ->Name("BM_ChainAfterFire/anydefer")
    ->Apply(bench::fixed_iterations_from_env)
    ->Arg(1)
    ->Arg(4)
    ->Arg(100);
BENCHMARK(chain_after_fire_boost)
    ->Name("BM_ChainAfterFire/boost_future")
    ->Apply(bench::fixed_iterations_from_env)
    ->Arg(1)
    ->Arg(4)
    ->Arg(100);

}  // namespace
