// anydefer/executors/timers.hpp: deferreds that fire with time, on a reactor (Twisted's callLater / addTimeout).
//
//   anydefer::reactor loop;
//   loop.start();
//   anydefer::call_later(loop, 50ms).add_callback([] { std::puts("50 ms later, on the loop thread"); });
//
//   anydefer::deferred<std::string> reply = ask_server();
//   anydefer::add_timeout(reply, 2s, loop)                // fails with timeout_error after 2 s
//       .add_errback([](anydefer::failure f) { f.trap<anydefer::timeout_error>(); return std::string("n/a"); });
#pragma once

#include <chrono>
#include <memory>
#include <source_location>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "anydefer/deferred.hpp"
#include "anydefer/executors/reactor.hpp"

namespace anydefer {

// A deferred<void> that fires on `loop`'s thread once `delay` has passed. Cancelling it before then removes the
// timer and fails it with cancelled_error. A zero delay fires on the loop's next iteration; a negative one is
// std::invalid_argument. If the reactor is stopped (or stops before the delay), it fails with
// executor_stopped_error. One allocation: the deferred's state is also the timer's task. Thread-safe.
deferred<void> call_later(reactor& loop, std::chrono::nanoseconds delay,
                          std::source_location loc = std::source_location::current());

// Fails `d` with timeout_error if it has not fired within `timeout`: when the time is up, `d` is cancelled (its
// canceller runs, or whatever it waits on is cancelled) and a resulting cancelled_error becomes timeout_error;
// any other result passes through, and the timer is stopped as soon as `d` fires (Twisted's addTimeout). A
// manual cancel() before the timeout stays cancelled_error. Consumes `d`: continue the returned deferred. A
// negative timeout is std::invalid_argument; a zero one times out on the loop's next iteration.
template <class T>
deferred<T> add_timeout(const deferred<T>& d, std::chrono::nanoseconds timeout, reactor& loop,
                        std::source_location loc = std::source_location::current()) {
  if (timeout < std::chrono::nanoseconds::zero()) {
    throw std::invalid_argument("anydefer: add_timeout() needs a timeout of zero or more");
  }
  if (!d.valid()) throw empty_deferred_error();
  if (d.fired()) return d.add_both([](result<T>&& r) -> T { return std::move(r).value(); }, loc);
  auto timed_out = std::make_shared<std::atomic<bool>>(false);
  deferred<void> timer = call_later(loop, timeout, loc);
  // The timer holds a reference, not a handle, on `d`: the producer dropping every handle is still detected.
  (void)timer.add_both(
      [timed_out, target = detail::state_ref_of(d)](result<void>&& r) {
        if (!r.has_value()) return;  // the timer was stopped because d fired first: nothing to do
        timed_out->store(true, std::memory_order_release);
        target.get()->cancel();
      },
      loc);
  return d.add_both(
      [timed_out, timer](result<T>&& r) -> T {
        timer.cancel();  // no-op once fired
        if (r.has_failure() && timed_out->load(std::memory_order_acquire) &&
            r.error().template check<cancelled_error>()) {
          throw timeout_error();
        }
        return std::move(r).value();
      },
      loc);
}

}  // namespace anydefer
