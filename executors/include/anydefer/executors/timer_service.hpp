// anydefer/executors/timer_service.hpp: what the timer functions (timers.hpp) need from a source of time.
//
// A timer_service runs a task once a delay has passed, and can take a timer back before it does. Two implement
// it: `reactor` (real time, tasks run on its loop thread) and `test_clock` (time that moves only when a test
// calls advance(), tasks run inside that call). call_later, add_timeout, defer_later and looping_call take any
// timer_service, so the same code runs against real time in production and fake time in a test.
//
// The contract an implementation keeps:
//   - schedule_after() never runs the task inline, except to reject it: if the service can no longer run timers
//     (a stopped reactor), it calls t.reject(executor_stopped_error) at once and returns timer_id{}.
//   - Every accepted task is eventually run or rejected, exactly once, unless cancel_timer() took it back. A
//     service that stops rejects its pending timers with executor_stopped_error; it never drops one.
//   - cancel_timer() returns true only if the timer had not yet been handed to run or reject: the task then
//     belongs to the caller again.
//   - Timers with the same deadline run in the order they were scheduled.
//
// Thread-safety: every member is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

#include "anydefer/executor.hpp"

namespace anydefer {

// Names a timer scheduled on a timer_service. A default-constructed id names no timer (scheduling returns one
// when the task was rejected instead of scheduled).
class timer_id {
 public:
  constexpr timer_id() noexcept = default;
  constexpr explicit timer_id(std::uint64_t value) noexcept : value_(value) {}
  constexpr std::uint64_t value() const noexcept { return value_; }
  constexpr explicit operator bool() const noexcept { return value_ != 0; }
  friend constexpr bool operator==(timer_id, timer_id) noexcept = default;

 private:
  std::uint64_t value_ = 0;
};

class timer_service {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  // The service's current time: the time its timers' delays are measured from.
  virtual time_point current_time() const noexcept = 0;

  // Runs `t` once `delay` (zero or more) has passed; see the contract above. Returns the timer's id, or
  // timer_id{} if `t` was rejected.
  virtual timer_id schedule_after(std::chrono::nanoseconds delay, task& t) noexcept = 0;

  // Takes back the timer `id` if it has not been handed to run or reject yet; see the contract above.
  virtual bool cancel_timer(timer_id id) noexcept = 0;

  // `now + delay`, clamped to the clock's range instead of overflowing: nanoseconds::max(), the usual "never", is
  // the latest time there is, not a wrapped one in the past (which would fire at once).
  static time_point deadline_after(time_point now, std::chrono::nanoseconds delay) noexcept {
    // Compared against the bound moved by `delay`, which cannot overflow for a delay of that sign.
    if (delay > std::chrono::nanoseconds::zero() && now > time_point::max() - delay) return time_point::max();
    if (delay < std::chrono::nanoseconds::zero() && now < time_point::min() - delay) return time_point::min();
    return now + delay;
  }

 protected:
  timer_service() = default;
  timer_service(const timer_service&) = default;
  timer_service& operator=(const timer_service&) = default;
  ~timer_service() = default;  // not owned through this interface
};

}  // namespace anydefer
