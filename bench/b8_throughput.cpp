// B8: throughput of work posted from outside (external submission). Per iteration, P producer threads (the
// benchmark thread and P-1 helpers) post kTasks tiny tasks in total; each task counts itself done; the
// iteration ends when all ran. Time per task covers posting and running (items_per_second is the throughput).
//
//   anydefer_execute  thread_pool::execute(task&) with caller-owned task nodes (the executor alone)
//   anydefer_execute_symmetric  the same with the asymmetric fences turned off (both sides of each wake-up check
//                     pay a seq_cst fence): the A/B that shows what membarrier buys a poster
//   anydefer_submit   anydefer::submit(pool, f): a deferred per task, dropped (the everyday API)
//   raw_moodycamel    moodycamel::ConcurrentQueue enqueue, one consumer thread spinning on try_dequeue
//   raw_moodycamel_pool_sized  the same with as many consumer threads as the pool has workers
//   raw_moodycamel_new  raw_moodycamel with each task made by `new` for its post and deleted by the consumer after
//                     it ran: the floor of anything that makes an object per task on one thread and ends it on
//                     another (a deferred per submit() does), so anydefer_submit is judged beside it too
//   onetbb_enqueue    tbb::task_arena::enqueue into an arena of the machine's hardware threads
//   asio_post         asio::io_context run by as many threads as the machine has, asio::post
// Consumers: the pool, the TBB arena and Asio get the machine's hardware threads; moodycamel gets one.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <anydefer/deferred.hpp>
#include <anydefer/detail/sync/asymmetric_fence.hpp>
#include <anydefer/executors/thread_pool.hpp>
#include <asio.hpp>

#include "bench_counter.hpp"

namespace {

constexpr std::int64_t kTasks = 1 << 16;

unsigned hardware_threads() { return std::max(1U, std::thread::hardware_concurrency()); }

// Runs post(i) for i in [0, kTasks), split across `producers` threads (the calling thread is one of them).
template <class Post>
void produce(int producers, Post post) {
  const std::int64_t per = kTasks / producers;
  std::vector<std::thread> helpers;
  helpers.reserve(static_cast<std::size_t>(producers - 1));
  for (int p = 1; p < producers; ++p) {
    helpers.emplace_back([&post, p, per] {
      for (std::int64_t i = p * per; i < (p + 1) * per; ++i) post(i);
    });
  }
  for (std::int64_t i = 0; i < per; ++i) post(i);
  for (auto& h : helpers) h.join();
}

void set_counters(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * kTasks);
  state.counters["per_task"] =
      benchmark::Counter(kTasks, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// The timed loop every peer shares: per iteration, kTasks calls of post(i) split over the producer threads, then
// a wait until `done` has counted them all.
template <class Post>
void measure(benchmark::State& state, const bench::sharded_counter& done, Post post) {
  const int producers = static_cast<int>(state.range(0));
  std::int64_t target = 0;
  for (auto _ : state) {
    produce(producers, post);
    target += kTasks;
    done.wait_for(target);
  }
  set_counters(state);
}

// A caller-owned task node that counts itself done.
class counting_task final : public anydefer::task {
 public:
  counting_task() noexcept : task(&ops_) {}
  bench::sharded_counter* counter = nullptr;

 private:
  static void run(task& t) noexcept { static_cast<counting_task&>(t).counter->add(); }
  static void reject(task&, std::exception_ptr) noexcept { std::terminate(); }
  static constexpr operations ops_{&run, &reject};
};

void throughput_anydefer_execute(benchmark::State& state) {
  anydefer::thread_pool pool;
  bench::sharded_counter done;
  std::vector<counting_task> tasks(kTasks);
  for (auto& t : tasks) t.counter = &done;
  measure(state, done, [&](std::int64_t i) { pool.execute(tasks[static_cast<std::size_t>(i)]); });
}

void throughput_anydefer_execute_symmetric(benchmark::State& state) {
  const bool was_on = anydefer::detail::set_asymmetric_fences_for_measurement(false);  // no executor exists now
  throughput_anydefer_execute(state);
  anydefer::detail::set_asymmetric_fences_for_measurement(was_on);  // the pool is gone again
}

void throughput_anydefer_submit(benchmark::State& state) {
  anydefer::thread_pool pool;
  bench::sharded_counter done;
  measure(state, done, [&](std::int64_t) { anydefer::submit(pool, [&done] { done.add(); }); });
}

// A counting task made for one post by `new`, deleted by the thread that runs it.
class heap_counting_task final : public anydefer::task {
 public:
  explicit heap_counting_task(bench::sharded_counter& counter) noexcept : task(&ops_), counter_(counter) {}

 private:
  static void run(task& t) noexcept {
    auto* self = static_cast<heap_counting_task*>(&t);
    self->counter_.add();
    delete self;
  }
  static void reject(task&, std::exception_ptr) noexcept { std::terminate(); }
  static constexpr operations ops_{&run, &reject};
  bench::sharded_counter& counter_;
};
// `consumers` threads spin on try_dequeue (yielding when idle, as the pool's workers do); with `heap_tasks` each
// post enqueues a new heap_counting_task instead of a caller-owned one.
void raw_moodycamel(benchmark::State& state, unsigned consumers, bool heap_tasks = false) {
  moodycamel::ConcurrentQueue<anydefer::task*> queue;
  std::atomic<bool> stop{false};
  bench::sharded_counter done;
  std::vector<counting_task> tasks(heap_tasks ? 0 : kTasks);
  for (auto& t : tasks) t.counter = &done;
  std::vector<std::thread> consumer_threads;
  for (unsigned c = 0; c < consumers; ++c) {
    consumer_threads.emplace_back([&] {
      moodycamel::ConsumerToken token(queue);
      anydefer::task* t = nullptr;
      int idle = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (queue.try_dequeue(token, t)) {
          t->run();
          idle = 0;
        } else if (++idle < 64) {
          bench::cpu_relax();
        } else {
          std::this_thread::yield();  // two cores: let the producer run
        }
      }
    });
  }
  if (heap_tasks) {
    measure(state, done, [&](std::int64_t) { queue.enqueue(new heap_counting_task(done)); });
  } else {
    measure(state, done, [&](std::int64_t i) { queue.enqueue(&tasks[static_cast<std::size_t>(i)]); });
  }
  stop.store(true, std::memory_order_relaxed);
  for (auto& c : consumer_threads) c.join();
}

void throughput_raw_moodycamel(benchmark::State& state) { raw_moodycamel(state, 1); }
void throughput_raw_moodycamel_pool_sized(benchmark::State& state) { raw_moodycamel(state, hardware_threads()); }
void throughput_raw_moodycamel_new(benchmark::State& state) { raw_moodycamel(state, 1, true); }

void throughput_onetbb_enqueue(benchmark::State& state) {
  const int threads = static_cast<int>(hardware_threads());
  // TBB's default allows hardware_threads - 1 workers; an arena with no slot reserved for this thread needs all.
  tbb::global_control allow(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads) + 1);
  tbb::task_arena arena(threads, 0);
  bench::sharded_counter done;
  measure(state, done, [&](std::int64_t) { arena.enqueue([&done] { done.add(); }); });
}

void throughput_asio_post(benchmark::State& state) {
  const unsigned threads = hardware_threads();
  asio::io_context io(static_cast<int>(threads));
  auto guard = asio::make_work_guard(io);
  std::vector<std::thread> runners;
  for (unsigned i = 0; i < threads; ++i) runners.emplace_back([&io] { io.run(); });
  bench::sharded_counter done;
  measure(state, done, [&](std::int64_t) { asio::post(io, [&done] { done.add(); }); });
  guard.reset();
  for (auto& r : runners) r.join();
}

void producers(benchmark::internal::Benchmark* b) {
  b->ArgName("producers")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(throughput_anydefer_execute)->Name("BM_ExternalPost/anydefer_execute")->Apply(producers);
BENCHMARK(throughput_anydefer_execute_symmetric)->Name("BM_ExternalPost/anydefer_execute_symmetric")->Apply(producers);
BENCHMARK(throughput_anydefer_submit)->Name("BM_ExternalPost/anydefer_submit")->Apply(producers);
BENCHMARK(throughput_raw_moodycamel)->Name("BM_ExternalPost/raw_moodycamel")->Apply(producers);
BENCHMARK(throughput_raw_moodycamel_pool_sized)->Name("BM_ExternalPost/raw_moodycamel_pool_sized")->Apply(producers);
BENCHMARK(throughput_raw_moodycamel_new)->Name("BM_ExternalPost/raw_moodycamel_new")->Apply(producers);
BENCHMARK(throughput_onetbb_enqueue)->Name("BM_ExternalPost/onetbb_enqueue")->Apply(producers);
BENCHMARK(throughput_asio_post)->Name("BM_ExternalPost/asio_post")->Apply(producers);

}  // namespace
