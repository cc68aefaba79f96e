#include "anydefer/executors/timers.hpp"

#include <atomic>

#include "anydefer/errors.hpp"

namespace anydefer {
namespace {

// The state of a call_later() deferred, and the task its clock runs when the time is up. The clock holds one
// reference while the timer is scheduled.
class timer_state final : public detail::state<void>, public task {
 public:
  timer_state(timer_service& clock, std::source_location loc) noexcept
      : state<void>(kind::driven, loc), task(&operations), clock_(clock) {
    counts_.store(handle_unit + one_ref, std::memory_order_relaxed);  // the handle, and the scheduled timer
  }

  void schedule(std::chrono::nanoseconds delay) noexcept {
    // The id is stored before the handle reaches anyone who could cancel, but the timer may fire first; relaxed
    // suffices since cancel() of an already-fired timer is a no-op through the claim.
    id_.store(clock_.schedule_after(delay, *this), std::memory_order_relaxed);
  }

 protected:
  void cancel_here() noexcept override {
    // Removed before it fired: the task is ours again, and so is the clock's reference. Otherwise the timer is
    // due (or firing right now): failing it now means the task finds it claimed and does nothing.
    const bool removed = clock_.cancel_timer(id_.load(std::memory_order_relaxed));
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

  timer_service& clock_;
  std::atomic<timer_id> id_{};
};

// The looping_call whose schedule_after() call is in progress on this thread: a rejection delivered inline comes
// while that call holds the loop's mutex.
thread_local const void* scheduling_loop = nullptr;

}  // namespace

deferred<void> call_later(timer_service& clock, std::chrono::nanoseconds delay, std::source_location loc) {
  if (delay < std::chrono::nanoseconds::zero()) {
    throw std::invalid_argument("anydefer: call_later() needs a delay of zero or more");
  }
  auto* s = new timer_state(clock, loc);
  deferred<void> d = detail::access::adopt<void>(s);
  s->schedule(delay);
  return d;
}

// --- looping_call ------------------------------------------------------------------------------------------------

looping_call::~looping_call() {
  if (core_ != nullptr && core_->running()) {
    try {
      core_->stop();
    } catch (const std::logic_error&) {
      // stopped on another thread meanwhile
    }
  }
}

deferred<void> looping_call::start(std::chrono::nanoseconds interval, bool now, std::source_location loc) {
  return core_->start(interval, now, loc);
}
void looping_call::stop() { core_->stop(); }
void looping_call::reset() { core_->reset(); }
bool looping_call::running() const { return core_->running(); }

looping_call::core::core(timer_service& clock, body f, bool counts)
    : task(&timer_operations), clock_(clock), body_(std::move(f)), counts_(counts) {}

deferred<void> looping_call::core::start(std::chrono::nanoseconds interval, bool now, std::source_location loc) {
  if (interval < std::chrono::nanoseconds::zero()) {
    throw std::invalid_argument("anydefer: looping_call::start() needs an interval of zero or more");
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (running_) throw std::logic_error("anydefer: looping_call::start() on a looping_call already running");
  if (step_ != step::idle) {
    throw std::logic_error("anydefer: looping_call::start() while the call in progress at stop() has not finished");
  }
  deferred<void> done(loc);
  done_.emplace(done);
  running_ = true;
  interval_ = interval;
  started_at_ = clock_.current_time();
  last_call_.reset();
  called_at_start_ = now;
  if (now) {
    call_now(lock);
  } else {
    schedule_next(lock, interval_);
  }
  return done;
}

void looping_call::core::stop() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!running_) throw std::logic_error("anydefer: looping_call::stop() on a looping_call that is not running");
  running_ = false;
  // A timer taken back means nothing is outstanding: finish now. Otherwise the timer is firing, or the function
  // is running: that step sees running_ == false and finishes.
  if (step_ == step::waiting && clock_.cancel_timer(timer_)) {
    timer_keepalive_.reset();  // not the last reference: the caller holds one
    finish(lock, nullptr);
  }
}

void looping_call::core::reset() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!running_) throw std::logic_error("anydefer: looping_call::reset() on a looping_call that is not running");
  // As Twisted's: only a loop waiting for its timer restarts; a call in progress (or a timer already firing)
  // keeps the rhythm it had.
  if (step_ == step::waiting && clock_.cancel_timer(timer_)) {
    timer_keepalive_.reset();  // not the last reference: the caller holds one
    started_at_ = clock_.current_time();
    last_call_.reset();
    called_at_start_ = false;
    schedule_next(lock, interval_);
  }
}

bool looping_call::core::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_;
}

void looping_call::core::on_timer(task& t) noexcept {
  auto& self = static_cast<core&>(t);
  std::shared_ptr<core> keep;  // the timer's reference, released after the lock
  std::unique_lock<std::mutex> lock(self.mutex_);
  keep = std::move(self.timer_keepalive_);
  if (!self.running_) {
    self.finish(lock, nullptr);
    return;
  }
  self.call_now(lock);
}

void looping_call::core::on_timer_rejected(task& t, std::exception_ptr why) noexcept {
  auto& self = static_cast<core&>(t);
  if (scheduling_loop == &self) {  // inside schedule_next(), which holds the mutex and finishes
    self.inline_rejection_ = std::move(why);
    return;
  }
  std::shared_ptr<core> keep;
  std::unique_lock<std::mutex> lock(self.mutex_);
  keep = std::move(self.timer_keepalive_);
  self.finish(lock, std::move(why));
}

// Precondition: running_. Leaves step_ == calling until the function's deferred fired and the next timer is
// scheduled; unlocks.
void looping_call::core::call_now(std::unique_lock<std::mutex>& lock) {
  step_ = step::calling;
  std::size_t count = 1;
  if (counts_ && interval_.count() != 0) {
    // Twisted's withCount: intervals are numbered from the start; a call at start counts as one interval.
    const auto now = clock_.current_time();
    auto last = last_call_.value_or(started_at_ - (called_at_start_ ? interval_ : std::chrono::nanoseconds{}));
    const auto interval_of = [&](timer_service::time_point at) { return (at - started_at_) / interval_; };
    const auto passed = interval_of(now) - interval_of(last);
    count = passed > 0 ? static_cast<std::size_t>(passed) : 0;
    if (count > 0) last_call_ = now;
  }
  lock.unlock();
  std::shared_ptr<core> self = shared_from_this();
  deferred<void> called = count > 0 ? maybe_deferred(body_, count) : succeed();
  (void)called.add_both([self = std::move(self)](result<void>&& r) { self->after_call(std::move(r)); });
}

void looping_call::core::after_call(result<void>&& r) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (r.has_failure()) {
    finish(lock, r.error().exception());
  } else if (!running_) {
    finish(lock, nullptr);
  } else {
    schedule_next(lock, until_next_interval(clock_.current_time()));
  }
}

// The delay to the next multiple of the interval after `now` (Twisted's _scheduleFrom): calls keep to the
// start's rhythm, and intervals missed while a call ran are skipped.
std::chrono::nanoseconds looping_call::core::until_next_interval(timer_service::time_point now) const {
  if (interval_.count() == 0) return interval_;
  const auto running_for = now - started_at_;
  return interval_ - running_for % interval_;
}

// Precondition: running_, lock held, the task not scheduled. Unlocks on every path that finishes.
void looping_call::core::schedule_next(std::unique_lock<std::mutex>& lock, std::chrono::nanoseconds delay) {
  step_ = step::waiting;
  // The clock holds a raw reference to this task: the loop keeps itself alive until the timer runs, is
  // rejected or is taken back. The caller always holds another reference, so dropping this one never frees.
  timer_keepalive_ = shared_from_this();
  scheduling_loop = this;
  timer_ = clock_.schedule_after(delay, *this);
  scheduling_loop = nullptr;
  if (!timer_) {
    timer_keepalive_.reset();
    finish(lock, std::exchange(inline_rejection_, nullptr));
  }
}

// Ends the run: idle, not running, and the deferred start() returned fires (with `why` if non-null). Unlocks
// before firing, since that runs the user's callbacks.
void looping_call::core::finish(std::unique_lock<std::mutex>& lock, std::exception_ptr why) {
  running_ = false;
  step_ = step::idle;
  std::optional<deferred<void>> done = std::exchange(done_, std::nullopt);
  lock.unlock();
  if (!done) return;
  // Through the state, not callback(): a caller who fired the deferred by hand must not make this throw.
  detail::state<void>* s = detail::access::state_of(*done);
  if (why) {
    (void)s->fire_failure(std::move(why));
  } else {
    (void)s->fire_value();
  }
}

}  // namespace anydefer
