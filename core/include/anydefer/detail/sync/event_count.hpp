// anydefer/detail/sync/event_count.hpp: how idle thread_pool workers sleep without losing a wake-up.
//
// An event count turns "wait until some condition holds" into a protocol that a lock-free producer can signal
// with one load and a light fence (no fence at all where membarrier is available) when nobody sleeps:
//
//   // waiter (an idle worker)                     // notifier (whoever made work available)
//   auto key = ec.prepare_wait();                   queue.push(t);
//   if (work_available()) {                         ec.notify_one();
//     ec.cancel_wait();   // run it
//   } else {
//     ec.commit_wait(key);  // sleeps unless notified since prepare_wait
//   }
//
// Why no wake-up is lost: prepare_wait() registers the waiter (waiters_ + 1) and then reads the epoch; a
// notifier publishes its work and then reads waiters_. Both sides separate their write from their read by a
// fence (Dekker's pattern), so at least one side sees the other's write. The waiter's is heavy_fence() and the
// notifier's light_fence() (detail/sync/asymmetric_fence.hpp): a notifier runs on every post, a waiter only when it
// is about to sleep, so the system call lands on the side that is about to make one anyway. In the argument
// below the pair acts as two seq_cst fences:
//   - the notifier sees waiters_ > 0: it advances the epoch and wakes a sleeper. If that happened before the
//     waiter read the epoch, the waiter read the new epoch, which the notifier wrote after publishing the work,
//     so the waiter's re-check finds the work. Otherwise commit_wait(key) sees epoch != key and returns (or is
//     woken by the futex wake, which the kernel orders after the epoch change).
//   - the notifier sees waiters_ == 0: then the waiter's increment comes later in the single seq_cst order, so
//     its re-check (after its fence) sees the published work and it does not sleep.
// Spurious returns from commit_wait() are allowed; callers always re-scan for work.
//
// Sleeping uses C++20 std::atomic<uint32_t>::wait/notify (a futex on Linux): an idle pool costs no CPU.
//
// Thread-safety: all members are thread-safe. Never allocates.
#pragma once

#include <atomic>
#include <cstdint>

#include "anydefer/detail/assert.hpp"
#include "anydefer/detail/sync/asymmetric_fence.hpp"

namespace anydefer::detail {

class event_count {
 public:
  using key = std::uint32_t;

  // Registers the caller as about to sleep and returns the epoch to pass to commit_wait(). Must be followed by
  // exactly one cancel_wait() or commit_wait(). Thread-safe. Never allocates.
  key prepare_wait() noexcept {
    // seq_cst RMW + heavy fence: the registration must be ordered before the caller's re-check of its
    // condition (the waiter half of the Dekker pair described above).
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    heavy_fence();
    // acquire: if this reads a notifier's epoch increment, the work it published before it is visible.
    return epoch_.load(std::memory_order_acquire);
  }

  // Withdraws a prepare_wait() after the re-check found work. Thread-safe. Never allocates.
  void cancel_wait() noexcept {
    // relaxed: an overcounted waiter only costs a notifier a spurious epoch bump, never a missed wake-up.
    [[maybe_unused]] const std::uint32_t before = waiters_.fetch_sub(1, std::memory_order_relaxed);
    ANYDEFER_ASSERT(before > 0 && "event_count: more waits withdrawn than prepared");
  }

  // Sleeps until the epoch moves past `k` (returns at once if it already has). Thread-safe. Never allocates.
  void commit_wait(key k) noexcept {
    // acquire: pairs with the notifier's release increment, so the work published before it is visible.
    epoch_.wait(k, std::memory_order_acquire);
    [[maybe_unused]] const std::uint32_t before = waiters_.fetch_sub(1, std::memory_order_relaxed);  // as above
    ANYDEFER_ASSERT(before > 0 && "event_count: more waits committed than prepared");
  }

  // Wakes one sleeper, if any; costs a light fence and a load when none is registered. Call after publishing
  // work. Thread-safe. Never allocates.
  void notify_one() noexcept { notify(false); }

  // Wakes every sleeper (stop, or a change every waiter must see). Thread-safe. Never allocates.
  void notify_all() noexcept { notify(true); }

  // Waiters registered right now (a hint, for "are there sleepers?" heuristics). Thread-safe.
  std::uint32_t waiters_approx() const noexcept { return waiters_.load(std::memory_order_relaxed); }

 private:
  void notify(bool all) noexcept {
    // The caller's publication of work is ordered before the read of waiters_ (the notifier half of the Dekker
    // pair).
    light_fence();
    if (waiters_.load(std::memory_order_relaxed) == 0) return;  // relaxed: ordered by the fence above
    // release: a waiter that reads the new epoch (prepare_wait's or commit_wait's acquire) sees the work.
    epoch_.fetch_add(1, std::memory_order_release);
    if (all) {
      epoch_.notify_all();
    } else {
      epoch_.notify_one();
    }
  }

  alignas(64) std::atomic<std::uint32_t> epoch_{0};
  alignas(64) std::atomic<std::uint32_t> waiters_{0};
};

}  // namespace anydefer::detail
