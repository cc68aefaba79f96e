// to_std_future / from_std_future: values, exceptions and void, both ways.
#include "anydefer/std_future.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "anydefer/errors.hpp"
#include "anydefer/executors/thread_pool.hpp"

namespace {

using namespace std::chrono_literals;

TEST(StdFutureTest, ToStdFutureGetsTheValueFiredLater) {
  anydefer::deferred<int> d;
  std::future<int> f = anydefer::to_std_future(d);
  EXPECT_EQ(f.wait_for(0s), std::future_status::timeout);

  std::thread producer([d] { d.callback(42); });
  EXPECT_EQ(f.get(), 42);
  producer.join();
}

TEST(StdFutureTest, ToStdFutureOfAFiredDeferredIsReadyAtOnce) {
  std::future<std::string> f = anydefer::to_std_future(anydefer::succeed(std::string("ready")));
  ASSERT_EQ(f.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(f.get(), "ready");
}

TEST(StdFutureTest, ToStdFutureRethrowsTheFailure) {
  anydefer::deferred<int> d;
  std::future<int> f = anydefer::to_std_future(d);
  d.errback(std::out_of_range("boom"));
  EXPECT_THROW(f.get(), std::out_of_range);
}

TEST(StdFutureTest, ToStdFutureSupportsVoid) {
  anydefer::deferred<void> ok;
  anydefer::deferred<void> bad;
  std::future<void> f_ok = anydefer::to_std_future(ok);
  std::future<void> f_bad = anydefer::to_std_future(bad);
  ok.callback();
  bad.errback(std::runtime_error("void failed"));
  EXPECT_NO_THROW(f_ok.get());
  EXPECT_THROW(f_bad.get(), std::runtime_error);
}

TEST(StdFutureTest, ToStdFutureSupportsMoveOnlyValues) {
  anydefer::deferred<std::unique_ptr<int>> d;
  auto f = anydefer::to_std_future(d);
  d.callback(std::make_unique<int>(7));
  EXPECT_EQ(*f.get(), 7);
}

TEST(StdFutureTest, ToStdFutureConsumesTheDeferred) {
  anydefer::deferred<int> d;
  std::future<int> f = anydefer::to_std_future(d);
  EXPECT_THROW((void)d.add_callback([](int v) { return v; }), anydefer::already_continued_error);
  d.callback(1);
  EXPECT_EQ(f.get(), 1);
}

TEST(StdFutureTest, ToStdFutureCarriesCancellation) {
  anydefer::deferred<int> d;
  std::future<int> f = anydefer::to_std_future(d);
  d.cancel();
  EXPECT_THROW(f.get(), anydefer::cancelled_error);
}

TEST(StdFutureTest, FromStdFutureFiresWithTheValue) {
  anydefer::thread_pool pool(2);
  std::promise<int> p;
  anydefer::deferred<int> d = anydefer::from_std_future(p.get_future(), pool);
  EXPECT_FALSE(d.fired());

  p.set_value(5);
  EXPECT_EQ(d.get(), 5);
}

TEST(StdFutureTest, FromStdFutureFiresOnTheExecutorThread) {
  anydefer::thread_pool pool(1);
  std::promise<std::thread::id> p;
  std::thread::id worker;
  auto d = anydefer::from_std_future(p.get_future(), pool).add_callback([&worker](std::thread::id) {
    worker = std::this_thread::get_id();
  });
  p.set_value(std::this_thread::get_id());
  d.get();
  EXPECT_NE(worker, std::this_thread::get_id());
}

TEST(StdFutureTest, FromStdFutureTurnsTheExceptionIntoAFailure) {
  anydefer::thread_pool pool(1);
  std::promise<int> p;
  anydefer::deferred<int> d = anydefer::from_std_future(p.get_future(), pool);
  p.set_exception(std::make_exception_ptr(std::out_of_range("from the future")));
  auto recovered = d.add_errback([](anydefer::failure f) {
    f.trap<std::out_of_range>();
    return -1;
  });
  EXPECT_EQ(recovered.get(), -1);
}

TEST(StdFutureTest, FromStdFutureSupportsVoid) {
  anydefer::thread_pool pool(1);
  std::promise<void> ok;
  std::promise<void> bad;
  auto d_ok = anydefer::from_std_future(ok.get_future(), pool);
  auto d_bad = anydefer::from_std_future(bad.get_future(), pool);
  ok.set_value();
  bad.set_exception(std::make_exception_ptr(std::runtime_error("void failed")));
  EXPECT_NO_THROW(d_ok.get());
  EXPECT_THROW(d_bad.get(), std::runtime_error);
}

TEST(StdFutureTest, FromStdFutureOfAsyncWorks) {
  anydefer::thread_pool pool(1);
  auto d = anydefer::from_std_future(std::async(std::launch::async, [] { return std::string("async"); }), pool);
  EXPECT_EQ(d.get(), "async");
}

TEST(StdFutureTest, FromStdFutureRejectedByAStoppedExecutorFails) {
  anydefer::thread_pool pool(1);
  pool.stop();
  std::promise<int> p;
  anydefer::deferred<int> d = anydefer::from_std_future(p.get_future(), pool);
  EXPECT_THROW(d.get(), anydefer::executor_stopped_error);
}

TEST(StdFutureTest, FromStdFutureOfAnInvalidFutureThrows) {
  anydefer::thread_pool pool(1);
  EXPECT_THROW((void)anydefer::from_std_future(std::future<int>(), pool), std::future_error);
}

TEST(StdFutureTest, RoundTripKeepsValueAndFailure) {
  anydefer::thread_pool pool(2);
  anydefer::deferred<int> d;
  anydefer::deferred<int> back = anydefer::from_std_future(anydefer::to_std_future(d), pool);
  d.callback(9);
  EXPECT_EQ(back.get(), 9);
}

}  // namespace
