// anydefer/executors/detail/admission_gate.hpp: "accepting work" as one atomic word, so stop() never races a
// concurrent execute() into losing a task.
//
// An executor's execute() enters the gate before it enqueues and leaves after. stop() closes the gate. Once the
// gate is closed and empty (drained()), no execute() can ever enqueue again, and every one that did has
// finished enqueueing: the consumer that sees drained() and then finds its queues empty may stop for good.
//
//   if (!gate.try_enter()) { reject(t); return; }    // closed: refuse inline
//   queue.push(t);
//   gate.leave();   // the last holder after close calls the gate's on_drained hook (e.g. "wake consumers")
//
// The word is (holders << 1) | closed. try_enter() is one fetch_add; leave() one CAS, except for the last holder
// after close, which takes a mutex for its decrement and its callback. drained() takes the same mutex, so when
// it returns true no leave() is still touching the executor: the executor may then be destroyed (provided, as
// every executor documents, nobody calls execute() on it any more).
//
// Thread-safety: all members are thread-safe. Never allocates.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace anydefer::detail {

class admission_gate {
 public:
  // `on_drained(context)` runs, under the gate's lock, when the last holder leaves a closed gate: the hook to
  // wake consumers that wait for drained(). It must not call back into the gate.
  using hook = void (*)(void* context) noexcept;
  explicit admission_gate(hook on_drained = nullptr, void* context = nullptr) noexcept
      : on_drained_(on_drained), context_(context) {}
  admission_gate(const admission_gate&) = delete;
  admission_gate& operator=(const admission_gate&) = delete;

  // Enters unless closed. Returns false (without entering) if closed. Thread-safe. Lock-free unless the gate is
  // closed. Never allocates.
  bool try_enter() noexcept {
    // relaxed: whether we see the closed bit is decided by the modification order of state_ alone (close()'s
    // fetch_or and this fetch_add are RMWs on the same word); the data hand-off is ordered by leave()'s release.
    const std::uint64_t prev = state_.fetch_add(kOne, std::memory_order_relaxed);
    if ((prev & kClosed) != 0) {
      leave();
      return false;
    }
    return true;
  }

  // Leaves after try_enter() returned true (or internally after a refused one). If the gate is closed and this
  // was the last holder, runs the on_drained hook under the gate's lock, before drained() can return true.
  // Thread-safe. Never allocates.
  void leave() noexcept {
    // relaxed: only a starting guess for the CAS loop.
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    for (;;) {
      if (s == (kClosed | kOne)) {  // possibly the last holder after close: decrement under the lock
        std::lock_guard<std::mutex> lock(mutex_);
        // release: everything this holder enqueued is visible to whoever acquires the drained state.
        if (state_.fetch_sub(kOne, std::memory_order_release) == (kClosed | kOne)) {
          if (on_drained_ != nullptr) on_drained_(context_);
          drained_cv_.notify_all();
        }
        return;
      }
      // release (success): as above, the enqueue before leave() happens-before an acquire of the new count.
      // relaxed (failure): we only retry with the fresh value.
      if (state_.compare_exchange_weak(s, s - kOne, std::memory_order_release, std::memory_order_relaxed)) return;
    }
  }

  // Closes the gate: every later try_enter() fails. Idempotent. Thread-safe. Never allocates.
  void close() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    // acq_rel: release so close() is ordered before what the closer does next; acquire to see holders' work.
    state_.fetch_or(kClosed, std::memory_order_acq_rel);
  }

  // True once close() was called. Thread-safe. Never allocates.
  bool closed() const noexcept {
    // acquire: a caller that sees the gate closed also sees what the closer did before closing.
    return (state_.load(std::memory_order_acquire) & kClosed) != 0;
  }

  // True if the gate is closed and nobody holds it: no execute() is enqueueing and none ever will again.
  // Thread-safe. Never allocates.
  bool drained() const noexcept {
    if (!closed()) return false;
    std::lock_guard<std::mutex> lock(mutex_);
    // acquire: pairs with the holders' release decrements, so all their enqueues are visible to the caller.
    return state_.load(std::memory_order_acquire) == kClosed;
  }

  // Closes the gate, then blocks until it is drained. Thread-safe.
  void close_and_wait() noexcept {
    std::unique_lock<std::mutex> lock(mutex_);
    state_.fetch_or(kClosed, std::memory_order_acq_rel);  // acq_rel: as in close()
    // acquire: as in drained().
    drained_cv_.wait(lock, [this] { return state_.load(std::memory_order_acquire) == kClosed; });
  }

 private:
  static constexpr std::uint64_t kClosed = 1;
  static constexpr std::uint64_t kOne = 2;

  std::atomic<std::uint64_t> state_{0};
  mutable std::mutex mutex_;
  std::condition_variable drained_cv_;
  hook on_drained_;
  void* context_;
};

}  // namespace anydefer::detail
