// B9: what a pending result costs in memory.
//
//   BM_PendingDeferred   one result object with one continuation attached and not fired (anydefer: a
//                        deferred<int> plus add_callback; boost: promise + .then; std: promise + future, which
//                        has no continuations). Counted with a replacement operator new: allocs_per_op and
//                        bytes_per_op (bytes requested), and the same divided by the result objects involved
//                        (allocs_per_deferred, bytes_per_deferred: anydefer and boost make two, the root and the
//                        continuation's; std makes one). /bare is the root alone.
//   BM_PendingRss1M      1e6 of those alive at once: heap bytes in use per op, malloc's own overhead included
//                        (mallinfo2, exact: heap_bytes_per_op), and resident memory growth (VmRSS from
//                        /proc/self/status, after malloc_trim) per op, minus the handles' own vector storage
//                        (rss_bytes_per_op; approximate, the allocator may reuse pages it kept from earlier runs).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstdint>
#include <fstream>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include <anydefer/deferred.hpp>

#include "alloc_counter.hpp"
#include "boost_future.hpp"

namespace {

constexpr std::size_t kRssCount = 1'000'000;

std::int64_t vm_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmRSS:  1234 kB"
  }
  return -1;
}

// --- BM_PendingDeferred --------------------------------------------------------------------------------------
// Only the creation of the pending pair is counted; each pair is then fired and read, so that nothing is left
// pending (an unfired anydefer chain whose handles all go fails as broken and reports it).
// anydefer's per-thread state cache is off for the counter's lifetime, so each state is a real heap allocation
// (what a pending deferred costs when no freed state can be reused).
class creation_counter {
 public:
  void begin() noexcept { scope_.emplace(); }
  void end() noexcept {
    allocations_ += static_cast<std::uint64_t>(scope_->allocations());
    bytes_ += static_cast<std::uint64_t>(scope_->bytes());
    scope_.reset();
  }
  void report(benchmark::State& state, double deferreds_per_op) const {
    const double ops = static_cast<double>(state.iterations());
    const double allocs = static_cast<double>(allocations_) / ops;
    const double bytes = static_cast<double>(bytes_) / ops;
    state.counters["allocs_per_op"] = allocs;
    state.counters["bytes_per_op"] = bytes;
    state.counters["allocs_per_deferred"] = allocs / deferreds_per_op;
    state.counters["bytes_per_deferred"] = bytes / deferreds_per_op;
  }

 private:
  std::optional<bench::alloc_scope> scope_;  // state cache off from begin() to end()
  std::uint64_t allocations_ = 0;
  std::uint64_t bytes_ = 0;
};

void pending_anydefer(benchmark::State& state) {
  creation_counter counter;
  for (auto _ : state) {
    counter.begin();
    anydefer::deferred<int> d;
    auto next = d.add_callback([](int v) { return v + 1; });
    counter.end();
    benchmark::DoNotOptimize(d);
    d.callback(1);
    benchmark::DoNotOptimize(next.get());
  }
  counter.report(state, 2);
}

void pending_anydefer_bare(benchmark::State& state) {
  creation_counter counter;
  for (auto _ : state) {
    counter.begin();
    anydefer::deferred<int> d;
    counter.end();
    benchmark::DoNotOptimize(d);
    d.callback(1);
    benchmark::DoNotOptimize(d.get());
  }
  counter.report(state, 1);
}

void pending_std_future(benchmark::State& state) {
  creation_counter counter;
  for (auto _ : state) {
    counter.begin();
    std::promise<int> p;
    std::future<int> f = p.get_future();
    counter.end();
    benchmark::DoNotOptimize(p);
    p.set_value(1);
    benchmark::DoNotOptimize(f.get());
  }
  counter.report(state, 1);
}

void pending_boost_future(benchmark::State& state) {
  creation_counter counter;
  for (auto _ : state) {
    counter.begin();
    boost::promise<int> p;
    boost::future<int> next =
        p.get_future().then(boost::launch::sync, [](boost::future<int> f) { return f.get() + 1; });
    counter.end();
    benchmark::DoNotOptimize(p);
    p.set_value(1);
    benchmark::DoNotOptimize(next.get());
  }
  counter.report(state, 2);
}

// --- BM_PendingRss1M -----------------------------------------------------------------------------------------
// Makes kRssCount pending pairs with make(firsts, seconds) into two reserved vectors and reports the growth of
// the resident set per pair, less the vectors' own bytes (the handles, which a user stores somewhere anyway).
// Then fires every pair (untimed for memory purposes), so nothing is destroyed pending.
template <class First, class Second, class Make, class Fire>
void rss_growth(benchmark::State& state, Make make, Fire fire) {
  for (auto _ : state) {
    std::vector<First> firsts;
    std::vector<Second> seconds;
    firsts.reserve(kRssCount);
    seconds.reserve(kRssCount);
    malloc_trim(0);
    const std::int64_t before = vm_rss_bytes();
    const std::size_t heap_before = mallinfo2().uordblks;
    for (std::size_t i = 0; i < kRssCount; ++i) make(firsts, seconds);
    const std::size_t heap_after = mallinfo2().uordblks;
    const std::int64_t after = vm_rss_bytes();
    state.counters["heap_bytes_per_op"] = static_cast<double>(heap_after - heap_before) / kRssCount;
    const double handles = static_cast<double>(kRssCount * (sizeof(First) + sizeof(Second)));
    state.counters["rss_bytes_per_op"] = (static_cast<double>(after - before) - handles) / kRssCount;
    state.counters["rss_growth_mib"] = static_cast<double>(after - before) / (1024.0 * 1024.0);
    benchmark::DoNotOptimize(firsts.data());
    benchmark::DoNotOptimize(seconds.data());
    for (std::size_t i = 0; i < kRssCount; ++i) fire(firsts[i], seconds[i]);
  }
}

void rss_anydefer(benchmark::State& state) {
  rss_growth<anydefer::deferred<int>, anydefer::deferred<int>>(
      state,
      [](auto& ds, auto& nexts) {
        ds.emplace_back();
        nexts.push_back(ds.back().add_callback([](int v) { return v + 1; }));
      },
      [](auto& d, auto& next) {
        d.callback(1);
        benchmark::DoNotOptimize(next.get());
      });
}

void rss_std_future(benchmark::State& state) {
  rss_growth<std::promise<int>, std::future<int>>(
      state,
      [](auto& ps, auto& fs) {
        ps.emplace_back();
        fs.push_back(ps.back().get_future());
      },
      [](auto& p, auto& f) {
        p.set_value(1);
        benchmark::DoNotOptimize(f.get());
      });
}

void rss_boost_future(benchmark::State& state) {
  rss_growth<boost::promise<int>, boost::future<int>>(
      state,
      [](auto& ps, auto& fs) {
        ps.emplace_back();
        fs.push_back(
            ps.back().get_future().then(boost::launch::sync, [](boost::future<int> f) { return f.get() + 1; }));
      },
      [](auto& p, auto& next) {
        p.set_value(1);
        benchmark::DoNotOptimize(next.get());
      });
}

BENCHMARK(pending_anydefer)->Name("BM_PendingDeferred/anydefer");
BENCHMARK(pending_anydefer_bare)->Name("BM_PendingDeferred/anydefer_bare");
BENCHMARK(pending_std_future)->Name("BM_PendingDeferred/std_future");
BENCHMARK(pending_boost_future)->Name("BM_PendingDeferred/boost_future");
BENCHMARK(rss_anydefer)->Name("BM_PendingRss1M/anydefer")->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(rss_std_future)->Name("BM_PendingRss1M/std_future")->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(rss_boost_future)->Name("BM_PendingRss1M/boost_future")->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
