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
  // relaxed: counted before the enqueue that publishes the task; stop() reads it only after the gate drained,
  // whose acquire makes this increment visible.
  unfinished_.fetch_add(1, std::memory_order_relaxed);
  try {
    arena_.enqueue([this, &t] {
      const tbb_executor* const outer = running_for;
      running_for = this;
      t.run();
      running_for = outer;
      // release: the task's effects are visible to stop(). Last action: after it the executor may be destroyed.
      unfinished_.fetch_sub(1, std::memory_order_release);
    });
  } catch (...) {
    unfinished_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: never ran, nothing to publish
    gate_.leave();
    t.reject(std::current_exception());
    return;
  }
  gate_.leave();
}

void tbb_executor::stop() noexcept {
  gate_.close();
  if (running_for == this) return;  // cannot wait for itself; see tbb_executor.hpp
  gate_.wait_drained();
  // acquire: pairs with each task's release decrement. Tasks run for as long as they run: poll with backoff.
  detail::admission_gate::backoff pause;
  while (unfinished_.load(std::memory_order_acquire) != 0) pause.wait();
}

}  // namespace anydefer
