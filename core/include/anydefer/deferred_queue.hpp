// anydefer/deferred_queue.hpp: deferred_queue<T>, Twisted's DeferredQueue: get() returns a deferred that fires
// with the next item put(), so a consumer waits for work without blocking a thread.
//
//   anydefer::deferred_queue<job> jobs(/*size=*/1000);     // at most 1000 items waiting for a consumer
//   jobs.put(job{...});                                     // throws queue_overflow when full
//   jobs.get().add_callback([](job j) { run(j); });         // fires now, or with the next put()
//
// Rules (Twisted's):
//   - put(v) hands v to the oldest waiting get() (its deferred fires inside put(), on the putting thread), else
//     stores it; a queue already holding `size` items throws queue_overflow, and the item stays with the caller.
//   - get() fires at once with the oldest stored item, else waits; a queue that already has `backlog` waiting
//     getters throws queue_underflow. Items go to getters in FIFO order.
//   - Cancelling a waiting get() removes only that getter (it fails with cancelled_error); an item never goes to
//     a cancelled getter: put() then serves the next getter, or stores the item. (A chain continued from a getter
//     that is cancelled while its item is on its way fails with cancelled_error and drops the item, as any link
//     does whose upstream result is on its way when it is cancelled.)
//   - put() fires the getter inside the call: a getter's callback that puts again nests one call deeper.
//   - size 0 means every put() without a waiting getter overflows; backlog 0 means every get() on an empty queue
//     underflows. Destroying the queue fails its waiting getters with abandoned_waiter_error and destroys the
//     stored items.
//
// Thread-safety: every member is thread-safe. One mutex guards the items and the getters; no user code runs
// under it. Memory ordering: whatever a thread did before put(v) is visible to the callbacks that receive v.
#pragma once

#include <cstddef>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <type_traits>
#include <utility>

#include "anydefer/deferred.hpp"
#include "anydefer/detail/waiters.hpp"

namespace anydefer {

// T must move without throwing: an item is moved into the getter's deferred after the getter left the queue.
template <class T>
  requires std::is_nothrow_move_constructible_v<T>
class deferred_queue {
 public:
  static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

  // A queue that stores at most `size` items and lets at most `backlog` getters wait (Twisted's
  // DeferredQueue(size, backlog)).
  explicit deferred_queue(std::size_t size = unbounded, std::size_t backlog = unbounded)
      : core_(std::make_shared<core>(size, backlog)) {}
  deferred_queue(deferred_queue&&) noexcept = default;
  deferred_queue& operator=(deferred_queue&&) = delete;
  ~deferred_queue() {
    if (core_ != nullptr) core_->abandon_getters();
  }

  // Gives `item` to the oldest waiting getter or stores it. Throws queue_overflow if it can do neither; `item`
  // is then untouched.
  void put(T&& item) { core_->put(std::move(item)); }
  void put(const T& item) requires std::copy_constructible<T> { core_->put(T(item)); }

  // The next item: at once if one is stored, else when put() gives one. Throws queue_underflow if `backlog`
  // getters already wait.
  deferred<T> get(std::source_location loc = std::source_location::current()) { return core_->get(loc); }

  // Stored items and waiting getters: snapshots, exact only while no other thread uses the queue.
  std::size_t size() const { return core_->stored(); }
  std::size_t waiting() const { return core_->waiting(); }

 private:
  class core : public std::enable_shared_from_this<core> {
   public:
    core(std::size_t size, std::size_t backlog) noexcept : size_(size), backlog_(backlog) {}

    template <class V>
    void put(V&& item) {
      std::unique_lock<std::mutex> lock(mutex_);
      // A getter cancelled after it left the queue refuses the item (fire_value does not consume it then): try
      // the next one.
      while (std::optional<deferred<T>> getter = getters_.pop_oldest()) {
        lock.unlock();
        if (detail::access::state_of(*getter)->fire_value(std::forward<V>(item))) return;
        getter.reset();
        lock.lock();
      }
      if (items_.size() >= size_) throw queue_overflow();
      items_.push_back(std::forward<V>(item));
    }

    deferred<T> get(std::source_location loc) {
      std::unique_lock<std::mutex> lock(mutex_);
      if (!items_.empty()) {
        T item = std::move(items_.front());
        items_.pop_front();
        lock.unlock();
        return succeed<T>(std::move(item), loc);
      }
      if (getters_.size() >= backlog_) throw queue_underflow();
      return getters_.enqueue(this->weak_from_this(), loc);
    }

    // A waiting getter's canceller (waiter_queue::enqueue).
    void leave(typename detail::waiter_queue<T>::ticket t) {
      std::optional<deferred<T>> gone;  // dropped after the lock
      std::lock_guard<std::mutex> lock(mutex_);
      gone = getters_.leave(t);
    }

    std::size_t stored() const {
      std::lock_guard<std::mutex> lock(mutex_);
      return items_.size();
    }
    std::size_t waiting() const {
      std::lock_guard<std::mutex> lock(mutex_);
      return getters_.size();
    }

    void abandon_getters() {
      std::vector<deferred<T>> getters;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        getters = getters_.take_all();
      }
      detail::abandon_all(std::move(getters));
    }

   private:
    mutable std::mutex mutex_;
    const std::size_t size_;
    const std::size_t backlog_;
    std::deque<T> items_;  // invariant: getters wait only while items_ is empty
    detail::waiter_queue<T> getters_;
  };

  std::shared_ptr<core> core_;
};

}  // namespace anydefer
