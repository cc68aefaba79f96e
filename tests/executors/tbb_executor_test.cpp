// Tests for tbb_executor (target anydefer::tbb; compiled only where it is built, ANYDEFER_TEST_WITH_TBB).
#ifndef ANYDEFER_TEST_WITH_TBB
#define ANYDEFER_TEST_WITH_TBB 0  // tests/CMakeLists.txt defines it to 1 where anydefer::tbb is built
#endif
#if ANYDEFER_TEST_WITH_TBB
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "anydefer/errors.hpp"
#include "anydefer/executors/tbb_executor.hpp"
#include "counting_task.hpp"

namespace {

using anydefer_test::counting_task;
using anydefer_test::rejected_as_stopped;

using namespace std::chrono_literals;

TEST(TbbExecutorTest, StopWaitsUntilEveryAcceptedTaskHasRun) {
  anydefer::tbb_executor ex(2);
  std::vector<counting_task> tasks(2000);
  for (auto& t : tasks) ex.execute(t);
  ex.stop();
  for (auto& t : tasks) ASSERT_EQ(t.runs.load(), 1);
}

TEST(TbbExecutorTest, ExecuteAfterStopRejectsTaskInline) {
  anydefer::tbb_executor ex(2);
  ex.stop();
  counting_task t;
  ex.execute(t);
  EXPECT_TRUE(rejected_as_stopped(t));
  EXPECT_EQ(t.runs.load(), 0);
}

TEST(TbbExecutorTest, DestructorWaitsForSlowTasks) {
  counting_task slow([] { std::this_thread::sleep_for(30ms); });
  {
    anydefer::tbb_executor ex(2);
    ex.execute(slow);
  }
  EXPECT_EQ(slow.runs.load(), 1);
}

TEST(TbbExecutorTest, StopFromOwnTaskDoesNotDeadlock) {
  auto ex = std::make_unique<anydefer::tbb_executor>(2);
  counting_task stopper([&] { ex->stop(); });
  ex->execute(stopper);
  while (stopper.runs.load() == 0) std::this_thread::sleep_for(1ms);
  counting_task late;
  ex->execute(late);
  EXPECT_TRUE(rejected_as_stopped(late));
  ex.reset();
}

}  // namespace

#endif  // ANYDEFER_TEST_WITH_TBB
