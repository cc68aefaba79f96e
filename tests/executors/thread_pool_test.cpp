// Tests for thread_pool: scheduling, stealing, parking, stop semantics and the worker wait policy.
#include <gtest/gtest.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "anydefer/coroutine.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/executors/thread_pool.hpp"
#include "counting_task.hpp"

namespace {

using anydefer_test::counting_task;
using anydefer_test::rejected_as_stopped;

using namespace std::chrono_literals;

// The cheapest possible task for the stress tests: bumps its own counter and a shared one.
struct tick_task : anydefer::task {
  tick_task() : task(&ops) {}
  std::atomic<int> runs{0};
  std::atomic<int> rejects{0};
  std::atomic<long>* done = nullptr;

  static void run_it(task& t) noexcept {
    auto& self = static_cast<tick_task&>(t);
    self.runs.fetch_add(1, std::memory_order_relaxed);
    self.done->fetch_add(1, std::memory_order_release);
  }
  static void reject_it(task& t, std::exception_ptr) noexcept {
    auto& self = static_cast<tick_task&>(t);
    self.rejects.fetch_add(1, std::memory_order_relaxed);
    self.done->fetch_add(1, std::memory_order_release);
  }
  static constexpr operations ops{&run_it, &reject_it};
};

double stress_scale() {
  const char* s = std::getenv("ANYDEFER_STRESS_SCALE");
  const double v = s != nullptr ? std::atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}

std::size_t scaled(std::size_t n) {
  return std::max<std::size_t>(1, static_cast<std::size_t>(static_cast<double>(n) * stress_scale()));
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(50us);
  }
  return true;
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

TEST(ThreadPoolTest, SizeIsAtLeastOneAndDefaultsToHardwareConcurrency) {
  anydefer::thread_pool one(1);
  EXPECT_EQ(one.size(), 1u);
  anydefer::thread_pool dflt;
  EXPECT_EQ(dflt.size(), std::max(1u, std::thread::hardware_concurrency()));
}

TEST(ThreadPoolTest, ExecuteRunsTaskOnAWorkerThread) {
  anydefer::thread_pool pool(2);
  std::atomic<bool> on_worker{false};
  std::atomic<long> index{-1};
  counting_task t([&] {
    on_worker = pool.running_in_this_thread();
    index = static_cast<long>(pool.current_worker_index().value_or(99));
  });
  pool.execute(t);
  ASSERT_TRUE(eventually([&] { return t.runs.load() == 1; }));
  EXPECT_TRUE(on_worker.load());
  EXPECT_LT(index.load(), 2);
  EXPECT_FALSE(pool.running_in_this_thread());
  EXPECT_FALSE(pool.current_worker_index().has_value());
}

TEST(ThreadPoolTest, ExecuteAfterStopRejectsTaskInline) {
  anydefer::thread_pool pool(2);
  pool.stop();
  counting_task t;
  pool.execute(t);
  EXPECT_TRUE(rejected_as_stopped(t));
  EXPECT_EQ(t.runs.load(), 0);
}

TEST(ThreadPoolTest, TryExecuteQueuesLikeExecuteAndAfterStopRefusesWithoutTouchingTheTask) {
  anydefer::thread_pool pool(2);
  counting_task queued;
  ASSERT_TRUE(pool.try_execute(queued));
  ASSERT_TRUE(eventually([&] { return queued.runs.load() == 1; }));
  pool.stop();
  counting_task refused;
  EXPECT_FALSE(pool.try_execute(refused));
  EXPECT_EQ(refused.runs.load(), 0);
  EXPECT_EQ(refused.rejects.load(), 0);  // the caller settles it: execute() would reject it now
  pool.execute(refused);
  EXPECT_TRUE(rejected_as_stopped(refused));
}

TEST(ThreadPoolTest, TryExecuteFromAWorkerQueuesOnItsDequeWithoutRunningItInline) {
  anydefer::thread_pool pool(1);  // one worker: the child can only run once the parent has returned
  counting_task child;
  std::atomic<int> child_runs_seen_by_parent{-1};
  std::atomic<bool> queued{false};
  counting_task parent([&] {
    queued = pool.try_execute(child);
    child_runs_seen_by_parent = child.runs.load();
  });
  pool.execute(parent);
  ASSERT_TRUE(eventually([&] { return child.runs.load() == 1; }));
  EXPECT_TRUE(queued.load());
  EXPECT_EQ(child_runs_seen_by_parent.load(), 0);
}

TEST(ThreadPoolTest, StopRunsEverythingAlreadyAccepted) {
  anydefer::thread_pool pool(2);
  std::atomic<long> done{0};
  std::vector<tick_task> tasks(scaled(20000));
  for (auto& t : tasks) t.done = &done;
  for (auto& t : tasks) pool.execute(t);
  pool.stop();
  EXPECT_EQ(done.load(), static_cast<long>(tasks.size()));
  for (auto& t : tasks) ASSERT_EQ(t.runs.load(), 1);
}

TEST(ThreadPoolTest, MillionOutsideTasksRunExactlyOnceAcrossIdleBursts) {
  const std::size_t total = scaled(1'000'000);
  const std::size_t bursts = 100;
  const std::size_t per_burst = std::max<std::size_t>(1, total / bursts);
  anydefer::thread_pool pool(2);
  std::vector<tick_task> tasks(per_burst);
  std::atomic<long> done{0};
  for (auto& t : tasks) t.done = &done;
  for (std::size_t b = 0; b < bursts; ++b) {
    done.store(0);
    for (auto& t : tasks) t.runs.store(0, std::memory_order_relaxed);
    for (auto& t : tasks) pool.execute(t);
    ASSERT_TRUE(eventually([&] { return done.load(std::memory_order_acquire) == static_cast<long>(per_burst); }))
        << "burst " << b << " ran " << done.load() << " of " << per_burst;
    for (auto& t : tasks) ASSERT_EQ(t.runs.load(std::memory_order_relaxed), 1);
    if (b % 10 == 0) std::this_thread::sleep_for(2ms);  // let the workers park: the next burst must wake them
  }
}

// Holds its worker until released. Gives up after 20 s, so that a failing test cannot hang the run.
struct blocking_task : anydefer::task {
  blocking_task() : task(&ops) {}
  std::atomic<bool> release{false};
  std::atomic<bool> finished{false};

  static void run_it(task& t) noexcept {
    auto& self = static_cast<blocking_task&>(t);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!self.release.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(50us);
    }
    self.finished.store(true, std::memory_order_release);
  }
  static void reject_it(task& t, std::exception_ptr) noexcept {
    static_cast<blocking_task&>(t).finished.store(true, std::memory_order_release);
  }
  static constexpr operations ops{&run_it, &reject_it};
};

// Workers take outside tasks in batches: tasks stuck at the front of one must not hold back the rest of it while
// other workers are free. Each round posts `blocking` blocking tasks, then 7 quick ones, to a pool whose workers
// are parked.
void quick_tasks_run_beside_blocked_workers(std::size_t workers, std::size_t blocking) {
  anydefer::thread_pool pool(workers);
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE(round);
    std::this_thread::sleep_for(2ms);  // let the workers park: the first to wake may take the whole burst
    std::vector<blocking_task> blockers(blocking);
    std::vector<tick_task> ticks(7);
    std::atomic<long> done{0};
    for (auto& b : blockers) pool.execute(b);
    for (auto& t : ticks) {
      t.done = &done;
      pool.execute(t);
    }
    const bool others_ran = eventually([&] { return done.load(std::memory_order_acquire) == 7; }, 10s);
    const long ran_while_blocked = done.load();
    for (auto& b : blockers) b.release.store(true, std::memory_order_release);
    ASSERT_TRUE(eventually([&] {  // nothing may still be queued when the tasks go out of scope
      return done.load(std::memory_order_acquire) == 7 &&
             std::all_of(blockers.begin(), blockers.end(),
                         [](const blocking_task& b) { return b.finished.load(std::memory_order_acquire); });
    }));
    ASSERT_TRUE(others_ran) << ran_while_blocked << " of 7 ran while " << blocking << " tasks blocked";
    for (auto& t : ticks) ASSERT_EQ(t.runs.load(), 1);
  }
}

TEST(ThreadPoolTest, OutsideTasksTakenTogetherWithABlockingTaskRunOnTheOtherWorker) {
  quick_tasks_run_beside_blocked_workers(2, 1);
}

// More workers than one wake-up reaches: those that parked while a batch was being taken must hear of it from
// the thieves.
TEST(ThreadPoolTest, OutsideTasksTakenTogetherWithBlockingTasksReachEveryFreeWorker) {
  quick_tasks_run_beside_blocked_workers(4, 2);
}

// A worker busy with a long task queues one continuation on its own deque and then blocks (outside the pool's
// wait policy, as a std::future would) until that continuation has run. The other worker is parked: it must be
// woken to take it, or the two wait on each other.
struct blocking_parent_task : anydefer::task {
  explicit blocking_parent_task(anydefer::thread_pool& p)
      : task(&ops), pool(p), child_ran_future(child_ran.get_future()) {}
  struct child_task : anydefer::task {
    explicit child_task(std::promise<void>& done) : task(&child_ops), ran(done) {}
    std::promise<void>& ran;
    static void run_it(task& t) noexcept { static_cast<child_task&>(t).ran.set_value(); }
    static void reject_it(task&, std::exception_ptr) noexcept {}
    static constexpr operations child_ops{&run_it, &reject_it};
  };

  anydefer::thread_pool& pool;
  std::promise<void> child_ran;
  std::future<void> child_ran_future;
  child_task child{child_ran};
  std::promise<bool> outcome;

  static void run_it(task& t) noexcept {
    auto& self = static_cast<blocking_parent_task&>(t);
    std::this_thread::sleep_for(30ms);  // long enough for the other worker to have parked
    self.pool.execute(self.child);      // from a worker: onto its own deque
    self.outcome.set_value(self.child_ran_future.wait_for(5s) == std::future_status::ready);
  }
  static void reject_it(task&, std::exception_ptr) noexcept {}
  static constexpr operations ops{&run_it, &reject_it};
};

TEST(ThreadPoolTest, TaskQueuedByABusyWorkerIsTakenByAParkedWorker) {
  anydefer::thread_pool pool(2);
  std::this_thread::sleep_for(50ms);  // both workers park
  blocking_parent_task parent(pool);
  std::future<bool> child_ran_elsewhere = parent.outcome.get_future();
  pool.execute(parent);
  EXPECT_TRUE(child_ran_elsewhere.get()) << "the parked worker never took the queued task";
  pool.stop();
}

// A fork-join tree node: an inner node executes its two children onto the pool from its worker thread.
struct tree_node : anydefer::task {
  tree_node(anydefer::thread_pool& p, int d, std::atomic<long>& l) : task(&ops), pool(p), depth(d), leaves(l) {}
  anydefer::thread_pool& pool;
  int depth;
  std::atomic<long>& leaves;

  static void run_it(task& t) noexcept {
    auto* self = static_cast<tree_node*>(&t);
    if (self->depth == 0) {
      self->leaves.fetch_add(1, std::memory_order_release);
    } else {
      for (int i = 0; i < 2; ++i) self->pool.execute(*new tree_node(self->pool, self->depth - 1, self->leaves));
    }
    delete self;
  }
  static void reject_it(task& t, std::exception_ptr) noexcept { delete static_cast<tree_node*>(&t); }
  static constexpr operations ops{&run_it, &reject_it};
};

TEST(ThreadPoolTest, ForkJoinTreeSpawnedFromWorkersReachesEveryLeaf) {
  anydefer::thread_pool pool(2);
  const int depth = stress_scale() < 0.5 ? 12 : 15;
  std::atomic<long> leaves{0};
  pool.execute(*new tree_node(pool, depth, leaves));
  ASSERT_TRUE(eventually([&] { return leaves.load(std::memory_order_acquire) == (1L << depth); }));
  pool.stop();
  EXPECT_EQ(leaves.load(), 1L << depth);
}

TEST(ThreadPoolTest, StopWhileProducersPostRunsOrRejectsEveryTaskExactlyOnce) {
  constexpr int kProducers = 3;
  const std::size_t per_producer = scaled(30000);
  std::vector<std::vector<tick_task>> tasks(kProducers);
  std::atomic<long> done{0};
  for (auto& v : tasks) {
    v = std::vector<tick_task>(per_producer);
    for (auto& t : v) t.done = &done;
  }
  {
    anydefer::thread_pool pool(2);
    std::atomic<int> started{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        started.fetch_add(1);
        for (auto& t : tasks[p]) pool.execute(t);
      });
    }
    while (started.load() < kProducers) std::this_thread::yield();
    std::this_thread::sleep_for(1ms);
    pool.stop();
    for (auto& th : producers) th.join();
  }
  long ran = 0;
  long rejected = 0;
  for (auto& v : tasks) {
    for (auto& t : v) {
      ASSERT_EQ(t.runs.load() + t.rejects.load(), 1);
      ran += t.runs.load();
      rejected += t.rejects.load();
    }
  }
  EXPECT_EQ(ran + rejected, static_cast<long>(kProducers * per_producer));
  EXPECT_EQ(done.load(), ran + rejected);
}

TEST(ThreadPoolTest, TaskExecutedFromWorkerWhileDrainingStillRuns) {
  anydefer::thread_pool pool(2);
  counting_task child;
  std::atomic<bool> parent_started{false};
  counting_task parent([&] {
    parent_started = true;
    std::this_thread::sleep_for(20ms);  // stop() is called meanwhile
    pool.execute(child);
  });
  pool.execute(parent);
  while (!parent_started.load()) std::this_thread::yield();
  pool.stop();
  EXPECT_EQ(parent.runs.load(), 1);
  EXPECT_EQ(child.runs.load(), 1);
  EXPECT_EQ(child.rejects.load(), 0);
}

TEST(ThreadPoolTest, StopFromAWorkerSignalsWithoutDeadlock) {
  auto pool = std::make_unique<anydefer::thread_pool>(2);
  counting_task stopper([&] { pool->stop(); });
  pool->execute(stopper);
  ASSERT_TRUE(eventually([&] { return stopper.runs.load() == 1; }));
  counting_task late;
  pool->execute(late);
  EXPECT_TRUE(rejected_as_stopped(late));
  pool.reset();  // joins the workers
}

TEST(ThreadPoolTest, ConcurrentStopCallsAllReturnAfterTheDrain) {
  anydefer::thread_pool pool(2);
  std::atomic<long> done{0};
  std::vector<tick_task> tasks(scaled(5000));
  for (auto& t : tasks) t.done = &done;
  for (auto& t : tasks) pool.execute(t);
  std::thread a([&] { pool.stop(); });
  std::thread b([&] { pool.stop(); });
  a.join();
  b.join();
  EXPECT_EQ(done.load(), static_cast<long>(tasks.size()));
}

TEST(ThreadPoolTest, WorkerWaitPolicyRunsOwnTaskAndReturnsFalseWhenIdle) {
  anydefer::thread_pool pool(1);
  std::atomic<int> helped{-1};
  std::atomic<int> idle{-1};
  counting_task inner;
  counting_task outer([&] {
    anydefer::wait_policy* policy = anydefer::thread_wait_policy();
    if (policy == nullptr) return;
    pool.execute(inner);  // onto this worker's own deque
    helped = policy->before_block() ? 1 : 0;
    idle = policy->before_block() ? 1 : 0;
  });
  pool.execute(outer);
  ASSERT_TRUE(eventually([&] { return outer.runs.load() == 1; }));
  EXPECT_EQ(helped.load(), 1);
  EXPECT_EQ(idle.load(), 0);
  EXPECT_EQ(inner.runs.load(), 1);
}

// Each helper pushes a successor onto its worker's deque, then "waits": the wait policy runs the successor
// nested inside this frame, which does the same... until the depth bound makes before_block() return false.
struct helper_task : anydefer::task {
  struct shared {
    anydefer::thread_pool* pool;
    std::atomic<int> spawned{0};
    std::atomic<int> finished{0};
    std::atomic<int> max_depth{0};
    std::atomic<int> refused_at_depth{-1};
    int depth = 0;  // only touched on the single worker thread
  };
  explicit helper_task(shared& s) : task(&ops), state(s) {}
  shared& state;

  static void run_it(task& t) noexcept {
    auto* self = static_cast<helper_task*>(&t);
    shared& s = self->state;
    const int depth = ++s.depth;
    if (depth > s.max_depth.load()) s.max_depth.store(depth);
    if (s.spawned.fetch_add(1) < 300) s.pool->execute(*new helper_task(s));
    if (!anydefer::thread_wait_policy()->before_block() && s.refused_at_depth.load() < 0) {
      s.refused_at_depth.store(depth);
    }
    --s.depth;
    delete self;
    s.finished.fetch_add(1, std::memory_order_release);
  }
  static void reject_it(task& t, std::exception_ptr) noexcept { delete static_cast<helper_task*>(&t); }
  static constexpr operations ops{&run_it, &reject_it};
};

TEST(ThreadPoolTest, WaitPolicyHelpNestingIsBounded) {
  anydefer::thread_pool pool(1);
  helper_task::shared s;
  s.pool = &pool;
  pool.execute(*new helper_task(s));
  // 301 helpers are spawned in all (the first plus 300 successors); every one runs exactly once.
  ASSERT_TRUE(eventually([&] { return s.finished.load(std::memory_order_acquire) == 301; }));
  EXPECT_EQ(s.max_depth.load(), anydefer::thread_pool::max_help_depth + 1);
  EXPECT_EQ(s.refused_at_depth.load(), anydefer::thread_pool::max_help_depth + 1);
}

TEST(ThreadPoolTest, IdlePoolUsesAlmostNoCpu) {
  anydefer::thread_pool pool(2);
  counting_task warmup;
  pool.execute(warmup);
  ASSERT_TRUE(eventually([&] { return warmup.runs.load() == 1; }));
  std::this_thread::sleep_for(20ms);  // past the spinning phase
  const double before = process_cpu_seconds();
  std::this_thread::sleep_for(300ms);
  const double used = process_cpu_seconds() - before;
  EXPECT_LT(used, 0.03) << "an idle pool of 2 workers used " << used << " s of CPU in 0.3 s";
}

}  // namespace

namespace {

// fork() on the pool: a child that blocks (get() on a worker helps with pool work while it waits) must not run
// its own caller's continuation, which sits on this worker's deque, nested above itself.
anydefer::deferred<int> blocking_child(anydefer::deferred<int> gate, std::atomic<bool>& child_blocked) {
  child_blocked = true;
  const int v = gate.get();
  child_blocked = false;
  co_return v;
}

anydefer::deferred<int> forking_parent(anydefer::thread_pool& pool, anydefer::deferred<int> gate,
                                       std::atomic<bool>& child_blocked, bool& parent_ran_while_child_blocked) {
  anydefer::deferred<int> left = co_await anydefer::fork(pool, blocking_child, gate, child_blocked);
  parent_ran_while_child_blocked = child_blocked.load();
  co_return co_await std::move(left);
}

TEST(ThreadPoolForkTest, ABlockedChildDoesNotRunItsCallersContinuationNestedAboveItself) {
  anydefer::thread_pool pool(1);  // no thief: only the blocked worker itself could take the continuation
  anydefer::deferred<int> gate;
  std::atomic<bool> child_blocked{false};
  bool parent_ran_while_child_blocked = false;
  anydefer::deferred<int> out =
      anydefer::submit(pool, [&] { return forking_parent(pool, gate, child_blocked, parent_ran_while_child_blocked); });
  while (!child_blocked.load()) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);  // the child's wait helps with whatever it may take meanwhile
  gate.callback(7);
  EXPECT_EQ(out.get(), 7);
  EXPECT_FALSE(parent_ran_while_child_blocked);
}

}  // namespace
