#include "anydefer/executors/tbb_executor.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "anydefer/executors/detail/reject.hpp"
#include "keep_tsan_suppressions.hpp"

namespace anydefer {
namespace {
// The tbb_executor whose task the calling thread is running, if any (stop() must not wait for itself).
thread_local const tbb_executor* running_for = nullptr;
}  // namespace

tbb_executor::tbb_executor(int max_concurrency) : arena_(max_concurrency) { arena_.initialize(); }

tbb_executor::~tbb_executor() {
  if (running_for == this) {
    std::fputs("anydefer::tbb_executor destroyed from one of its own tasks\n", stderr);
    std::abort();
  }
  stop();
  bound_links_.check_none_left("anydefer::tbb_executor");
}

void tbb_executor::execute(task& t) noexcept {
  if (!gate_.try_enter()) {
    detail::reject_stopped(t, "tbb_executor");
    return;
  }
  try {
    // The gate stays held until the task has run: the functor leaves it, so stop() waits for the task.
    arena_.enqueue([this, &t] {
      const tbb_executor* const outer = running_for;
      running_for = this;
      t.run();
      running_for = outer;
      gate_.leave();  // last action: after it the executor may be destroyed
    });
  } catch (...) {
    t.reject(std::current_exception());
    gate_.leave();
  }
}

void tbb_executor::stop() noexcept {
  if (running_for == this) {
    gate_.close();
    return;
  }
  gate_.close_and_wait();
}

}  // namespace anydefer
