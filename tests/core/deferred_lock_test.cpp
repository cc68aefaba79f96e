// deferred_lock and deferred_semaphore: Twisted's OtherPrimitivesTests (testLock, testSemaphore and the cancel
// tests) ported, plus the error paths and the recursion a chain of waiters would otherwise cause.
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "anydefer/deferred.hpp"
#include "anydefer/deferred_lock.hpp"

namespace {

using anydefer::deferred;
using anydefer::deferred_lock;
using anydefer::deferred_semaphore;

TEST(DeferredLockTest, AcquireFiresAtOnceWhenFreeAndQueuesWhenHeld) {
  deferred_lock lock;
  deferred<void> first = lock.acquire();
  EXPECT_TRUE(first.fired());
  EXPECT_TRUE(lock.locked());

  deferred<void> second = lock.acquire();
  EXPECT_FALSE(second.fired());
  EXPECT_EQ(lock.waiting(), 1U);

  lock.release();  // straight to the waiter: still locked
  EXPECT_TRUE(second.fired());
  EXPECT_TRUE(lock.locked());
  lock.release();
  EXPECT_FALSE(lock.locked());
}

TEST(DeferredLockTest, WaitersAreServedInTheOrderTheyAcquired) {
  deferred_lock lock;
  std::vector<int> order;
  deferred<void> held = lock.acquire();
  std::vector<deferred<void>> chains;
  for (int i = 0; i < 3; ++i) {
    chains.push_back(lock.acquire().add_callback([&order, &lock, i] {
      order.push_back(i);
      lock.release();
    }));
  }
  lock.release();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_FALSE(lock.locked());
}

TEST(DeferredLockTest, RunReleasesAfterTheResultAndPassesItOn) {
  deferred_lock lock;
  deferred<int> pending;
  deferred<int> ran = lock.run([&] { return pending; });
  EXPECT_TRUE(lock.locked());
  bool second_ran = false;
  deferred<void> queued = lock.run([&] { second_ran = true; });
  EXPECT_FALSE(second_ran);  // waits for the first one's deferred

  pending.callback(7);
  EXPECT_EQ(ran.get(), 7);
  EXPECT_TRUE(second_ran);
  EXPECT_FALSE(lock.locked());
}

TEST(DeferredLockTest, RunReleasesWhenTheFunctionThrows) {
  deferred_lock lock;
  deferred<int> ran = lock.run([]() -> int { throw std::runtime_error("inside the lock"); });
  EXPECT_THROW(ran.get(), std::runtime_error);
  EXPECT_FALSE(lock.locked());
}

TEST(DeferredLockTest, RunReleasesWhenTheReturnedDeferredFails) {
  deferred_lock lock;
  deferred<int> pending;
  deferred<int> ran = lock.run([&] { return pending; });
  pending.errback(std::runtime_error("later"));
  EXPECT_THROW(ran.get(), std::runtime_error);
  EXPECT_FALSE(lock.locked());
}

TEST(DeferredLockTest, ReleaseWithoutAcquireIsALogicError) {
  deferred_lock lock;
  EXPECT_THROW(lock.release(), std::logic_error);
  EXPECT_FALSE(lock.locked());
}

TEST(DeferredLockTest, CancellingAnAcquireThatFiredDoesNothing) {
  deferred_lock lock;
  deferred<void> acquired = lock.acquire();
  acquired.cancel();
  EXPECT_NO_THROW(acquired.get());
  EXPECT_TRUE(lock.locked());
  lock.release();
}

TEST(DeferredLockTest, CancellingAQueuedAcquireRemovesOnlyThatWaiter) {
  deferred_lock lock;
  deferred<void> held = lock.acquire();
  deferred<void> cancelled = lock.acquire();
  deferred<void> next = lock.acquire();
  cancelled.cancel();
  EXPECT_THROW(cancelled.get(), anydefer::cancelled_error);
  EXPECT_EQ(lock.waiting(), 1U);
  lock.release();
  EXPECT_TRUE(next.fired());
}

TEST(DeferredLockTest, CancellingRunWhileItWaitsMeansTheFunctionNeverRuns) {
  deferred_lock lock;
  deferred<void> held = lock.acquire();
  bool ran = false;
  deferred<void> waiting = lock.run([&] { ran = true; });
  waiting.cancel();
  lock.release();
  EXPECT_FALSE(ran);
  EXPECT_FALSE(lock.locked());
  EXPECT_THROW(waiting.get(), anydefer::cancelled_error);
}

TEST(DeferredLockTest, CancellingRunWhileTheFunctionsDeferredIsPendingCancelsItAndReleases) {
  deferred_lock lock;
  bool inner_cancelled = false;
  deferred<int> running =
      lock.run([&] { return deferred<int>([&inner_cancelled](deferred<int>&) { inner_cancelled = true; }); });
  EXPECT_TRUE(lock.locked());
  running.cancel();
  EXPECT_TRUE(inner_cancelled);
  EXPECT_THROW(running.get(), anydefer::cancelled_error);
  EXPECT_FALSE(lock.locked());  // released although the caller's deferred was cancelled
}

TEST(DeferredLockTest, RunsCancelledWhileQueuedNeverRunAndLoseNoPermit) {
  deferred_lock lock;
  deferred<void> held = lock.acquire();
  std::vector<deferred<void>> runs;
  int ran = 0;
  for (int i = 0; i < 4; ++i) runs.push_back(lock.run([&ran] { ++ran; }));
  runs[1].cancel();
  runs[2].cancel();
  lock.release();
  EXPECT_EQ(ran, 2);
  EXPECT_FALSE(lock.locked());
  EXPECT_EQ(lock.waiting(), 0U);
}

TEST(DeferredLockTest, ManyWaitersReleasingFromTheirCallbacksDoNotRecurse) {
  // 100,000 waiters each releasing from its callback: granted from a loop, not 100,000 nested frames (which
  // would overflow the stack, Twisted's issue #9304).
  deferred_lock lock;
  deferred<void> held = lock.acquire();
  constexpr int waiters = 100'000;
  int served = 0;
  std::vector<deferred<void>> chains;
  chains.reserve(waiters);
  for (int i = 0; i < waiters; ++i) {
    chains.push_back(lock.acquire().add_callback([&] {
      ++served;
      lock.release();
    }));
  }
  lock.release();
  EXPECT_EQ(served, waiters);
  EXPECT_FALSE(lock.locked());
}

TEST(DeferredLockTest, DestroyingTheLockFailsQueuedWaitersWithAbandonedWaiter) {
  deferred<void> waiter;
  {
    deferred_lock lock;
    deferred<void> held = lock.acquire();
    waiter = lock.acquire();
  }
  EXPECT_THROW(waiter.get(), anydefer::abandoned_waiter_error);
}

TEST(DeferredLockTest, CancellingAWaiterAfterTheLockIsGoneIsHarmless) {
  std::unique_ptr<deferred_lock> lock = std::make_unique<deferred_lock>();
  deferred<void> held = lock->acquire();
  deferred<void> waiter = lock->acquire();
  lock.reset();
  EXPECT_NO_THROW(waiter.cancel());
  EXPECT_THROW(waiter.get(), anydefer::abandoned_waiter_error);
}

TEST(DeferredSemaphoreTest, AtMostNPermitsAreOutAtOnce) {
  deferred_semaphore sem(2);
  EXPECT_EQ(sem.limit(), 2U);
  deferred<void> a = sem.acquire();
  deferred<void> b = sem.acquire();
  deferred<void> c = sem.acquire();
  EXPECT_TRUE(a.fired());
  EXPECT_TRUE(b.fired());
  EXPECT_FALSE(c.fired());
  EXPECT_EQ(sem.free_permits(), 0U);
  sem.release();
  EXPECT_TRUE(c.fired());
  EXPECT_EQ(sem.free_permits(), 0U);
  sem.release();
  sem.release();
  EXPECT_EQ(sem.free_permits(), 2U);
  EXPECT_THROW(sem.release(), std::logic_error);
}

TEST(DeferredSemaphoreTest, ZeroPermitsIsInvalidArgument) {
  EXPECT_THROW(deferred_semaphore(0), std::invalid_argument);
}

TEST(DeferredSemaphoreTest, RunCapsConcurrency) {
  // Twisted's testSemaphore: N tasks through run() on a semaphore of 3; never more than 3 pending at once.
  deferred_semaphore sem(3);
  std::vector<deferred<int>> inner(10);
  std::vector<deferred<int>> outer;
  int active = 0;
  int most = 0;
  for (int i = 0; i < 10; ++i) {
    outer.push_back(sem.run([&, i] {
      most = std::max(most, ++active);
      return inner[i].add_callback([&active](int v) {
        --active;
        return v;
      });
    }));
  }
  EXPECT_EQ(active, 3);
  for (int i = 0; i < 10; ++i) inner[i].callback(i);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(outer[i].get(), i);
  EXPECT_EQ(most, 3);
  EXPECT_EQ(sem.free_permits(), 3U);
}

TEST(DeferredSemaphoreTest, CancellingAQueuedAcquireKeepsTheCountRight) {
  deferred_semaphore sem(1);
  deferred<void> held = sem.acquire();
  deferred<void> cancelled = sem.acquire();
  cancelled.cancel();
  sem.release();
  EXPECT_EQ(sem.free_permits(), 1U);
  EXPECT_EQ(sem.waiting(), 0U);
}

}  // namespace
