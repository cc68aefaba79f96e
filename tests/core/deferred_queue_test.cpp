// deferred_queue: Twisted's testQueue and its cancel tests ported, plus size/backlog limits and what happens to
// an item when its getter was cancelled.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "anydefer/deferred.hpp"
#include "anydefer/deferred_queue.hpp"

namespace {

using anydefer::deferred;
using anydefer::deferred_queue;

TEST(DeferredQueueTest, GettersWaitAndPutsServeThemInOrder) {
  deferred_queue<int> q;
  std::vector<int> got;
  std::vector<deferred<void>> chains;
  for (int i = 0; i < 3; ++i) chains.push_back(q.get().add_callback([&got](int v) { got.push_back(v); }));
  EXPECT_EQ(q.waiting(), 3U);
  for (int i = 0; i < 3; ++i) q.put(i * 10);
  EXPECT_EQ(got, (std::vector<int>{0, 10, 20}));
  EXPECT_EQ(q.size(), 0U);
}

TEST(DeferredQueueTest, StoredItemsAreGottenInOrderAtOnce) {
  deferred_queue<std::string> q;
  q.put("a");
  q.put(std::string("b"));
  EXPECT_EQ(q.size(), 2U);
  deferred<std::string> first = q.get();
  EXPECT_TRUE(first.fired());
  EXPECT_EQ(first.get(), "a");
  EXPECT_EQ(q.get().get(), "b");
}

TEST(DeferredQueueTest, PutBeyondTheSizeOverflowsAndKeepsTheItem) {
  deferred_queue<std::unique_ptr<int>> q(/*size=*/1);
  q.put(std::make_unique<int>(1));
  auto second = std::make_unique<int>(2);
  EXPECT_THROW(q.put(std::move(second)), anydefer::queue_overflow);
  ASSERT_NE(second, nullptr);  // nothing lost: the caller still has it
  EXPECT_EQ(*second, 2);
  EXPECT_EQ(q.size(), 1U);
}

TEST(DeferredQueueTest, SizeZeroOverflowsUnlessAGetterWaits) {
  deferred_queue<int> q(/*size=*/0);
  EXPECT_THROW(q.put(1), anydefer::queue_overflow);
  deferred<int> getter = q.get();
  q.put(2);
  EXPECT_EQ(getter.get(), 2);
}

TEST(DeferredQueueTest, GetBeyondTheBacklogUnderflows) {
  deferred_queue<int> q(deferred_queue<int>::unbounded, /*backlog=*/2);
  deferred<int> a = q.get();
  deferred<int> b = q.get();
  EXPECT_THROW(q.get(), anydefer::queue_underflow);
  q.put(1);
  deferred<int> c = q.get();  // room again
  EXPECT_EQ(q.waiting(), 2U);
}

TEST(DeferredQueueTest, BacklogZeroUnderflowsOnAnEmptyQueue) {
  deferred_queue<int> q(deferred_queue<int>::unbounded, /*backlog=*/0);
  EXPECT_THROW(q.get(), anydefer::queue_underflow);
  q.put(3);
  EXPECT_EQ(q.get().get(), 3);
}

TEST(DeferredQueueTest, CancellingAGetterThatFiredDoesNothing) {
  deferred_queue<int> q;
  q.put(1);
  deferred<int> got = q.get();
  got.cancel();
  EXPECT_EQ(got.get(), 1);
}

TEST(DeferredQueueTest, CancellingAWaitingGetterRemovesOnlyItAndTheNextPutSkipsIt) {
  deferred_queue<int> q;
  deferred<int> cancelled = q.get();
  deferred<int> next = q.get();
  cancelled.cancel();
  EXPECT_THROW(cancelled.get(), anydefer::cancelled_error);
  EXPECT_EQ(q.waiting(), 1U);
  q.put(5);
  EXPECT_EQ(next.get(), 5);
}

TEST(DeferredQueueTest, AnItemPutWhenTheOnlyGetterWasCancelledIsStored) {
  deferred_queue<int> q;
  deferred<int> cancelled = q.get();
  cancelled.cancel();
  q.put(9);
  EXPECT_EQ(q.size(), 1U);
  EXPECT_EQ(q.get().get(), 9);
}

TEST(DeferredQueueTest, DestroyingTheQueueFailsWaitingGettersWithAbandonedWaiter) {
  deferred<int> getter;
  {
    deferred_queue<int> q;
    getter = q.get();
  }
  EXPECT_THROW(getter.get(), anydefer::abandoned_waiter_error);
}

TEST(DeferredQueueTest, AGetterMayPutAgainFromItsCallback) {
  deferred_queue<int> q;
  std::vector<int> got;
  deferred<void> first = q.get().add_callback([&](int v) {
    got.push_back(v);
    q.put(v + 1);
  });
  deferred<void> second = q.get().add_callback([&](int v) { got.push_back(v); });
  q.put(1);
  EXPECT_EQ(got, (std::vector<int>{1, 2}));
}

}  // namespace
