// B6: skynet. A 10-ary tree of tasks with 1e6 leaves (1,111,111 tasks in all); each leaf returns its number,
// each inner node sums its ten children. The answer is 499999500000.
//
//   anydefer  each child is submit()ed to the thread_pool; an inner node is a coroutine that co_awaits its ten
//             children (suspending, never blocking a worker); a leaf is a plain task returning its number.
//   anydefer_fork  each child (leaves too) is a coroutine started with co_await anydefer::fork(pool, ...): it runs
//             at once and the rest of its parent is offered to the other workers (continuation stealing); the
//             parent then co_awaits the ten deferreds.
//   onetbb    tbb::task_group per inner node: run() each child, wait() (TBB's wait runs other tasks).
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <optional>

#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#include <anydefer/coroutine.hpp>
#include <anydefer/deferred.hpp>
#include <anydefer/executors/thread_pool.hpp>

namespace {

constexpr std::int64_t kLeaves = 1'000'000;
constexpr std::int64_t kAnswer = kLeaves * (kLeaves - 1) / 2;
constexpr std::int64_t kTasks = 1'111'111;

anydefer::deferred<std::int64_t> skynet(anydefer::thread_pool& pool, std::int64_t num, std::int64_t size) {
  const std::int64_t child_size = size / 10;
  std::array<std::optional<anydefer::deferred<std::int64_t>>, 10> children;
  for (std::int64_t i = 0; i < 10; ++i) {
    const std::int64_t child_num = num + i * child_size;
    if (child_size == 1) {
      children[static_cast<std::size_t>(i)].emplace(anydefer::submit(pool, [child_num] { return child_num; }));
    } else {
      children[static_cast<std::size_t>(i)].emplace(
          anydefer::submit(pool, [&pool, child_num, child_size] { return skynet(pool, child_num, child_size); }));
    }
  }
  std::int64_t sum = 0;
  for (auto& child : children) sum += co_await *child;
  co_return sum;
}

anydefer::deferred<std::int64_t> skynet_fork(anydefer::thread_pool& pool, std::int64_t num, std::int64_t size) {
  if (size == 1) co_return num;
  const std::int64_t child_size = size / 10;
  std::array<std::optional<anydefer::deferred<std::int64_t>>, 10> children;
  for (std::int64_t i = 0; i < 10; ++i) {
    children[static_cast<std::size_t>(i)].emplace(
        co_await anydefer::fork(pool, skynet_fork, pool, num + i * child_size, child_size));
  }
  std::int64_t sum = 0;
  for (auto& child : children) sum += co_await std::move(*child);
  co_return sum;
}

void skynet_anydefer(benchmark::State& state) {
  anydefer::thread_pool pool;
  for (auto _ : state) {
    auto root = anydefer::submit(pool, [&pool] { return skynet(pool, 0, kLeaves); });
    const std::int64_t sum = root.get();
    benchmark::DoNotOptimize(sum);
    if (sum != kAnswer) state.SkipWithError("wrong skynet sum");
  }
  state.SetItemsProcessed(state.iterations() * kTasks);
  state.counters["workers"] = static_cast<double>(pool.size());
}

void skynet_anydefer_fork(benchmark::State& state) {
  anydefer::thread_pool pool;
  for (auto _ : state) {
    auto root = anydefer::submit(pool, [&pool] { return skynet_fork(pool, 0, kLeaves); });
    const std::int64_t sum = root.get();
    benchmark::DoNotOptimize(sum);
    if (sum != kAnswer) state.SkipWithError("wrong skynet sum");
  }
  state.SetItemsProcessed(state.iterations() * kTasks);
  state.counters["workers"] = static_cast<double>(pool.size());
}

std::int64_t skynet_tbb(std::int64_t num, std::int64_t size) {
  if (size == 1) return num;
  const std::int64_t child_size = size / 10;
  std::array<std::int64_t, 10> results{};
  tbb::task_group group;
  for (std::int64_t i = 0; i < 10; ++i) {
    group.run([&results, i, num, child_size] {
      results[static_cast<std::size_t>(i)] = skynet_tbb(num + i * child_size, child_size);
    });
  }
  group.wait();
  std::int64_t sum = 0;
  for (std::int64_t r : results) sum += r;
  return sum;
}

void skynet_onetbb(benchmark::State& state) {
  for (auto _ : state) {
    const std::int64_t sum = skynet_tbb(0, kLeaves);
    benchmark::DoNotOptimize(sum);
    if (sum != kAnswer) state.SkipWithError("wrong skynet sum");
  }
  state.SetItemsProcessed(state.iterations() * kTasks);
  state.counters["workers"] = static_cast<double>(tbb::this_task_arena::max_concurrency());
}

BENCHMARK(skynet_anydefer)->Name("BM_Skynet/anydefer")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(skynet_anydefer_fork)->Name("BM_Skynet/anydefer_fork")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(skynet_onetbb)->Name("BM_Skynet/onetbb")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
