// The Asio bridges: asio_executor (anydefer tasks on an io_context), use_deferred (Asio operations returning
// deferreds) and async_wait / as_awaitable (deferreds awaited from Asio).
#include <gtest/gtest.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "anydefer/asio/awaitable.hpp"
#include "anydefer/asio/executor.hpp"
#include "anydefer/asio/use_deferred.hpp"
#include "anydefer/coroutine.hpp"
#include "anydefer/deferred.hpp"
#include "anydefer/errors.hpp"

namespace {

using namespace std::chrono_literals;

// An io_context run by one thread until the object goes out of scope.
class io_thread {
 public:
  io_thread() : thread_([this] { ctx.run(); }) {}
  ~io_thread() { stop(); }
  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;

  void stop() {
    work_.reset();
    if (thread_.joinable()) thread_.join();
  }
  std::thread::id id() const { return thread_.get_id(); }

  asio::io_context ctx;

 private:
  asio::executor_work_guard<asio::io_context::executor_type> work_{ctx.get_executor()};
  std::thread thread_;
};

// --- asio_executor -------------------------------------------------------------------------------------------

TEST(AsioExecutorTest, SatisfiesTheExecutorConcept) {
  static_assert(anydefer::executor<anydefer::asio_executor<asio::io_context::executor_type>>);
  static_assert(anydefer::executor<anydefer::asio_executor<asio::strand<asio::io_context::executor_type>>>);
  static_assert(anydefer::executor<anydefer::asio_executor<asio::any_io_executor>>);
}

TEST(AsioExecutorTest, ContinuationRunsOnTheIoContextThread) {
  io_thread io;
  auto on_io = anydefer::on_asio(io.ctx);
  anydefer::deferred<int> d;

  auto where = d.add_callback(on_io, [](int v) { return std::make_pair(v + 1, std::this_thread::get_id()); });
  d.callback(1);

  auto [value, thread] = where.get();
  EXPECT_EQ(value, 2);
  EXPECT_EQ(thread, io.id());
}

TEST(AsioExecutorTest, ResumeOnHopsACoroutineOntoTheIoContext) {
  io_thread io;
  auto on_io = anydefer::on_asio(io.ctx.get_executor());
  auto hop = [](anydefer::executor_ref ex) -> anydefer::deferred<std::thread::id> {
    co_await anydefer::resume_on(ex);
    co_return std::this_thread::get_id();
  };
  EXPECT_EQ(hop(on_io).get(), io.id());
}

TEST(AsioExecutorTest, StrandRunsTasksOneAtATime) {
  asio::io_context ctx;
  auto on_strand = anydefer::on_asio(asio::make_strand(ctx));
  int unguarded = 0;  // only touched inside the strand: a data race here would be a strand bug
  std::vector<anydefer::deferred<void>> done;
  for (int i = 0; i < 1000; ++i) {
    done.push_back(anydefer::succeed().add_callback(on_strand, [&unguarded] { ++unguarded; }));
  }
  std::thread a([&ctx] { ctx.run(); });
  std::thread b([&ctx] { ctx.run(); });
  a.join();
  b.join();
  for (auto& d : done) d.get();
  EXPECT_EQ(unguarded, 1000);
}

TEST(AsioExecutorTest, TaskStillQueuedWhenTheIoContextIsDestroyedIsRejected) {
  auto ctx = std::make_unique<asio::io_context>();
  auto on_io = anydefer::on_asio(*ctx);
  bool ran = false;
  auto d = anydefer::succeed(1).add_callback(on_io, [&ran](int v) {
    ran = true;
    return v;
  });
  EXPECT_FALSE(d.fired());  // posted, never run: nobody runs the io_context

  ctx.reset();

  EXPECT_FALSE(ran);
  EXPECT_THROW(d.get(), anydefer::executor_stopped_error);
}

TEST(AsioExecutorTest, TaskPostedToAStoppedIoContextRunsAfterRestart) {
  asio::io_context ctx;
  ctx.stop();
  auto on_io = anydefer::on_asio(ctx);
  auto d = anydefer::succeed(20).add_callback(on_io, [](int v) { return v + 1; });

  ctx.run();  // stopped: returns at once
  EXPECT_FALSE(d.fired());
  ctx.restart();
  ctx.run();

  EXPECT_EQ(d.get(), 21);
}

// --- use_deferred --------------------------------------------------------------------------------------------

TEST(UseDeferredTest, SteadyTimerFiresAVoidDeferred) {
  io_thread io;
  asio::steady_timer timer(io.ctx, 5ms);
  std::thread::id fired_on;

  anydefer::deferred<void> d = timer.async_wait(anydefer::use_deferred);
  auto done = d.add_callback([&fired_on] { fired_on = std::this_thread::get_id(); });

  done.get();
  EXPECT_EQ(fired_on, io.id());
}

TEST(UseDeferredTest, ErrorCarriesSystemError) {
  asio::io_context ctx;
  asio::steady_timer timer(ctx, 1h);
  anydefer::deferred<void> d = timer.async_wait(anydefer::use_deferred);

  timer.cancel();  // Asio's own cancellation: the operation ends with operation_aborted
  ctx.run();

  ASSERT_TRUE(d.fired());
  try {
    d.get();
    FAIL() << "expected std::system_error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), asio::error::operation_aborted);
  }
}

TEST(UseDeferredTest, CancellingTheDeferredCancelsTheOperation) {
  io_thread io;
  asio::steady_timer timer(io.ctx, 1h);
  anydefer::deferred<void> d = timer.async_wait(anydefer::use_deferred);

  auto started = std::chrono::steady_clock::now();
  d.cancel();  // from this thread, not the io_context's

  EXPECT_THROW(d.get(), anydefer::cancelled_error);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

TEST(UseDeferredTest, CancelIsNotAFailureUntilAsioCompletes) {
  asio::io_context ctx;  // not running yet: the cancellation cannot reach the operation
  asio::steady_timer timer(ctx, 1h);
  anydefer::deferred<void> d = timer.async_wait(anydefer::use_deferred);

  d.cancel();
  EXPECT_FALSE(d.fired());

  ctx.run();  // runs the emit, then the aborted completion
  EXPECT_THROW(d.get(), anydefer::cancelled_error);
}

TEST(UseDeferredTest, PostGivesAVoidDeferred) {
  io_thread io;
  anydefer::deferred<void> d = asio::post(io.ctx, anydefer::use_deferred);
  EXPECT_NO_THROW(d.get());
}

TEST(UseDeferredTest, CoSpawnResultBecomesADeferred) {
  io_thread io;
  auto value = asio::co_spawn(
      io.ctx, []() -> asio::awaitable<int> { co_return 7; }, anydefer::use_deferred);
  auto thrown = asio::co_spawn(
      io.ctx, []() -> asio::awaitable<int> { throw std::out_of_range("in awaitable"); }, anydefer::use_deferred);
  static_assert(std::is_same_v<decltype(value), anydefer::deferred<int>>);

  EXPECT_EQ(value.get(), 7);
  EXPECT_THROW(thrown.get(), std::out_of_range);
}

TEST(UseDeferredTest, SeveralValuesArriveAsATuple) {
  // An operation completing inline, with two values after the error_code.
  auto d = asio::async_initiate<const anydefer::use_deferred_t, void(std::error_code, int, std::string)>(
      [](auto handler) { std::move(handler)(std::error_code(), 3, std::string("three")); }, anydefer::use_deferred);
  static_assert(std::is_same_v<decltype(d), anydefer::deferred<std::tuple<int, std::string>>>);

  EXPECT_EQ(d.get(), std::make_tuple(3, std::string("three")));
}

TEST(UseDeferredTest, OperationDestroyedWithTheIoContextFails) {
  auto ctx = std::make_unique<asio::io_context>();
  auto timer = std::make_unique<asio::steady_timer>(*ctx, 1h);
  anydefer::deferred<void> d = timer->async_wait(anydefer::use_deferred);

  timer.reset();  // queues the aborted completion, which nobody runs
  ctx.reset();    // destroys it

  EXPECT_THROW(d.get(), anydefer::executor_stopped_error);
}

// --- async_wait / as_awaitable ---------------------------------------------------------------------------------

TEST(AwaitableTest, CoAwaitGivesTheDeferredsValue) {
  io_thread io;
  anydefer::deferred<int> d;
  auto coro = [](anydefer::deferred<int> in) -> asio::awaitable<std::pair<int, std::thread::id>> {
    int v = co_await anydefer::as_awaitable(in);
    co_return std::make_pair(v * 2, std::this_thread::get_id());
  };
  anydefer::deferred<std::pair<int, std::thread::id>> out = asio::co_spawn(io.ctx, coro(d), anydefer::use_deferred);

  std::thread producer([d] { d.callback(21); });
  auto [value, thread] = out.get();
  producer.join();

  EXPECT_EQ(value, 42);
  EXPECT_EQ(thread, io.id());  // resumed on the coroutine's executor, not the producer's thread
}

TEST(AwaitableTest, CoAwaitThrowsTheDeferredsFailure) {
  io_thread io;
  anydefer::deferred<int> d;
  auto coro = [](anydefer::deferred<int> in) -> asio::awaitable<std::string> {
    try {
      (void)co_await anydefer::as_awaitable(in);
    } catch (const std::out_of_range& e) {
      co_return std::string("caught ") + e.what();
    }
    co_return std::string("not thrown");
  };
  auto out = asio::co_spawn(io.ctx, coro(d), anydefer::use_deferred);
  d.errback(std::out_of_range("boom"));
  EXPECT_EQ(out.get(), "caught boom");
}

TEST(AwaitableTest, UncaughtFailurePropagatesOutOfTheAwaitable) {
  io_thread io;
  auto coro = [](anydefer::deferred<void> in) -> asio::awaitable<void> { co_await anydefer::as_awaitable(in); };
  auto out = asio::co_spawn(io.ctx, coro(anydefer::fail<void>(anydefer::failure::of(std::logic_error("x")))),
                            anydefer::use_deferred);
  EXPECT_THROW(out.get(), std::logic_error);
}

TEST(AwaitableTest, CoAwaitOfAVoidDeferred) {
  io_thread io;
  anydefer::deferred<void> d;
  auto coro = [](anydefer::deferred<void> in) -> asio::awaitable<int> {
    co_await anydefer::as_awaitable(in);
    co_return 1;
  };
  auto out = asio::co_spawn(io.ctx, coro(d), anydefer::use_deferred);
  d.callback();
  EXPECT_EQ(out.get(), 1);
}

TEST(AwaitableTest, AsyncWaitCompletesACallbackOnItsExecutor) {
  io_thread io;
  anydefer::deferred<int> d;
  std::promise<std::tuple<bool, int, std::thread::id>> seen;
  anydefer::async_wait(d, asio::bind_executor(io.ctx, [&seen](std::exception_ptr e, int v) {
                         seen.set_value({e == nullptr, v, std::this_thread::get_id()});
                       }));
  d.callback(3);
  auto [ok, value, thread] = seen.get_future().get();
  EXPECT_TRUE(ok);
  EXPECT_EQ(value, 3);
  EXPECT_EQ(thread, io.id());
}

TEST(AwaitableTest, AsyncWaitHoldsWorkUntilTheDeferredFires) {
  asio::io_context ctx;  // no work guard: only the pending async_wait keeps run() running
  anydefer::deferred<int> d;
  std::optional<int> got;
  anydefer::async_wait(d, asio::bind_executor(ctx, [&got](std::exception_ptr, int v) { got = v; }));
  std::thread producer([d] {
    std::this_thread::sleep_for(20ms);
    d.callback(11);
  });
  ctx.run();
  producer.join();
  EXPECT_EQ(got, 11);
}

TEST(AwaitableTest, AsyncWaitOnAConsumedDeferredCompletesWithTheMisuse) {
  io_thread io;
  anydefer::deferred<int> d;
  (void)d.add_callback([](int v) { return v; });
  std::promise<std::exception_ptr> seen;
  anydefer::async_wait(d, asio::bind_executor(io.ctx, [&seen](std::exception_ptr e, int) { seen.set_value(e); }));
  std::exception_ptr e = seen.get_future().get();
  ASSERT_NE(e, nullptr);
  EXPECT_THROW(std::rethrow_exception(e), anydefer::already_continued_error);
  d.callback(0);
}

}  // namespace
