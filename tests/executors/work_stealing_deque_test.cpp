// Tests for the pool's building blocks: the Chase-Lev deque, the event count and the admission gate.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "anydefer/executors/detail/admission_gate.hpp"
#include "anydefer/executors/detail/event_count.hpp"
#include "anydefer/executors/detail/work_stealing_deque.hpp"

namespace {

using anydefer::detail::work_stealing_deque;

TEST(WorkStealingDequeTest, OwnerPopsMostRecentlyPushedFirst) {
  work_stealing_deque<int*> q;
  int a = 0, b = 0, c = 0;
  q.push(&a);
  q.push(&b);
  q.push(&c);
  EXPECT_EQ(q.pop(), &c);
  EXPECT_EQ(q.pop(), &b);
  EXPECT_EQ(q.pop(), &a);
  EXPECT_EQ(q.pop(), nullptr);
}

TEST(WorkStealingDequeTest, ThiefStealsOldestFirst) {
  work_stealing_deque<int*> q;
  int a = 0, b = 0;
  q.push(&a);
  q.push(&b);
  EXPECT_EQ(q.steal(), &a);
  EXPECT_EQ(q.steal(), &b);
  EXPECT_EQ(q.steal(), nullptr);
}

TEST(WorkStealingDequeTest, GrowsPastInitialCapacityKeepingEveryItem) {
  work_stealing_deque<int*> q(4);
  std::vector<int> items(1000);
  for (auto& i : items) ASSERT_TRUE(q.push(&i));
  EXPECT_EQ(q.size_approx(), 1000);
  EXPECT_EQ(q.steal(), &items[0]);
  for (int i = 999; i >= 1; --i) ASSERT_EQ(q.pop(), &items[i]);
  EXPECT_TRUE(q.empty_approx());
}

TEST(WorkStealingDequeTest, ConcurrentThievesAndOwnerTakeEveryItemExactlyOnce) {
  constexpr int kItems = 200000;
  constexpr int kThieves = 2;
  work_stealing_deque<std::uint32_t*> q(8);  // small: exercises growth under concurrent steals
  std::vector<std::uint32_t> ids(kItems);
  for (int i = 0; i < kItems; ++i) ids[i] = static_cast<std::uint32_t>(i);
  std::atomic<int> total{0};
  std::atomic<bool> done{false};
  std::vector<std::atomic<std::uint32_t>> counts(kItems);
  auto record = [&](std::uint32_t* p) {
    counts[*p].fetch_add(1, std::memory_order_relaxed);
    total.fetch_add(1, std::memory_order_relaxed);
  };
  std::vector<std::thread> thieves;
  for (int k = 0; k < kThieves; ++k) {
    thieves.emplace_back([&] {
      while (!done.load(std::memory_order_acquire) || !q.empty_approx()) {
        if (auto* p = q.steal()) record(p);
      }
    });
  }
  for (int i = 0; i < kItems; ++i) {
    ASSERT_TRUE(q.push(&ids[i]));
    if (i % 3 == 0) {
      if (auto* p = q.pop()) record(p);
    }
  }
  while (auto* p = q.pop()) record(p);
  done.store(true, std::memory_order_release);
  for (auto& t : thieves) t.join();
  EXPECT_EQ(total.load(), kItems);
  for (int i = 0; i < kItems; ++i) ASSERT_EQ(counts[i].load(), 1u) << "item " << i;
}

TEST(EventCountTest, NoWakeUpIsLostBetweenPingPongThreads) {
  constexpr int kRounds = 20000;
  anydefer::detail::event_count ec;
  std::atomic<int> turn{0};  // even: ping's turn, odd: pong's
  auto player = [&](int parity) {
    for (int r = 0; r < kRounds; ++r) {
      for (;;) {
        if (turn.load(std::memory_order_acquire) % 2 == parity) break;
        const auto key = ec.prepare_wait();
        if (turn.load(std::memory_order_acquire) % 2 == parity) {
          ec.cancel_wait();
          break;
        }
        ec.commit_wait(key);
      }
      turn.fetch_add(1, std::memory_order_release);
      ec.notify_all();
    }
  };
  std::thread ping(player, 0);
  std::thread pong(player, 1);
  ping.join();
  pong.join();
  EXPECT_EQ(turn.load(), 2 * kRounds);
}

TEST(AdmissionGateTest, RefusesEntryOnceClosed) {
  anydefer::detail::admission_gate gate;
  ASSERT_TRUE(gate.try_enter());
  gate.leave();
  gate.close();
  EXPECT_FALSE(gate.try_enter());
  EXPECT_TRUE(gate.drained());
}

TEST(AdmissionGateTest, DrainedOnlyAfterLastHolderLeavesAndHookRunsOnce) {
  static std::atomic<int> hook_calls{0};
  hook_calls = 0;
  anydefer::detail::admission_gate gate([](void*) noexcept { hook_calls.fetch_add(1); }, nullptr);
  ASSERT_TRUE(gate.try_enter());
  ASSERT_TRUE(gate.try_enter());
  gate.close();
  EXPECT_FALSE(gate.drained());
  gate.leave();
  EXPECT_FALSE(gate.drained());
  EXPECT_EQ(hook_calls.load(), 0);
  gate.leave();
  EXPECT_TRUE(gate.drained());
  EXPECT_EQ(hook_calls.load(), 1);
}

TEST(AdmissionGateTest, CloseAndWaitReturnsWhenHoldersOnOtherThreadsLeave) {
  anydefer::detail::admission_gate gate;
  std::atomic<int> entered{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> holders;
  for (int i = 0; i < 3; ++i) {
    holders.emplace_back([&] {
      ASSERT_TRUE(gate.try_enter());
      entered.fetch_add(1);
      while (!release.load()) std::this_thread::yield();
      gate.leave();
    });
  }
  while (entered.load() < 3) std::this_thread::yield();
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    release.store(true);
  });
  gate.close_and_wait();
  EXPECT_TRUE(gate.drained());
  releaser.join();
  for (auto& t : holders) t.join();
}

}  // namespace
