// Deferreds across executors: timers and timeouts on a reactor, the fire-on-one / continue-on-another matrix,
// and what a stopped executor does to the deferreds waiting on it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "anydefer/executors.hpp"
#include "anydefer/executors/timers.hpp"
#ifndef ANYDEFER_TEST_WITH_TBB
#define ANYDEFER_TEST_WITH_TBB 0  // tests/CMakeLists.txt defines it to 1 where anydefer::tbb is built
#endif
#if ANYDEFER_TEST_WITH_TBB
#include "anydefer/executors/tbb_executor.hpp"
#endif

namespace {

using anydefer::deferred;
using namespace std::chrono_literals;

TEST(CallLaterTest, FiresOnTheReactorThreadAfterTheDelay) {
  anydefer::reactor loop;
  loop.start();
  const auto start = anydefer::reactor::now();
  std::atomic<bool> on_loop{false};
  deferred<void> done = anydefer::call_later(loop, 20ms).add_callback([&] { on_loop = loop.running_in_this_thread(); });
  done.get();
  EXPECT_GE(anydefer::reactor::now() - start, 20ms);
  EXPECT_TRUE(on_loop.load());
}

TEST(CallLaterTest, CancelRemovesTheTimerAndFailsWithCancelledError) {
  anydefer::reactor loop;
  loop.start();
  deferred<void> timer = anydefer::call_later(loop, 10s);
  timer.cancel();
  EXPECT_THROW(timer.get(), anydefer::cancelled_error);
}

TEST(CallLaterTest, NegativeDelayIsInvalidArgument) {
  anydefer::reactor loop;
  EXPECT_THROW(anydefer::call_later(loop, -1ms), std::invalid_argument);
}

TEST(CallLaterTest, ZeroDelayFiresOnTheNextIteration) {
  anydefer::reactor loop;
  deferred<void> timer = anydefer::call_later(loop, 0ms);
  EXPECT_FALSE(timer.fired());
  while (!timer.fired()) loop.run_once();
  EXPECT_NO_THROW(timer.get());
}

TEST(CallLaterTest, StoppingTheReactorFailsPendingTimersWithExecutorStopped) {
  anydefer::reactor loop;
  loop.start();
  deferred<void> timer = anydefer::call_later(loop, 10s);
  loop.stop();
  EXPECT_THROW(timer.get(), anydefer::executor_stopped_error);
}

TEST(AddTimeoutTest, TimesOutWithTimeoutErrorAndCancelsTheDeferred) {
  anydefer::reactor loop;
  loop.start();
  std::atomic<int> cancelled{0};
  deferred<int> slow([&cancelled](deferred<int>&) { ++cancelled; });
  deferred<int> guarded = anydefer::add_timeout(slow, 10ms, loop);
  EXPECT_THROW(guarded.get(), anydefer::timeout_error);
  EXPECT_EQ(cancelled.load(), 1);
}

TEST(AddTimeoutTest, AResultInTimePassesThroughAndStopsTheTimer) {
  anydefer::reactor loop;
  loop.start();
  deferred<int> fast;
  deferred<int> guarded = anydefer::add_timeout(fast, 10s, loop);
  fast.callback(5);
  EXPECT_EQ(guarded.get(), 5);
  loop.stop();  // returns at once: the 10 s timer was removed
}

TEST(AddTimeoutTest, ManualCancelBeforeTheTimeoutStaysCancelledError) {
  anydefer::reactor loop;
  loop.start();
  deferred<int> slow;
  deferred<int> guarded = anydefer::add_timeout(slow, 10s, loop);
  guarded.cancel();
  EXPECT_THROW(guarded.get(), anydefer::cancelled_error);
}

TEST(AddTimeoutTest, OtherFailuresPassThroughUnchanged) {
  anydefer::reactor loop;
  loop.start();
  deferred<int> d;
  deferred<int> guarded = anydefer::add_timeout(d, 10s, loop);
  d.errback(std::out_of_range("x"));
  EXPECT_THROW(guarded.get(), std::out_of_range);
}

TEST(AddTimeoutTest, NegativeTimeoutIsInvalidArgument) {
  anydefer::reactor loop;
  deferred<int> d;
  EXPECT_THROW(anydefer::add_timeout(d, -1ms, loop), std::invalid_argument);
}

// One executor of each kind, started, with a way to fire a deferred from inside it.
struct executor_kinds {
  anydefer::inline_executor inline_ex;
  anydefer::thread_pool pool{2};
  anydefer::reactor reactor_a;
  anydefer::reactor reactor_b;
#if ANYDEFER_TEST_WITH_TBB
  anydefer::tbb_executor tbb;
#endif
  executor_kinds() {
    reactor_a.start();
    reactor_b.start();
  }
  std::vector<std::pair<std::string, anydefer::executor_ref>> all() {
    std::vector<std::pair<std::string, anydefer::executor_ref>> kinds{
        {"inline", inline_ex}, {"pool", pool}, {"reactor_a", reactor_a}, {"reactor_b", reactor_b}};
#if ANYDEFER_TEST_WITH_TBB
    kinds.emplace_back("tbb", tbb);
#endif
    return kinds;
  }
};

TEST(CrossingTest, FiredOnEveryKindContinuedOnEveryOtherKind) {
  executor_kinds kinds;
  int checked = 0;
  for (auto& [from_name, from] : kinds.all()) {
    for (auto& [to_name, to] : kinds.all()) {
      deferred<int> d;
      std::atomic<bool> ran_on_target{false};
      deferred<int> next = d.add_callback(to, [&, to_name = to_name](int v) {
        if (to_name == "pool")
          ran_on_target = kinds.pool.running_in_this_thread();
        else if (to_name == "reactor_a")
          ran_on_target = kinds.reactor_a.running_in_this_thread();
        else if (to_name == "reactor_b")
          ran_on_target = kinds.reactor_b.running_in_this_thread();
        else
          ran_on_target = true;  // inline and tbb have no thread identity to check
        return v + 1;
      });
      deferred<void> fired = anydefer::submit(from, [d] { d.callback(41); });
      fired.get();
      EXPECT_EQ(next.get(), 42) << from_name << " -> " << to_name;
      EXPECT_TRUE(ran_on_target.load()) << from_name << " -> " << to_name;
      ++checked;
    }
  }
  const int kinds_count = ANYDEFER_TEST_WITH_TBB ? 5 : 4;
  ASSERT_EQ(static_cast<int>(kinds.all().size()), kinds_count);
  EXPECT_EQ(checked, kinds_count * kinds_count);
}

deferred<int> hop_between(anydefer::executor_ref a, anydefer::executor_ref b, anydefer::reactor& ra,
                          anydefer::thread_pool& pool) {
  co_await anydefer::resume_on(a);
  const bool on_reactor = ra.running_in_this_thread();
  co_await anydefer::resume_on(b);
  const bool on_pool = pool.running_in_this_thread();
  co_return (on_reactor ? 1 : 0) + (on_pool ? 10 : 0);
}

TEST(CrossingTest, CoroutineResumeOnHopsBetweenReactorAndPool) {
  executor_kinds kinds;
  EXPECT_EQ(hop_between(kinds.reactor_a, kinds.pool, kinds.reactor_a, kinds.pool).get(), 11);
}

TEST(LifecycleTest, ContinuationOnAStoppedPoolFailsWithExecutorStopped) {
  anydefer::thread_pool pool(1);
  pool.stop();
  deferred<int> d;
  deferred<int> next = d.add_callback(pool, [](int v) { return v; });
  d.callback(1);
  EXPECT_THROW(next.get(), anydefer::executor_stopped_error);
}

TEST(LifecycleTest, SubmitToAStoppedReactorFailsWithExecutorStopped) {
  anydefer::reactor loop;
  loop.start();
  loop.stop();
  EXPECT_THROW(anydefer::submit(loop, [] { return 1; }).get(), anydefer::executor_stopped_error);
}

TEST(LifecycleTest, ThrowingTaskFailsItsDeferredAndTheWorkerSurvives) {
  anydefer::thread_pool pool(1);
  deferred<int> bad = anydefer::submit(pool, []() -> int { throw std::runtime_error("task failed"); });
  EXPECT_THROW(bad.get(), std::runtime_error);
  EXPECT_EQ(anydefer::submit(pool, [] { return 7; }).get(), 7);
}

TEST(LifecycleTest, WaitOnAReactorThreadThrowsWouldBlock) {
  anydefer::reactor loop;
  loop.start();
  deferred<bool> threw = anydefer::submit(loop, [] {
    deferred<int> never;
    try {
      never.wait();
    } catch (const anydefer::would_block_error&) {
      return true;
    }
    return false;
  });
  EXPECT_TRUE(threw.get());
}

TEST(LifecycleTest, GetOnAPoolWorkerHelpsInsteadOfDeadlocking) {
  anydefer::thread_pool pool(1);  // one worker: blocking it without helping would deadlock
  deferred<int> outer = anydefer::submit(pool, [&pool] {
    deferred<int> inner = anydefer::submit(pool, [] { return 20; });
    return inner.get() + 1;  // runs `inner` itself while waiting
  });
  EXPECT_EQ(outer.get(), 21);
}

TEST(ReactorGroupTest, WorkSubmittedToAShardRunsThereAndContinuesOnAnother) {
  anydefer::reactor_group group(2);
  std::atomic<bool> on_first{false};
  std::atomic<bool> on_second{false};
  deferred<int> d = anydefer::submit(group.shard(0), [&] {
                      on_first = group.shard(0).running_in_this_thread();
                      return 1;
                    }).add_callback(group.shard(1), [&](int v) {
    on_second = group.shard(1).running_in_this_thread();
    return v + 1;
  });
  EXPECT_EQ(d.get(), 2);
  EXPECT_TRUE(on_first.load());
  EXPECT_TRUE(on_second.load());
}

}  // namespace

namespace {

#ifndef NDEBUG
TEST(LifecycleDeathTest, DestroyingAnExecutorWithPendingLinksAbortsWithAClearMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        anydefer::deferred<int> never_fired;
        {
          anydefer::manual_executor ex;
          (void)never_fired.add_callback(ex, [](int v) { return v; });
        }  // the link still points to ex
      },
      "manual_executor destroyed while 1 deferred link");
}

TEST(LifecycleTest, LinksThatRanOrWereRejectedNoLongerCountOnTheExecutor) {
  anydefer::deferred<int> ran;
  anydefer::deferred<int> rejected;
  anydefer::deferred<int> ran_next;
  anydefer::deferred<int> rejected_next;
  {
    anydefer::manual_executor ex;
    ran_next = ran.add_callback(ex, [](int v) { return v; });
    rejected_next = rejected.add_callback(ex, [](int v) { return v; });
    ran.callback(1);
    ex.run_all();
    ex.stop();
    rejected.callback(2);  // rejected: the executor is stopped
  }                        // destroyed with nothing bound: no abort
  EXPECT_EQ(ran_next.get(), 1);
  EXPECT_THROW(rejected_next.get(), anydefer::executor_stopped_error);
}
#endif

}  // namespace
