// Tests for the executors' building blocks: the Chase-Lev deque, the event count, the admission gate and the
// reactor's inbox.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "anydefer/detail/sync/admission_gate.hpp"
#include "anydefer/detail/sync/event_count.hpp"
#include "anydefer/executors/detail/intrusive_inbox.hpp"
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

TEST(WorkStealingDequeTest, PopIfTakesBackOnlyTheLastPushedItemWhileNobodyTookIt) {
  work_stealing_deque<int*> q;
  int a = 0, b = 0, c = 0;
  EXPECT_FALSE(q.pop_if(&a, 0));  // empty
  q.push(&a);
  const std::int64_t at_a = q.newest_index();
  q.push(&b);
  const std::int64_t at_b = q.newest_index();
  EXPECT_FALSE(q.pop_if(&a, at_a));  // not the last one
  EXPECT_EQ(q.size_approx(), 2);
  EXPECT_TRUE(q.pop_if(&b, at_b));
  EXPECT_FALSE(q.pop_if(&b, at_b));  // already taken back
  EXPECT_EQ(q.size_approx(), 1);
  EXPECT_TRUE(q.pop_if(&a, at_a));  // the last item
  EXPECT_TRUE(q.empty_approx());
  EXPECT_FALSE(q.pop_if(&a, at_a));
  q.push(&c);
  const std::int64_t at_c = q.newest_index();
  EXPECT_EQ(q.steal(), &c);
  EXPECT_FALSE(q.pop_if(&c, at_c));  // a thief took it: its slot still holds &c
  EXPECT_TRUE(q.empty_approx());
  q.push(&a);  // the deque is intact after every refusal
  EXPECT_EQ(q.pop(), &a);
  EXPECT_EQ(q.pop(), nullptr);
}

// fork()'s hazard: an item a thief took, then the same pointer pushed again (an object made at the address of one
// that is gone) must not be taken back for the first: it sits at a new index. By address alone it was.
TEST(WorkStealingDequeTest, PopIfRefusesTheSamePointerPushedAgainAfterAThiefTookIt) {
  work_stealing_deque<int*> q;
  int a = 0;
  q.push(&a);
  const std::int64_t first = q.newest_index();
  EXPECT_EQ(q.steal(), &a);
  q.push(&a);  // another offer at the same address
  const std::int64_t second = q.newest_index();
  EXPECT_NE(first, second);
  EXPECT_FALSE(q.pop_if(&a, first));
  EXPECT_EQ(q.size_approx(), 1);
  EXPECT_TRUE(q.pop_if(&a, second));
  EXPECT_TRUE(q.empty_approx());
}

// fork()'s use: push one item, maybe push and take back more above it, take the first back unless a thief got
// it. Each item must end up with exactly one taker, the owner's pop_if() or a thief, including when they race
// for the last item.
TEST(WorkStealingDequeTest, PopIfAndConcurrentThievesTakeEveryItemExactlyOnce) {
  constexpr int kItems = 200000;
  constexpr int kThieves = 2;
  work_stealing_deque<std::uint32_t*> q(8);
  std::vector<std::uint32_t> ids(kItems);
  for (int i = 0; i < kItems; ++i) ids[i] = static_cast<std::uint32_t>(i);
  std::atomic<bool> done{false};
  std::vector<std::atomic<std::uint32_t>> counts(kItems);
  std::atomic<int> stolen{0};
  std::vector<std::thread> thieves;
  for (int k = 0; k < kThieves; ++k) {
    thieves.emplace_back([&] {
      while (!done.load(std::memory_order_acquire) || !q.empty_approx()) {
        if (auto* p = q.steal()) {
          counts[*p].fetch_add(1, std::memory_order_relaxed);
          stolen.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  int reclaimed = 0;
  for (int i = 0; i + 1 < kItems; i += 2) {
    ASSERT_TRUE(q.push(&ids[i]));
    const std::int64_t outer = q.newest_index();
    ASSERT_TRUE(q.push(&ids[i + 1]));  // nested: pushed and taken back above the first
    const std::int64_t inner = q.newest_index();
    for (auto [p, at] : {std::pair{&ids[i + 1], inner}, std::pair{&ids[i], outer}}) {
      if (q.pop_if(p, at)) {
        counts[*p].fetch_add(1, std::memory_order_relaxed);
        ++reclaimed;
      }
    }
  }
  done.store(true, std::memory_order_release);
  for (auto& t : thieves) t.join();
  EXPECT_EQ(reclaimed + stolen.load(), kItems);
  for (int i = 0; i < kItems; ++i) ASSERT_EQ(counts[i].load(), 1u) << "item " << i;
  EXPECT_TRUE(q.empty_approx());
}

// The turn is published by a plain store (not an RMW, which is a full barrier on x86 by itself), so the
// notifier's side rests on the light fence alone when asymmetric fences are available.
TEST(EventCountTest, NoWakeUpIsLostBetweenPingPongThreads) {
  constexpr int kRounds = 20000;
  const bool asymmetric = anydefer::detail::enable_asymmetric_fences();
  RecordProperty("asymmetric_fences", asymmetric ? "membarrier" : "symmetric fallback");
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
      turn.store(turn.load(std::memory_order_relaxed) + 1, std::memory_order_release);  // only we may move it now
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

TEST(AdmissionGateTest, DrainedOnlyAfterTheLastHolderOnAnyThreadLeaves) {
  anydefer::detail::admission_gate gate;
  std::atomic<bool> entered{false};
  std::atomic<bool> may_leave{false};
  std::thread other([&] {
    ASSERT_TRUE(gate.try_enter());
    entered.store(true);
    while (!may_leave.load()) std::this_thread::yield();
    gate.leave();
  });
  while (!entered.load()) std::this_thread::yield();
  ASSERT_TRUE(gate.try_enter());
  gate.close();
  EXPECT_TRUE(gate.closed());
  EXPECT_FALSE(gate.drained());
  gate.leave();
  EXPECT_FALSE(gate.drained()) << "the other thread is still inside";
  may_leave.store(true);
  other.join();
  EXPECT_TRUE(gate.drained());
  EXPECT_FALSE(gate.try_enter());
  EXPECT_TRUE(gate.drained());  // a refused entry leaves no holder behind
}

// A thread inside one gate does not hold another closed gate open.
TEST(AdmissionGateTest, HoldersOfOneGateDoNotKeepAnotherFromDraining) {
  anydefer::detail::admission_gate first;
  anydefer::detail::admission_gate second;
  ASSERT_TRUE(first.try_enter());
  second.close();
  EXPECT_TRUE(second.drained());
  first.close();
  EXPECT_FALSE(first.drained());
  first.leave();
  EXPECT_TRUE(first.drained());
}

// A thread_local built before a thread's gate record is destroyed after it, at thread exit. If its destructor
// posts, that holder must still keep a closed gate from draining.
namespace late_holder {
anydefer::detail::admission_gate* gate = nullptr;
std::atomic<int> phase{0};  // 1: inside the gate; 2: may leave; 3: left; -1: refused

struct posts_at_thread_exit {
  ~posts_at_thread_exit() {
    if (!gate->try_enter()) {
      phase.store(-1);
      return;
    }
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
    gate->leave();
    phase.store(3);
  }
};
}  // namespace late_holder

TEST(AdmissionGateTest, AHolderFromAThreadExitDestructorKeepsTheGateFromDraining) {
  anydefer::detail::admission_gate gate;
  late_holder::gate = &gate;
  late_holder::phase.store(0);
  std::thread exiting([&] {
    thread_local late_holder::posts_at_thread_exit poster;  // built first, so destroyed after the record
    (void)poster;
    EXPECT_TRUE(gate.try_enter());  // builds this thread's gate record
    gate.leave();
  });
  while (late_holder::phase.load() == 0) std::this_thread::yield();
  ASSERT_EQ(late_holder::phase.load(), 1);
  gate.close();
  EXPECT_FALSE(gate.drained()) << "a holder entering from a thread-exit destructor was not counted";
  late_holder::phase.store(2);
  exiting.join();
  EXPECT_EQ(late_holder::phase.load(), 3);
  EXPECT_TRUE(gate.drained());
}

// Threads keep entering and leaving while the gate closes. Whatever a holder wrote before leaving must be visible
// once drained() is true (plain writes: TSan checks the ordering), and no entry may succeed after that.
TEST(AdmissionGateTest, NoEntrySucceedsAfterDrainedAndHoldersWorkIsVisible) {
  constexpr int kThreads = 4;
  for (int round = 0; round < 50; ++round) {
    anydefer::detail::admission_gate gate;
    struct alignas(64) tally {
      std::int64_t accepted = 0;  // written by its thread only while it holds the gate
    };
    tally tallies[kThreads];
    std::atomic<int> started{0};
    std::atomic<bool> finish{false};
    std::atomic<std::int64_t> accepted_after_drained{0};
    std::vector<std::thread> producers;
    for (int i = 0; i < kThreads; ++i) {
      producers.emplace_back([&, i] {
        started.fetch_add(1);
        while (!finish.load(std::memory_order_relaxed)) {
          if (gate.try_enter()) {
            ++tallies[i].accepted;
            if (gate.drained()) accepted_after_drained.fetch_add(1);
            gate.leave();
          }
        }
      });
    }
    while (started.load() < kThreads) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(100 * (round % 5)));
    gate.close_and_wait();
    std::int64_t seen = 0;
    for (const tally& t : tallies) seen += t.accepted;
    finish.store(true);
    for (auto& p : producers) p.join();
    std::int64_t total = 0;
    for (const tally& t : tallies) total += t.accepted;
    EXPECT_EQ(seen, total) << "an entry succeeded after drained()";
    EXPECT_EQ(accepted_after_drained.load(), 0);
  }
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

// A task that records which producer pushed it and in what order.
struct numbered_task final : anydefer::task {
  numbered_task() noexcept : task(&ops) {}
  int producer = 0;
  int sequence = 0;
  static void run(task&) noexcept {}
  static void reject(task&, std::exception_ptr) noexcept {}
  static constexpr operations ops{&run, &reject};
};

std::vector<numbered_task*> drain(anydefer::detail::intrusive_inbox& inbox) {
  std::vector<numbered_task*> out;
  const auto b = inbox.take_all();
  std::size_t n = 0;
  for (anydefer::task* t = b.first; t != nullptr; t = t->next, ++n) {
    out.push_back(static_cast<numbered_task*>(t));
    if (t->next == nullptr) {
      EXPECT_EQ(t, b.last);
    }
  }
  EXPECT_EQ(n, b.size);
  return out;
}

TEST(IntrusiveInboxTest, LoneTaskIsTakenWithoutItsNextEverBeingRead) {
  anydefer::detail::intrusive_inbox inbox;
  EXPECT_TRUE(inbox.empty());
  numbered_task t;
  t.next = reinterpret_cast<anydefer::task*>(std::uintptr_t{0xdead0});  // garbage a reader would follow
  EXPECT_TRUE(inbox.push(t));
  EXPECT_FALSE(inbox.empty());
  const auto got = drain(inbox);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0], &t);
  EXPECT_TRUE(inbox.empty());
  EXPECT_EQ(inbox.take_all().size, 0U);
}

TEST(IntrusiveInboxTest, BatchComesOutOldestFirstAndOnlyTheFirstPushSeesItEmpty) {
  anydefer::detail::intrusive_inbox inbox;
  numbered_task tasks[5];
  for (int i = 0; i < 5; ++i) {
    tasks[i].sequence = i;
    tasks[i].next = reinterpret_cast<anydefer::task*>(std::uintptr_t{0xdead0});
    EXPECT_EQ(inbox.push(tasks[i]), i == 0);
  }
  const auto got = drain(inbox);
  ASSERT_EQ(got.size(), 5U);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)]->sequence, i);
  EXPECT_TRUE(inbox.push(tasks[0]));  // empty again after take_all
  EXPECT_EQ(drain(inbox).size(), 1U);
}

// Producers push concurrently while the consumer takes batches: every task arrives once, and each producer's
// tasks arrive in the order it pushed them.
TEST(IntrusiveInboxTest, ConcurrentProducersLoseNothingAndKeepTheirOrder) {
  constexpr int kProducers = 3;
  constexpr int kPerProducer = 50000;
  anydefer::detail::intrusive_inbox inbox;
  std::vector<std::unique_ptr<numbered_task[]>> tasks;
  for (int p = 0; p < kProducers; ++p) tasks.push_back(std::make_unique<numbered_task[]>(kPerProducer));
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        numbered_task& t = tasks[static_cast<std::size_t>(p)][static_cast<std::size_t>(i)];
        t.producer = p;
        t.sequence = i;
        inbox.push(t);
      }
    });
  }
  std::vector<int> next_expected(kProducers, 0);
  int received = 0;
  while (received < kProducers * kPerProducer) {
    for (numbered_task* t : drain(inbox)) {
      ASSERT_EQ(t->sequence, next_expected[static_cast<std::size_t>(t->producer)]) << "producer " << t->producer;
      ++next_expected[static_cast<std::size_t>(t->producer)];
      ++received;
    }
  }
  for (auto& p : producers) p.join();
  EXPECT_TRUE(inbox.empty());
  EXPECT_EQ(received, kProducers * kPerProducer);
}

}  // namespace
