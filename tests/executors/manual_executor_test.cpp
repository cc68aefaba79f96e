// Tests for inline_executor and manual_executor.
#include <gtest/gtest.h>

#include <atomic>
#include <exception>
#include <functional>
#include <thread>
#include <vector>

#include "anydefer/errors.hpp"
#include "anydefer/executors/inline_executor.hpp"
#include "anydefer/executors/manual_executor.hpp"
#include "counting_task.hpp"

namespace {

using anydefer_test::counting_task;
using anydefer_test::rejected_as_stopped;

TEST(InlineExecutorTest, ExecuteRunsTaskBeforeReturning) {
  anydefer::inline_executor ex;
  counting_task t;
  ex.execute(t);
  EXPECT_EQ(t.runs.load(), 1);
  EXPECT_EQ(t.rejects.load(), 0);
}

TEST(ManualExecutorTest, TasksRunOnlyWhenDriven) {
  anydefer::manual_executor ex;
  counting_task t;
  ex.execute(t);
  EXPECT_EQ(t.runs.load(), 0);
  EXPECT_EQ(ex.pending(), 1u);
  EXPECT_TRUE(ex.run_one());
  EXPECT_EQ(t.runs.load(), 1);
  EXPECT_FALSE(ex.run_one());
}

TEST(ManualExecutorTest, RunOneRunsTasksInSubmissionOrder) {
  anydefer::manual_executor ex;
  std::vector<int> order;
  counting_task a([&] { order.push_back(1); });
  counting_task b([&] { order.push_back(2); });
  counting_task c([&] { order.push_back(3); });
  ex.execute(a);
  ex.execute(b);
  ex.execute(c);
  while (ex.run_one()) {
  }
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(ManualExecutorTest, RunAllCountsTasksQueuedByTheTasksItRuns) {
  anydefer::manual_executor ex;
  counting_task grandchild;
  counting_task child([&] { ex.execute(grandchild); });
  counting_task parent([&] { ex.execute(child); });
  ex.execute(parent);
  EXPECT_EQ(ex.run_all(), 3u);
  EXPECT_EQ(grandchild.runs.load(), 1);
  EXPECT_EQ(ex.pending(), 0u);
}

TEST(ManualExecutorTest, RunUntilStopsAsSoonAsPredicateHolds) {
  anydefer::manual_executor ex;
  int ran = 0;
  counting_task a([&] { ++ran; });
  counting_task b([&] { ++ran; });
  counting_task c([&] { ++ran; });
  ex.execute(a);
  ex.execute(b);
  ex.execute(c);
  EXPECT_TRUE(ex.run_until([&] { return ran == 2; }));
  EXPECT_EQ(ex.pending(), 1u);
  EXPECT_FALSE(ex.run_until([] { return false; }));  // runs out of work
  EXPECT_EQ(ran, 3);
}

TEST(ManualExecutorTest, ExecuteAfterStopRejectsTaskInline) {
  anydefer::manual_executor ex;
  ex.stop();
  counting_task t;
  ex.execute(t);
  EXPECT_TRUE(rejected_as_stopped(t));
  EXPECT_EQ(t.runs.load(), 0);
  EXPECT_EQ(ex.pending(), 0u);
}

TEST(ManualExecutorTest, TasksQueuedBeforeStopStillRun) {
  anydefer::manual_executor ex;
  counting_task t;
  ex.execute(t);
  ex.stop();
  EXPECT_TRUE(ex.stopped());
  EXPECT_EQ(ex.run_all(), 1u);
  EXPECT_EQ(t.runs.load(), 1);
}

TEST(ManualExecutorTest, DestructorRejectsTasksThatNeverRan) {
  counting_task ran;
  counting_task never;
  {
    anydefer::manual_executor ex;
    ex.execute(ran);
    ex.execute(never);
    ex.run_one();
  }
  EXPECT_EQ(ran.runs.load(), 1);
  EXPECT_EQ(ran.rejects.load(), 0);
  EXPECT_EQ(never.runs.load(), 0);
  EXPECT_TRUE(rejected_as_stopped(never));
}

TEST(ManualExecutorTest, TasksPostedFromOtherThreadsAllRunOnTheDrivingThread) {
  anydefer::manual_executor ex;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::vector<counting_task> tasks(kThreads * kPerThread);
  const auto driver = std::this_thread::get_id();
  std::atomic<int> wrong_thread{0};
  for (auto& t : tasks) t.on_run = [&] { wrong_thread += std::this_thread::get_id() != driver; };
  std::vector<std::thread> producers;
  for (int p = 0; p < kThreads; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerThread; ++i) ex.execute(tasks[p * kPerThread + i]);
    });
  }
  for (auto& th : producers) th.join();
  EXPECT_EQ(ex.run_all(), tasks.size());
  for (auto& t : tasks) ASSERT_EQ(t.runs.load(), 1);
  EXPECT_EQ(wrong_thread.load(), 0);
}

TEST(ManualExecutorTest, SameSubmissionsGiveSameOrderEveryTime) {
  auto run_once = [] {
    anydefer::manual_executor ex;
    std::vector<int> order;
    std::vector<counting_task> tasks(20);
    for (int i = 0; i < 20; ++i) {
      tasks[i].on_run = [&, i] { order.push_back(i); };
    }
    for (int i = 19; i >= 0; i -= 2) ex.execute(tasks[i]);
    for (int i = 0; i < 20; i += 2) ex.execute(tasks[i]);
    ex.run_all();
    return order;
  };
  const auto first = run_once();
  EXPECT_EQ(first.size(), 20u);
  for (int k = 0; k < 5; ++k) EXPECT_EQ(run_once(), first);
}

}  // namespace
