// anydefer/executors/test_clock.hpp: fake time for tests (Twisted's task.Clock).
//
// A timer_service whose time moves only when advance() is called, so that a test of anything built on timers
// (call_later, add_timeout, defer_later, looping_call) says exactly when each thing happens, with no sleep and
// no flakiness:
//
//   anydefer::test_clock clock;
//   auto d = anydefer::add_timeout(reply, 5s, clock);
//   clock.advance(4s);                       // nothing yet
//   clock.advance(1s);                       // d fails with timeout_error, inside this call
//
// advance(step) first moves the time to now + step, then runs every timer whose deadline is at or before the new
// time, earliest first (equal deadlines in scheduling order), on the calling thread, including timers those
// tasks schedule that are already due; current_time() reads the new time throughout, as in Twisted (a
// looping_call that missed intervals sees them all at once). Timers are never run anywhere else.
//
// Lifecycle: the destructor rejects every pending timer with executor_stopped_error (earliest first, equal
// deadlines in scheduling order), as a stopping reactor does,
// so a deferred guarded by a timer on it learns that its timer is gone; a timer scheduled meanwhile (by what a
// rejection runs) is rejected at once.
//
// Thread-safety: every member is thread-safe; timers may be scheduled and cancelled from any thread, and run
// on the thread calling advance(). A task may itself call advance(); advance() on several threads at once runs
// each due timer once, on one of them.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>

#include "anydefer/executors/detail/timer_heap.hpp"
#include "anydefer/executors/timer_service.hpp"

namespace anydefer {

// NOLINTNEXTLINE(cppcoreguidelines-virtual-class-destructor): final, and timer_service is never owned as such
class test_clock final : public timer_service {
 public:
  // A clock reading `start` (the zero time_point by default).
  explicit test_clock(time_point start = time_point{}) noexcept : now_(start) {}
  test_clock(const test_clock&) = delete;
  test_clock& operator=(const test_clock&) = delete;

  // Rejects every pending timer with executor_stopped_error, earliest first.
  ~test_clock();

  time_point current_time() const noexcept override;

  // Schedules `t` to run in advance() once the time reaches current_time() + delay. A negative delay counts as
  // zero. If the timer heap cannot grow, rejects `t` with std::bad_alloc and returns timer_id{}.
  timer_id schedule_after(std::chrono::nanoseconds delay, task& t) noexcept override;

  // True if `id` was pending and is removed: its task is the caller's again.
  bool cancel_timer(timer_id id) noexcept override;

  // Moves time forward by `step` and runs what is due (see the file comment). Returns how many timers ran.
  // Throws std::invalid_argument if `step` is negative.
  std::size_t advance(std::chrono::nanoseconds step);

  // advance() by each step in turn (Twisted's pump()). Returns how many timers ran in all.
  template <class Steps>
  std::size_t pump(const Steps& steps) {
    std::size_t ran = 0;
    for (auto step : steps) ran += advance(step);
    return ran;
  }

  // How many timers are pending.
  std::size_t pending() const;

 private:
  mutable std::mutex mutex_;
  time_point now_;
  detail::timer_heap timers_;
  bool closed_ = false;  // set by the destructor: timers scheduled from then on are rejected inline
};

}  // namespace anydefer
