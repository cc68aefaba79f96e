// anydefer/executors/detail/timer_heap.hpp: the reactor's timers, a binary min-heap with O(log n) cancel.
//
// Entries are ordered by (deadline, sequence): timers with the same deadline fire in the order they were
// scheduled. Each timer owns a slot in a slot table; its id is (generation << 32 | slot), and the slot records
// where the entry sits in the heap, so cancel(id) finds and removes it without searching. A slot's generation
// advances whenever its timer leaves the heap (fired, cancelled or drained), so a stale id never cancels a
// later timer that reuses the slot (until the 32-bit generation wraps, after 2^32 reuses of that slot).
//
//   timer_heap h;
//   std::uint64_t id = h.insert(deadline, t);     // may throw std::bad_alloc
//   h.cancel(id);                                 // -> &t if it was still pending
//   while (task* due = h.pop_due(now)) due->run();
//
// Thread-safety: none; the reactor guards it with its timer mutex. Allocates only when it grows (amortised).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "anydefer/executor.hpp"

namespace anydefer::detail {

class timer_heap {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  // Adds a timer; returns its id (never 0). Throws std::bad_alloc if it cannot grow (nothing is added then).
  std::uint64_t insert(time_point deadline, task& t);

  // Removes the pending timer `id` and returns its task, or nullptr if no such timer is pending.
  task* cancel(std::uint64_t id) noexcept;

  // Removes and returns the earliest timer's task if its deadline is <= now, else nullptr.
  task* pop_due(time_point now) noexcept;

  // Removes and returns any pending timer's task (for draining at stop), or nullptr if none is left.
  task* pop_any() noexcept;

  // The earliest deadline, if any timer is pending.
  std::optional<time_point> next_deadline() const noexcept;

  // The id of the earliest timer (0 if none); lets a scheduler tell whether a new timer became the earliest.
  std::uint64_t front_id() const noexcept;

  std::size_t size() const noexcept { return heap_.size(); }
  bool empty() const noexcept { return heap_.empty(); }

 private:
  struct entry {
    time_point deadline;
    std::uint64_t sequence;
    task* work;
    std::uint32_t slot;
  };
  struct slot_state {
    std::uint32_t generation = 1;  // never 0, so an id is never 0
    std::uint32_t heap_index = 0;  // valid while the slot's timer is pending
    bool pending = false;
  };

  static bool earlier(const entry& a, const entry& b) noexcept {
    return a.deadline < b.deadline || (a.deadline == b.deadline && a.sequence < b.sequence);
  }
  std::uint64_t id_of(std::uint32_t slot) const noexcept {
    return (std::uint64_t{slots_[slot].generation} << 32) | slot;
  }
  void place(std::size_t index, const entry& e) noexcept;
  void sift_up(std::size_t index) noexcept;
  void sift_down(std::size_t index) noexcept;
  task* remove_at(std::size_t index) noexcept;

  std::vector<entry> heap_;
  std::vector<slot_state> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::uint64_t next_sequence_ = 0;
};

}  // namespace anydefer::detail
