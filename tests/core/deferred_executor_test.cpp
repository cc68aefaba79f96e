// Links scheduled on an executor run when the executor runs their task, not before; a rejected task fails its link
// and the chain carries that failure; submit() runs a function on an executor and returns its outcome.
#include <gtest/gtest.h>

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>

#include "anydefer/deferred.hpp"

namespace {

using anydefer::deferred;
using anydefer::failure;

// Queues tasks on their intrusive `next` field; run_all() runs them in order on the calling thread. Like any
// executor it runs every task it accepted, at the latest when destroyed: declare what the tasks use before it.
class manual_executor {
 public:
  manual_executor() = default;
  manual_executor(const manual_executor&) = delete;
  manual_executor& operator=(const manual_executor&) = delete;
  ~manual_executor() { run_all(); }

  void execute(anydefer::task& t) noexcept {
    t.next = nullptr;
    if (tail_ != nullptr) {
      tail_->next = &t;
    } else {
      head_ = &t;
    }
    tail_ = &t;
    ++queued_;
  }
  int run_all() noexcept {
    int ran = 0;
    while (head_ != nullptr) {
      anydefer::task* t = head_;
      head_ = t->next;
      if (head_ == nullptr) tail_ = nullptr;
      t->run();  // `t` may be gone once run() returns
      ++ran;
    }
    return ran;
  }
  void reject_all(std::exception_ptr why) noexcept {
    while (head_ != nullptr) {
      anydefer::task* t = head_;
      head_ = t->next;
      if (head_ == nullptr) tail_ = nullptr;
      t->reject(why);
    }
  }
  int queued() const noexcept { return queued_; }

 private:
  anydefer::task* head_ = nullptr;
  anydefer::task* tail_ = nullptr;
  int queued_ = 0;
};

// Runs every task before execute() returns.
struct inline_test_executor {
  void execute(anydefer::task& t) noexcept { t.run(); }
};

// Refuses every task, inline, as a stopped executor does.
struct rejecting_executor {
  void execute(anydefer::task& t) noexcept { t.reject(std::make_exception_ptr(anydefer::executor_stopped_error{})); }
};

// Queues through try_execute() (a queueing_executor), so links skip the inline-settling bookkeeping; while
// `refusing`, try_execute() queues nothing and execute() rejects inline, as a stopped pool does.
struct queueing_test_executor {
  manual_executor queue;
  bool refusing = false;
  int executes = 0;  // calls of execute(): links use it only when try_execute() refused
  bool try_execute(anydefer::task& t) noexcept {
    if (refusing) return false;
    queue.execute(t);
    return true;
  }
  void execute(anydefer::task& t) noexcept {
    ++executes;
    if (refusing) {
      t.reject(std::make_exception_ptr(anydefer::executor_stopped_error{}));
    } else {
      queue.execute(t);
    }
  }
};

static_assert(anydefer::executor<manual_executor>);
static_assert(anydefer::executor<inline_test_executor>);
static_assert(anydefer::executor<rejecting_executor>);
static_assert(anydefer::queueing_executor<queueing_test_executor>);
static_assert(!anydefer::queueing_executor<manual_executor>);

TEST(DeferredExecutorTest, ScheduledCallbackDoesNotRunWhenFired) {
  bool ran = false;
  manual_executor ex;
  deferred<int> d;
  d.add_callback(ex, [&](int) { ran = true; });

  d.callback(1);

  EXPECT_FALSE(ran);
  EXPECT_EQ(ex.queued(), 1);
}

TEST(DeferredExecutorTest, ScheduledCallbackRunsWhenExecutorRunsTask) {
  manual_executor ex;
  deferred<int> d;
  int seen = 0;
  d.add_callback(ex, [&](int v) { seen = v; });
  d.callback(5);

  ex.run_all();

  EXPECT_EQ(seen, 5);
}

TEST(DeferredExecutorTest, ScheduledLinkFiresAfterTaskRuns) {
  manual_executor ex;
  deferred<int> d;
  auto next = d.add_callback(ex, [](int v) { return v + 1; });
  d.callback(1);
  EXPECT_FALSE(next.fired());

  ex.run_all();

  EXPECT_EQ(next.get(), 2);
}

TEST(DeferredExecutorTest, ScheduledLinkAddedAfterFiringIsQueuedNotRun) {
  bool ran = false;
  manual_executor ex;
  deferred<int> d;
  d.callback(3);

  d.add_callback(ex, [&](int) { ran = true; });

  EXPECT_FALSE(ran);
  EXPECT_EQ(ex.queued(), 1);
}

TEST(DeferredExecutorTest, ScheduledErrbackRunsOnExecutor) {
  manual_executor ex;
  deferred<int> d;
  std::string seen;
  d.add_errback(ex, [&](failure f) {
    seen = f.what();
    return 0;
  });
  d.errback(std::runtime_error("scheduled"));
  EXPECT_TRUE(seen.empty());

  ex.run_all();

  EXPECT_EQ(seen, "scheduled");
}

TEST(DeferredExecutorTest, InlineLinksAfterScheduledLinkRunInsideTheTask) {
  manual_executor ex;
  deferred<int> d;
  int seen = 0;
  d.add_callback(ex, [](int v) { return v * 2; }).add_callback([&](int v) { seen = v; });
  d.callback(4);
  EXPECT_EQ(seen, 0);

  ex.run_all();

  EXPECT_EQ(seen, 8);
}

TEST(DeferredExecutorTest, InlineExecutorRunsCallbackWhenFired) {
  inline_test_executor ex;
  deferred<int> d;
  int seen = 0;
  d.add_callback(ex, [](int v) { return v + 1; }).add_callback([&](int v) { seen = v; });

  d.callback(1);

  EXPECT_EQ(seen, 2);
}

TEST(DeferredExecutorTest, InlineExecutorChainOfScheduledLinksCompletes) {
  inline_test_executor ex;
  deferred<int> d;
  deferred<int> end = d;
  for (int i = 0; i < 1000; ++i) end = end.add_callback(ex, [](int v) { return v + 1; });

  d.callback(0);

  EXPECT_EQ(end.get(), 1000);
}

TEST(DeferredExecutorTest, RejectedTaskFailsLinkWithExecutorStopped) {
  rejecting_executor ex;
  deferred<int> d;
  bool ran = false;
  auto next = d.add_callback(ex, [&](int v) {
    ran = true;
    return v;
  });

  d.callback(1);

  EXPECT_FALSE(ran);
  EXPECT_THROW(next.get(), anydefer::executor_stopped_error);
}

TEST(DeferredExecutorTest, ChainContinuesWithRejectionFailure) {
  rejecting_executor ex;
  deferred<int> d;
  bool stopped = false;
  auto end = d.add_callback(ex, [](int v) { return v; }).add_errback([&](failure f) {
    stopped = f.check<anydefer::executor_stopped_error>();
    return -1;
  });

  d.callback(1);

  EXPECT_TRUE(stopped);
  EXPECT_EQ(end.get(), -1);
}

TEST(DeferredExecutorTest, TaskRejectedLaterFailsLinkWithTheGivenError) {
  manual_executor ex;
  deferred<int> d;
  bool ran = false;
  auto next = d.add_callback(ex, [&](int v) {
    ran = true;
    return v;
  });
  d.callback(1);

  ex.reject_all(std::make_exception_ptr(anydefer::executor_stopped_error("shutting down")));

  EXPECT_FALSE(ran);
  try {
    next.get();
    FAIL() << "get() returned a value";
  } catch (const anydefer::executor_stopped_error& e) {
    EXPECT_STREQ(e.what(), "shutting down");
  }
}

TEST(DeferredExecutorTest, RejectedErrbackStillFailsWithExecutorStopped) {
  rejecting_executor ex;
  deferred<int> d;
  auto next = d.add_errback(ex, [](failure) { return 0; });

  d.errback(std::runtime_error("original"));

  EXPECT_THROW(next.get(), anydefer::executor_stopped_error);
}

TEST(DeferredExecutorTest, LinkOnAQueueingExecutorIsQueuedThroughTryExecute) {
  queueing_test_executor ex;
  deferred<int> d;
  auto next = d.add_callback(ex, [](int v) { return v + 1; });
  d.callback(1);
  EXPECT_EQ(ex.queue.queued(), 1);
  EXPECT_EQ(ex.executes, 0);
  EXPECT_FALSE(next.fired());

  ex.queue.run_all();

  EXPECT_EQ(next.get(), 2);
}

TEST(DeferredExecutorTest, LongChainOnAQueueingExecutorThatRefusesFailsEveryLinkThroughExecute) {
  queueing_test_executor ex;
  ex.refusing = true;
  deferred<int> head;
  deferred<int> tail = head;
  constexpr int links = 200'000;  // an inline rejection that recursed would overflow the stack
  int ran = 0;
  for (int i = 0; i < links; ++i) tail = tail.add_callback(ex, [&](int v) { return ++ran, v; });
  head.callback(1);
  EXPECT_THROW(tail.get(), anydefer::executor_stopped_error);
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(ex.executes, links);
}

TEST(DeferredExecutorTest, ScheduledAddCallbacksRunsOneSide) {
  manual_executor ex;
  deferred<int> d;
  auto next = d.add_callbacks(
      ex, [](int v) { return v; }, [](failure) { return -5; });
  d.errback(std::runtime_error("x"));

  ex.run_all();

  EXPECT_EQ(next.get(), -5);
}

TEST(DeferredExecutorTest, ScheduledAddBothRunsOnExecutor) {
  manual_executor ex;
  deferred<int> d;
  auto next = d.add_both(ex, [](anydefer::result<int>&& r) { return r.has_value(); });
  d.callback(1);
  EXPECT_FALSE(next.fired());

  ex.run_all();

  EXPECT_TRUE(next.get());
}

TEST(DeferredExecutorTest, CancellingQueuedLinkFailsItAndSkipsTheCallback) {
  manual_executor ex;
  deferred<int> d;
  bool ran = false;
  auto next = d.add_callback(ex, [&](int v) {
    ran = true;
    return v;
  });
  d.callback(1);

  next.cancel();
  ex.run_all();

  EXPECT_FALSE(ran);
  EXPECT_THROW(next.get(), anydefer::cancelled_error);
}

TEST(DeferredExecutorTest, CancellingQueuedLinkDropsTheUpstreamsResultUnseen) {
  // The link took the upstream's result when its task was queued: a cancel() that wins frees it when the task
  // comes round, although the upstream's own handle lives on.
  manual_executor ex;
  auto value = std::make_shared<int>(1);
  std::weak_ptr<int> watch = value;
  deferred<std::shared_ptr<int>> d;
  bool ran = false;
  auto next = d.add_callback(ex, [&](const std::shared_ptr<int>& v) {
    ran = true;
    return *v;
  });
  d.callback(std::move(value));

  next.cancel();
  ex.run_all();

  EXPECT_FALSE(ran);
  EXPECT_TRUE(watch.expired()) << "the cancelled link's input outlives its run";
  EXPECT_THROW(next.get(), anydefer::cancelled_error);
  EXPECT_TRUE(d.fired());
}

// --- submit -------------------------------------------------------------------------------------------------

TEST(SubmitTest, RunsFunctionOnlyWhenExecutorRunsIt) {
  bool ran = false;
  manual_executor ex;

  auto d = anydefer::submit(ex, [&] {
    ran = true;
    return 1;
  });

  EXPECT_FALSE(ran);
  EXPECT_FALSE(d.fired());
}

TEST(SubmitTest, ReturnsDeferredOfFunctionsResult) {
  manual_executor ex;
  auto d = anydefer::submit(ex, [] { return std::string("computed"); });

  ex.run_all();

  EXPECT_EQ(d.get(), "computed");
}

TEST(SubmitTest, ThrowingFunctionFailsTheDeferred) {
  manual_executor ex;
  auto d = anydefer::submit(ex, []() -> int { throw std::out_of_range("submitted"); });

  ex.run_all();

  EXPECT_THROW(d.get(), std::out_of_range);
}

TEST(SubmitTest, VoidFunctionGivesVoidDeferred) {
  manual_executor ex;
  bool ran = false;
  deferred<void> d = anydefer::submit(ex, [&] { ran = true; });

  ex.run_all();

  EXPECT_TRUE(ran);
  EXPECT_TRUE(d.fired());
}

TEST(SubmitTest, FunctionReturningDeferredGivesItsOutcome) {
  manual_executor ex;
  deferred<int> inner;
  auto d = anydefer::submit(ex, [inner] { return inner; });
  ex.run_all();
  EXPECT_FALSE(d.fired());

  inner.callback(17);

  EXPECT_EQ(d.get(), 17);
}

TEST(SubmitTest, FunctionReturningFailedDeferredGivesThatFailure) {
  manual_executor ex;
  auto d = anydefer::submit(ex, [] { return anydefer::fail<int>(std::range_error("inner failed")); });
  ex.run_all();
  EXPECT_THROW(d.get(), std::range_error);
}

TEST(SubmitTest, FunctionThrowingInsteadOfReturningADeferredFailsTheDeferred) {
  manual_executor ex;
  auto d = anydefer::submit(ex, []() -> deferred<int> { throw std::out_of_range("no deferred"); });
  ex.run_all();
  EXPECT_THROW(d.get(), std::out_of_range);
}

TEST(SubmitTest, InlineExecutorRunsAtOnce) {
  inline_test_executor ex;

  auto d = anydefer::submit(ex, [] { return 3; });

  EXPECT_EQ(d.get(), 3);
}

TEST(SubmitTest, RejectingExecutorFailsWithExecutorStopped) {
  rejecting_executor ex;
  bool ran = false;

  auto d = anydefer::submit(ex, [&] {
    ran = true;
    return 0;
  });

  EXPECT_FALSE(ran);
  EXPECT_THROW(d.get(), anydefer::executor_stopped_error);
}

TEST(SubmitTest, CancelBeforeRunSkipsTheFunction) {
  manual_executor ex;
  bool ran = false;
  auto d = anydefer::submit(ex, [&] {
    ran = true;
    return 0;
  });

  d.cancel();
  ex.run_all();

  EXPECT_FALSE(ran);
  EXPECT_THROW(d.get(), anydefer::cancelled_error);
}

}  // namespace
