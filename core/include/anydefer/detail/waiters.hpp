// anydefer/detail/waiters.hpp: what deferred_lock, deferred_semaphore and deferred_queue share: a FIFO of
// waiting deferreds that each waiter's canceller can leave; and the trampoline the lock and the semaphore grant
// permits through.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <source_location>
#include <utility>
#include <vector>

#include "anydefer/deferred.hpp"

namespace anydefer::detail {

// The deferreds waiting for a permit or an item, oldest first. Not synchronised: its owner guards it with a
// mutex. A waiter is named by the ticket it got when queued, which its canceller captures to leave the queue.
// Tickets rise along the queue, so leave() finds one by binary search and leaves an empty handle behind (a
// tombstone, skipped by pop_oldest()): no allocation per waiter beyond the deque's blocks, O(log n) to leave.
template <class T>
class waiter_queue {
 public:
  using ticket = std::uint64_t;

  // Queues a new waiting deferred and returns it. Cancelling it calls owner->leave(ticket), which takes it out of
  // the queue under the owner's mutex. The canceller holds the owner weakly: a waiter must not keep its lock or
  // queue alive, and one cancelled after the owner is gone has nothing to leave.
  template <class Owner>
  deferred<T> enqueue(std::weak_ptr<Owner> owner, std::source_location loc) {
    deferred<T> waiter(
        [owner = std::move(owner), t = next_](deferred<T>&) {
          if (auto o = owner.lock()) o->leave(t);
        },
        loc);
    queue_.push_back(entry{next_, waiter});
    ++next_;
    ++live_;
    return waiter;
  }

  std::optional<deferred<T>> pop_oldest() {
    drop_leading_tombstones();
    if (queue_.empty()) return std::nullopt;
    deferred<T> d = std::move(queue_.front().waiter);
    queue_.pop_front();
    --live_;
    return d;
  }

  // Removes the waiter filed under `t`, if it is still queued, and returns it (to be dropped outside the lock).
  std::optional<deferred<T>> leave(ticket t) {
    auto it = std::lower_bound(queue_.begin(), queue_.end(), t,
                               [](const entry& e, ticket wanted) { return e.number < wanted; });
    if (it == queue_.end() || it->number != t || !it->waiter.valid()) return std::nullopt;
    deferred<T> d = std::move(it->waiter);  // leaves a tombstone
    --live_;
    drop_leading_tombstones();
    return d;
  }

  std::vector<deferred<T>> take_all() {
    std::vector<deferred<T>> all;
    all.reserve(live_);
    for (entry& e : queue_) {
      if (e.waiter.valid()) all.push_back(std::move(e.waiter));
    }
    queue_.clear();
    live_ = 0;
    return all;
  }

  std::size_t size() const noexcept { return live_; }
  bool empty() const noexcept { return live_ == 0; }

 private:
  struct entry {
    ticket number;
    deferred<T> waiter;  // empty once it left (a tombstone)
  };
  void drop_leading_tombstones() noexcept {
    while (!queue_.empty() && !queue_.front().waiter.valid()) queue_.pop_front();
  }

  std::deque<entry> queue_;
  std::size_t live_ = 0;
  ticket next_ = 0;
};

// Granting a waiter fires its deferred, which runs its callbacks, which may release again, and so on down a
// queue of waiters. A grant made while another is running on the same thread therefore waits until that one
// returns (it is queued on the thread), so the chain is a loop on one stack frame, not a recursion as deep as
// the queue (Twisted's issue #9304).
bool grant_in_progress() noexcept;
void defer_grant(std::function<void()> grant);  // precondition: grant_in_progress()
// Marks the thread as granting; on destruction runs the grants deferred meanwhile, then unmarks it.
class grant_scope {
 public:
  grant_scope() noexcept;
  grant_scope(const grant_scope&) = delete;
  grant_scope& operator=(const grant_scope&) = delete;
  ~grant_scope();
};

// Fails every waiter with abandoned_waiter_error: for the destructor of their lock, semaphore or queue.
template <class T>
void abandon_all(std::vector<deferred<T>> waiters) noexcept {
  for (deferred<T>& w : waiters) {
    (void)access::state_of(w)->fire_failure(std::make_exception_ptr(abandoned_waiter_error()));
  }
}

}  // namespace anydefer::detail
