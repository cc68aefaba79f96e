#include "anydefer/deferred_lock.hpp"

#include <deque>
#include <stdexcept>

#include "anydefer/detail/assert.hpp"

namespace anydefer {
namespace detail {

void run_grant(std::function<void()> grant) {
  thread_local bool granting = false;
  thread_local std::deque<std::function<void()>> later;
  if (granting) {
    later.push_back(std::move(grant));
    return;
  }
  granting = true;
  struct leave_trampoline {
    ~leave_trampoline() { granting = false; }
  } on_exit;
  grant();
  while (!later.empty()) {
    std::function<void()> next = std::move(later.front());
    later.pop_front();
    next();
  }
}

deferred<void> semaphore_core::acquire(std::source_location loc) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (free_ > 0) {
    --free_;
    lock.unlock();
    return succeed(loc);
  }
  // The canceller holds the core weakly: a waiter must not keep its semaphore alive, and one cancelled after
  // the semaphore is gone has nothing to leave.
  const auto ticket = waiting_.next_ticket();
  deferred<void> waiter(
      [core = weak_from_this(), ticket](deferred<void>&) {
        if (auto c = core.lock()) c->leave(ticket);
      },
      loc);
  waiting_.push(waiter);
  return waiter;
}

void semaphore_core::leave(waiter_queue<void>::ticket t) {
  std::optional<deferred<void>> gone;  // dropped after the lock
  std::lock_guard<std::mutex> lock(mutex_);
  gone = waiting_.leave(t);
}

void semaphore_core::release() {
  std::unique_lock<std::mutex> lock(mutex_);
  std::optional<deferred<void>> oldest = waiting_.pop_oldest();
  if (!oldest) {
    if (free_ == limit_) throw std::logic_error("anydefer: release() of a deferred semaphore or lock nobody holds");
    ++free_;
    return;
  }
  ANYDEFER_ASSERT(free_ == 0);
  lock.unlock();
  grant(std::move(*oldest));
}

void semaphore_core::grant(deferred<void> waiter) {
  run_grant([core = shared_from_this(), waiter = std::move(waiter)] {
    // False if the waiter was cancelled after it left the queue: the permit goes to the next one instead.
    if (!access::state_of(waiter)->fire_value()) core->release();
  });
}

std::size_t semaphore_core::free_permits() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return free_;
}

std::size_t semaphore_core::waiting() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waiting_.size();
}

void semaphore_core::abandon_waiters() {
  std::vector<deferred<void>> waiters;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waiters = waiting_.take_all();
  }
  abandon_all(std::move(waiters));
}

}  // namespace detail

deferred_semaphore::deferred_semaphore(std::size_t permits) {
  if (permits == 0) throw std::invalid_argument("anydefer: deferred_semaphore needs at least one permit");
  core_ = std::make_shared<detail::semaphore_core>(permits);
}

deferred_semaphore::~deferred_semaphore() {
  if (core_ != nullptr) core_->abandon_waiters();
}

}  // namespace anydefer
