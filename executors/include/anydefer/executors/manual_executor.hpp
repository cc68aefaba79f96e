// anydefer/executors/manual_executor.hpp: an executor that runs tasks only when the test driving it says so.
//
// Tasks queue in FIFO order until a thread calls run_one(), run_all() or run_until(). Nothing runs by itself,
// so a test decides exactly when and in which order continuations run:
//
//   anydefer::manual_executor ex;
//   d.add_callback(ex, [&](int v) { seen = v; });
//   d.callback(42);
//   EXPECT_EQ(seen, 0);        // queued, not run
//   EXPECT_TRUE(ex.run_one()); // now it runs, on this thread
//
// Lifecycle: stop() makes later execute() calls reject the task inline with executor_stopped_error; tasks
// queued before stop() stay queued and still run when driven. The destructor rejects (with
// executor_stopped_error) every task that never ran, so nothing is silently lost: this executor runs user code
// only when explicitly driven, never from its destructor. The executor must outlive every user that may still
// execute() on it.
//
// Thread-safety: all members are thread-safe (one mutex: this is a test executor, not a fast one); tasks run on
// the thread that drives the executor, never under the lock, so a task may execute() on it again.
#pragma once

#include <cstddef>
#include <mutex>
#include <type_traits>
#include <utility>

#include "anydefer/executor.hpp"
#include "anydefer/executors/detail/bound_links.hpp"
#include "anydefer/executors/detail/task_fifo.hpp"

namespace anydefer {

class manual_executor {
 public:
  manual_executor() = default;
  manual_executor(const manual_executor&) = delete;
  manual_executor& operator=(const manual_executor&) = delete;

  // Rejects every queued task with executor_stopped_error (see the file comment).
  ~manual_executor();

  // Queues `t` (FIFO); after stop() rejects it inline with executor_stopped_error. Thread-safe. Never allocates.
  void execute(task& t) noexcept;

  // Runs the oldest queued task on the calling thread. Returns false if none was queued. Thread-safe.
  bool run_one() noexcept;

  // Runs queued tasks until none is left, including tasks queued by the tasks it runs. Returns how many ran.
  // Thread-safe.
  std::size_t run_all() noexcept;

  // Runs queued tasks one by one until `pred()` is true or nothing is queued. Returns pred()'s final value.
  template <class Pred>
    requires std::is_invocable_r_v<bool, Pred&>
  bool run_until(Pred pred) {
    while (!pred()) {
      if (!run_one()) return pred();
    }
    return true;
  }

  // Makes later execute() calls reject; queued tasks stay queued. Idempotent. Thread-safe.
  void stop() noexcept;

  // Whether stop() was called. Thread-safe.
  bool stopped() const noexcept;

  // Number of queued tasks. Thread-safe.
  std::size_t pending() const noexcept;

  // Counts deferred links bound to this executor in builds without NDEBUG (see executor_ref::track_bound_links);
  // the destructor aborts with a message if any is left. Thread-safe. Never allocates.
  void track_bound_links(int n) noexcept { bound_links_.track(n); }

 private:
  detail::bound_links bound_links_;
  mutable std::mutex mutex_;
  detail::task_fifo queue_;  // guarded by mutex_
  bool stopped_ = false;     // guarded by mutex_
};

static_assert(executor<manual_executor>);

}  // namespace anydefer
