// Tests for tbb_executor.
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

namespace {

using namespace std::chrono_literals;

// A task that counts how it was settled and optionally does something when run.
struct counting_task : anydefer::task {
  counting_task() : task(&ops) {}
  explicit counting_task(std::function<void()> body) : task(&ops), on_run(std::move(body)) {}

  std::atomic<int> runs{0};
  std::atomic<int> rejects{0};
  std::exception_ptr error;  // set before rejects is incremented
  std::function<void()> on_run;

  static void run_it(task& t) noexcept {
    auto& self = static_cast<counting_task&>(t);
    if (self.on_run) self.on_run();
    self.runs.fetch_add(1, std::memory_order_acq_rel);
  }
  static void reject_it(task& t, std::exception_ptr why) noexcept {
    auto& self = static_cast<counting_task&>(t);
    self.error = std::move(why);
    self.rejects.fetch_add(1, std::memory_order_acq_rel);
  }
  static constexpr operations ops{&run_it, &reject_it};
};

bool rejected_as_stopped(const counting_task& t) {
  if (t.rejects.load() != 1 || !t.error) return false;
  try {
    std::rethrow_exception(t.error);
  } catch (const anydefer::executor_stopped_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

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
