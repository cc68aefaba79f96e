// anydefer/detail/sync/admission_gate.hpp: "accepting work" for an executor, so stop() never races a
// concurrent execute() into losing a task, at the price of two plain stores and a light fence per execute() (a
// compiler barrier where membarrier is available; see detail/sync/asymmetric_fence.hpp).
//
// An executor's execute() enters the gate before it enqueues and leaves after. stop() closes the gate. Once the
// gate is closed and empty (drained()), no execute() can ever enqueue again, and every one that did has
// finished enqueueing: the consumer that sees drained() and then finds its queues empty may stop for good.
//
//   if (!gate.try_enter()) { reject(t); return; }    // closed: refuse inline
//   queue.push(t);
//   wake_consumer();
//   gate.leave();   // the last touch of the executor by this execute()
//
// A holder is recorded in its own thread's record, not in the gate: every thread that ever enters a gate owns a
// thread_local record (linked into one process-wide registry while the thread lives) that says which gate it
// is inside, if any. Entering is a store to that record, a light fence (detail/sync/asymmetric_fence.hpp) and a
// load of the gate's closed flag; leaving is a store. Nothing shared is written, so producers on different
// cores never contend, and the closed flag, written once, stays in every producer's cache.
//
// Why nothing is lost: try_enter() is "store record = gate; light fence; load closed"; drained() is "load
// closed (seq_cst) == true; heavy fence; load every record". Read as seq_cst fences (as the heavy/light pair
// acts), either the producer's fence precedes the drainer's in their total order, and the drainer's scan sees
// the record (or its later reset), or the drainer's fence comes first, and then so does the close (the drainer
// read it seq_cst before its fence), so the producer's load sees the gate closed and backs out. leave() resets
// the record with release and the scan reads with acquire, so what a holder enqueued is visible to whoever sees
// drained(). leave() touches nothing after that store: once drained() is true, no execute() is still inside the
// executor, and it may be destroyed (provided, as every executor documents, nobody calls execute() on it any
// more).
//
// Late threads: a thread_local built before a thread's record is destroyed after it, at thread exit, and its
// destructor may still post. Once the record is gone a thread enters through a shared counter in the gate
// instead (a seq_cst pair against close() and drained()), so such a post is counted, never lost.
//
// Limits: a thread is inside at most one gate at a time (execute() runs no user code while inside), and leaves
// on the thread it entered on. Draining is polled: nobody is woken when the last holder leaves (a wake-up would
// have to touch the executor after the leave). Holders are execute() calls, a few hundred nanoseconds, so a
// consumer that finds the gate closed but not drained backs off (admission_gate::backoff: yields, then short
// sleeps) and looks again, as wait_drained() does. drained() costs a heavy fence and a scan under the
// registry's mutex: call it only once closed.
//
// Thread-safety: all members are thread-safe. A thread's first try_enter() takes the registry's mutex once to
// link its record (and the C++ runtime may allocate to register the record's destructor); otherwise lock-free
// and allocation-free.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "anydefer/detail/sync/asymmetric_fence.hpp"

namespace anydefer::detail {

class admission_gate;

// Every thread that entered a gate, while it lives: which gate it is inside right now, if any.
class gate_thread_record {
 public:
  gate_thread_record() noexcept;
  gate_thread_record(const gate_thread_record&) = delete;
  gate_thread_record& operator=(const gate_thread_record&) = delete;
  ~gate_thread_record();

  // This thread's record, built on first use. Not after it was destroyed (see gone()).
  static gate_thread_record& of_this_thread() noexcept {
    thread_local gate_thread_record mine;
    return mine;
  }

  // True once this thread's record was destroyed at thread exit (or, on the main thread, at exit()). A
  // thread_local built before the record is destroyed after it, and its destructor may still post: such late
  // entries go through the gate's shared counter instead. Plain and constant-initialised, so it stays readable
  // until the thread is gone.
  static bool gone() noexcept { return record_destroyed; }

  // True if some live thread is inside `gate` right now (acquire: see the file comment). Takes the registry's
  // mutex.
  static bool anyone_inside(const admission_gate* gate) noexcept;

  std::atomic<const admission_gate*> inside{nullptr};

 private:
  static inline constinit thread_local bool record_destroyed = false;
  gate_thread_record* next_ = nullptr;  // registry list, guarded by its mutex
  gate_thread_record* prev_ = nullptr;
};

// A cache line of its own: the closed flag is read by every execute() and must not share a line with anything
// written on the hot path.
class alignas(64) admission_gate {
 public:
  admission_gate() noexcept { enable_asymmetric_fences(); }
  admission_gate(const admission_gate&) = delete;
  admission_gate& operator=(const admission_gate&) = delete;

  // Enters unless closed. Returns false (without entering) if closed. Thread-safe. Lock-free and allocation-free
  // after the thread's first call.
  bool try_enter() noexcept {
    // relaxed: a refusal needs no ordering. Refusing before touching the record matters for liveness: a storm of
    // execute() calls after stop would otherwise keep some record "inside" at almost every drained() scan.
    if (closed_.load(std::memory_order_relaxed)) return false;
    if (gate_thread_record::gone()) return try_enter_late();
    gate_thread_record& record = gate_thread_record::of_this_thread();
    // relaxed store, light fence, relaxed load: the producer half of the pair in the file comment.
    record.inside.store(this, std::memory_order_relaxed);
    light_fence();
    if (closed_.load(std::memory_order_relaxed)) {
      // relaxed: a refused entry published nothing; a drainer that saw it only looks again.
      record.inside.store(nullptr, std::memory_order_relaxed);
      return false;
    }
    return true;
  }

  // Leaves after try_enter() returned true, on the same thread. Touches nothing of the gate after the store (or,
  // for a late thread, the decrement) that ends the hold. Thread-safe. Never allocates.
  void leave() noexcept {
    // release (both): what this holder did before leaving is visible to whoever sees drained(). A thread's
    // record cannot be destroyed between its try_enter() and leave(): both are in one execute() call.
    if (gate_thread_record::gone()) {
      late_holders_.fetch_sub(1, std::memory_order_release);
      return;
    }
    gate_thread_record::of_this_thread().inside.store(nullptr, std::memory_order_release);
  }

  // Closes the gate: every later try_enter() fails. Idempotent. Thread-safe. Never allocates.
  void close() noexcept {
    // seq_cst: drained()'s seq_cst load of the flag orders the close before its heavy fence (file comment).
    closed_.store(true, std::memory_order_seq_cst);
  }

  // True once close() was called. Thread-safe. Never allocates. acquire by default: a caller that sees the gate
  // closed also sees what the closer did before closing; a caller that pairs the read with close()'s seq_cst
  // store in a Dekker pattern (the reactor's sleep check) asks for seq_cst.
  bool closed(std::memory_order order = std::memory_order_acquire) const noexcept { return closed_.load(order); }

  // True if the gate is closed and nobody is inside: no execute() is enqueueing and none ever will again.
  // A system call and a mutex: call it only once closed() (it returns false at once before). Thread-safe.
  bool drained() const noexcept {
    // seq_cst: see the file comment.
    if (!closed_.load(std::memory_order_seq_cst)) return false;
    heavy_fence();
    // seq_cst: the late holders' pair is all seq_cst (try_enter_late()); acquire, as the records' scan.
    return late_holders_.load(std::memory_order_seq_cst) == 0 && !gate_thread_record::anyone_inside(this);
  }

  // Blocks until drained(), after close() (by anyone). Yields at first, then sleeps in growing steps up to a
  // millisecond. Thread-safe.
  void wait_drained() const noexcept {
    backoff pause;
    while (!drained()) pause.wait();
  }

  // Closes, then wait_drained(). Thread-safe.
  void close_and_wait() noexcept {
    close();
    wait_drained();
  }

  // Polling with a growing pause: yields for the first rounds, then sleeps from 10 us up to 1 ms.
  class backoff {
   public:
    void wait() noexcept {
      if (rounds_ < 64) {
        ++rounds_;
        std::this_thread::yield();
        return;
      }
      std::this_thread::sleep_for(pause_);
      pause_ = std::min(pause_ * 2, std::chrono::microseconds{1000});
    }

   private:
    int rounds_ = 0;
    std::chrono::microseconds pause_{10};
  };

 private:
  // Entry for a thread whose record is gone: a shared counter, with the seq_cst Dekker pair against close() and
  // drained() (increment then read closed_; store closed_ then read the counter). Rare, so its RMWs cost
  // nothing that matters.
  bool try_enter_late() noexcept {
    late_holders_.fetch_add(1, std::memory_order_seq_cst);
    if (closed_.load(std::memory_order_seq_cst)) {
      late_holders_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: a refused entry published nothing
      return false;
    }
    return true;
  }

  std::atomic<bool> closed_{false};
  std::atomic<int> late_holders_{0};  // holders that entered through try_enter_late()
};

}  // namespace anydefer::detail
