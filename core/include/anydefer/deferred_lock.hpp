// anydefer/deferred_lock.hpp: deferred_semaphore and deferred_lock, Twisted's DeferredSemaphore and DeferredLock:
// acquiring returns a deferred that fires once a permit is yours, so code that must not run too many at once
// waits without blocking a thread.
//
//   anydefer::deferred_semaphore in_flight(64);          // a server capping concurrent backend requests
//   deferred<reply> handle(request r) {
//     return in_flight.run([r] { return backend.call(r); });  // at most 64 calls outstanding; the rest queue
//   }
//
//   anydefer::deferred_lock lock;
//   lock.acquire().add_callback([&] { mutate(); lock.release(); });
//
// Rules (Twisted's):
//   - acquire() fires at once (on the calling thread) while a permit is free; otherwise it queues, and waiters
//     are served in the order they called acquire().
//   - release() hands the permit straight to the oldest waiter, firing its deferred on the releasing thread
//     (inside release(), or, if that thread is itself inside a grant, right after it: a waiter that releases
//     from its callback does not deepen the stack). release() without a matching acquire is std::logic_error.
//   - Cancelling a queued acquire removes only that waiter (it fails with cancelled_error); cancelling one that
//     already fired does nothing: the permit is yours to release.
//   - run(f) acquires, calls f, and releases once f's result (or the deferred f returns) is known, failure or
//     not; it returns that result. Cancelling it while it waits for the permit means f never runs.
//   - Destroying the semaphore fails the waiters still queued with abandoned_waiter_error. run() chains in
//     flight keep what they need and release into nothing.
//
// Thread-safety: every member is thread-safe. A short critical section (one mutex) guards the count and the
// queue; no user code runs under it. Memory ordering: whatever a thread did before release() is visible to the
// callbacks of the acquire() it grants.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <source_location>
#include <type_traits>
#include <utility>

#include "anydefer/deferred.hpp"
#include "anydefer/detail/waiters.hpp"

namespace anydefer {

namespace detail {

// The count and queue of one semaphore; shared with the cancellers (weakly) and run() chains (strongly), which
// may outlive the handle.
class semaphore_core : public std::enable_shared_from_this<semaphore_core> {
 public:
  explicit semaphore_core(std::size_t permits) noexcept : free_(permits), limit_(permits) {}

  deferred<void> acquire(std::source_location loc);
  void release();
  std::size_t free_permits() const;
  std::size_t waiting() const;
  std::size_t limit() const noexcept { return limit_; }
  void abandon_waiters();

 private:
  void grant(deferred<void> waiter);
  void leave(waiter_queue<void>::ticket t);

  mutable std::mutex mutex_;
  std::size_t free_;  // invariant: waiters are queued only while free_ == 0
  const std::size_t limit_;
  waiter_queue<void> waiting_;
};

}  // namespace detail

class deferred_semaphore {
 public:
  // A semaphore with `permits` permits (at least 1, else std::invalid_argument).
  explicit deferred_semaphore(std::size_t permits);
  deferred_semaphore(deferred_semaphore&&) noexcept = default;
  deferred_semaphore& operator=(deferred_semaphore&&) = delete;
  ~deferred_semaphore();

  // A deferred that fires once a permit is the caller's (see the file comment). Allocates once (the deferred),
  // plus a queue node while it waits.
  deferred<void> acquire(std::source_location loc = std::source_location::current()) { return core_->acquire(loc); }

  // Returns a permit: to the oldest waiter, or to the pool. Throws std::logic_error if every permit is already
  // free.
  void release() { core_->release(); }

  // acquire(), then f() (void, a value, or a deferred), then release(); the deferred gives f's result.
  template <class F>
    requires std::invocable<F&>
  auto run(F f, std::source_location loc = std::source_location::current()) {
    using U = detail::unwrap_deferred_t<std::invoke_result_t<F&>>;
    return acquire(loc).add_callback(
        [core = core_, f = std::move(f)]() mutable {
          return maybe_deferred(f).add_both([core = std::move(core)](result<U>&& r) -> U {
            core->release();
            return std::move(r).value();
          });
        },
        loc);
  }

  // How many permits are free, and how many acquire() calls wait; a snapshot, exact only while no other
  // thread uses the semaphore.
  std::size_t free_permits() const { return core_->free_permits(); }
  std::size_t waiting() const { return core_->waiting(); }
  std::size_t limit() const noexcept { return core_->limit(); }

 private:
  std::shared_ptr<detail::semaphore_core> core_;
};

// A deferred_semaphore with one permit, plus locked() (Twisted's DeferredLock).
class deferred_lock {
 public:
  deferred_lock() : permit_(1) {}

  deferred<void> acquire(std::source_location loc = std::source_location::current()) { return permit_.acquire(loc); }
  // Throws std::logic_error if the lock is not held.
  void release() { permit_.release(); }
  template <class F>
    requires std::invocable<F&>
  auto run(F f, std::source_location loc = std::source_location::current()) {
    return permit_.run(std::move(f), loc);
  }
  // True while someone holds the lock (a snapshot).
  bool locked() const { return permit_.free_permits() == 0; }
  std::size_t waiting() const { return permit_.waiting(); }

 private:
  deferred_semaphore permit_;
};

}  // namespace anydefer
