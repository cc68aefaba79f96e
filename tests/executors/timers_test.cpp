// Timers on fake time: test_clock itself, and call_later, add_timeout, defer_later and looping_call driven by
// it, so each test says exactly when things happen (Twisted's task.Clock tests, ported). A few run on a real
// reactor to check that its stop() reaches every timer user.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "anydefer/executors/reactor.hpp"
#include "anydefer/executors/test_clock.hpp"
#include "anydefer/executors/timers.hpp"

namespace {

using anydefer::deferred;
using anydefer::failure;
using anydefer::result;
using anydefer::test_clock;
using namespace std::chrono_literals;

// A task that records when (on the clock) it ran or was rejected.
struct recording_task : anydefer::task {
  explicit recording_task(test_clock& c, std::vector<std::string>& log, std::string name)
      : task(&operations), clock(c), log(log), name(std::move(name)) {}
  test_clock& clock;
  std::vector<std::string>& log;
  std::string name;
  static void run(task& t) noexcept {
    auto& self = static_cast<recording_task&>(t);
    self.log.push_back(self.name + "@" + std::to_string((self.clock.current_time() - test_clock::time_point{}) / 1ms));
  }
  static void reject(task& t, std::exception_ptr) noexcept {
    auto& self = static_cast<recording_task&>(t);
    self.log.push_back(self.name + " rejected");
  }
  static constexpr operations operations{&run, &reject};
};

// --- test_clock ----------------------------------------------------------------------------------------------

TEST(TestClockTest, AdvanceRunsDueTimersEarliestFirstAndNothingEarly) {
  test_clock clock;
  std::vector<std::string> log;
  recording_task a(clock, log, "a"), b(clock, log, "b"), c(clock, log, "c");
  clock.schedule_after(30ms, a);
  clock.schedule_after(10ms, b);
  clock.schedule_after(20ms, c);

  EXPECT_EQ(clock.advance(9ms), 0U);
  EXPECT_TRUE(log.empty());
  EXPECT_EQ(clock.advance(21ms), 3U);  // time is set first, as in Twisted: each task sees 30 ms
  EXPECT_EQ(log, (std::vector<std::string>{"b@30", "c@30", "a@30"}));
  EXPECT_EQ(clock.pending(), 0U);
}

TEST(TestClockTest, EqualDeadlinesRunInSchedulingOrder) {
  test_clock clock;
  std::vector<std::string> log;
  recording_task a(clock, log, "a"), b(clock, log, "b"), c(clock, log, "c");
  clock.schedule_after(5ms, b);
  clock.schedule_after(5ms, a);
  clock.schedule_after(5ms, c);
  clock.advance(5ms);
  EXPECT_EQ(log, (std::vector<std::string>{"b@5", "a@5", "c@5"}));
}

TEST(TestClockTest, ATimerScheduledWhileAdvancingRunsInTheSameAdvanceIfDue) {
  test_clock clock;
  std::vector<std::string> order;
  deferred<void> outer = anydefer::call_later(clock, 1s).add_callback([&] {
    order.push_back("outer");
    return anydefer::call_later(clock, 0s).add_callback([&] { order.push_back("inner"); });
  });
  clock.advance(1s);
  EXPECT_EQ(order, (std::vector<std::string>{"outer", "inner"}));
  EXPECT_TRUE(outer.fired());
}

TEST(TestClockTest, CancelTimerTakesTheTaskBack) {
  test_clock clock;
  std::vector<std::string> log;
  recording_task a(clock, log, "a");
  const anydefer::timer_id id = clock.schedule_after(1s, a);
  EXPECT_TRUE(clock.cancel_timer(id));
  EXPECT_FALSE(clock.cancel_timer(id));
  clock.advance(2s);
  EXPECT_TRUE(log.empty());
}

// nanoseconds::max() is the usual "never": the deadline is the latest time there is, not an overflowed sum in the
// past (which fired at once).
TEST(TestClockTest, ADelayOfNanosecondsMaxNeverComesDue) {
  test_clock clock(test_clock::time_point{} + 1h);
  std::vector<std::string> log;
  recording_task never(clock, log, "never");
  const anydefer::timer_id id = clock.schedule_after(std::chrono::nanoseconds::max(), never);
  clock.advance(24h);
  EXPECT_TRUE(log.empty());
  EXPECT_TRUE(clock.cancel_timer(id));
}

// The clamp itself must not overflow: a clock whose time is before its epoch still fires a positive delay.
TEST(TestClockTest, ADelayFiresOnAClockBeforeItsEpoch) {
  test_clock clock(test_clock::time_point{} - 1h);
  std::vector<std::string> log;
  recording_task soon(clock, log, "soon");
  clock.schedule_after(1s, soon);
  clock.advance(1s);
  EXPECT_EQ(log.size(), 1U);
}

TEST(TestClockTest, NegativeStepIsInvalidArgument) {
  test_clock clock;
  EXPECT_THROW(clock.advance(-1ns), std::invalid_argument);
  EXPECT_EQ(clock.current_time(), test_clock::time_point{});
}

TEST(TestClockTest, PumpAdvancesStepByStep) {
  test_clock clock(test_clock::time_point{} + 100s);
  int fired = 0;
  deferred<void> d = anydefer::call_later(clock, 3s).add_callback([&] { ++fired; });
  EXPECT_EQ(clock.pump(std::vector{1s, 1s}), 0U);
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(clock.pump(std::vector{1s}), 1U);
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(clock.current_time(), test_clock::time_point{} + 103s);
}

TEST(TestClockTest, DestructionRejectsPendingTimersWithExecutorStopped) {
  auto clock = std::make_unique<test_clock>();
  deferred<void> timer = anydefer::call_later(*clock, 1s);
  clock.reset();
  EXPECT_THROW(timer.get(), anydefer::executor_stopped_error);
}

TEST(TestClockTest, DestructionRejectsEarliestFirstEqualDeadlinesInSchedulingOrder) {
  std::vector<std::string> log;
  auto clock = std::make_unique<test_clock>();
  recording_task a(*clock, log, "a"), b(*clock, log, "b"), c(*clock, log, "c"), d(*clock, log, "d");
  clock->schedule_after(30ms, a);
  clock->schedule_after(10ms, b);
  clock->schedule_after(20ms, c);
  clock->schedule_after(10ms, d);
  clock.reset();  // the tasks outlive it
  EXPECT_EQ(log, (std::vector<std::string>{"b rejected", "d rejected", "c rejected", "a rejected"}));
}

TEST(TestClockTest, ATimerScheduledWhileTheClockIsBeingDestroyedIsRejectedAtOnce) {
  auto clock = std::make_unique<test_clock>();
  test_clock& same_clock = *clock;  // unique_ptr::reset() nulls the pointer before the destructor runs
  int rejections = 0;
  std::function<void()> retry = [&] {
    // A retry loop on the clock being destroyed: each rejection schedules again, and must be rejected too.
    (void)anydefer::call_later(same_clock, 1s).add_errback([&](const failure& f) {
      EXPECT_TRUE(f.check<anydefer::executor_stopped_error>());
      if (++rejections < 3) retry();
    });
  };
  retry();
  clock.reset();  // returns: the retries were rejected inline, not queued forever
  EXPECT_EQ(rejections, 3);
}

// --- call_later ----------------------------------------------------------------------------------------------

TEST(CallLaterOnTestClockTest, FiresExactlyWhenTheDelayHasPassed) {
  test_clock clock;
  deferred<void> timer = anydefer::call_later(clock, 2s);
  clock.advance(2s - 1ns);
  EXPECT_FALSE(timer.fired());
  clock.advance(1ns);
  EXPECT_TRUE(timer.fired());
  EXPECT_NO_THROW(timer.get());
}

TEST(CallLaterOnTestClockTest, CancelRemovesTheTimer) {
  test_clock clock;
  deferred<void> timer = anydefer::call_later(clock, 2s);
  timer.cancel();
  EXPECT_EQ(clock.pending(), 0U);
  EXPECT_THROW(timer.get(), anydefer::cancelled_error);
}

// --- add_timeout (Twisted's addTimeout tests) ---------------------------------------------------------------

TEST(AddTimeoutOnTestClockTest, TimesOutExactlyAtTheTimeoutAndCancelsTheDeferred) {
  test_clock clock;
  int cancels = 0;
  deferred<int> slow([&cancels](deferred<int>&) { ++cancels; });
  deferred<int> guarded = anydefer::add_timeout(slow, 10s, clock);
  clock.advance(10s - 1ns);
  EXPECT_FALSE(guarded.fired());
  clock.advance(1ns);
  EXPECT_EQ(cancels, 1);
  EXPECT_THROW(guarded.get(), anydefer::timeout_error);
}

TEST(AddTimeoutOnTestClockTest, AResultInTimeStopsTheTimer) {
  test_clock clock;
  deferred<int> d;
  deferred<int> guarded = anydefer::add_timeout(d, 10s, clock);
  EXPECT_EQ(clock.pending(), 1U);
  clock.advance(5s);
  d.callback(3);
  EXPECT_EQ(clock.pending(), 0U);
  EXPECT_EQ(guarded.get(), 3);
}

TEST(AddTimeoutOnTestClockTest, OnAFiredDeferredPassesTheResultThroughWithoutATimer) {
  test_clock clock;
  deferred<int> d = anydefer::succeed(4);
  deferred<int> guarded = anydefer::add_timeout(d, 10s, clock);
  EXPECT_EQ(clock.pending(), 0U);
  EXPECT_EQ(guarded.get(), 4);
}

TEST(AddTimeoutOnTestClockTest, ZeroTimeoutTimesOutOnTheNextAdvance) {
  test_clock clock;
  deferred<int> d;
  deferred<int> guarded = anydefer::add_timeout(d, 0s, clock);
  EXPECT_FALSE(guarded.fired());
  clock.advance(0s);
  EXPECT_THROW(guarded.get(), anydefer::timeout_error);
}

TEST(AddTimeoutOnTestClockTest, AValueTheCancellerProducesPassesThrough) {
  test_clock clock;
  deferred<int> d([](deferred<int>& self) { self.callback(9); });
  deferred<int> guarded = anydefer::add_timeout(d, 1s, clock);
  clock.advance(1s);
  EXPECT_EQ(guarded.get(), 9);
}

TEST(AddTimeoutOnTestClockTest, AFailureTheCancellerProducesPassesThrough) {
  test_clock clock;
  deferred<int> d([](deferred<int>& self) { self.errback(std::out_of_range("from the canceller")); });
  deferred<int> guarded = anydefer::add_timeout(d, 1s, clock);
  clock.advance(1s);
  EXPECT_THROW(guarded.get(), std::out_of_range);
}

TEST(AddTimeoutOnTestClockTest, ManualCancelBeforeTheTimeoutIsNotTranslated) {
  test_clock clock;
  deferred<int> d;
  deferred<int> guarded = anydefer::add_timeout(d, 1s, clock);
  guarded.cancel();
  EXPECT_THROW(guarded.get(), anydefer::cancelled_error);
  EXPECT_EQ(clock.pending(), 0U);
}

TEST(AddTimeoutOnTestClockTest, OnTimeoutCancelReplacesTheResultAndGetsTheTimeout) {
  test_clock clock;
  deferred<int> d;
  std::chrono::nanoseconds seen{};
  bool saw_cancelled = false;
  deferred<int> guarded =
      anydefer::add_timeout(d, 3s, clock, [&](result<int>&& r, std::chrono::nanoseconds timeout) -> int {
        seen = timeout;
        saw_cancelled = r.has_failure() && r.error().check<anydefer::cancelled_error>();
        return 42;
      });
  clock.advance(3s);
  EXPECT_EQ(guarded.get(), 42);
  EXPECT_EQ(seen, 3s);
  EXPECT_TRUE(saw_cancelled);
}

TEST(AddTimeoutOnTestClockTest, OnTimeoutCancelIsNotCalledForAResultInTime) {
  test_clock clock;
  deferred<int> d;
  bool called = false;
  deferred<int> guarded = anydefer::add_timeout(d, 3s, clock, [&](result<int>&&, std::chrono::nanoseconds) {
    called = true;
    return 0;
  });
  d.callback(1);
  clock.advance(5s);
  EXPECT_EQ(guarded.get(), 1);
  EXPECT_FALSE(called);
}

TEST(AddTimeoutOnTestClockTest, OnTimeoutCancelThatThrowsFailsWithItsException) {
  test_clock clock;
  deferred<int> d;
  deferred<int> guarded = anydefer::add_timeout(
      d, 3s, clock, [](result<int>&&, std::chrono::nanoseconds) -> int { throw std::length_error("converted"); });
  clock.advance(3s);
  EXPECT_THROW(guarded.get(), std::length_error);
}

TEST(AddTimeoutOnTestClockTest, CallbacksAddedAfterTheTimeoutAreNotCovered) {
  test_clock clock;
  deferred<int> d;
  deferred<int> later;
  deferred<int> guarded = anydefer::add_timeout(d, 1s, clock).add_callback([&](int) { return later; });
  d.callback(1);
  clock.advance(10s);
  EXPECT_FALSE(guarded.fired());  // the slow deferred added after add_timeout was not cancelled
  later.callback(2);
  EXPECT_EQ(guarded.get(), 2);
}

TEST(AddTimeoutOnTestClockTest, ADeferredThatAlreadyHasAConsumerThrowsAndStartsNoTimer) {
  test_clock clock;
  deferred<int> d;
  int seen = 0;
  deferred<void> consumer = d.add_callback([&seen](int v) { seen = v; });
  EXPECT_THROW(anydefer::add_timeout(d, 1s, clock), anydefer::already_continued_error);
  EXPECT_EQ(clock.pending(), 0U);
  clock.advance(1h);
  d.callback(5);  // not cancelled by a timer left behind
  EXPECT_EQ(seen, 5);
  EXPECT_NO_THROW(consumer.get());
}

TEST(AddTimeoutOnTestClockTest, ClockDestroyedBeforeTheTimeoutCancelsWithExecutorStopped) {
  auto clock = std::make_unique<test_clock>();
  int cancels = 0;
  deferred<int> d([&cancels](deferred<int>&) { ++cancels; });
  deferred<int> guarded = anydefer::add_timeout(d, 1s, *clock);
  clock.reset();
  EXPECT_EQ(cancels, 1);
  EXPECT_THROW(guarded.get(), anydefer::executor_stopped_error);
}

// Delays at the ends of the range on a real reactor: nanoseconds::max(), the usual "never", never comes due (it
// overflowed into the past and fired at once), and a negative delay is due at once (under UBSan, the clamp's own
// arithmetic overflowed there).
TEST(ReactorTimerTest, DelaysAtTheEndsOfTheRangeAreClampedNotOverflowed) {
  anydefer::reactor loop;
  loop.start();
  test_clock unused;
  std::vector<std::string> log;
  recording_task never(unused, log, "never");
  recording_task due(unused, log, "due");
  const anydefer::timer_id id = loop.schedule_after(std::chrono::nanoseconds::max(), never);
  loop.schedule_after(-1ns, due);
  anydefer::submit(loop, [] {}).get();
  std::this_thread::sleep_for(20ms);
  anydefer::submit(loop, [] {}).get();  // the loop went round after both delays: what is due has run
  EXPECT_TRUE(loop.cancel_timer(id));
  loop.stop();
  ASSERT_EQ(log.size(), 1U);
  EXPECT_EQ(log[0].substr(0, 3), "due");
}

TEST(AddTimeoutOnReactorTest, StoppingTheReactorCancelsTheGuardedDeferredWithExecutorStopped) {
  anydefer::reactor loop;
  loop.start();
  int cancels = 0;
  deferred<int> d([&cancels](deferred<int>&) { ++cancels; });
  deferred<int> guarded = anydefer::add_timeout(d, 1h, loop);
  loop.stop();
  EXPECT_THROW(guarded.get(), anydefer::executor_stopped_error);
  EXPECT_EQ(cancels, 1);
}

TEST(AddTimeoutOnReactorTest, OnAStoppedReactorFailsAtOnceWithExecutorStopped) {
  anydefer::reactor loop;
  loop.start();
  loop.stop();  // finished stopping: timers are rejected inline from now on
  deferred<int> d;
  deferred<int> guarded = anydefer::add_timeout(d, 1h, loop);
  EXPECT_THROW(guarded.get(), anydefer::executor_stopped_error);
}

// --- defer_later (Twisted's deferLater tests) ---------------------------------------------------------------

TEST(DeferLaterTest, CallsTheFunctionWithItsArgumentsAfterTheDelay) {
  test_clock clock;
  int calls = 0;
  deferred<int> d = anydefer::defer_later(
      clock, 2s,
      [&calls](int a, const std::string& b) {
        ++calls;
        return a + static_cast<int>(b.size());
      },
      2, std::string("abc"));
  clock.advance(1s);
  EXPECT_EQ(calls, 0);
  clock.advance(1s);
  EXPECT_EQ(d.get(), 5);
  EXPECT_EQ(calls, 1);
}

TEST(DeferLaterTest, AReturnedDeferredIsWaitedFor) {
  test_clock clock;
  deferred<std::string> inner;
  deferred<std::string> d = anydefer::defer_later(clock, 1s, [&] { return inner; });
  clock.advance(1s);
  EXPECT_FALSE(d.fired());
  inner.callback("late");
  EXPECT_EQ(d.get(), "late");
}

TEST(DeferLaterTest, AThrowingFunctionFailsTheDeferred) {
  test_clock clock;
  deferred<int> d = anydefer::defer_later(clock, 1s, []() -> int { throw std::domain_error("f failed"); });
  clock.advance(1s);
  EXPECT_THROW(d.get(), std::domain_error);
}

TEST(DeferLaterTest, CancelBeforeTheDelayNeverCallsTheFunction) {
  test_clock clock;
  bool called = false;
  deferred<void> d = anydefer::defer_later(clock, 1s, [&] { called = true; });
  d.cancel();
  EXPECT_EQ(clock.pending(), 0U);
  clock.advance(2s);
  EXPECT_FALSE(called);
  EXPECT_THROW(d.get(), anydefer::cancelled_error);
}

TEST(DeferLaterTest, AClockThatStopsFailsWithExecutorStoppedWithoutCalling) {
  auto clock = std::make_unique<test_clock>();
  bool called = false;
  deferred<void> d = anydefer::defer_later(*clock, 1s, [&] { called = true; });
  clock.reset();
  EXPECT_FALSE(called);
  EXPECT_THROW(d.get(), anydefer::executor_stopped_error);
}

// --- looping_call (Twisted's LoopingCall tests) -------------------------------------------------------------

TEST(LoopingCallTest, CallsNowThenAtEveryIntervalUntilStopped) {
  test_clock clock;
  int calls = 0;
  anydefer::looping_call loop(clock, [&calls] { ++calls; });
  deferred<void> done = loop.start(1s);
  EXPECT_EQ(calls, 1);
  clock.advance(500ms);
  EXPECT_EQ(calls, 1);
  clock.advance(500ms);
  EXPECT_EQ(calls, 2);
  clock.advance(1s);
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(done.fired());
  loop.stop();
  EXPECT_FALSE(loop.running());
  EXPECT_NO_THROW(done.get());
  EXPECT_EQ(clock.pending(), 0U);
  clock.advance(5s);
  EXPECT_EQ(calls, 3);
}

TEST(LoopingCallTest, ADelayedStartCallsFirstAfterOneInterval) {
  test_clock clock;
  int calls = 0;
  anydefer::looping_call loop(clock, [&calls] { ++calls; });
  deferred<void> done = loop.start(2s, /*now=*/false);
  EXPECT_EQ(calls, 0);
  clock.advance(2s);
  EXPECT_EQ(calls, 1);
  loop.stop();
  EXPECT_TRUE(done.fired());
}

TEST(LoopingCallTest, StoppingBeforeADelayedStartNeverCalls) {
  test_clock clock;
  int calls = 0;
  anydefer::looping_call loop(clock, [&calls] { ++calls; });
  deferred<void> done = loop.start(2s, /*now=*/false);
  loop.stop();
  clock.advance(10s);
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(done.fired());
}

TEST(LoopingCallTest, MisuseIsReportedWithClearErrors) {
  test_clock clock;
  anydefer::looping_call loop(clock, [] {});
  EXPECT_THROW(loop.start(-1s), std::invalid_argument);
  EXPECT_FALSE(loop.running());
  EXPECT_THROW(loop.stop(), std::logic_error);
  EXPECT_THROW(loop.reset(), std::logic_error);
  deferred<void> done = loop.start(1s);
  EXPECT_THROW(loop.start(1s), std::logic_error);
  loop.stop();
  EXPECT_TRUE(done.fired());
}

TEST(LoopingCallTest, AThrowingCallStopsItAndFailsItsDeferred) {
  test_clock clock;
  int calls = 0;
  anydefer::looping_call loop(clock, [&calls] {
    if (++calls == 3) throw std::runtime_error("third call failed");
  });
  deferred<void> done = loop.start(1s);
  clock.pump(std::vector{1s, 1s});
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(loop.running());
  EXPECT_THROW(done.get(), std::runtime_error);
  EXPECT_EQ(clock.pending(), 0U);
}

TEST(LoopingCallTest, AFailingDeferredStopsItAndFailsItsDeferred) {
  test_clock clock;
  deferred<int> step;
  anydefer::looping_call loop(clock, [&step] { return step; });
  deferred<void> done = loop.start(1s);
  step.errback(std::runtime_error("async failure"));
  EXPECT_THROW(done.get(), std::runtime_error);
  EXPECT_FALSE(loop.running());
}

TEST(LoopingCallTest, AReturnedDeferredDelaysTheNextCallToTheNextInterval) {
  test_clock clock;
  std::vector<long> called_at;
  std::vector<deferred<void>> steps;
  anydefer::looping_call loop(clock, [&] {
    called_at.push_back((clock.current_time() - test_clock::time_point{}) / 1ms);
    steps.emplace_back();
    return steps.back();
  });
  deferred<void> done = loop.start(1s);
  clock.advance(2500ms);  // the first call has not finished: no second call yet
  EXPECT_EQ(called_at, (std::vector<long>{0}));
  steps[0].callback();  // finished at 2.5 s: the next call is at 3 s, the next multiple of the interval
  clock.advance(499ms);
  EXPECT_EQ(called_at.size(), 1U);
  clock.advance(1ms);
  EXPECT_EQ(called_at, (std::vector<long>{0, 3000}));
  loop.stop();  // the second call is still in progress: `done` waits for it
  EXPECT_FALSE(done.fired());
  steps[1].callback();
  EXPECT_TRUE(done.fired());
}

TEST(LoopingCallTest, WithCountReportsTheIntervalsSinceTheLastCall) {
  test_clock clock;
  std::vector<std::size_t> counts;
  auto loop = anydefer::looping_call::with_count(clock, [&counts](std::size_t n) { counts.push_back(n); });
  deferred<void> done = loop.start(1s);
  clock.advance(1s);
  clock.advance(3s);  // three intervals at once: one call, told 3
  clock.advance(1s);
  EXPECT_EQ(counts, (std::vector<std::size_t>{1, 1, 3, 1}));
  loop.stop();
}

TEST(LoopingCallTest, WithCountAndADelayedStartCountsOneForTheFirstCall) {
  test_clock clock;
  std::vector<std::size_t> counts;
  auto loop = anydefer::looping_call::with_count(clock, [&counts](std::size_t n) { counts.push_back(n); });
  deferred<void> done = loop.start(1s, /*now=*/false);
  clock.advance(1s);
  clock.advance(2s);
  EXPECT_EQ(counts, (std::vector<std::size_t>{1, 2}));
  loop.stop();
}

TEST(LoopingCallTest, IntervalZeroCallsOnEveryIterationWithACountOfOne) {
  test_clock clock;
  std::vector<std::size_t> counts;
  std::unique_ptr<anydefer::looping_call> loop;
  loop = std::make_unique<anydefer::looping_call>(anydefer::looping_call::with_count(clock, [&](std::size_t n) {
    counts.push_back(n);
    if (counts.size() == 5) loop->stop();
  }));
  deferred<void> done = loop->start(0s, /*now=*/false);
  clock.advance(0s);  // as in Twisted: calls due at the same time keep running within one advance
  EXPECT_EQ(counts, (std::vector<std::size_t>(5, 1)));
  EXPECT_TRUE(done.fired());
}

TEST(LoopingCallTest, ResetRestartsTheIntervalFromNow) {
  test_clock clock;
  int calls = 0;
  anydefer::looping_call loop(clock, [&calls] { ++calls; });
  deferred<void> done = loop.start(1s);
  clock.advance(500ms);
  loop.reset();
  clock.advance(900ms);
  EXPECT_EQ(calls, 1);
  clock.advance(100ms);
  EXPECT_EQ(calls, 2);
  loop.stop();
}

TEST(LoopingCallTest, DestroyingARunningLoopingCallStopsIt) {
  test_clock clock;
  deferred<void> done;
  {
    anydefer::looping_call loop(clock, [] {});
    done = loop.start(1s);
  }
  EXPECT_TRUE(done.fired());
  EXPECT_EQ(clock.pending(), 0U);
}

TEST(LoopingCallTest, AClockThatStopsStopsItWithExecutorStopped) {
  auto clock = std::make_unique<test_clock>();
  anydefer::looping_call loop(*clock, [] {});
  deferred<void> done = loop.start(1s);
  clock.reset();
  EXPECT_FALSE(loop.running());
  EXPECT_THROW(done.get(), anydefer::executor_stopped_error);
}

TEST(LoopingCallOnReactorTest, RunsOnTheLoopThreadUntilStoppedFromInside) {
  anydefer::reactor reactor;
  reactor.start();
  std::unique_ptr<anydefer::looping_call> loop;
  int calls = 0;
  bool always_on_loop = true;
  loop = std::make_unique<anydefer::looping_call>(reactor, [&] {
    always_on_loop = always_on_loop && reactor.running_in_this_thread();
    if (++calls == 5) loop->stop();
  });
  deferred<void> done = loop->start(1ms, /*now=*/false);
  EXPECT_NO_THROW(done.get());
  EXPECT_EQ(calls, 5);
  EXPECT_TRUE(always_on_loop);
}

TEST(LoopingCallOnReactorTest, StoppingTheReactorStopsItWithExecutorStopped) {
  anydefer::reactor reactor;
  reactor.start();
  anydefer::looping_call loop(reactor, [] {});
  deferred<void> done = loop.start(1h);
  reactor.stop();
  EXPECT_THROW(done.get(), anydefer::executor_stopped_error);
  EXPECT_FALSE(loop.running());
}

}  // namespace
