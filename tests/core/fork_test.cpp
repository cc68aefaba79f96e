// fork(): continuation stealing for deferred coroutines, driven by hand-written executors so every order is
// deterministic (the thread pool's real races are in tests/stress/fork_stress_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "core/queue_executor.hpp"

namespace {

using anydefer::deferred;

using anydefer_test::queue_executor;

// Also offers try_offer() and try_reclaim(), as a thread pool's worker does.
struct reclaiming_queue_executor : queue_executor {
  int reclaimed = 0;
  anydefer::offer_ticket try_offer(anydefer::task& t) noexcept {
    execute(t);
    return tasks.size();  // the position, from 1
  }
  bool try_reclaim(anydefer::task& t, anydefer::offer_ticket ticket) noexcept {
    if (tasks.size() != ticket || tasks.back() != &t) return false;
    tasks.pop_back();
    ++reclaimed;
    return true;
  }
};
static_assert(anydefer::reclaiming_executor<reclaiming_queue_executor>);
static_assert(!anydefer::reclaiming_executor<queue_executor>);

deferred<int> child_logging(std::vector<std::string>& log, int v) {
  log.push_back("child");
  co_return v * 2;
}

template <class Executor>
deferred<int> parent_logging(Executor& ex, std::vector<std::string>& log) {
  log.push_back("parent before");
  deferred<int> left = co_await anydefer::fork(ex, child_logging, log, 21);
  log.push_back("parent after");
  co_return co_await std::move(left);
}

TEST(ForkTest, ChildRunsFirstAndTheParentContinuesInPlaceWhenNobodyTookIt) {
  reclaiming_queue_executor ex;
  std::vector<std::string> log;
  deferred<int> out = parent_logging(ex, log);
  EXPECT_EQ(log, (std::vector<std::string>{"parent before", "child", "parent after"}));
  EXPECT_EQ(ex.offered, 1);
  EXPECT_EQ(ex.reclaimed, 1);
  EXPECT_TRUE(ex.tasks.empty());
  ASSERT_TRUE(out.fired());
  EXPECT_EQ(out.get(), 42);
}

TEST(ForkTest, ParentOfferedToANonReclaimingExecutorContinuesWhereItRuns) {
  queue_executor ex;
  std::vector<std::string> log;
  deferred<int> out = parent_logging(ex, log);
  EXPECT_EQ(log, (std::vector<std::string>{"parent before", "child"}));
  EXPECT_FALSE(out.fired());
  ASSERT_EQ(ex.tasks.size(), 1u);
  ex.drain();  // the "thief": resumes the parent, which joins the child's already published result
  EXPECT_EQ(log, (std::vector<std::string>{"parent before", "child", "parent after"}));
  EXPECT_EQ(out.get(), 42);
}

deferred<int> child_waiting(deferred<int> gate) { co_return co_await gate + 1; }

template <class Executor>
deferred<int> parent_of_waiting_child(Executor& ex, deferred<int> gate, bool& went_on) {
  deferred<int> left = co_await anydefer::fork(ex, child_waiting, gate);
  went_on = true;
  co_return co_await std::move(left);
}

TEST(ForkTest, ChildThatSuspendsLetsTheParentGoOnAndTheJoinWaitsForIt) {
  reclaiming_queue_executor ex;
  deferred<int> gate;
  bool went_on = false;
  deferred<int> out = parent_of_waiting_child(ex, gate, went_on);
  EXPECT_TRUE(went_on);
  EXPECT_EQ(ex.reclaimed, 1);
  EXPECT_FALSE(out.fired());
  gate.callback(9);
  EXPECT_EQ(out.get(), 10);
}

TEST(ForkTest, ChildThatSuspendsWhileTheParentWasTakenJoinsOnTheParentsThread) {
  queue_executor ex;
  deferred<int> gate;
  bool went_on = false;
  deferred<int> out = parent_of_waiting_child(ex, gate, went_on);
  EXPECT_FALSE(went_on);
  ex.drain();  // the parent goes on and suspends at the join
  EXPECT_TRUE(went_on);
  EXPECT_FALSE(out.fired());
  gate.callback(1);
  EXPECT_EQ(out.get(), 2);
}

// As a pool does on a thread that is not one of its workers: try_offer() refuses, execute() queues.
struct offer_refusing_executor : reclaiming_queue_executor {
  anydefer::offer_ticket try_offer(anydefer::task&) noexcept { return 0; }
};

// The continuation handed to execute() is the executor's to run: fork() takes back only what it offered.
TEST(ForkTest, ARefusedOfferFallsBackToExecute) {
  offer_refusing_executor ex;
  std::vector<std::string> log;
  deferred<int> out = parent_logging(ex, log);
  EXPECT_EQ(log, (std::vector<std::string>{"parent before", "child"}));
  EXPECT_EQ(ex.offered, 1);  // through execute()
  EXPECT_EQ(ex.reclaimed, 0);
  ex.drain();
  EXPECT_EQ(out.get(), 42);
  EXPECT_EQ(log, (std::vector<std::string>{"parent before", "child", "parent after"}));
}

deferred<int> not_a_coroutine(int v) { return anydefer::succeed(v); }

TEST(ForkTest, ForkOfAFunctionThatIsNotACoroutineRunsItAndOffersNothing) {
  reclaiming_queue_executor ex;
  auto parent = [](reclaiming_queue_executor& e) -> deferred<int> {
    deferred<int> d = co_await anydefer::fork(e, not_a_coroutine, 5);
    co_return co_await std::move(d);
  };
  EXPECT_EQ(parent(ex).get(), 5);
  EXPECT_EQ(ex.offered, 0);
}

deferred<int> throws_before_starting(int) { throw std::runtime_error("no frame"); }

TEST(ForkTest, ForkOfAThrowingFunctionGivesAFailedDeferredAndTheParentGoesOn) {
  reclaiming_queue_executor ex;
  auto parent = [](reclaiming_queue_executor& e) -> deferred<std::string> {
    deferred<int> d = co_await anydefer::fork(e, throws_before_starting, 1);
    try {
      co_await std::move(d);
    } catch (const std::runtime_error& err) {
      co_return std::string("caught ") + err.what();
    }
    co_return std::string("no error");
  };
  EXPECT_EQ(parent(ex).get(), "caught no frame");
  EXPECT_EQ(ex.offered, 0);
}

deferred<int> child_throwing() {
  throw std::out_of_range("child failed");
  co_return 0;
}

// A child that fork() runs can park (reach its end without publishing, for fork() to publish) inside a loop of
// resumptions it started itself: its await of a deferred that breaks at once resumes it right there, and what it
// fires meanwhile queues another coroutine on that loop, which runs after the child parked and before the outer
// fork() reads that it did. If that coroutine forks too, its own fork() must not take the parking for its child's,
// nor let the outer fork() lose it.
deferred<int> child_parking_in_its_own_loop(deferred<int> breaks_at_once, deferred<int> wakes_other) {
  try {
    co_await std::move(breaks_at_once);  // its last handle: broken_deferred_error resumes us inside this await
  } catch (const anydefer::broken_deferred_error&) {
  }
  wakes_other.callback(1);  // queues `other` on the loop we are in
  co_return 10;
}

deferred<int> child_that_suspends(deferred<int> gate) { co_return co_await gate + 1; }

template <class Executor>
deferred<int> forks_once_woken(Executor& ex, deferred<int> wake, deferred<int> gate) {
  co_await wake;
  deferred<int> inner = co_await anydefer::fork(ex, child_that_suspends, gate);
  co_return co_await std::move(inner);
}

template <class Executor>
deferred<int> forks_the_parking_child(Executor& ex, deferred<int> breaks_at_once, deferred<int> wakes_other) {
  deferred<int> left =
      co_await anydefer::fork(ex, child_parking_in_its_own_loop, std::move(breaks_at_once), std::move(wakes_other));
  co_return co_await std::move(left);
}

TEST(ForkTest, AForkOnTheLoopOfAParkedChildKeepsBothParkingsApart) {
  reclaiming_queue_executor ex;
  deferred<int> wake;
  deferred<int> gate;
  deferred<int> other = forks_once_woken(ex, wake, gate);
  deferred<int> outer = forks_the_parking_child(ex, deferred<int>(), wake);
  EXPECT_EQ(ex.reclaimed, 2);  // both callers went on in place
  ASSERT_TRUE(outer.fired());  // the outer fork() published its parked child
  EXPECT_EQ(outer.get(), 10);
  EXPECT_FALSE(other.fired());  // the inner child still waits on `gate`: nothing published it
  gate.callback(4);
  ASSERT_TRUE(other.fired());
  EXPECT_EQ(other.get(), 5);
}

TEST(ForkTest, ChildFailureIsThrownAtTheJoinWhetherOrNotTheParentWasTaken) {
  reclaiming_queue_executor reclaiming;
  queue_executor taking;
  auto parent = [](auto& e) -> deferred<int> {
    deferred<int> d = co_await anydefer::fork(e, child_throwing);
    co_return co_await std::move(d);
  };
  EXPECT_THROW(parent(reclaiming).get(), std::out_of_range);
  deferred<int> out = parent(taking);
  taking.drain();
  EXPECT_THROW(out.get(), std::out_of_range);
}

TEST(ForkTest, ForkOnAnInlineExecutorRunsTheChildThenTheParent) {
  struct runs_inline {
    void execute(anydefer::task& t) noexcept { t.run(); }
  } ex;
  std::vector<std::string> log;
  EXPECT_EQ(parent_logging(ex, log).get(), 42);
  EXPECT_EQ(log, (std::vector<std::string>{"parent before", "child", "parent after"}));
}

template <class Executor>
deferred<long> fib(Executor& ex, int n) {
  if (n < 2) co_return n;
  deferred<long> left = co_await anydefer::fork(ex, fib<Executor>, ex, n - 1);
  const long right = co_await fib(ex, n - 2);
  co_return co_await std::move(left) + right;
}

TEST(ForkTest, NestedForksWhereNothingIsTakenComputeInPlace) {
  reclaiming_queue_executor ex;
  EXPECT_EQ(fib(ex, 20).get(), 6765);
  EXPECT_EQ(ex.offered, ex.reclaimed);
  EXPECT_TRUE(ex.tasks.empty());
}

// Takes every other offer (as a thief would), leaving the rest to be reclaimed.
struct alternating_executor : reclaiming_queue_executor {
  std::vector<anydefer::task*> taken;
  bool take_next = false;
  void execute(anydefer::task& t) noexcept {
    ++offered;
    take_next = !take_next;
    (take_next ? taken : tasks).push_back(&t);
  }
  anydefer::offer_ticket try_offer(anydefer::task& t) noexcept {
    execute(t);
    // A taken one can never be reclaimed: its ticket matches no position in `tasks`.
    return take_next ? ~anydefer::offer_ticket{0} : tasks.size();
  }
};

TEST(ForkTest, NestedForksWithSomeContinuationsTakenStillJoinEveryChild) {
  alternating_executor ex;
  deferred<long> out = fib(ex, 15);
  while (!ex.taken.empty()) {  // run the taken continuations, newest first, as they pile up
    anydefer::task* t = ex.taken.back();
    ex.taken.pop_back();
    t->run();
  }
  ASSERT_TRUE(out.fired());
  EXPECT_EQ(out.get(), 610);
  EXPECT_GT(ex.reclaimed, 0);
}

}  // namespace
