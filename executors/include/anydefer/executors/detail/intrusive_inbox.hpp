// anydefer/executors/detail/intrusive_inbox.hpp: the reactor's lock-free multi-producer, single-consumer inbox.
//
// Producers (any thread) push tasks onto a Treiber stack linked through task::next: one CAS, no allocation.
// The single consumer (the reactor thread) takes the whole stack with one exchange and reverses it, so each
// batch comes out oldest first; tasks pushed by one producer therefore run in the order it pushed them.
//
//   intrusive_inbox inbox;
//   bool was_empty = inbox.push(t);               // any thread; wake the consumer if was_empty
//   auto batch = inbox.take_all();                // consumer only: batch.first .. batch.last, FIFO
//
// ABA cannot happen: the consumer never pops single nodes, it detaches the whole list, so a CAS that succeeds
// always links the new node to the current head.
//
// Thread-safety: push() and empty() from any thread; take_all() from one consumer thread at a time.
// Lock-free. Never allocates.
#pragma once

#include <atomic>
#include <cstddef>

#include "anydefer/executor.hpp"

namespace anydefer::detail {

class intrusive_inbox {
 public:
  struct batch {
    task* first = nullptr;
    task* last = nullptr;
    std::size_t size = 0;
  };

  // Pushes `t`. Returns true if the inbox was empty before, i.e. the consumer may not know there is work.
  // Thread-safe. Lock-free. Never allocates.
  bool push(task& t) noexcept {
    // relaxed: only a first guess for the CAS.
    task* head = head_.load(std::memory_order_relaxed);
    do {
      t.next = head;
      // release (success): the consumer's acquire exchange sees t.next and everything the producer wrote to the
      // task before handing it over. relaxed (failure): retried with the fresh head.
    } while (!head_.compare_exchange_weak(head, &t, std::memory_order_release, std::memory_order_relaxed));
    return head == nullptr;
  }

  // Detaches every pushed task, oldest first. Consumer only. Lock-free. Never allocates.
  batch take_all() noexcept {
    // acquire: pairs with push()'s release CAS (and, through the release sequence of later CASes, with every
    // producer whose node is in the list), so every node's next and contents are visible.
    task* node = head_.exchange(nullptr, std::memory_order_acquire);
    batch b;
    b.last = node;
    while (node != nullptr) {  // reverse: newest-first stack -> oldest-first batch
      task* next = node->next;
      node->next = b.first;
      b.first = node;
      node = next;
      ++b.size;
    }
    return b;
  }

  // True if nothing is waiting, at some recent moment. Thread-safe.
  bool empty() const noexcept {
    // relaxed: callers that need ordering (the sleep check) put a seq_cst fence before this load.
    return head_.load(std::memory_order_relaxed) == nullptr;
  }

 private:
  alignas(64) std::atomic<task*> head_{nullptr};
};

}  // namespace anydefer::detail
