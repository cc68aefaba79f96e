// B1: the cost of one asynchronous result, created, continued once and fired, on one thread.
//
// Shape (per iteration): make the result object, attach one continuation (where the peer has them), fire it,
// read the continuation's result. Peers:
//   std_future   std::promise/std::future: set_value + get (no continuations in the standard)
//   boost_future boost::promise/future with .then(launch::sync), set_value, get
//   asio_post    asio::io_context: post one lambda, run() it, restart()
#include <benchmark/benchmark.h>

#include <future>

#include <anydefer/deferred.hpp>
#include <asio.hpp>

#include "bench_env.hpp"
#include "boost_future.hpp"

namespace {

void fire_continue_anydefer(benchmark::State& state) {
  for (auto _ : state) {
    anydefer::deferred<int> d;
    auto next = d.add_callback([](int v) { return v + 1; });
    d.callback(1);
    benchmark::DoNotOptimize(next.get());
  }
}

void fire_continue_std_future(benchmark::State& state) {
  for (auto _ : state) {
    std::promise<int> p;
    std::future<int> f = p.get_future();
    p.set_value(1);
    benchmark::DoNotOptimize(f.get() + 1);
  }
}

void fire_continue_boost_future(benchmark::State& state) {
  for (auto _ : state) {
    boost::promise<int> p;
    boost::future<int> next =
        p.get_future().then(boost::launch::sync, [](boost::future<int> f) { return f.get() + 1; });
    p.set_value(1);
    benchmark::DoNotOptimize(next.get());
  }
}

void fire_continue_asio_post(benchmark::State& state) {
  asio::io_context io(1);
  int result = 0;
  for (auto _ : state) {
    int value = 1;
    asio::post(io, [&result, value] { result = value + 1; });
    io.run();
    io.restart();
    benchmark::DoNotOptimize(result);
  }
}

BENCHMARK(fire_continue_anydefer)->Name("BM_FireContinue/anydefer")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(fire_continue_std_future)->Name("BM_FireContinue/std_future")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(fire_continue_boost_future)->Name("BM_FireContinue/boost_future")->Apply(bench::fixed_iterations_from_env);
BENCHMARK(fire_continue_asio_post)->Name("BM_FireContinue/asio_post")->Apply(bench::fixed_iterations_from_env);

}  // namespace
