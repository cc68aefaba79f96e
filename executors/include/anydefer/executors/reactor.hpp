// anydefer/executors/reactor.hpp: a single-threaded event loop with timers, for I/O-style and latency-sensitive
// continuations.
//
// Every task and timer runs on the reactor's one thread, one at a time, so what runs there needs no locks:
//
//   anydefer::reactor loop;
//   loop.start();                                   // its own thread (or: loop.run() on this thread)
//   loop.execute(t);                                // from any thread: runs on the loop thread, FIFO
//   auto id = loop.schedule_after(10ms, timer_task);
//   loop.cancel_timer(id);                          // true: removed before it fired; timer_task is ours again
//   loop.stop();                                    // runs what is queued, rejects pending timers, joins
//
// Threads: start() gives the reactor its own thread (optionally pinned to a CPU); run() instead runs the loop on
// the calling thread until stopped, and run_once() runs one non-blocking iteration (for tests). Only one thread
// runs the loop at a time.
//
// Queues: execute() from the loop thread appends to a local FIFO (no atomics). From any other thread it pushes
// onto a lock-free intrusive MPSC inbox (detail/intrusive_inbox.hpp); the loop takes the inbox in batches. (The
// shards of a reactor_group post to each other through per-pair channels instead: reactor_group.hpp.) Tasks
// from one thread run in the order that thread executed them.
//
// Fairness: each iteration runs at most `quota` ready tasks (default 64), then collects the inbox and due
// timers, which join the back of the ready FIFO. A flood of tasks that keep re-posting themselves therefore
// cannot starve timers or other threads' submissions.
//
// I/O: the reactor is an epoll loop. wait_readable(fd)/wait_writable(fd) return a deferred that fires on the loop
// thread once the descriptor is ready (the net layer, anydefer/net/tcp.hpp, is built on the same waits). Interest
// is level-triggered and kept registered after a wait fires, so a reader that waits again from the callback the
// report ran (the steady state of a server) makes no epoll_ctl call; any other wait registers its interest (one
// epoll_ctl, robust to a descriptor closed and its number reused), and a descriptor reported while nobody waits
// on it loses that interest then. While any wait is pending, each iteration that ran tasks also polls epoll
// without blocking (at most 128 events), so a flood of tasks cannot starve sockets.
//
// Sleeping: an idle loop first polls for up to 20 us, its inbox and, while any wait is pending, epoll without
// blocking, so that a hand-off from another thread (a cross-reactor continuation) or a socket report arriving within
// that window costs no wake-up on either side (a peer's send() to a loop asleep in epoll pays one); then it blocks
// in epoll_pwait2() on its descriptors and an eventfd, with the next timer's deadline as the timeout; it uses no
// CPU. (So a loop whose reports come every few tens of microseconds spends most of the gaps polling, and a timer
// that falls due during a poll runs up to about 20 us late.) A producer that pushes onto an empty inbox, or
// schedules a timer, writes the eventfd only if the loop announced it is going to sleep. The loop announces, then
// re-checks the inbox (and the stop state) before it sleeps; the producer's push is a seq_cst CAS and its read of
// the announcement a seq_cst load, the loop's announcement a seq_cst store and its re-check seq_cst loads, so either
// the producer sees the announcement and wakes the loop, or the loop sees the work and does not sleep: no wake-up is
// lost, and neither side needs a fence or a system call for it (reactor.cpp, wake()).
//
// Timers (the reactor is a timer_service: timer_service.hpp): schedule_after()/schedule_at() may be called
// from any thread; cancel_timer() too. Timers live in a binary heap guarded by a small mutex (uncontended when
// only the loop thread uses timers); that is what lets cancel_timer() give an exact answer from any thread. A
// timer's task is run on the loop thread (it joins the ready FIFO once due); timers with equal deadlines fire in
// scheduling order.
//
// Waiting on the loop thread: the loop installs a wait_policy whose before_block() throws would_block_error: a
// wait()/get() there would deadlock, since the loop thread is the one that would have to run the work that
// fires the deferred. Use add_callback or co_await on a reactor thread.
//
// Lifecycle: stop() (from any thread, including a task on the loop) makes later execute() calls from other
// threads reject inline with executor_stopped_error; the loop then runs everything already queued (ready and
// inbox, and whatever those tasks execute() onto the loop from its own thread), rejects the tasks of all
// pending timers (due or not) with executor_stopped_error, and returns; timers scheduled after that are
// rejected inline. A stopped reactor stays stopped. stop() joins the reactor's own thread unless called on it
// (then the destructor joins). The destructor stops; if the loop was never run, it drains the queues on the
// destroying thread, so no accepted task is lost. In run() mode, destroy the reactor only after run() returned
// (the destructor waits for it). The reactor must outlive every user that may still execute() on it or use its
// timers, and must not be destroyed from its own loop thread.
//
// Thread-safety: execute(), schedule_*(), cancel_timer(), stop(), request_stop(), running_in_this_thread(),
// wait_readable(), wait_writable() and now() are thread-safe; start(), run(), run_once() and join() may be called
// from any thread, one loop at a time; forget_fd(), watch() and unwatch() only on the loop thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <source_location>

#include "anydefer/deferred.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/executors/detail/bound_links.hpp"
#include "anydefer/executors/detail/io_waiter.hpp"
#include "anydefer/executors/timer_service.hpp"

namespace anydefer {

class reactor_group;
namespace detail {
class shard_channels;
}

// A cache line of its own: every execute() from any thread reads the handle's pointer to its implementation,
// and a neighbour written on another thread (a counter on the same stack frame, say) would bounce that line.
// NOLINTNEXTLINE(cppcoreguidelines-virtual-class-destructor): final, and timer_service is never owned as such
class alignas(64) reactor final : public timer_service {
 public:
  static constexpr std::size_t default_quota = 64;

  // A reactor with no thread yet; at most `quota` ready tasks run per iteration (at least 1).
  // Throws std::system_error if the eventfd cannot be created.
  explicit reactor(std::size_t quota = default_quota);
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;

  // Stops and joins (see the file comment). Precondition: not on the loop thread.
  ~reactor();

  // Starts the reactor's own thread running the loop. If `cpu` is given the thread is pinned to that CPU before
  // it runs anything: throws std::invalid_argument if cpu >= the number of CPUs online, std::system_error if
  // pinning fails (e.g. the CPU is not in this process's allowed set); the message names the CPU, and the
  // reactor is left without a thread (still usable). Throws std::logic_error if a loop is already running.
  void start(std::optional<unsigned> cpu = std::nullopt);

  // Runs the loop on the calling thread until stopped (then drains as the file comment says, and returns).
  // Throws std::logic_error if a loop is already running (start(), or run() on another thread).
  void run();

  // One iteration on the calling thread, without sleeping: collects the inbox and due timers, runs at most
  // `quota` ready tasks, and returns how many ran. After a stop it performs the final drain instead. Throws
  // std::logic_error if a loop is already running elsewhere.
  std::size_t run_once();

  // Queues `t` to run on the loop thread (never inline). From the loop thread: local FIFO, no atomics, always
  // accepted. From other threads: inbox; after stop rejected inline with executor_stopped_error.
  // Thread-safe. Lock-free. Never allocates.
  void execute(task& t) noexcept;

  // Queues `t` as execute() does and returns true, or, after stop (from another thread), returns false having
  // done nothing with it. Never runs or rejects `t` inline (see queueing_executor). Thread-safe. Lock-free.
  // Never allocates.
  bool try_execute(task& t) noexcept;

  // Runs `t` on the loop thread once `delay` has elapsed (or at `deadline`). Returns the timer's id. If the
  // reactor has finished stopping, rejects `t` inline with executor_stopped_error and returns timer_id{}; if the
  // heap cannot grow, rejects it with std::bad_alloc. Thread-safe (takes the timer mutex). Allocates only when
  // the timer heap grows (amortised).
  timer_id schedule_after(std::chrono::nanoseconds delay, task& t) noexcept override;
  timer_id schedule_at(time_point deadline, task& t) noexcept;

  // Removes the timer `id` if it has not become due yet (not yet moved to the ready queue). Returns true if it
  // removed it: its task is then neither run nor rejected, and belongs to the caller again. Returns false if
  // the timer already fired, is running, was cancelled, or was rejected by stop. Thread-safe (takes the timer
  // mutex). Never allocates.
  bool cancel_timer(timer_id id) noexcept override;

  // Asks the loop to stop (see the file comment) and returns at once. Idempotent. Thread-safe.
  void request_stop() noexcept;

  // request_stop(), then joins the reactor's own thread if it has one and this is not it. Thread-safe.
  void stop() noexcept;

  // Joins the reactor's own thread, if any, unless called on it. Thread-safe.
  void join() noexcept;

  // True if the calling thread is running this reactor's loop. Thread-safe.
  bool running_in_this_thread() const noexcept;

  // The clock timers use (steady_clock). Thread-safe.
  static time_point now() noexcept { return clock::now(); }
  time_point current_time() const noexcept override { return now(); }

  // --- I/O readiness ---

  // A deferred<void> that fires on the loop thread once `fd` is readable (data, a pending connection, end of
  // stream, or an error: the next read says which), or writable. Level-triggered: it fires on the next iteration if
  // the descriptor is ready already. Readiness may be spurious (another reader took the data first, or the report
  // was about a descriptor closed earlier in the same batch whose number `fd` reuses): an operation that then gets
  // EAGAIN waits again (a connect checks getpeername()). One pending wait per descriptor and direction. Thread-safe:
  // from another thread the wait is registered on the loop thread (one task, no extra allocation). One allocation.
  // cancel() removes the wait and fails it with cancelled_error (add_timeout works on it). Fails with
  // std::logic_error if a wait in that direction is pending on `fd` already, std::system_error (the errno) if epoll
  // refuses the descriptor (EBADF; EPERM for a regular file), executor_stopped_error if the reactor stops first
  // or has stopped.
  deferred<void> wait_readable(int fd, std::source_location loc = std::source_location::current());
  deferred<void> wait_writable(int fd, std::source_location loc = std::source_location::current());

  // Fails the pending waits on `fd` with cancelled_error and removes `fd` from the reactor's epoll set. Call it
  // (on the loop thread) before closing a descriptor that was ever waited on: until then the loop may still pass
  // its number to epoll_ctl, and a close on another thread races with that (a number reused meanwhile would
  // name someone else's descriptor). Loop thread only (std::logic_error elsewhere).
  void forget_fd(int fd);

  // Low-level waits (detail/io_waiter.hpp), for operations that retry their system call themselves. Loop thread
  // only. watch() registers `w`; it throws std::logic_error off the loop thread or when a waiter is pending on
  // the same descriptor and direction, std::system_error if epoll refuses the descriptor; after stop it calls
  // w's abandoned() at once with executor_stopped_error. unwatch() takes `w` back if it is still registered
  // (true: neither of its operations will be called).
  void watch(detail::io_waiter& w);
  bool unwatch(detail::io_waiter& w) noexcept;

  // Counts deferred links bound to this executor in builds without NDEBUG (see executor_ref::track_bound_links);
  // the destructor aborts with a message if any is left. Thread-safe. Never allocates.
  void track_bound_links(int n) noexcept { bound_links_.track(n); }

 private:
  friend class reactor_group;
  // Makes this reactor shard `index` of a group whose shards post to each other through `channels`, which must
  // outlive it. Before start(). Throws std::bad_alloc.
  void join_group(detail::shard_channels& channels, std::size_t index);

  detail::bound_links bound_links_;
  struct impl;
  std::unique_ptr<impl> impl_;
};

static_assert(queueing_executor<reactor>);

}  // namespace anydefer
