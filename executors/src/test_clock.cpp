#include "anydefer/executors/test_clock.hpp"

#include <exception>
#include <stdexcept>

#include "anydefer/errors.hpp"
#include "anydefer/executors/detail/reject.hpp"

namespace anydefer {

test_clock::~test_clock() {
  std::unique_lock<std::mutex> lock(mutex_);
  closed_ = true;
  // Earliest first, as advance() would have run them, so that what the rejections run happens in an order a
  // test can state. Rejecting may free a deferred whose destruction cancels another timer here: never call out
  // under the lock.
  while (task* t = timers_.pop_due(time_point::max())) {
    lock.unlock();
    detail::reject_stopped(*t, "test_clock");
    lock.lock();
  }
}

test_clock::time_point test_clock::current_time() const noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  return now_;
}

timer_id test_clock::schedule_after(std::chrono::nanoseconds delay, task& t) noexcept {
  if (delay < std::chrono::nanoseconds::zero()) delay = std::chrono::nanoseconds::zero();
  std::exception_ptr failure;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) {
      failure = std::make_exception_ptr(executor_stopped_error("anydefer: test_clock is being destroyed"));
    } else {
      try {
        return timer_id{timers_.insert(deadline_after(now_, delay), t)};
      } catch (...) {
        failure = std::current_exception();
      }
    }
  }
  t.reject(std::move(failure));
  return timer_id{};
}

bool test_clock::cancel_timer(timer_id id) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  return timers_.cancel(id.value()) != nullptr;
}

std::size_t test_clock::advance(std::chrono::nanoseconds step) {
  if (step < std::chrono::nanoseconds::zero()) {
    throw std::invalid_argument("anydefer: test_clock::advance() needs a step of zero or more");
  }
  std::unique_lock<std::mutex> lock(mutex_);
  now_ += step;
  std::size_t ran = 0;
  while (task* t = timers_.pop_due(now_)) {
    lock.unlock();  // the task may schedule or cancel timers on this clock
    t->run();
    ++ran;
    lock.lock();
  }
  return ran;
}

std::size_t test_clock::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return timers_.size();
}

}  // namespace anydefer
