#include "anydefer/executors/detail/timer_heap.hpp"

#include <utility>

namespace anydefer::detail {

std::uint64_t timer_heap::insert(time_point deadline, task& t) {
  // Reserve everything first so that nothing below can throw half-way.
  heap_.reserve(heap_.size() + 1);
  std::uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slots_.emplace_back();
    slot = static_cast<std::uint32_t>(slots_.size() - 1);
    free_slots_.reserve(slots_.size());  // a freed slot can always be recorded without allocating
  }
  slots_[slot].pending = true;
  heap_.push_back(entry{deadline, next_sequence_++, &t, slot});
  place(heap_.size() - 1, heap_.back());
  sift_up(heap_.size() - 1);
  return id_of(slot);
}

task* timer_heap::cancel(std::uint64_t id) noexcept {
  const auto slot = static_cast<std::uint32_t>(id & 0xFFFFFFFFu);
  const auto generation = static_cast<std::uint32_t>(id >> 32);
  if (slot >= slots_.size()) return nullptr;
  const slot_state& s = slots_[slot];
  if (!s.pending || s.generation != generation) return nullptr;
  return remove_at(s.heap_index);
}

task* timer_heap::pop_due(time_point now) noexcept {
  if (heap_.empty() || heap_.front().deadline > now) return nullptr;
  return remove_at(0);
}

task* timer_heap::pop_any() noexcept { return heap_.empty() ? nullptr : remove_at(heap_.size() - 1); }

std::optional<timer_heap::time_point> timer_heap::next_deadline() const noexcept {
  if (heap_.empty()) return std::nullopt;
  return heap_.front().deadline;
}

std::uint64_t timer_heap::front_id() const noexcept { return heap_.empty() ? 0 : id_of(heap_.front().slot); }

void timer_heap::place(std::size_t index, const entry& e) noexcept {
  heap_[index] = e;
  slots_[e.slot].heap_index = static_cast<std::uint32_t>(index);
}

void timer_heap::sift_up(std::size_t index) noexcept {
  const entry moving = heap_[index];
  while (index > 0) {
    const std::size_t parent = (index - 1) / 2;
    if (!earlier(moving, heap_[parent])) break;
    place(index, heap_[parent]);
    index = parent;
  }
  place(index, moving);
}

void timer_heap::sift_down(std::size_t index) noexcept {
  const entry moving = heap_[index];
  const std::size_t n = heap_.size();
  for (;;) {
    std::size_t child = 2 * index + 1;
    if (child >= n) break;
    if (child + 1 < n && earlier(heap_[child + 1], heap_[child])) ++child;
    if (!earlier(heap_[child], moving)) break;
    place(index, heap_[child]);
    index = child;
  }
  place(index, moving);
}

task* timer_heap::remove_at(std::size_t index) noexcept {
  const entry removed = heap_[index];
  slot_state& s = slots_[removed.slot];
  s.pending = false;
  if (++s.generation == 0) s.generation = 1;
  free_slots_.push_back(removed.slot);  // capacity reserved in insert(): never allocates

  const std::size_t last = heap_.size() - 1;
  if (index != last) {
    place(index, heap_[last]);
    heap_.pop_back();
    // The moved entry may belong above or below its new position.
    if (index > 0 && earlier(heap_[index], heap_[(index - 1) / 2])) {
      sift_up(index);
    } else {
      sift_down(index);
    }
  } else {
    heap_.pop_back();
  }
  return removed.work;
}

}  // namespace anydefer::detail
