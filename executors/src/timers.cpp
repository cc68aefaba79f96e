#include "anydefer/executors/timers.hpp"

#include <atomic>

namespace anydefer {
namespace {

// The state of a call_later() deferred, and the task its reactor runs when the time is up. The reactor holds one
// reference while the timer is scheduled.
class timer_state final : public detail::state<void>, public task {
 public:
  timer_state(reactor& loop, std::source_location loc) noexcept
      : state<void>(kind::driven, loc), task(&operations), loop_(loop) {
    counts_.store(handle_unit + one_ref, std::memory_order_relaxed);  // the handle, and the scheduled timer
  }

  void schedule(std::chrono::nanoseconds delay) noexcept {
    // The id is stored before the handle reaches anyone who could cancel, but the timer may fire first; relaxed
    // suffices since cancel() of an already-fired timer is a no-op through the claim.
    id_.store(loop_.schedule_after(delay, *this), std::memory_order_relaxed);
  }

 protected:
  void cancel_here() noexcept override {
    // Removed before it fired: the task is ours again, and so is the reactor's reference. Otherwise the timer is
    // due (or firing right now): failing it now means the task finds it claimed and does nothing.
    const bool removed = loop_.cancel_timer(id_.load(std::memory_order_relaxed));
    fail_internal(std::make_exception_ptr(cancelled_error()));
    if (removed) release(this);
  }

 private:
  static void run(task& t) noexcept {
    auto& self = static_cast<timer_state&>(t);
    self.fire_value();  // false if cancelled meanwhile
    release(&self);
  }
  static void reject(task& t, std::exception_ptr why) noexcept {
    auto& self = static_cast<timer_state&>(t);
    self.fire_failure(why ? std::move(why) : std::make_exception_ptr(executor_stopped_error()));
    release(&self);
  }
  static constexpr task::operations operations{&run, &reject};

  reactor& loop_;
  std::atomic<timer_id> id_{};
};

}  // namespace

deferred<void> call_later(reactor& loop, std::chrono::nanoseconds delay, std::source_location loc) {
  if (delay < std::chrono::nanoseconds::zero()) {
    throw std::invalid_argument("anydefer: call_later() needs a delay of zero or more");
  }
  auto* s = new timer_state(loop, loc);
  deferred<void> d = detail::access::adopt<void>(s);
  s->schedule(delay);
  return d;
}

}  // namespace anydefer
