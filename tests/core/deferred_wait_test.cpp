// Synchronous access: wait(), wait_for() and get() block until another thread fires, time out on an unfired
// deferred, rethrow a failure, and defer to the calling thread's wait policy.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "anydefer/deferred.hpp"

namespace {

using anydefer::deferred;
using namespace std::chrono_literals;

TEST(DeferredWaitTest, GetReturnsValueFiredFromAnotherThread) {
  deferred<int> d;
  std::thread producer([d] {
    std::this_thread::sleep_for(20ms);
    d.callback(42);
  });

  int v = d.get();

  producer.join();
  EXPECT_EQ(v, 42);
}

TEST(DeferredWaitTest, GetSeesWritesMadeBeforeTheFire) {
  deferred<void> d;
  std::string message;  // plain memory: the fire must publish it
  std::thread producer([d, &message] {
    message = "written before callback()";
    d.callback();
  });

  d.get();

  EXPECT_EQ(message, "written before callback()");
  producer.join();
}

TEST(DeferredWaitTest, GetRethrowsFailureFiredFromAnotherThread) {
  deferred<int> d;
  std::thread producer([d] {
    std::this_thread::sleep_for(10ms);
    d.errback(std::out_of_range("remote failure"));
  });

  EXPECT_THROW(d.get(), std::out_of_range);

  producer.join();
}

TEST(DeferredWaitTest, GetRethrowsFailure) {
  deferred<int> d;
  d.errback(std::runtime_error("local failure"));

  EXPECT_THROW(d.get(), std::runtime_error);
}

TEST(DeferredWaitTest, WaitReturnsOnceFiredFromAnotherThread) {
  deferred<int> d;
  std::thread producer([d] {
    std::this_thread::sleep_for(10ms);
    d.callback(1);
  });

  d.wait();

  EXPECT_TRUE(d.fired());
  producer.join();
}

TEST(DeferredWaitTest, WaitDoesNotConsumeTheResult) {
  deferred<int> d;
  d.callback(5);

  d.wait();

  EXPECT_EQ(d.add_callback([](int v) { return v; }).get(), 5);
}

TEST(DeferredWaitTest, WaitForTimesOutOnUnfiredDeferred) {
  deferred<int> d;
  auto start = std::chrono::steady_clock::now();

  bool ready = d.wait_for(30ms);

  EXPECT_FALSE(ready);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_FALSE(d.fired());
}

TEST(DeferredWaitTest, WaitForReturnsTrueOnFiredDeferred) {
  deferred<int> d;
  d.callback(1);

  EXPECT_TRUE(d.wait_for(0ms));
}

TEST(DeferredWaitTest, WaitForReturnsTrueWhenFiredInTime) {
  deferred<int> d;
  std::thread producer([d] {
    std::this_thread::sleep_for(10ms);
    d.callback(1);
  });

  bool ready = d.wait_for(10s);

  EXPECT_TRUE(ready);
  producer.join();
}

TEST(DeferredWaitTest, WaitUntilWithSystemClockTimesOut) {
  deferred<int> d;

  bool ready = d.wait_until(std::chrono::system_clock::now() + 20ms);

  EXPECT_FALSE(ready);
}

TEST(DeferredWaitTest, WaitOnLinkReturnsWhenChainCompletes) {
  deferred<int> root;
  auto link = root.add_callback([](int v) { return v + 1; });
  std::thread producer([root] { root.callback(1); });

  EXPECT_EQ(link.get(), 2);

  producer.join();
}

TEST(DeferredWaitTest, GetWaitsForCancelFromAnotherThread) {
  deferred<int> d;
  std::thread canceller([d] {
    std::this_thread::sleep_for(10ms);
    d.cancel();
  });

  EXPECT_THROW(d.get(), anydefer::cancelled_error);

  canceller.join();
}

// --- wait policies ------------------------------------------------------------------------------------------

class refusing_policy final : public anydefer::wait_policy {
 public:
  bool before_block() override { throw anydefer::would_block_error("this thread must not block"); }
};

// Installs `policy` on this thread for the scope.
class scoped_wait_policy {
 public:
  explicit scoped_wait_policy(anydefer::wait_policy* policy) : previous_(anydefer::set_thread_wait_policy(policy)) {}
  ~scoped_wait_policy() { anydefer::set_thread_wait_policy(previous_); }
  scoped_wait_policy(const scoped_wait_policy&) = delete;
  scoped_wait_policy& operator=(const scoped_wait_policy&) = delete;

 private:
  anydefer::wait_policy* previous_;
};

TEST(DeferredWaitTest, RefusingWaitPolicyMakesWaitThrowWouldBlock) {
  refusing_policy policy;
  scoped_wait_policy installed(&policy);
  deferred<int> d;

  EXPECT_THROW(d.wait(), anydefer::would_block_error);
}

TEST(DeferredWaitTest, RefusingWaitPolicyMakesGetThrowWouldBlock) {
  refusing_policy policy;
  scoped_wait_policy installed(&policy);
  deferred<int> d;

  EXPECT_THROW(d.get(), anydefer::would_block_error);
}

TEST(DeferredWaitTest, RefusingWaitPolicyIsNotConsultedForFiredDeferred) {
  refusing_policy policy;
  scoped_wait_policy installed(&policy);
  deferred<int> d;
  d.callback(3);

  EXPECT_EQ(d.get(), 3);
}

TEST(DeferredWaitTest, RefusedGetDoesNotConsumeTheDeferred) {
  refusing_policy policy;
  deferred<int> d;
  {
    scoped_wait_policy installed(&policy);
    EXPECT_THROW(d.get(), anydefer::would_block_error);
  }
  d.callback(8);

  EXPECT_EQ(d.get(), 8);
}

TEST(DeferredWaitTest, WaitPolicyIsPerThread) {
  refusing_policy policy;
  scoped_wait_policy installed(&policy);
  deferred<int> d;
  int v = 0;

  std::thread other([&v, d] { v = d.get(); });  // its own handle: one handle object, one thread at a time
  d.callback(6);
  other.join();

  EXPECT_EQ(v, 6);
}

// Runs the firing work itself while it waits, as a pool worker does.
class working_policy final : public anydefer::wait_policy {
 public:
  explicit working_policy(deferred<int> to_fire) : to_fire_(std::move(to_fire)) {}
  bool before_block() override {
    ++calls;
    if (!to_fire_.fired()) to_fire_.callback(10);
    return true;
  }
  int calls = 0;

 private:
  deferred<int> to_fire_;
};

TEST(DeferredWaitTest, WaitPolicyMayRunTheWorkThatFiresTheDeferred) {
  deferred<int> d;
  working_policy policy(d);
  scoped_wait_policy installed(&policy);

  int v = d.get();

  EXPECT_EQ(v, 10);
  EXPECT_EQ(policy.calls, 1);
}

}  // namespace
