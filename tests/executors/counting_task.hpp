// A test task that counts how an executor settled it (run or rejected) and optionally does something when run.
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <utility>

#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"

namespace anydefer_test {

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
    self.runs.fetch_add(1, std::memory_order_acq_rel);  // last: a waiter may destroy the task after this
  }
  static void reject_it(task& t, std::exception_ptr why) noexcept {
    auto& self = static_cast<counting_task&>(t);
    self.error = std::move(why);
    self.rejects.fetch_add(1, std::memory_order_acq_rel);
  }
  static constexpr operations ops{&run_it, &reject_it};
};

// True if `t` was rejected exactly once, with executor_stopped_error.
inline bool rejected_as_stopped(const counting_task& t) {
  if (t.rejects.load() != 1 || !t.error) return false;
  try {
    std::rethrow_exception(t.error);
  } catch (const anydefer::executor_stopped_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace anydefer_test
