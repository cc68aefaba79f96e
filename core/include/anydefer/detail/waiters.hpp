// anydefer/detail/waiters.hpp: what deferred_lock, deferred_semaphore and deferred_queue share: a FIFO of
// waiting deferreds that each waiter's canceller can leave, and a trampoline for granting them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "anydefer/deferred.hpp"

namespace anydefer::detail {

// The deferreds waiting for a permit or an item, oldest first. Not synchronised: its owner guards it with a
// mutex. A waiter is named by the number it got when queued, which its canceller captures to leave the queue
// (O(log n)) without a pointer into it.
template <class T>
class waiter_queue {
 public:
  using ticket = std::uint64_t;

  // The ticket the next push() will be filed under: the canceller of the deferred pushed next captures it.
  ticket next_ticket() const noexcept { return next_; }
  void push(deferred<T> waiter) { waiting_.emplace(next_++, std::move(waiter)); }

  std::optional<deferred<T>> pop_oldest() {
    if (waiting_.empty()) return std::nullopt;
    auto oldest = waiting_.begin();
    deferred<T> d = std::move(oldest->second);
    waiting_.erase(oldest);
    return d;
  }

  // Removes the waiter filed under `t`, if it is still queued, and returns it (to be dropped outside the lock).
  std::optional<deferred<T>> leave(ticket t) {
    auto it = waiting_.find(t);
    if (it == waiting_.end()) return std::nullopt;
    deferred<T> d = std::move(it->second);
    waiting_.erase(it);
    return d;
  }

  std::vector<deferred<T>> take_all() {
    std::vector<deferred<T>> all;
    all.reserve(waiting_.size());
    for (auto& [t, d] : waiting_) all.push_back(std::move(d));
    waiting_.clear();
    return all;
  }

  std::size_t size() const noexcept { return waiting_.size(); }
  bool empty() const noexcept { return waiting_.empty(); }

 private:
  std::map<ticket, deferred<T>> waiting_;
  ticket next_ = 0;
};

// Runs `grant` now, unless a grant is already running on this thread: then it runs when that one returns.
// Granting a waiter runs its callbacks, which may release again, and so on down a queue of waiters; through the
// trampoline that is a loop on one stack frame, not a recursion as deep as the queue (Twisted's issue #9304).
void run_grant(std::function<void()> grant);

// Fails every waiter with abandoned_waiter_error: for the destructor of their lock, semaphore or queue.
template <class T>
void abandon_all(std::vector<deferred<T>> waiters) noexcept {
  for (deferred<T>& w : waiters) {
    (void)access::state_of(w)->fire_failure(std::make_exception_ptr(abandoned_waiter_error()));
  }
}

}  // namespace anydefer::detail
