// anydefer/executors/thread_pool.hpp: a work-stealing pool of worker threads for CPU-bound continuations.
//
// Use it to run continuations in parallel:
//
//   anydefer::thread_pool pool;                  // hardware_concurrency() workers (at least one)
//   d.add_callback(pool, [](int v) { return heavy(v); });
//   pool.execute(my_task);                       // any task: runs once on some worker
//   pool.stop();                                 // runs what was accepted, then joins (the destructor does too)
//
// Scheduling (Tokio/Taskflow style):
//   - execute() from one of this pool's workers pushes onto that worker's own Chase-Lev deque
//     (detail/work_stealing_deque.hpp): LIFO for the worker, so a continuation runs next, hot in cache; FIFO for
//     thieves. It wakes one sleeping worker whenever one sleeps, so a task queued behind a long (or blocked)
//     task of its worker is taken by an idle worker at once; when nobody sleeps that costs a light fence (a
//     compiler barrier where membarrier is available) and one load.
//   - try_reclaim(t, ticket) from the worker that offered `t` takes it back if nobody has started it: fork()
//     offers the rest of a coroutine this way and runs its child first (continuation stealing).
//   - execute() from any other thread goes to a shared moodycamel::ConcurrentQueue injection queue and wakes one
//     sleeping worker if there is one.
//   - A worker takes work from its own deque (LIFO), else the injection queue, else steals the oldest task of
//     another worker (random victim first). Every 61st task it looks at the injection queue first, so a
//     worker that keeps feeding itself cannot starve outside submissions. It takes outside submissions up to 8
//     at a time: it runs the oldest and puts the others on its deque (its own pops take them in posting order),
//     where idle workers can steal them; it wakes a sleeping worker when it does, and each thief wakes another
//     while work is left to steal. Workers then rarely meet on the injection queue, whose contended dequeues
//     made two workers drain it slower than one.
//   - A worker with nothing to do spins briefly (bounded, with a pause hint), then parks on an event count
//     (detail/sync/event_count.hpp: prepare_wait, re-check every queue, commit_wait) that makes lost wake-ups
//     impossible. An idle pool uses no CPU.
//
// Waiting on a worker: each worker installs a wait_policy (anydefer/executor.hpp) whose before_block() runs one
// task: from the worker's own deque (LIFO end), else the oldest task of another worker or of the injection
// queue. Nesting is bounded (max_help_depth per thread; beyond it before_block() returns false and the wait
// blocks normally). The bound matters: a helping thread runs another task on top of the waiting one's stack
// frame, and that task may wait too; taking unrelated work (from a global FIFO, say) could nest without limit
// and overflow the stack. Keep in mind that a helped task runs inside the waiter's frame: a wait that could be
// satisfied may still return only after the helped task finishes.
//
// Lifecycle: stop() (also called by the destructor) closes the pool to outside submissions -- a later execute()
// from a non-worker thread rejects the task inline with executor_stopped_error -- then runs everything already
// accepted, including what those tasks execute() onto the pool while draining (a worker's own submissions are
// always accepted: they join that worker's deque, which the worker empties before it exits). Then it joins the
// workers. stop() from a worker thread only signals: it cannot join itself; the workers finish the drain and
// the destructor (or a stop() from another thread) joins them. Destroying the pool from one of its own workers
// is a precondition violation (it aborts with a message). The pool must outlive every user that may still
// execute() on it.
//
// Thread-safety: every member function is thread-safe.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>

#include "anydefer/executor.hpp"
#include "anydefer/executors/detail/bound_links.hpp"
#include "anydefer/executors/detail/pool_worker.hpp"

namespace anydefer {

// A cache line of its own: every execute() from any thread reads the handle's pointer to its implementation,
// and a neighbour written on another thread (a counter on the same stack frame, say) would bounce that line.
class alignas(64) thread_pool {
 public:
  // Nested before_block() helps allowed per worker thread before a wait blocks normally.
  static constexpr int max_help_depth = 64;

  // Starts `threads` workers (0 means std::thread::hardware_concurrency(), and at least 1).
  // Throws std::system_error if a thread cannot be started (already started ones are stopped and joined).
  explicit thread_pool(std::size_t threads = 0);
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  // stop(). Precondition: not called from one of this pool's workers.
  ~thread_pool();

  // Schedules `t` to run once on a worker; after stop() (from a non-worker thread) rejects it inline with
  // executor_stopped_error. Never runs `t` inline. Thread-safe. Lock-free. May allocate: the injection queue
  // allocates blocks (amortised) for outside submissions, a worker's deque grows (geometrically) when full;
  // if such an allocation fails the task is rejected with std::bad_alloc instead.
  void execute(task& t) noexcept {
    if (!try_execute(t)) refuse(t);
  }

  // Queues `t` as execute() does and returns true, or returns false having done nothing with it (after stop()
  // from a non-worker thread, or if a queue could not grow). Never runs or rejects `t` inline (see
  // queueing_executor). Thread-safe. Lock-free. May allocate as execute() does.
  bool try_execute(task& t) noexcept {
    // Inline for the hot case, a worker queuing on its own deque; the rest out of line.
    detail::pool_worker_context& w = detail::this_pool_worker;
    if (w.pool == impl_.get() && w.deque->push(&t)) {
      wake_for_pushed(w);
      return true;
    }
    return queue_elsewhere(t);
  }

  // From one of this pool's workers: queues `t` on that worker's own deque, as execute() does, and returns its
  // ticket for try_reclaim() (never 0). On any other thread, or if the deque cannot grow, returns 0 and queues
  // nothing. Never runs or rejects `t` inline. For anydefer::fork(). Thread-safe. Lock-free. Allocates only when
  // the deque grows.
  offer_ticket try_offer(task& t) noexcept {
    detail::pool_worker_context& w = detail::this_pool_worker;
    if (w.pool != impl_.get() || !w.deque->push(&t)) return 0;
    const auto ticket = static_cast<offer_ticket>(w.deque->newest_index()) + 1;  // the deque slot, from 1
    wake_for_pushed(w);  // as execute() from a worker: a sleeping worker comes to take it
    return ticket;
  }

  // Takes back `t`, offered with `ticket`, if the calling thread is the worker that queued it, it is the last task
  // that worker queued, and no other worker has taken it: true if so, and then neither t.run() nor t.reject()
  // will be called. False on any other thread or once `t` was taken. Thread-safe. Lock-free. Never allocates.
  bool try_reclaim(task& t, offer_ticket ticket) noexcept {
    // Only the queuing worker's own deque can hold `t` unstarted.
    detail::pool_worker_context& w = detail::this_pool_worker;
    return w.pool == impl_.get() && w.deque->pop_if(&t, static_cast<std::int64_t>(ticket - 1));
  }

  // Stops accepting outside work, runs everything accepted, and joins the workers (see the file comment; from a
  // worker thread it signals without joining). Idempotent. Thread-safe.
  void stop() noexcept;

  // Number of worker threads. Thread-safe.
  std::size_t size() const noexcept;

  // True if the calling thread is one of this pool's workers. Thread-safe.
  bool running_in_this_thread() const noexcept;

  // The index (0 .. size()-1) of the calling worker thread of this pool, or nullopt on any other thread.
  // Thread-safe.
  std::optional<std::size_t> current_worker_index() const noexcept;

  // Counts deferred links bound to this executor in builds without NDEBUG (see executor_ref::track_bound_links);
  // the destructor aborts with a message if any is left. Thread-safe. Never allocates.
  void track_bound_links(int n) noexcept { bound_links_.track(n); }

 private:
  // After a worker pushed onto its own deque: wake a parked worker whenever one sleeps, even for a single task.
  // This worker may be busy for a long time (or block until the task has run elsewhere), and an idle worker
  // must take the task meanwhile, as oneTBB and Taskflow do. When nobody sleeps this is the light fence (a
  // compiler barrier where membarrier is available) and one load.
  static void wake_for_pushed(detail::pool_worker_context& w) noexcept { w.parking->notify_one(); }
  // try_execute() from outside the pool, or from a worker whose deque could not grow: the injection queue.
  bool queue_elsewhere(task& t) noexcept;
  // Rejects a task try_execute() refused: executor_stopped_error after stop(), else std::bad_alloc.
  void refuse(task& t) noexcept;

  detail::bound_links bound_links_;
  struct impl;
  std::unique_ptr<impl> impl_;
};

static_assert(reclaiming_executor<thread_pool> && queueing_executor<thread_pool>);

}  // namespace anydefer
