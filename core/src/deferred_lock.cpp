#include "anydefer/deferred_lock.hpp"

#include <deque>
#include <stdexcept>

#include "anydefer/detail/assert.hpp"

namespace anydefer {
namespace detail {

// --- the grant trampoline (waiters.hpp) -----------------------------------------------------------------------
namespace {
struct grant_trampoline {
  bool granting = false;
  std::deque<std::function<void()>> deferred_grants;
};
thread_local grant_trampoline this_thread_grants;
}  // namespace

bool grant_in_progress() noexcept { return this_thread_grants.granting; }

void defer_grant(std::function<void()> grant) {
  ANYDEFER_ASSERT(this_thread_grants.granting);
  this_thread_grants.deferred_grants.push_back(std::move(grant));
}

grant_scope::grant_scope() noexcept { this_thread_grants.granting = true; }

grant_scope::~grant_scope() {
  grant_trampoline& t = this_thread_grants;
  while (!t.deferred_grants.empty()) {
    std::function<void()> next = std::move(t.deferred_grants.front());
    t.deferred_grants.pop_front();
    next();
  }
  t.granting = false;
}

// --- semaphore_core ---------------------------------------------------------------------------------------------

deferred<void> semaphore_core::acquire_queued(std::source_location loc) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::uint64_t w = word_.load(std::memory_order_relaxed);
  while (true) {
    if (w >= free_unit) {  // a release made a permit free meanwhile
      if (word_.compare_exchange_weak(w, w - free_unit, std::memory_order_acquire, std::memory_order_relaxed)) {
        return succeed(loc);
      }
    } else if (w == queued || word_.compare_exchange_weak(w, queued, std::memory_order_relaxed)) {
      break;  // relaxed: the bit only routes releases to the mutex, which orders everything else
    }
  }
  // Out of memory here must not leave the bit set over an empty queue: release() would find no waiter.
  try {
    return waiting_.enqueue(weak_from_this(), loc);
  } catch (...) {
    clear_queued_if_empty();
    throw;
  }
}

void semaphore_core::release_to_waiter() {
  std::unique_lock<std::mutex> lock(mutex_);
  std::optional<deferred<void>> oldest = waiting_.pop_oldest();
  if (!oldest) {
    // The last waiter left (cancelled) between our load and the lock, and cleared the bit: count the permit.
    lock.unlock();
    release();
    return;
  }
  ANYDEFER_ASSERT(word_.load(std::memory_order_relaxed) == queued);  // no free permit while waiters queue
  clear_queued_if_empty();
  lock.unlock();
  grant(std::move(*oldest));
}

void semaphore_core::throw_release_without_acquire() {
  throw std::logic_error("anydefer: release() of a deferred semaphore or lock nobody holds");
}

void semaphore_core::grant(deferred<void> waiter) {
  // False if the waiter was cancelled after it left the queue: the permit goes to the next one instead.
  if (!grant_in_progress()) {
    grant_scope scope;
    if (!access::state_of(waiter)->fire_value()) release();
    return;
  }
  defer_grant([core = shared_from_this(), waiter = std::move(waiter)] {
    if (!access::state_of(waiter)->fire_value()) core->release();
  });
}

void semaphore_core::leave(waiter_queue<void>::ticket t) {
  std::optional<deferred<void>> gone;  // dropped after the lock
  std::lock_guard<std::mutex> lock(mutex_);
  gone = waiting_.leave(t);
  if (gone) clear_queued_if_empty();
}

// Precondition: mutex_ held. The bit is set only with free == 0, and nothing adds a permit while it is set.
void semaphore_core::clear_queued_if_empty() noexcept {
  if (waiting_.empty()) word_.store(0, std::memory_order_relaxed);
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
    clear_queued_if_empty();
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
