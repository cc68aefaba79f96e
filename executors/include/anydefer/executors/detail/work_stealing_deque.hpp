// anydefer/executors/detail/work_stealing_deque.hpp: the Chase-Lev deque each thread_pool worker owns.
//
// One thread (the owner) pushes and pops at the bottom, LIFO, so the task it just made runs next while its data
// is still in cache. Any other thread steals from the top, FIFO, taking the oldest (usually largest) piece of
// work. The ring buffer grows when full; rings that thieves may still be reading are retired, not freed, until
// the deque is destroyed (growth is geometric, so the retired rings together are smaller than the live one).
//
//   work_stealing_deque<task*> q;
//   q.push(&t);                     // owner thread only
//   task* mine = q.pop();           // owner thread only; nullptr when empty
//   task* theirs = q.steal();       // any thread; nullptr when empty or when it lost a race
//   std::int64_t at = q.newest_index();  // owner thread only: where the last push went
//   bool back = q.pop_if(&t, at);   // owner thread only: takes t back if it is still there, the last item
//
// The algorithm and its memory orders are those of Lê, Pop, Cohen, Zappa Nardelli, "Correct and Efficient
// Work-Stealing for Weak Memory Models" (PPoPP 2013), figure 1; each order is argued next to its operation.
// One deliberate strengthening: slots are written with `release` and read with `acquire`. The paper publishes
// the slot through the release fence before `bottom` and reads it after an acquire load of `bottom`, which is
// enough; the per-slot pairing states the hand-off of the pointed-to object directly, which race detectors
// that do not model fences (ThreadSanitizer) understand, and costs nothing on x86 (plain moves).
//
// Thread-safety: push(), pop() and pop_if() from the owner only; steal(), empty_approx() from any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "anydefer/detail/assert.hpp"
#include "anydefer/detail/sync/fence.hpp"

namespace anydefer::detail {

template <class T>
  requires(std::is_pointer_v<T>)
class work_stealing_deque {
 public:
  explicit work_stealing_deque(std::int64_t initial_capacity = 256) {
    auto first = std::make_unique<ring>(round_up_pow2(initial_capacity));  // owned even if the push_back throws
    ring_.store(first.get(), std::memory_order_relaxed);
    retired_.push_back(std::move(first));
  }
  work_stealing_deque(const work_stealing_deque&) = delete;
  work_stealing_deque& operator=(const work_stealing_deque&) = delete;
  ~work_stealing_deque() = default;  // every ring, live or retired, is owned by retired_

  // Adds `item` at the bottom. Returns false only if the ring was full and a larger one could not be allocated
  // (the item is then not in the deque). Owner thread only. Lock-free. Allocates only when the ring grows.
  [[gnu::always_inline]] bool push(T item) noexcept {
    // relaxed: only the owner writes bottom_, so it reads its own latest value.
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    // acquire: pairs with the thieves' CAS on top_, so slots they emptied are no longer being read before we
    // overwrite them after a wrap-around.
    const std::int64_t t = top_.load(std::memory_order_acquire);
    // relaxed: only the owner replaces ring_.
    ring* r = ring_.load(std::memory_order_relaxed);
    if (b - t > r->capacity - 1) {
      r = grow(r, b, t);
      if (r == nullptr) return false;
    }
    // release: see the file comment; the thief that acquires this slot sees the task's contents.
    r->slot(b).store(item, std::memory_order_release);
    // release fence: the slot store above happens-before any thief's acquire load of bottom_ that reads b + 1
    // (paper: atomic_thread_fence(release) before the relaxed store of bottom).
    fence(std::memory_order_release);
    bottom_.store(b + 1, std::memory_order_relaxed);
    return true;
  }

  // Removes and returns the most recently pushed item, or nullptr. Owner thread only. Lock-free. Never allocates.
  T pop() noexcept {
    // Fast empty check, without the fence below: top_ only grows, so a stale top_ that already reaches bottom_
    // proves the deque empty (relaxed: no slot is read on the strength of it). Idle workers poll their own
    // deque in every scan, and a fence per poll would cost more than the scan.
    if (empty_approx()) return nullptr;
    // relaxed: owner-private values.
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    ring* r = ring_.load(std::memory_order_relaxed);
    if (!take_bottom(b)) return nullptr;
    // relaxed would do (our own store, and slot b is ours now), acquire keeps the TSan-visible pairing uniform;
    // free on x86.
    return r->slot(b).load(std::memory_order_acquire);
  }

  // Where the most recent push() went, for pop_if(). Owner thread only.
  std::int64_t newest_index() const noexcept {
    return bottom_.load(std::memory_order_relaxed) - 1;  // relaxed: only the owner writes bottom_
  }

  // Removes the item that a push() put at `index` (newest_index() right after it), only if it is still there and
  // the most recent: true if this call removed it, false if something was pushed above it, the deque is empty, or
  // a thief took it first. An index a thief took is never used again (top_ only grows past it), so a later push of
  // the same pointer (an object made at the address of one that is gone) is not taken for it. Precondition: the
  // owner has not itself popped down past `index` since that push (fork() never does: its worker pops nothing of
  // its own deque while the child runs), since the next push would reuse the index; debug and sanitizer builds
  // check that the slot still holds `expected`. Owner thread only. Lock-free. Never allocates. One pass: pop()'s
  // reservation without its empty check.
  [[gnu::always_inline]] bool pop_if(T expected, std::int64_t index) noexcept {
    // relaxed: owner-private values; the slot at b was written by this thread and only thieves read it.
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    // A stale top_ is only smaller, so "empty" is never wrong; a deque that a thief just emptied passes this
    // check and is caught by the reservation.
    if (b != index || b < top_.load(std::memory_order_relaxed)) return false;
    ANYDEFER_ASSERT(ring_.load(std::memory_order_relaxed)->slot(b).load(std::memory_order_relaxed) == expected &&
                    "pop_if: the owner popped the item itself since it pushed it, and the index was reused");
    static_cast<void>(expected);
    return take_bottom(b);
  }

  // Removes and returns the oldest item, or nullptr if the deque looked empty or another thread won the race
  // for that item (callers treat both as "nothing here now"). Any thread. Lock-free. Never allocates.
  T steal() noexcept {
    // Fast empty check, without the fence below (relaxed: a hint; nullptr is allowed whenever the deque looked
    // empty). A caller that must not miss an item pushed before some synchronisation point gets it anyway:
    // the loads below are then ordered after that point and see the push.
    if (empty_approx()) return nullptr;
    // acquire: pairs with the CAS of other thieves and of pop(), so the slot we read is not one already taken.
    std::int64_t t = top_.load(std::memory_order_acquire);
    // seq_cst fence: pairs with pop()'s fence (see there): top_ is read before bottom_ in the global order.
    fence(std::memory_order_seq_cst);
    // acquire: pairs with push()'s release fence, so slot t (< b) is written and visible.
    const std::int64_t b = bottom_.load(std::memory_order_acquire);
    if (t >= b) return nullptr;
    // acquire (the paper's consume): pairs with grow()'s release store, so the new ring's copied slots are seen.
    ring* r = ring_.load(std::memory_order_acquire);
    T item = r->slot(t).load(std::memory_order_acquire);
    // seq_cst as in the paper: linearises thieves with each other and with pop() on the last item. Failure
    // (relaxed) means another thread took slot t; the item we read is not ours.
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) {
      return nullptr;
    }
    return item;
  }

  // Number of items, as of some recent moment: exact for the owner between its own operations, a hint otherwise.
  // Any thread. Never allocates.
  std::int64_t size_approx() const noexcept {
    // relaxed: a hint; no data is read on the strength of it.
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    const std::int64_t t = top_.load(std::memory_order_relaxed);
    return b > t ? b - t : 0;
  }

  bool empty_approx() const noexcept { return size_approx() == 0; }

 private:
  // pop()'s and pop_if()'s reservation of slot b, the bottom item (b = bottom_ - 1, and b >= top_ as last seen):
  // true if slot b is now the caller's, false if the deque turned out empty or a thief took the last item.
  // Forced inline: both callers are on the fork-join path, where a call would cost as much as the work.
  [[gnu::always_inline]] bool take_bottom(std::int64_t b) noexcept {
    // relaxed store, then the seq_cst fence: reserving slot b must be globally ordered before we read top_, and
    // a thief's read of bottom_ is ordered after its read of top_ by its own seq_cst fence; the two fences make
    // it impossible for both the owner and a thief to believe they own the last item.
    bottom_.store(b, std::memory_order_relaxed);
    fence(std::memory_order_seq_cst);
    // relaxed: ordered by the fence above.
    std::int64_t t = top_.load(std::memory_order_relaxed);
    if (t < b) return true;  // older items lie between the thieves and slot b: it is ours
    // The last item (t == b): race the thieves for it through top_. seq_cst on success as in the paper (it is a
    // synchronisation point with the thieves' CAS); relaxed on failure since we then take nothing. t > b: a
    // thief emptied the deque since the caller looked.
    const bool ours =
        t == b && top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst, std::memory_order_relaxed);
    bottom_.store(b + 1, std::memory_order_relaxed);  // undo the reservation: empty, or the last item settled
    return ours;
  }

  struct ring {
    explicit ring(std::int64_t cap) : capacity(cap), mask(cap - 1), slots(new std::atomic<T>[cap]) {}
    std::atomic<T>& slot(std::int64_t i) noexcept { return slots[i & mask]; }
    const std::int64_t capacity;
    const std::int64_t mask;
    std::unique_ptr<std::atomic<T>[]> slots;
  };

  static std::int64_t round_up_pow2(std::int64_t n) noexcept {
    std::int64_t c = 2;
    while (c < n) c <<= 1;
    return c;
  }

  // Owner only. Copies the live items [t, b) into a ring twice the size and publishes it.
  ring* grow(ring* old, std::int64_t b, std::int64_t t) noexcept {
    std::unique_ptr<ring> bigger;
    try {
      bigger = std::make_unique<ring>(old->capacity * 2);
      retired_.reserve(retired_.size() + 1);
    } catch (...) {  // std::bad_alloc: the caller falls back to another queue
      return nullptr;
    }
    // relaxed copies: published as a whole by the release store of ring_ below.
    for (std::int64_t i = t; i < b; ++i) {
      bigger->slot(i).store(old->slot(i).load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    ring* published = bigger.get();
    retired_.push_back(std::move(bigger));  // cannot throw: reserved above
    // release: a thief that acquires the new ring sees the copied slots. The old ring stays alive (retired_):
    // a thief that loaded it before this store may still read from it, and reads the same items there.
    ring_.store(published, std::memory_order_release);
    return published;
  }

  // top_ and bottom_ on separate cache lines: thieves hammer top_, the owner bottom_.
  alignas(64) std::atomic<std::int64_t> top_{0};
  alignas(64) std::atomic<std::int64_t> bottom_{0};
  alignas(64) std::atomic<ring*> ring_;
  std::vector<std::unique_ptr<ring>> retired_;  // owner only; every ring ever used, freed with the deque
};

}  // namespace anydefer::detail
