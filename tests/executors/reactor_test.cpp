// Tests for reactor and reactor_group: ordering, timers, fairness quota, stop, pinning, the wait policy.
#include <gtest/gtest.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/executors/detail/shard_channels.hpp"
#include "anydefer/executors/reactor.hpp"
#include "anydefer/executors/reactor_group.hpp"
#include "counting_task.hpp"

namespace {

using anydefer_test::counting_task;
using anydefer_test::rejected_as_stopped;

using namespace std::chrono_literals;

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(100us);
  }
  return true;
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

TEST(ReactorTest, ExecuteFromOtherThreadsRunsEveryTaskOnTheReactorThread) {
  anydefer::reactor r;
  r.start();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<counting_task> tasks(kThreads * kPerThread);
  std::atomic<int> off_thread{0};
  for (auto& t : tasks) t.on_run = [&] { off_thread += !r.running_in_this_thread(); };
  std::vector<std::thread> producers;
  for (int p = 0; p < kThreads; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerThread; ++i) r.execute(tasks[p * kPerThread + i]);
    });
  }
  for (auto& th : producers) th.join();
  ASSERT_TRUE(eventually([&] {
    for (auto& t : tasks) {
      if (t.runs.load() != 1) return false;
    }
    return true;
  }));
  EXPECT_EQ(off_thread.load(), 0);
  EXPECT_FALSE(r.running_in_this_thread());
}

TEST(ReactorTest, TasksFromOneThreadRunInFifoOrder) {
  anydefer::reactor r;
  std::vector<int> order;
  std::vector<counting_task> tasks(200);
  for (int i = 0; i < 200; ++i) tasks[i].on_run = [&order, i] { order.push_back(i); };
  for (auto& t : tasks) r.execute(t);  // through the inbox
  while (order.size() < 200) r.run_once();
  std::vector<int> expected(200);
  for (int i = 0; i < 200; ++i) expected[i] = i;
  EXPECT_EQ(order, expected);
}

TEST(ReactorTest, TasksExecutedOnTheLoopThreadRunInFifoOrder) {
  anydefer::reactor r;
  std::vector<int> order;
  counting_task a([&] { order.push_back(1); });
  counting_task b([&] { order.push_back(2); });
  counting_task c([&] { order.push_back(3); });
  counting_task parent([&] {
    r.execute(a);
    r.execute(b);
    r.execute(c);
  });
  r.execute(parent);
  while (order.size() < 3) r.run_once();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(ReactorTest, RunOnceRunsAtMostQuotaTasks) {
  anydefer::reactor r(4);
  std::vector<counting_task> tasks(10);
  for (auto& t : tasks) r.execute(t);
  EXPECT_EQ(r.run_once(), 4u);
  EXPECT_EQ(r.run_once(), 4u);
  EXPECT_EQ(r.run_once(), 2u);
  EXPECT_EQ(r.run_once(), 0u);
}

TEST(ReactorTest, TimersFireInDeadlineOrderThenSchedulingOrder) {
  anydefer::reactor r;
  std::mutex m;
  std::vector<int> order;
  auto record = [&](int i) {
    return [&, i] {
      std::lock_guard<std::mutex> lock(m);
      order.push_back(i);
    };
  };
  counting_task t30(record(30)), t10(record(10)), t20(record(20)), t10b(record(11));
  const auto base = anydefer::reactor::now();
  r.schedule_at(base + 30ms, t30);
  r.schedule_at(base + 10ms, t10);
  r.schedule_at(base + 20ms, t20);
  r.schedule_at(base + 10ms, t10b);  // same deadline as t10, scheduled later: fires after it
  r.start();
  ASSERT_TRUE(eventually([&] { return t30.runs.load() == 1; }));
  std::lock_guard<std::mutex> lock(m);
  EXPECT_EQ(order, (std::vector<int>{10, 11, 20, 30}));
  EXPECT_GE(anydefer::reactor::now() - base, 30ms);
}

TEST(ReactorTest, CancelTimerRemovesPendingTimerAndGivesTaskBack) {
  counting_task t;
  {
    anydefer::reactor r;
    const anydefer::timer_id id = r.schedule_after(1h, t);
    ASSERT_TRUE(id);
    EXPECT_TRUE(r.cancel_timer(id));
    EXPECT_FALSE(r.cancel_timer(id));  // already gone
    r.run_once();
  }  // the destructor rejects pending timers: a cancelled one is not among them
  EXPECT_EQ(t.runs.load(), 0);
  EXPECT_EQ(t.rejects.load(), 0);
}

TEST(ReactorTest, CancelTimerAfterItFiredReturnsFalse) {
  anydefer::reactor r;
  counting_task t;
  const anydefer::timer_id id = r.schedule_after(0ns, t);
  while (t.runs.load() == 0) r.run_once();
  EXPECT_FALSE(r.cancel_timer(id));
  EXPECT_FALSE(r.cancel_timer(anydefer::timer_id{}));
}

TEST(ReactorTest, CancelTimerFromAnotherThreadWhileLoopRuns) {
  anydefer::reactor r;
  r.start();
  counting_task t;
  const anydefer::timer_id id = r.schedule_after(200ms, t);
  std::thread other([&] { EXPECT_TRUE(r.cancel_timer(id)); });
  other.join();
  std::this_thread::sleep_for(250ms);
  r.stop();
  EXPECT_EQ(t.runs.load(), 0);
  EXPECT_EQ(t.rejects.load(), 0);
}

// A task that keeps re-posting itself on the reactor until told to stop: a flood of ready continuations.
struct reposting_task : anydefer::task {
  reposting_task(anydefer::reactor& r, std::atomic<bool>& s) : task(&ops), loop(r), stop(s) {}
  anydefer::reactor& loop;
  std::atomic<bool>& stop;
  long runs = 0;

  static void run_it(task& t) noexcept {
    auto& self = static_cast<reposting_task&>(t);
    ++self.runs;
    if (!self.stop.load(std::memory_order_relaxed)) self.loop.execute(self);
  }
  static void reject_it(task&, std::exception_ptr) noexcept {}
  static constexpr operations ops{&run_it, &reject_it};
};

TEST(ReactorTest, TimerFiresWhileTasksKeepRepostingThemselves) {
  anydefer::reactor r;
  std::atomic<bool> flood_over{false};
  std::vector<std::unique_ptr<reposting_task>> flood;
  for (int i = 0; i < 8; ++i) flood.push_back(std::make_unique<reposting_task>(r, flood_over));
  counting_task timer([&] { flood_over = true; });
  r.start();
  for (auto& f : flood) r.execute(*f);
  std::this_thread::sleep_for(2ms);  // the flood is running
  r.schedule_after(5ms, timer);
  ASSERT_TRUE(eventually([&] { return timer.runs.load() == 1; }, 5s)) << "the timer was starved";
  r.stop();
  EXPECT_GT(flood[0]->runs, 1);
}

TEST(ReactorTest, InboxTaskRunsWhileTasksKeepRepostingThemselves) {
  anydefer::reactor r;
  std::atomic<bool> flood_over{false};
  reposting_task flood(r, flood_over);
  counting_task outsider([&] { flood_over = true; });
  r.start();
  r.execute(flood);
  std::this_thread::sleep_for(2ms);
  r.execute(outsider);
  ASSERT_TRUE(eventually([&] { return outsider.runs.load() == 1; }, 5s)) << "the inbox was starved";
  r.stop();
}

TEST(ReactorTest, TimerScheduledFromAnotherThreadWakesSleepingReactor) {
  anydefer::reactor r;
  r.start();
  std::this_thread::sleep_for(20ms);  // the loop is asleep with no timer
  counting_task t;
  const auto scheduled = anydefer::reactor::now();
  r.schedule_after(5ms, t);
  ASSERT_TRUE(eventually([&] { return t.runs.load() == 1; }, 5s));
  EXPECT_GE(anydefer::reactor::now() - scheduled, 5ms);
}

TEST(ReactorTest, StopFromOwnTaskRunsQueuedWorkAndRejectsPendingTimers) {
  anydefer::reactor r;
  counting_task later;
  counting_task queued;
  counting_task timer;
  counting_task stopper([&] {
    r.schedule_after(1h, timer);
    r.execute(queued);  // local FIFO: accepted and run by the drain
    r.stop();           // from the loop thread: signals only
    r.execute(later);   // still the loop thread: accepted while draining
  });
  r.start();
  r.execute(stopper);
  ASSERT_TRUE(eventually([&] { return timer.rejects.load() == 1; }));
  r.join();
  EXPECT_EQ(queued.runs.load(), 1);
  EXPECT_EQ(later.runs.load(), 1);
  EXPECT_TRUE(rejected_as_stopped(timer));
  EXPECT_EQ(timer.runs.load(), 0);
}

// Another thread's stop() joins the loop while a task there calls stop() too: the loop's own stop() must return
// at once rather than wait for the other's join (it deadlocked, each waiting for the other).
TEST(ReactorTest, StopOnTheLoopWhileAnotherThreadJoinsItReturns) {
  anydefer::reactor r;
  std::atomic<bool> outside_stopping{false};
  counting_task stopper([&] {
    while (!outside_stopping.load()) std::this_thread::yield();
    std::this_thread::sleep_for(20ms);  // the other thread is inside its join() by now
    r.stop();
  });
  r.start();
  r.execute(stopper);
  outside_stopping = true;
  r.stop();
  EXPECT_EQ(stopper.runs.load(), 1);
}

TEST(ReactorTest, TryExecuteAfterStopRefusesWithoutTouchingTheTask) {
  anydefer::reactor r;
  r.start();
  counting_task queued;
  ASSERT_TRUE(r.try_execute(queued));
  r.stop();
  EXPECT_EQ(queued.runs.load(), 1);  // accepted before the stop: it ran
  counting_task refused;
  EXPECT_FALSE(r.try_execute(refused));
  EXPECT_EQ(refused.runs.load(), 0);
  EXPECT_EQ(refused.rejects.load(), 0);
}

TEST(ReactorTest, ExecuteAfterStopRejectsTaskInline) {
  anydefer::reactor r;
  r.start();
  r.stop();
  counting_task t;
  r.execute(t);
  EXPECT_TRUE(rejected_as_stopped(t));
  counting_task timer;
  EXPECT_FALSE(r.schedule_after(1ms, timer));
  EXPECT_TRUE(rejected_as_stopped(timer));
}

TEST(ReactorTest, StopFromAnotherThreadEndsRunAfterRunningQueuedTasks) {
  anydefer::reactor r;
  counting_task first;
  std::atomic<bool> running{false};
  counting_task marker([&] { running = true; });
  r.execute(marker);
  std::thread loop([&] { r.run(); });
  while (!running.load()) std::this_thread::yield();
  r.execute(first);
  r.stop();  // no own thread to join: run() returns after the drain
  loop.join();
  EXPECT_EQ(first.runs.load() + first.rejects.load(), 1);
  EXPECT_EQ(first.runs.load(), 1);  // accepted before stop: it runs
}

TEST(ReactorTest, StopWhileProducersPostRunsOrRejectsEveryTaskExactlyOnce) {
  constexpr int kProducers = 3;
  constexpr int kPerProducer = 20000;
  std::vector<counting_task> tasks(kProducers * kPerProducer);
  {
    anydefer::reactor r;
    r.start();
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        for (int i = 0; i < kPerProducer; ++i) r.execute(tasks[p * kPerProducer + i]);
      });
    }
    std::this_thread::sleep_for(1ms);
    r.stop();
    for (auto& th : producers) th.join();
  }
  for (auto& t : tasks) ASSERT_EQ(t.runs.load() + t.rejects.load(), 1);
}

TEST(ReactorTest, DestructorRunsTasksOfAReactorThatNeverRan) {
  counting_task t;
  counting_task timer;
  {
    anydefer::reactor r;
    r.execute(t);
    r.schedule_after(1h, timer);
  }
  EXPECT_EQ(t.runs.load(), 1);
  EXPECT_TRUE(rejected_as_stopped(timer));
}

TEST(ReactorTest, WaitOnTheReactorThreadThrowsWouldBlock) {
  anydefer::reactor r;
  std::atomic<int> outcome{0};  // 1: threw would_block_error
  counting_task t([&] {
    anydefer::wait_policy* policy = anydefer::thread_wait_policy();
    if (policy == nullptr) return;
    try {
      policy->before_block();
    } catch (const anydefer::would_block_error& e) {
      outcome = std::string(e.what()).find("reactor") != std::string::npos ? 1 : 2;
    }
  });
  r.execute(t);
  r.run_once();
  EXPECT_EQ(outcome.load(), 1);
  EXPECT_EQ(anydefer::thread_wait_policy(), nullptr);  // restored when run_once returned
}

TEST(ReactorTest, StartPinnedToAnInvalidCpuThrowsNamingTheCpu) {
  anydefer::reactor r;
  const auto cpu = static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN));
  try {
    r.start(cpu);
    FAIL() << "start(" << cpu << ") did not throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("CPU " + std::to_string(cpu)), std::string::npos) << e.what();
  }
  // Still usable without pinning.
  counting_task t;
  r.start();
  r.execute(t);
  ASSERT_TRUE(eventually([&] { return t.runs.load() == 1; }));
}

TEST(ReactorTest, StartPinnedRunsTheLoopOnThatCpu) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  if (!CPU_ISSET(0, &allowed)) GTEST_SKIP() << "CPU 0 is not in this process's CPU set";
  anydefer::reactor r;
  r.start(0u);
  std::atomic<int> cpu{-1};
  counting_task t([&] { cpu = sched_getcpu(); });
  r.execute(t);
  ASSERT_TRUE(eventually([&] { return t.runs.load() == 1; }));
  EXPECT_EQ(cpu.load(), 0);
}

TEST(ReactorTest, RunWhileStartedThrowsLogicError) {
  anydefer::reactor r;
  r.start();
  EXPECT_THROW(r.run(), std::logic_error);
  EXPECT_THROW(r.run_once(), std::logic_error);
}

TEST(ReactorTest, IdleReactorUsesAlmostNoCpu) {
  counting_task timer;  // outlives the reactor, which rejects it when destroyed
  anydefer::reactor r;
  r.start();
  r.schedule_after(1h, timer);  // a far timer: the loop sleeps with a timeout, it does not spin
  std::this_thread::sleep_for(10ms);
  const double before = process_cpu_seconds();
  std::this_thread::sleep_for(300ms);
  const double used = process_cpu_seconds() - before;
  EXPECT_LT(used, 0.03) << "an idle reactor used " << used << " s of CPU in 0.3 s";
}

TEST(ShardChannelsTest, EveryOrderedPairHasItsOwnInboxAndEachPairSharesOneLine) {
  anydefer::detail::shard_channels channels(5);
  std::vector<const void*> seen;
  for (std::size_t from = 0; from < 5; ++from) {
    for (std::size_t to = 0; to < 5; ++to) {
      if (from == to) continue;
      const auto* in = &channels.between(from, to);
      EXPECT_EQ(std::count(seen.begin(), seen.end(), in), 0) << from << " -> " << to;
      seen.push_back(in);
      // The point of the channels: both directions of a pair on one cache line, and no other pair's.
      const auto* back = &channels.between(to, from);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(in) / 64, reinterpret_cast<std::uintptr_t>(back) / 64);
    }
  }
  std::vector<std::uintptr_t> lines;
  for (const void* in : seen) lines.push_back(reinterpret_cast<std::uintptr_t>(in) / 64);
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(std::unique(lines.begin(), lines.end()) - lines.begin(), 10);  // 5 * 4 / 2 pairs
}

// A numbered task that records its number where it runs (a log written on one shard only) and counts itself
// done, run or rejected.
struct numbered_hop : anydefer::task {
  numbered_hop() : task(&ops) {}
  int number = 0;
  std::vector<int>* log = nullptr;  // written on the target shard only
  std::atomic<int>* done = nullptr;

  static void run_it(task& t) noexcept {
    auto& self = static_cast<numbered_hop&>(t);
    self.log->push_back(self.number);
    self.done->fetch_add(1, std::memory_order_release);
  }
  static void reject_it(task& t, std::exception_ptr) noexcept {
    static_cast<numbered_hop&>(t).done->fetch_add(1, std::memory_order_release);
  }
  static constexpr operations ops{&run_it, &reject_it};
};

TEST(ReactorGroupTest, TasksAShardExecutesOnAnotherRunInOrderAlongsideOutsideWork) {
  anydefer::reactor_group group(3);
  constexpr int kCount = 20000;
  std::vector<numbered_hop> from_shard(kCount);
  std::vector<numbered_hop> from_outside(kCount);
  std::vector<int> shard_log;
  std::vector<int> outside_log;
  std::atomic<int> done{0};
  for (int i = 0; i < kCount; ++i) {
    from_shard[static_cast<std::size_t>(i)].number = i;
    from_shard[static_cast<std::size_t>(i)].log = &shard_log;
    from_shard[static_cast<std::size_t>(i)].done = &done;
    from_outside[static_cast<std::size_t>(i)].number = i;
    from_outside[static_cast<std::size_t>(i)].log = &outside_log;
    from_outside[static_cast<std::size_t>(i)].done = &done;
  }
  counting_task sender([&] {
    for (auto& t : from_shard) group.shard(2).execute(t);  // shard 0's loop -> shard 2: the (0, 2) channel
  });
  group.shard(0).execute(sender);
  for (auto& t : from_outside) group.shard(2).execute(t);  // this thread -> shard 2: its general inbox
  ASSERT_TRUE(eventually([&] { return done.load(std::memory_order_acquire) == 2 * kCount; }));
  group.stop();
  std::vector<int> expected(kCount);
  for (int i = 0; i < kCount; ++i) expected[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(shard_log, expected);
  EXPECT_EQ(outside_log, expected);
}

// A shard's channels are collected before its general inbox: a task that shard 0's loop executes on shard 1 runs
// before one this thread executed there earlier, which shows the shard-to-shard path is the channel.
TEST(ReactorGroupTest, ATaskFromAnotherShardTakesThePairChannel) {
  anydefer::reactor_group group(2);
  std::atomic<bool> started{false};
  std::atomic<bool> release{false};
  std::vector<int> order;  // written on shard 1 only, read after stop()
  counting_task blocker([&] {
    started.store(true, std::memory_order_release);
    while (!release.load(std::memory_order_acquire)) std::this_thread::yield();
  });
  counting_task from_outside([&] { order.push_back(1); });
  counting_task from_shard([&] { order.push_back(0); });
  std::atomic<bool> sent{false};
  counting_task sender([&] {
    group.shard(1).execute(from_shard);
    sent.store(true, std::memory_order_release);
  });
  group.shard(1).execute(blocker);
  ASSERT_TRUE(eventually([&] { return started.load(std::memory_order_acquire); }));  // shard 1 is inside it
  group.shard(1).execute(from_outside);  // queued behind the blocker in shard 1's general inbox
  group.shard(0).execute(sender);        // shard 0's loop -> the (0, 1) channel
  ASSERT_TRUE(eventually([&] { return sent.load(std::memory_order_acquire); }));
  release.store(true, std::memory_order_release);
  group.stop();
  EXPECT_EQ(order, (std::vector<int>{0, 1}));
}

// Bounces between the shards of a group, round robin, until the shared count runs out; counts every run.
struct ring_hop : anydefer::task {
  ring_hop() : task(&ops) {}
  struct counters {
    std::atomic<long> left{0};
    std::atomic<long> runs{0};
    std::atomic<long> rejects{0};
    std::atomic<long> stopped{0};  // balls that ran out of hops (their last touch of themselves)
  };
  anydefer::reactor_group* group = nullptr;
  std::size_t at = 0;
  counters* count = nullptr;
  std::chrono::microseconds pause_before_hop{0};  // long enough, and the next shard is asleep when the ball comes

  static void run_it(task& t) noexcept {
    auto& self = static_cast<ring_hop&>(t);
    EXPECT_TRUE(self.group->shard(self.at).running_in_this_thread());
    self.count->runs.fetch_add(1, std::memory_order_relaxed);
    if (self.count->left.fetch_sub(1, std::memory_order_acq_rel) <= 1) {
      self.count->stopped.fetch_add(1, std::memory_order_release);
      return;
    }
    if (self.pause_before_hop.count() != 0) std::this_thread::sleep_for(self.pause_before_hop);
    self.at = (self.at + 1) % self.group->size();
    self.group->shard(self.at).execute(self);  // may run on the other shard at once: self is not touched after
  }
  static void reject_it(task& t, std::exception_ptr) noexcept {
    static_cast<ring_hop&>(t).count->rejects.fetch_add(1, std::memory_order_release);
  }
  static constexpr operations ops{&run_it, &reject_it};
};

// Serves `balls` round the group's shards, ball i first on shard i % size.
void serve(std::vector<ring_hop>& balls, anydefer::reactor_group& group, ring_hop::counters& count,
           std::chrono::microseconds pause_before_hop = std::chrono::microseconds{0}) {
  for (std::size_t i = 0; i < balls.size(); ++i) {
    balls[i].group = &group;
    balls[i].at = i % group.size();
    balls[i].count = &count;
    balls[i].pause_before_hop = pause_before_hop;
    group.shard(balls[i].at).execute(balls[i]);
  }
}

// Runs `balls` for `hops_per_ball` hops each round the group and checks every hop ran exactly once.
void bounce_until_spent(anydefer::reactor_group& group, std::size_t ball_count, long hops_per_ball,
                        std::chrono::microseconds pause_before_hop = std::chrono::microseconds{0}) {
  std::vector<ring_hop> balls(ball_count);
  ring_hop::counters count;
  const long in_play = static_cast<long>(ball_count);
  count.left = in_play * hops_per_ball;
  serve(balls, group, count, pause_before_hop);
  ASSERT_TRUE(eventually([&] { return count.stopped.load(std::memory_order_acquire) == in_play; }, 60s))
      << count.stopped.load() << " balls stopped, " << count.runs.load() << " hops";
  // The count ran out on one ball's hop; each other ball made one more hop, found it spent and stopped.
  EXPECT_EQ(count.runs.load(), in_play * hops_per_ball + in_play - 1);
  EXPECT_EQ(count.rejects.load(), 0);
}

TEST(ReactorGroupTest, TasksBouncingAcrossShardsThroughIdlePeriodsAllRun) {
  anydefer::reactor_group group(3);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    bounce_until_spent(group, 8, 5000);
    std::this_thread::sleep_for(30ms);  // the shards go to sleep: the next round's hops must wake them
  }
}

TEST(ReactorGroupTest, AHopThroughAChannelWakesASleepingShard) {
  anydefer::reactor_group group(2);
  // 500 us on each shard before the hop: the other one spins for 20 us, then sleeps until the channel's push
  // wakes it.
  bounce_until_spent(group, 1, 40, std::chrono::microseconds{500});
}

TEST(ReactorGroupTest, AGroupTooLargeForChannelsStillCarriesTasksBetweenShards) {
  anydefer::reactor_group group(anydefer::detail::shard_channels::max_shards + 1);
  bounce_until_spent(group, 2, 3 * static_cast<long>(group.size()));
}

TEST(ReactorGroupTest, StopWhileShardsExecuteOnEachOtherRunsOrRejectsEveryTaskOnce) {
  for (int trial = 0; trial < 20; ++trial) {
    auto group = std::make_unique<anydefer::reactor_group>(2);
    std::vector<ring_hop> balls(4);
    ring_hop::counters count;
    count.left = 1L << 40;  // never runs out: only the stop ends the bouncing
    serve(balls, *group, count);
    std::this_thread::sleep_for(std::chrono::microseconds(200 * trial));
    group->stop();
    // A ball never runs out of hops, so each one bounced until a hop found its target stopped: rejected once.
    EXPECT_EQ(count.rejects.load(), static_cast<long>(balls.size())) << "trial " << trial;
    EXPECT_EQ(count.stopped.load(), 0);
    group.reset();
  }
}

TEST(ReactorGroupTest, EachShardRunsOnItsOwnThread) {
  anydefer::reactor_group group(3);
  ASSERT_EQ(group.size(), 3u);
  std::vector<std::thread::id> ids(3);
  std::vector<counting_task> tasks(3);
  for (std::size_t i = 0; i < 3; ++i) {
    tasks[i].on_run = [&, i] {
      EXPECT_TRUE(group.shard(i).running_in_this_thread());
      ids[i] = std::this_thread::get_id();
    };
    group.shard(i).execute(tasks[i]);
  }
  ASSERT_TRUE(eventually([&] { return tasks[0].runs + tasks[1].runs + tasks[2].runs == 3; }));
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_NE(ids[1], ids[2]);
  EXPECT_NE(ids[0], ids[2]);
}

TEST(ReactorGroupTest, DefaultSizeIsHardwareConcurrency) {
  anydefer::reactor_group group;
  EXPECT_EQ(group.size(), std::max(1u, std::thread::hardware_concurrency()));
}

TEST(ReactorGroupTest, PinnedShardsRunOnTheirCpus) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  for (long c = 0; c < online; ++c) {
    if (!CPU_ISSET(c, &allowed)) GTEST_SKIP() << "CPU " << c << " is not in this process's CPU set";
  }
  anydefer::reactor_group group(static_cast<std::size_t>(online), /*pin=*/true);
  std::vector<std::atomic<int>> cpus(group.size());
  std::vector<counting_task> tasks(group.size());
  for (std::size_t i = 0; i < group.size(); ++i) {
    tasks[i].on_run = [&, i] { cpus[i] = sched_getcpu(); };
    group.shard(i).execute(tasks[i]);
  }
  group.stop();
  for (std::size_t i = 0; i < group.size(); ++i) EXPECT_EQ(cpus[i].load(), static_cast<int>(i));
}

// Two shards stop their group at the same moment: neither may wait for the other (each joined the other and
// both waited forever); the group's destructor joins them.
TEST(ReactorGroupTest, ShardsStoppingTheGroupAtOnceDoNotWaitForEachOther) {
  auto group = std::make_unique<anydefer::reactor_group>(2);
  anydefer::reactor_group* const shared = group.get();  // the tasks may still run while the destructor does
  std::atomic<int> arrived{0};
  auto stop_group = [&arrived, shared] {
    arrived.fetch_add(1);
    while (arrived.load() < 2) std::this_thread::yield();
    shared->stop();
  };
  counting_task on_first(stop_group);
  counting_task on_second(stop_group);
  group->shard(0).execute(on_first);
  group->shard(1).execute(on_second);
  while (arrived.load() < 2) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);  // both shards are inside stop() by now
  group.reset();
  EXPECT_EQ(on_first.runs.load(), 1);
  EXPECT_EQ(on_second.runs.load(), 1);
}

TEST(ReactorGroupTest, StopRejectsLaterWorkOnEveryShard) {
  anydefer::reactor_group group(2);
  counting_task before;
  group.shard(1).execute(before);
  group.stop();
  EXPECT_EQ(before.runs.load(), 1);
  for (std::size_t i = 0; i < group.size(); ++i) {
    counting_task t;
    group.shard(i).execute(t);
    EXPECT_TRUE(rejected_as_stopped(t));
  }
}

}  // namespace
