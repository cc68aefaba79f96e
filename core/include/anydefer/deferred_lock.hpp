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
//     not; it returns that result. Cancelling it while it waits for the permit means f never runs. A cancel from
//     another thread that lands just as the permit is granted there may find f already starting: the run then
//     fails with cancelled_error while f runs (and the permit still comes back), as any cancel() racing the work.
//   - Destroying the semaphore fails the waiters still queued with abandoned_waiter_error. run() chains in
//     flight keep what they need and release into nothing.
//
// Thread-safety: every member is thread-safe. Uncontended, acquire() and release() are one CAS each; a short
// critical section (one mutex) guards the queue of waiters; no user code runs under it. Memory ordering: whatever a
// thread did before release() is visible to the callbacks of the acquire() it grants.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <type_traits>
#include <utility>

#include "anydefer/deferred.hpp"
#include "anydefer/detail/waiters.hpp"

namespace anydefer {

namespace detail {

// The count and queue of one semaphore; shared with the cancellers (weakly) and run() chains (strongly), which
// may outlive the handle.
//
// One atomic word holds the free permits and a "waiters queued" bit: free << 1 | queued. While the bit is clear,
// acquire() and release() change the count with one CAS each and never touch the mutex (the uncontended case).
// The bit is set and cleared only under the mutex, and only while free == 0, so a set bit sends both sides to the
// mutex, where release() hands its permit straight to the oldest waiter instead of counting it:
//
//   acquire:  free > 0                 -> CAS free - 1                     (acquire: the last release's writes)
//             free == 0 (under mutex)  -> CAS 0 -> queued, enqueue a waiter
//   release:  bit clear                -> CAS free + 1                     (release: to the next acquirer)
//             bit set (under mutex)    -> pop the oldest waiter, clear the bit if it was the last, fire it
//   leave:    (a waiter's canceller, under mutex) remove it, clear the bit if it was the last
class semaphore_core : public std::enable_shared_from_this<semaphore_core> {
 public:
  explicit semaphore_core(std::size_t permits) noexcept : word_(std::uint64_t{permits} << 1), limit_(permits) {}

  deferred<void> acquire(std::source_location loc) { return try_acquire() ? succeed(loc) : acquire_queued(loc); }

  // Takes a free permit if there is one (then no waiter is queued).
  bool try_acquire() noexcept {
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    while (w >= free_unit) {
      if (word_.compare_exchange_weak(w, w - free_unit, std::memory_order_acquire, std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  void release() {
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    while ((w & queued) == 0) {
      if ((w >> 1) == limit_) throw_release_without_acquire();
      if (word_.compare_exchange_weak(w, w + free_unit, std::memory_order_release, std::memory_order_relaxed)) {
        return;
      }
    }
    release_to_waiter();
  }

  std::size_t free_permits() const noexcept { return word_.load(std::memory_order_relaxed) >> 1; }
  std::size_t waiting() const;
  std::size_t limit() const noexcept { return limit_; }
  void abandon_waiters();
  // A queued acquire's canceller (waiter_queue::enqueue): takes it out of the queue.
  void leave(waiter_queue<void>::ticket t);

 private:
  static constexpr std::uint64_t queued = 1;
  static constexpr std::uint64_t free_unit = 2;

  deferred<void> acquire_queued(std::source_location loc);
  void release_to_waiter();
  [[noreturn]] static void throw_release_without_acquire();
  void grant(deferred<void> waiter);
  void clear_queued_if_empty() noexcept;

  std::atomic<std::uint64_t> word_;
  const std::size_t limit_;
  mutable std::mutex mutex_;  // guards waiting_ and every change of the queued bit
  waiter_queue<void> waiting_;
};

// What a run() caller's cancel reaches: the acquire while it waits, then the deferred f returned.
template <class U>
class run_control {
 public:
  void wait_for(const deferred<void>& acquire) {
    std::lock_guard<std::mutex> lock(mutex_);
    permit_ = state_ref_of(acquire);
  }
  void started(const deferred<U>& work) {
    std::lock_guard<std::mutex> lock(mutex_);
    work_.emplace(work);
    permit_ = {};
  }
  bool cancelled_before_start() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cancelled_;
  }
  // From the caller's cancel (the root's canceller): never under the mutex, since cancelling runs callbacks.
  void cancel() {
    std::unique_lock<std::mutex> lock(mutex_);
    cancelled_ = true;
    if (work_) {
      deferred<U> work = *work_;
      lock.unlock();
      work.cancel();
    } else if (state<void>* permit = permit_.get(); permit != nullptr) {
      state_ref<void> keep = std::move(permit_);
      lock.unlock();
      permit->cancel();  // a queued acquire leaves the queue; a granted one ignores it and f is skipped
    }
  }

 private:
  std::mutex mutex_;
  bool cancelled_ = false;
  state_ref<void> permit_;
  std::optional<deferred<U>> work_;
};

// Releases the permit, then settles `out` with `r` (or with what release() threw). `out` may already be settled
// by a cancel: the result is then dropped, the permit never is.
template <class U>
void release_into(semaphore_core& core, state<U>* out, result<U>&& r) noexcept {
  try {
    core.release();
  } catch (...) {
    (void)out->fire_failure(std::current_exception());
    return;
  }
  if (r.has_failure()) {
    (void)out->fire_failure(r.error().exception());
  } else if constexpr (std::is_void_v<U>) {
    (void)out->fire_value();
  } else {
    (void)out->fire_value(std::move(r).value());
  }
}

}  // namespace detail

class deferred_semaphore {
 public:
  // A semaphore with `permits` permits (at least 1, else std::invalid_argument).
  explicit deferred_semaphore(std::size_t permits);
  deferred_semaphore(deferred_semaphore&&) noexcept = default;
  deferred_semaphore& operator=(deferred_semaphore&&) = delete;
  ~deferred_semaphore();

  // A deferred that fires once a permit is the caller's (see the file comment). Allocates once (the deferred);
  // a waiter also takes a slot in the queue's deque.
  deferred<void> acquire(std::source_location loc = std::source_location::current()) { return core_->acquire(loc); }

  // Returns a permit: to the oldest waiter, or to the pool. Throws std::logic_error if every permit is already
  // free.
  void release() { core_->release(); }

  // acquire(), then f() (void, a value, or a deferred), then release(); the deferred gives f's result.
  // Cancelling it cancels the acquire while it waits, else the deferred f returned; the permit is released
  // whatever happens, even when the cancel races the grant.
  template <class F>
    requires std::invocable<F&>
  auto run(F f, std::source_location loc = std::source_location::current()) {
    using U = detail::unwrap_deferred_t<std::invoke_result_t<F&>>;
    if (core_->try_acquire()) {
      // A free permit, and f finishing at once (the common case): nothing is pending, so nothing to cancel.
      deferred<U> work = maybe_deferred(f);
      if (work.fired()) {
        core_->release();
        return work;
      }
      return finish_run(std::move(work), loc);
    }
    // The release rides on an internal chain nobody else holds, so no cancel can drop it; the caller gets a
    // root fired from that chain, whose canceller forwards to what is pending.
    auto control = std::make_shared<detail::run_control<U>>();
    deferred<U> out([control](deferred<U>&) { control->cancel(); }, loc);
    deferred<void> acquired = acquire(loc);
    control->wait_for(acquired);
    (void)acquired.add_both(
        [core = core_, control, f = std::move(f), target = detail::state_ref_of(out)](result<void>&& granted) mutable {
          if (!granted) {
            (void)target.get()->fire_failure(granted.error().exception());
            return;
          }
          if (control->cancelled_before_start()) {
            detail::release_into(*core, target.get(), result<U>(failure::of(cancelled_error())));
            return;
          }
          release_when_done(core, *control, maybe_deferred(f), std::move(target));
        },
        loc);
    return out;
  }

 private:
  // The rest of run() once f has started with the permit held: release when its deferred fires.
  template <class U>
  deferred<U> finish_run(deferred<U> work, std::source_location loc) {
    auto control = std::make_shared<detail::run_control<U>>();
    deferred<U> out([control](deferred<U>&) { control->cancel(); }, loc);
    release_when_done(core_, *control, std::move(work), detail::state_ref_of(out));
    return out;
  }
  template <class U>
  static void release_when_done(std::shared_ptr<detail::semaphore_core> core, detail::run_control<U>& control,
                                deferred<U> work, detail::state_ref<U> target) {
    control.started(work);
    (void)work.add_both([core = std::move(core), target = std::move(target)](result<U>&& r) mutable {
      detail::release_into(*core, target.get(), std::move(r));
    });
  }

 public:
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
  auto run(F f, std::source_location loc = std::source_location::current()) { return permit_.run(std::move(f), loc); }
  // True while someone holds the lock (a snapshot).
  bool locked() const { return permit_.free_permits() == 0; }
  std::size_t waiting() const { return permit_.waiting(); }

 private:
  deferred_semaphore permit_;
};

}  // namespace anydefer
