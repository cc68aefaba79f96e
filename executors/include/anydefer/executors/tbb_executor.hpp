// anydefer/executors/tbb_executor.hpp: an executor that hands tasks to oneTBB, to share its workers with
// TBB-based code in the same process instead of competing with it for cores.
//
//   anydefer::tbb_executor tbb;                       // a tbb::task_arena of default concurrency
//   d.add_callback(tbb, [](int v) { return heavy(v); });
//   tbb.stop();                                        // waits for what was accepted; later tasks are rejected
//
// Each execute() enqueues a small functor into the arena (arena.enqueue), which runs t.run() on a TBB worker.
// Unlike anydefer's own executors, this allocates: TBB allocates a task object per enqueue. Tasks run in no
// particular order.
//
// Lifecycle: stop() (also called by the destructor) makes later execute() calls reject the task inline with
// executor_stopped_error, then waits until every accepted task has run. From inside one of this executor's own
// tasks stop() only closes (it cannot wait for itself); the destructor then waits. The executor must outlive
// every user that may still execute() on it, and must not be destroyed from one of its own tasks.
//
// Thread-safety: every member function is thread-safe.
#pragma once

#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <cstdint>

#include "anydefer/detail/sync/admission_gate.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/executors/detail/bound_links.hpp"

namespace anydefer {

class tbb_executor {
 public:
  // An arena with `max_concurrency` threads (tbb::task_arena::automatic: as many as TBB would use).
  explicit tbb_executor(int max_concurrency = tbb::task_arena::automatic);
  tbb_executor(const tbb_executor&) = delete;
  tbb_executor& operator=(const tbb_executor&) = delete;

  // stop(). Precondition: not called from one of this executor's tasks.
  ~tbb_executor();

  // Enqueues `t` into the arena; after stop() rejects it inline with executor_stopped_error (and with the
  // allocation failure if TBB cannot allocate). Thread-safe. Allocates (TBB's task object).
  void execute(task& t) noexcept;

  // Rejects later submissions and waits until every accepted task has run (see the file comment).
  // Idempotent. Thread-safe.
  void stop() noexcept;

  // The arena the tasks run in (to run TBB algorithms alongside them). Thread-safe.
  tbb::task_arena& arena() noexcept { return arena_; }

  // Counts deferred links bound to this executor in builds without NDEBUG (see executor_ref::track_bound_links);
  // the destructor aborts with a message if any is left. Thread-safe. Never allocates.
  void track_bound_links(int n) noexcept { bound_links_.track(n); }

 private:
  detail::bound_links bound_links_;
  tbb::task_arena arena_;
  detail::admission_gate gate_;              // execute() calls in flight
  std::atomic<std::int64_t> unfinished_{0};  // accepted tasks that have not finished running
};

static_assert(executor<tbb_executor>);

}  // namespace anydefer
