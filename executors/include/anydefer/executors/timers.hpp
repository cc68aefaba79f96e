// anydefer/executors/timers.hpp: deferreds that fire with time (Twisted's callLater, addTimeout, deferLater and
// LoopingCall), on any timer_service: a reactor for real time, a test_clock for time a test moves by hand.
//
//   anydefer::reactor loop;
//   loop.start();
//   anydefer::call_later(loop, 50ms).add_callback([] { std::puts("50 ms later, on the loop thread"); });
//
//   anydefer::deferred<std::string> reply = ask_server();
//   anydefer::add_timeout(reply, 2s, loop)                // fails with timeout_error after 2 s
//       .add_errback([](anydefer::failure f) { f.trap<anydefer::timeout_error>(); return std::string("n/a"); });
//
//   anydefer::looping_call heartbeat(loop, [] { send_ping(); });
//   heartbeat.start(1s);                                  // now, then every second, until heartbeat.stop()
//
// When time can no longer be kept: a timer_service that stops (a reactor's stop(), a test_clock's destruction)
// rejects its pending timers, and every function here turns that into executor_stopped_error rather than
// waiting forever: call_later and defer_later fail with it, add_timeout cancels the deferred it guards and fails
// with it (the timeout can no longer be enforced), and a looping_call stops and fails its deferred with it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

#include "anydefer/deferred.hpp"
#include "anydefer/executors/timer_service.hpp"

namespace anydefer {

// A deferred<void> that fires on `clock`'s thread once `delay` has passed. Cancelling it before then removes the
// timer and fails it with cancelled_error. A zero delay fires on the reactor's next iteration (a test_clock's
// next advance()); a negative one is std::invalid_argument. If the clock stops before the delay (or had
// stopped), it fails with executor_stopped_error. One allocation: the deferred's state is also the timer's task.
// Thread-safe.
deferred<void> call_later(timer_service& clock, std::chrono::nanoseconds delay,
                          std::source_location loc = std::source_location::current());

// call_later(clock, delay), then f(args...) on the clock's thread; the deferred gives what f gives (a value, a
// failure, or what a deferred f returns gives) (Twisted's deferLater). Cancelling it before the delay removes
// the timer: f never runs, and it fails with cancelled_error. If the clock stops first, f never runs and it
// fails with executor_stopped_error. f and args are copied (or moved) into the deferred's chain.
template <class F, class... A>
auto defer_later(timer_service& clock, std::chrono::nanoseconds delay, F&& f, A&&... args) {
  return call_later(clock, delay)
      .add_callback([f = std::forward<F>(f), bound = std::make_tuple(std::forward<A>(args)...)]() mutable {
        return std::apply(f, std::move(bound));
      });
}

// The result of a timed-out deferred by default (Twisted's addTimeout without onTimeoutCancel): the
// cancelled_error the cancel produced becomes timeout_error; any other outcome (a value or failure the
// canceller produced) passes through.
template <class T>
T default_on_timeout_cancel(result<T>&& r, std::chrono::nanoseconds /*timeout*/) {
  if (r.has_failure() && r.error().template check<cancelled_error>()) throw timeout_error();
  return std::move(r).value();
}

namespace detail {

// Shared by add_timeout's timer and the chain it guards. The timer is started only after the guard's consumer
// is attached (so an add_timeout that throws leaves no timer behind), and the guarded deferred may fire, on any
// thread, before the timer exists: `phase_` settles who stops the timer. Each side sets its bit with one acq_rel
// RMW, and the one that finds the other's bit already set stops the timer, so exactly one does. The release
// half publishes `timer_` (written before the armed bit) to a finishing side that sees the bit; its acquire
// half is what lets that side read it.
class timeout_guard {
 public:
  enum class outcome : std::uint8_t { pending, timed_out, unenforceable };

  // Called by the guarded chain once the deferred fired. Stops the timer if it was started.
  void finish() noexcept {
    if ((phase_.fetch_or(finished, std::memory_order_acq_rel) & armed) != 0) timer_->cancel();
  }
  bool finished_already() const noexcept { return (phase_.load(std::memory_order_acquire) & finished) != 0; }

  // Hands over the started timer. Stops it at once if the guarded deferred fired meanwhile.
  void arm(deferred<void> timer) noexcept {
    timer_.emplace(std::move(timer));
    if ((phase_.fetch_or(armed, std::memory_order_acq_rel) & finished) != 0) timer_->cancel();
  }

  // Set by the timer before it cancels the guarded deferred; release: the chain, which runs after that cancel,
  // reads `stop_reason` after an acquire load of the outcome.
  void record_timeout() noexcept { outcome_.store(outcome::timed_out, std::memory_order_release); }
  void record_unenforceable(std::exception_ptr why) noexcept {
    stop_reason_ = std::move(why);
    outcome_.store(outcome::unenforceable, std::memory_order_release);
  }
  outcome what_happened() const noexcept { return outcome_.load(std::memory_order_acquire); }
  const std::exception_ptr& stop_reason() const noexcept { return stop_reason_; }

 private:
  static constexpr std::uint8_t armed = 1;
  static constexpr std::uint8_t finished = 2;
  std::atomic<std::uint8_t> phase_{0};
  std::atomic<outcome> outcome_{outcome::pending};
  std::optional<deferred<void>> timer_;
  std::exception_ptr stop_reason_;
};

}  // namespace detail

// Fails `d` with timeout_error if it has not fired within `timeout` (Twisted's addTimeout): when the time is up,
// `d` is cancelled (its canceller runs, or whatever it waits on is cancelled) and what that produces goes
// through `on_timeout_cancel(result, timeout)`, whose return (or throw) becomes the result; the default turns
// cancelled_error into timeout_error. A result in time passes through untouched and stops the timer. A manual
// cancel() before the timeout stays cancelled_error. If `clock` stops before the timeout, `d` is cancelled and
// the result is executor_stopped_error: the timeout can no longer be enforced.
//
// Consumes `d`: continue the returned deferred. Throws std::invalid_argument for a negative timeout (zero times
// out on the next iteration) and already_continued_error if `d` already has a consumer; a call that throws
// starts no timer. Thread-safe.
template <class T, class OnTimeoutCancel = T (*)(result<T>&&, std::chrono::nanoseconds)>
  requires(std::is_invocable_r_v<T, OnTimeoutCancel&, result<T>&&, std::chrono::nanoseconds>)
deferred<T> add_timeout(const deferred<T>& d, std::chrono::nanoseconds timeout, timer_service& clock,
                        OnTimeoutCancel on_timeout_cancel = &default_on_timeout_cancel<T>,
                        std::source_location loc = std::source_location::current()) {
  if (timeout < std::chrono::nanoseconds::zero()) {
    throw std::invalid_argument("anydefer: add_timeout() needs a timeout of zero or more");
  }
  if (!d.valid()) throw empty_deferred_error();
  auto guard = std::make_shared<detail::timeout_guard>();
  // The consumer first: if `d` already has one, this throws before any timer exists.
  deferred<T> guarded = d.add_both(
      [guard, timeout, convert = std::move(on_timeout_cancel)](result<T>&& r) mutable -> T {
        guard->finish();
        switch (guard->what_happened()) {
          case detail::timeout_guard::outcome::timed_out:
            return std::invoke(convert, std::move(r), timeout);
          case detail::timeout_guard::outcome::unenforceable:
            if (r.has_failure() && r.error().template check<cancelled_error>()) {
              std::rethrow_exception(guard->stop_reason());
            }
            break;
          case detail::timeout_guard::outcome::pending:
            break;
        }
        return std::move(r).value();
      },
      loc);
  if (guard->finished_already()) return guarded;  // `d` had fired: nothing to time
  deferred<void> timer = call_later(clock, timeout, loc);
  // The timer holds a reference, not a handle, on `d`: the producer dropping every handle is still detected.
  (void)timer.add_both(
      [guard, target = detail::state_ref_of(d)](result<void>&& r) {
        if (r.has_value()) {
          if (target.get()->is_claimed()) return;  // its result is already on its way: it came in time
          guard->record_timeout();
        } else if (r.error().check<cancelled_error>()) {
          return;  // stopped because `d` fired first
        } else {
          guard->record_unenforceable(r.error().exception());
        }
        target.get()->cancel();
      },
      loc);
  guard->arm(std::move(timer));
  return guarded;
}

// Calls a function every `interval` on a timer_service (Twisted's LoopingCall), on the clock's thread.
//
//   anydefer::looping_call poll(loop, [] { return fetch_status(); });   // may return a deferred
//   anydefer::deferred<void> done = poll.start(500ms);                  // calls now, then every 500 ms
//   ...
//   poll.stop();                                                        // `done` fires
//
// start(interval, now) calls at once (on the calling thread) if `now`, else after the first interval, then at
// every multiple of `interval` after the start, measured on the clock. A call that returns a deferred delays the
// next one until it fires; intervals that passed meanwhile are skipped, not made up (the next call is at the
// next multiple). with_count() gives the function how many intervals passed since its last call instead (1
// normally, more after a stall; Twisted's withCount). An interval of zero calls again on every iteration.
//
// start() returns a deferred<void> that fires when stop() is called (after a call in progress finishes), or
// fails with what the function threw or its deferred failed with (the looping call stops then), or with
// executor_stopped_error if the clock stops. Then start() may be called again.
//
// Thread-safety: every member is thread-safe. Destroying a running looping_call stops it.
class looping_call {
 public:
  // `f()` returns void, a value (ignored) or a deferred (waited for; its value ignored).
  template <class F>
    requires(std::invocable<F&>)
  looping_call(timer_service& clock, F f)
      : core_(std::make_shared<core>(clock, [f = std::move(f)](std::size_t) mutable { return call(f); })) {}

  // As above, with `f(count)`: the number of intervals since the previous call (Twisted's withCount).
  template <class F>
    requires std::invocable<F&, std::size_t>
  static looping_call with_count(timer_service& clock, F f) {
    return looping_call(clock, counted{}, [f = std::move(f)](std::size_t n) mutable { return call(f, n); });
  }

  looping_call(looping_call&&) noexcept = default;
  looping_call& operator=(looping_call&&) = delete;
  ~looping_call();

  // Starts calling (see above). Throws std::invalid_argument for a negative interval, std::logic_error if it is
  // already running (or still finishing the call in progress when it was stopped).
  deferred<void> start(std::chrono::nanoseconds interval, bool now = true,
                       std::source_location loc = std::source_location::current());

  // Stops: no call is scheduled after this. The deferred start() returned fires now, or once the call in
  // progress finishes (a call whose timer fired on another thread just before stop() counts as in progress).
  // Throws std::logic_error if it is not running.
  void stop();

  // Restarts the intervals from the clock's current time, if the loop is waiting for its next call: that call
  // is then one interval from now (a call in progress keeps its rhythm, as in Twisted). Throws std::logic_error
  // if it is not running.
  void reset();

  // True between start() and stop() (or the failure that stopped it).
  bool running() const;

 private:
  struct counted {};
  using body = std::function<deferred<void>(std::size_t)>;

  template <class F, class... A>
  static deferred<void> call(F& f, A... a) {
    auto d = maybe_deferred(f, a...);
    if constexpr (std::is_same_v<decltype(d), deferred<void>>) {
      return d;
    } else {
      return d.add_callback([](auto&&) {});
    }
  }

  // One loop's state; shared with the timer and the chains it starts, which may outlive the handle.
  class core final : public task, public std::enable_shared_from_this<core> {
   public:
    core(timer_service& clock, body f, bool counts = false);
    deferred<void> start(std::chrono::nanoseconds interval, bool now, std::source_location loc);
    void stop();
    void reset();
    bool running() const;

   private:
    // Where the loop is (under `mutex_`): idle (not started, or finished), waiting for its timer, or calling the
    // function (from the timer firing, or start(now), until the function's deferred fired and the next timer is
    // scheduled). Exactly one of `waiting` and `calling` holds while the loop has work outstanding.
    enum class step : std::uint8_t { idle, waiting, calling };

    static void on_timer(task& t) noexcept;
    static void on_timer_rejected(task& t, std::exception_ptr why) noexcept;
    static constexpr task::operations timer_operations{&on_timer, &on_timer_rejected};

    void call_now(std::unique_lock<std::mutex>& lock);
    void after_call(result<void>&& r);
    void schedule_next(std::unique_lock<std::mutex>& lock, std::chrono::nanoseconds delay);
    std::chrono::nanoseconds until_next_interval(timer_service::time_point now) const;
    void finish(std::unique_lock<std::mutex>& lock, std::exception_ptr why);

    timer_service& clock_;
    body body_;
    const bool counts_;
    mutable std::mutex mutex_;
    bool running_ = false;
    step step_ = step::idle;
    std::chrono::nanoseconds interval_{};
    timer_service::time_point started_at_{};
    std::optional<timer_service::time_point> last_call_;  // with_count: when the function was last called
    bool called_at_start_ = false;
    timer_id timer_;
    std::optional<deferred<void>> done_;     // what start() returned, fired by finish()
    std::exception_ptr inline_rejection_;    // a rejection schedule_after() delivered inside schedule_next()
    std::shared_ptr<core> timer_keepalive_;  // while the clock holds this task (see schedule_next())
  };

  looping_call(timer_service& clock, counted, body f) : core_(std::make_shared<core>(clock, std::move(f), true)) {}

  std::shared_ptr<core> core_;
};

}  // namespace anydefer
