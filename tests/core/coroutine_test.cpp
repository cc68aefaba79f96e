// Deferred generators: C++20 coroutines that co_await deferreds and return one.
#include <gtest/gtest.h>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "core/queue_executor.hpp"

namespace {

using anydefer::deferred;

deferred<int> deferred_returning_function(int a) { return anydefer::succeed(a + 1); }

deferred<int> another_deferred_returning_function(deferred<int> later, int a, int b) {
  return later.add_callback([a, b](int v) { return a + b + v; });
}

deferred<int> some_function(deferred<int> later) {
  int a = 1;
  int b = co_await deferred_returning_function(a);
  int c = co_await another_deferred_returning_function(later, a, b);
  co_return c;
}

TEST(CoroutineTest, ReadmeExampleSuspendsUntilTheAwaitedDeferredFires) {
  deferred<int> later;
  deferred<int> out = some_function(later);
  EXPECT_FALSE(out.fired());
  later.callback(10);
  EXPECT_EQ(out.get(), 13);
}

deferred<int> immediate() { co_return 7; }

TEST(CoroutineTest, CoroutineStartsEagerlyAndFiresOnReturn) {
  deferred<int> d = immediate();
  EXPECT_TRUE(d.fired());
  EXPECT_EQ(d.get(), 7);
}

deferred<void> records(std::vector<std::string>& log, deferred<int> gate) {
  log.push_back("started");
  int v = co_await gate;
  log.push_back("resumed " + std::to_string(v));
}

TEST(CoroutineTest, BodyRunsUntilFirstUnfiredAwaitOnTheCallingThread) {
  std::vector<std::string> log;
  deferred<int> gate;
  deferred<void> d = records(log, gate);
  ASSERT_EQ(log, std::vector<std::string>{"started"});
  gate.callback(3);
  EXPECT_EQ(log, (std::vector<std::string>{"started", "resumed 3"}));
  EXPECT_TRUE(d.fired());
}

deferred<int> catches(deferred<int> failing) {
  try {
    co_await failing;
  } catch (const std::out_of_range& e) {
    co_return static_cast<int>(std::string(e.what()).size());
  }
  co_return -1;
}

TEST(CoroutineTest, AwaitedFailureIsThrownAtTheCoAwait) {
  deferred<int> failing;
  deferred<int> out = catches(failing);
  failing.errback(std::out_of_range("abcd"));
  EXPECT_EQ(out.get(), 4);
}

deferred<int> throws_after(deferred<int> gate) {
  int v = co_await gate;
  throw std::runtime_error("escaped " + std::to_string(v));
}

TEST(CoroutineTest, EscapingExceptionFailsTheCoroutinesDeferred) {
  deferred<int> gate;
  deferred<int> out = throws_after(gate);
  gate.callback(5);
  try {
    out.get();
    FAIL() << "expected the exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "escaped 5");
  }
}

deferred<int> inner_level(deferred<int> gate) { co_return 2 * co_await gate; }
deferred<int> middle_level(deferred<int> gate) { co_return 1 + co_await inner_level(gate); }
deferred<int> outer_level(deferred<int> gate) { co_return 100 + co_await middle_level(gate); }

TEST(CoroutineTest, NestedCoroutinesPassValuesOutward) {
  deferred<int> gate;
  deferred<int> out = outer_level(gate);
  gate.callback(20);
  EXPECT_EQ(out.get(), 141);
}

deferred<int> try_across_awaits(deferred<int> first, deferred<int> second) {
  int total = 0;
  try {
    total += co_await first;
    total += co_await second;  // throws
    total += 1000;
  } catch (const std::logic_error&) {
    total += 10;
  }
  co_return total;
}

TEST(CoroutineTest, TryCatchSpansSeveralAwaits) {
  deferred<int> first;
  deferred<int> second;
  deferred<int> out = try_across_awaits(first, second);
  first.callback(1);
  second.errback(std::logic_error("no"));
  EXPECT_EQ(out.get(), 11);
}

deferred<std::unique_ptr<int>> move_only(deferred<std::unique_ptr<int>> gate) {
  std::unique_ptr<int> p = co_await gate;
  *p += 1;
  co_return p;
}

TEST(CoroutineTest, MoveOnlyValuesFlowThroughAwaitAndReturn) {
  deferred<std::unique_ptr<int>> gate;
  auto out = move_only(gate);
  gate.callback(std::make_unique<int>(41));
  EXPECT_EQ(*out.get(), 42);
}

#if defined(__SANITIZE_THREAD__)
constexpr long ten_million = 1'000'000;  // ThreadSanitizer is ~10x slower; the stack argument is the same
#else
constexpr long ten_million = 10'000'000;
#endif

deferred<long> sum_fired(long n) {
  long sum = 0;
  for (long i = 0; i < n; ++i) sum += co_await anydefer::succeed(1L);
  co_return sum;
}

TEST(CoroutineTest, TenMillionAwaitsOfFiredDeferredsRunInConstantStack) {
  EXPECT_EQ(sum_fired(ten_million).get(), ten_million);
}

// Two coroutines hand a counter back and forth. Each fires what the other awaits from inside a deferred's
// callback, while it is itself being resumed: without the trampoline every hand-over would nest one level
// deeper on the stack.
struct court {
  deferred<long> to_a;
  deferred<long> to_b;
};

void serve(const deferred<long>& to, long v) {
  deferred<void> trigger;
  (void)trigger.add_callback([to, v] { to.callback(v); });
  trigger.callback();
}

deferred<long> player(court& c, bool is_a, long rounds) {
  long last = 0;
  for (long i = 0; i < rounds; ++i) {
    deferred<long> mine = is_a ? c.to_a : c.to_b;
    last = co_await mine;
    deferred<long> next;
    (is_a ? c.to_a : c.to_b) = next;
    serve(is_a ? c.to_b : c.to_a, last + 1);
  }
  co_return last;
}

TEST(CoroutineTest, TenMillionResumesFiredFromInsideCallbacksRunInConstantStack) {
  court c;
  deferred<long> a = player(c, true, ten_million / 2);
  deferred<long> b = player(c, false, ten_million / 2);
  serve(c.to_a, 0);  // every hand-over happens inside this call, one after the other
  EXPECT_EQ(b.get(), ten_million - 1);
  EXPECT_EQ(a.get(), ten_million - 2);
}

struct cancel_log {
  int canceller_calls = 0;
};

deferred<int> awaits_cancellable(deferred<int> awaited) {
  try {
    co_return co_await awaited;
  } catch (const anydefer::cancelled_error&) {
    co_return -1;
  }
}

TEST(CoroutineTest, CancelForwardsToTheAwaitedDeferredAndCoroutineMayCatch) {
  cancel_log log;
  deferred<int> awaited([&log](deferred<int>&) { ++log.canceller_calls; });
  deferred<int> out = awaits_cancellable(awaited);
  out.cancel();
  EXPECT_EQ(log.canceller_calls, 1);
  EXPECT_EQ(out.get(), -1);
}

deferred<int> uncaught(deferred<int> awaited) { co_return co_await awaited; }

TEST(CoroutineTest, UncaughtCancellationFailsTheCoroutineWithCancelledError) {
  deferred<int> awaited;
  deferred<int> out = uncaught(awaited);
  out.cancel();
  EXPECT_THROW(out.get(), anydefer::cancelled_error);
}

deferred<int> recovers_then_awaits(deferred<int> first, deferred<int> second) {
  try {
    co_await first;
  } catch (const anydefer::cancelled_error&) {
  }
  co_return co_await second;
}

TEST(CoroutineTest, SecondCancelReachesTheNextAwaitAfterTheFirstWasCaught) {
  deferred<int> first;
  deferred<int> second;
  deferred<int> out = recovers_then_awaits(first, second);
  out.cancel();  // first is cancelled; the coroutine catches it and now waits on second
  EXPECT_FALSE(out.fired());
  out.cancel();
  EXPECT_THROW(out.get(), anydefer::cancelled_error);
}

// `self` points to the caller's handle to this very coroutine's deferred (a plain pointer: a handle held by the
// frame itself would keep the frame alive forever).
deferred<int> cancels_itself_while_running(deferred<int> gate, const deferred<int>* self, deferred<int> next) {
  co_await gate;
  self->cancel();  // running, awaiting nothing: the next await is cancelled as soon as it suspends
  co_return co_await next;
}

TEST(CoroutineTest, CancelWhileRunningCancelsTheNextAwait) {
  deferred<int> gate;
  deferred<int> next;
  deferred<int> out;
  out = cancels_itself_while_running(gate, &out, next);
  gate.callback(1);
  EXPECT_THROW(out.get(), anydefer::cancelled_error);
}

deferred<int> awaits_and_counts(deferred<int> gate, std::atomic<int>& frames) {
  ++frames;
  struct on_exit {
    std::atomic<int>& frames;
    ~on_exit() { --frames; }
  } guard{frames};
  co_return co_await std::move(gate);  // the frame gives up its handle: only the producer's remains
}

TEST(CoroutineTest, FrameIsDestroyedOnceAfterValue) {
  std::atomic<int> frames{0};
  deferred<int> gate;
  {
    deferred<int> out = awaits_and_counts(gate, frames);
    EXPECT_EQ(frames.load(), 1);
    gate.callback(1);
    EXPECT_EQ(out.get(), 1);
  }
  EXPECT_EQ(frames.load(), 0);
}

TEST(CoroutineTest, FrameSurvivesDroppedHandleUntilItFinishes) {
  std::atomic<int> frames{0};
  deferred<int> gate;
  (void)awaits_and_counts(gate, frames);  // every handle to its deferred is gone at once
  EXPECT_EQ(frames.load(), 1);            // still suspended, still alive
  gate.callback(1);
  EXPECT_EQ(frames.load(), 0);  // finished and nobody holds it
}

TEST(CoroutineTest, FrameIsDestroyedOnceAfterCancellation) {
  std::atomic<int> frames{0};
  deferred<int> gate;
  {
    deferred<int> out = awaits_and_counts(gate, frames);
    out.cancel();
    EXPECT_THROW(out.get(), anydefer::cancelled_error);
  }
  EXPECT_EQ(frames.load(), 0);
}

TEST(CoroutineTest, AbandonedAwaitedDeferredResumesWithBrokenDeferredError) {
  std::atomic<int> frames{0};
  deferred<int> out;
  {
    deferred<int> gate;
    out = awaits_and_counts(gate, frames);
  }  // the only producer handle is gone: nothing can fire gate
  EXPECT_THROW(out.get(), anydefer::broken_deferred_error);
  out = deferred<int>();
  EXPECT_EQ(frames.load(), 0);
}

TEST(CoroutineTest, AwaitingAContinuedDeferredThrowsAlreadyContinued) {
  deferred<int> gate;
  (void)gate.add_callback([](int v) { return v; });
  deferred<int> out = uncaught(gate);
  EXPECT_THROW(out.get(), anydefer::already_continued_error);
  gate.callback(1);
}

// A minimal foreign coroutine type: proves deferreds are awaitable outside deferred coroutines.
struct foreign_task {
  struct promise_type {
    int* out = nullptr;
    foreign_task get_return_object() { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

foreign_task foreign(deferred<int> gate, int& out) { out = co_await gate; }

TEST(CoroutineTest, DeferredIsAwaitableFromAForeignCoroutineType) {
  deferred<int> gate;
  int out = 0;
  foreign_task t = foreign(gate, out);
  EXPECT_EQ(out, 0);
  gate.callback(9);
  EXPECT_EQ(out, 9);
  EXPECT_TRUE(t.handle.done());
  t.handle.destroy();
}

// A foreign awaitable: deferred coroutines have no closed await_transform.
struct ready_number {
  int value;
  bool await_ready() const noexcept { return true; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  int await_resume() const noexcept { return value; }
};

deferred<int> awaits_foreign() {
  int v = co_await ready_number{5};
  co_await std::suspend_never{};
  co_return v;
}

TEST(CoroutineTest, AnyStandardAwaitableCanBeAwaitedInside) { EXPECT_EQ(awaits_foreign().get(), 5); }

using anydefer_test::queue_executor;  // tasks wait until drained on the calling thread

deferred<std::thread::id> hops(queue_executor& ex) {
  co_await anydefer::resume_on(ex);
  co_return std::this_thread::get_id();
}

TEST(CoroutineTest, ResumeOnContinuesOnlyWhenTheExecutorRunsIt) {
  queue_executor ex;
  deferred<std::thread::id> out = hops(ex);
  EXPECT_FALSE(out.fired());
  ASSERT_EQ(ex.tasks.size(), 1u);
  ex.drain();
  EXPECT_EQ(out.get(), std::this_thread::get_id());
}

TEST(CoroutineTest, ResumeOnARejectingExecutorThrowsItsError) {
  queue_executor ex;
  ex.rejecting = true;
  EXPECT_THROW(hops(ex).get(), anydefer::executor_stopped_error);
}

// A coroutine that never suspends publishes its result without a locked instruction (nobody else can see its
// deferred before it returns); what it produced must still reach everyone as usual.
deferred<int> returns_at_once(int v) { co_return v; }
deferred<int> awaits_only_fired() { co_return co_await returns_at_once(3) + co_await returns_at_once(4); }
deferred<int> fails_at_once() {
  throw std::logic_error("at once");
  co_return 0;
}

TEST(CoroutineTest, CoroutineThatNeverSuspendedIsReadableFromAnotherThread) {
  deferred<int> d = awaits_only_fired();
  int v = 0;
  std::thread([&] { v = d.get(); }).join();
  EXPECT_EQ(v, 7);
}

TEST(CoroutineTest, CoroutineThatNeverSuspendedStillReportsAnUnconsumedFailure) {
  int reported = 0;
  auto previous = anydefer::set_unhandled_error_handler(
      [&](const anydefer::failure& f, const std::source_location&) { reported += f.check<std::logic_error>(); });
  { deferred<int> d = fails_at_once(); }
  anydefer::set_unhandled_error_handler(previous);
  EXPECT_EQ(reported, 1);
}

TEST(CoroutineTest, CoroutineThatNeverSuspendedCanBeContinuedAndCancelledLikeAnyOther) {
  deferred<int> d = returns_at_once(5);
  d.cancel();  // fired: a no-op
  EXPECT_EQ(d.add_callback([](int v) { return v + 1; }).get(), 6);
}

}  // namespace
