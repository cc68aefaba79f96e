// anydefer/executors/detail/task_fifo.hpp: a single-threaded intrusive FIFO of tasks, linked through task::next.
//
//   task_fifo q;
//   q.push_back(t);
//   while (task* t = q.pop_front()) t->run();
//
// Thread-safety: none; the owner serialises access (one thread, or under the owner's mutex). Never allocates.
#pragma once

#include <cstddef>

#include "anydefer/detail/assert.hpp"
#include "anydefer/executor.hpp"

namespace anydefer::detail {

class task_fifo {
 public:
  task_fifo() = default;
  task_fifo(const task_fifo&) = delete;
  task_fifo& operator=(const task_fifo&) = delete;
  task_fifo(task_fifo&& other) noexcept : head_(other.head_), tail_(other.tail_), size_(other.size_) {
    other.head_ = other.tail_ = nullptr;
    other.size_ = 0;
  }
  // Appends other's tasks to this one's (nothing is ever dropped) and leaves other empty.
  task_fifo& operator=(task_fifo&& other) noexcept {
    append_chain(other.head_, other.tail_, other.size_);
    other.head_ = other.tail_ = nullptr;
    other.size_ = 0;
    return *this;
  }

  bool empty() const noexcept { return head_ == nullptr; }
  std::size_t size() const noexcept { return size_; }

  void push_back(task& t) noexcept {
    t.next = nullptr;
    if (tail_ == nullptr) {
      ANYDEFER_ASSERT(head_ == nullptr && size_ == 0);
      head_ = &t;
    } else {
      ANYDEFER_ASSERT(tail_->next == nullptr && "task_fifo: the tail must be the last node when appending");
      tail_->next = &t;
    }
    tail_ = &t;
    ++size_;
  }

  // Appends a chain already linked through next (the last node's next must be nullptr) of `n` tasks.
  void append_chain(task* first, task* last, std::size_t n) noexcept {
    if (first == nullptr) return;
    ANYDEFER_ASSERT(last != nullptr && last->next == nullptr && "task_fifo: an appended chain must end in null");
    if (tail_ == nullptr) {
      head_ = first;
    } else {
      ANYDEFER_ASSERT(tail_->next == nullptr && "task_fifo: the tail must be the last node when appending");
      tail_->next = first;
    }
    tail_ = last;
    size_ += n;
  }

  task* pop_front() noexcept {
    task* t = head_;
    if (t == nullptr) return nullptr;
    head_ = t->next;
    if (head_ == nullptr) tail_ = nullptr;
    --size_;
    // The task is the caller's now; next is left as is (the contract lets the executor use it freely).
    return t;
  }

 private:
  task* head_ = nullptr;
  task* tail_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace anydefer::detail
