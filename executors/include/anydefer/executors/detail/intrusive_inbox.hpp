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
// No producer writes the bottom node's next: a push onto an empty inbox stores the node's address with its low
// bit set, meaning "the last node; do not read its next", and a push onto a non-empty one copies the head, mark
// and all, into its own next. (The consumer rewrites every next when it reverses a batch; it runs the tasks, so
// their lines are coming its way anyway.) So a lone task crosses threads without its producer writing it at all: in a
// ping-pong of tasks between two threads, each task's cache line stays with the thread that runs it, and a
// hand-off costs the transfer of the inbox's line alone. (Tasks are at least pointer-aligned: bit 0 is free.)
//
// Placement: the inbox is one word, and where it lives decides what a hand-off costs, so the owner places it.
// A reactor's general inbox has a cache line of its own. The two inboxes through which a pair of reactor_group
// shards post to each other share one line (detail/shard_channels.hpp): in a ping-pong between them each side
// then writes the line it has just read, and a hand-off moves that one line once instead of two lines (the
// producer's CAS fetching the consumer's line, then the consumer's poll fetching it back).
//
// Thread-safety: push() and empty() from any thread; take_all() from one consumer thread at a time.
// Lock-free. Never allocates.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "anydefer/detail/assert.hpp"
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
    // The first guess is "empty", not a load: a load would fetch the line shared and the CAS then upgrade it,
    // two transfers where the CAS alone makes one. The inbox of a loop that keeps up is empty at most pushes.
    ANYDEFER_ASSERT((address_of(t) & last_mark) == 0 && "intrusive_inbox: the last-node mark needs aligned tasks");
    std::uintptr_t head = 0;
    std::uintptr_t desired = 0;
    do {
      if (head == 0) {
        desired = address_of(t) | last_mark;  // t.next stays untouched: see the file comment
      } else {
        // NOLINTNEXTLINE(performance-no-int-to-ptr): a tagged link, by design (see the file comment)
        t.next = reinterpret_cast<task*>(head);  // the head as stored, mark included
        desired = address_of(t);
      }
      // seq_cst (success): release, so the consumer's acquire exchange sees t.next and everything the producer
      // wrote to the task before handing it over; and seq_cst because this CAS is the producer's half of the
      // reactor's sleep check (reactor.cpp, wake() and sleep()): it and the producer's later seq_cst load of the
      // reactor's `sleeping` flag, against the reactor's seq_cst store of that flag and its seq_cst load of this
      // head, are a Dekker pair with no fence (on x86 the CAS is the same locked instruction either way).
      // relaxed (failure): retried with the fresh head.
    } while (!head_.compare_exchange_weak(head, desired, std::memory_order_seq_cst, std::memory_order_relaxed));
    return head == 0;
  }

  // Detaches every pushed task, oldest first. Consumer only. Lock-free. Never allocates.
  batch take_all() noexcept {
    batch b;
    // An empty inbox is left unwritten: an exchange would take its line exclusive for nothing, and the line may
    // be shared with another inbox whose consumer is busy (detail/shard_channels.hpp). relaxed: a push this
    // misses is found by the caller's next poll, and the sleep check makes its own seq_cst loads (empty()).
    if (head_.load(std::memory_order_relaxed) == 0) return b;
    // acquire: pairs with push()'s release CAS (and, through the release sequence of later CASes, with every
    // producer whose node is in the list), so every node's next and contents are visible.
    std::uintptr_t link = head_.exchange(0, std::memory_order_acquire);
    b.last = untagged(link);
    while (link != 0) {  // reverse: newest-first stack -> oldest-first batch
      task* node = untagged(link);
      link = (link & last_mark) != 0 ? 0 : reinterpret_cast<std::uintptr_t>(node->next);
      node->next = b.first;
      b.first = node;
      ++b.size;
    }
    return b;
  }

  // True if nothing is waiting, at some recent moment. Thread-safe. relaxed by default (polling); the reactor's
  // sleep check asks for seq_cst (see push()).
  bool empty(std::memory_order order = std::memory_order_relaxed) const noexcept { return head_.load(order) == 0; }

 private:
  static constexpr std::uintptr_t last_mark = 1;
  static_assert(alignof(task) > 1, "bit 0 of a task's address marks the last node");

  static std::uintptr_t address_of(task& t) noexcept { return reinterpret_cast<std::uintptr_t>(&t); }
  static task* untagged(std::uintptr_t link) noexcept {
    return reinterpret_cast<task*>(link & ~last_mark);  // NOLINT(performance-no-int-to-ptr): a tagged link
  }

  // A task's address, with last_mark set when that task is the bottom node (0: empty).
  std::atomic<std::uintptr_t> head_{0};
};

}  // namespace anydefer::detail
