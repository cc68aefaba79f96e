// anydefer/std_future.hpp: bridges between deferred<T> and std::future<T>, both ways.
//
//   std::future<int> f = anydefer::to_std_future(d);       // gets d's value, or rethrows its failure from get()
//   int v = f.get();
//
//   anydefer::thread_pool pool;                             // an executor whose threads may block
//   anydefer::deferred<int> d2 = anydefer::from_std_future(legacy_api(), pool);
//   d2.add_callback([](int v) { ... });                     // fires when the future is ready
//
// to_std_future() costs one continuation on the deferred plus std::promise's shared state; nothing blocks.
//
// from_std_future() cannot be told when a std::future becomes ready (it has no continuation), so it *blocks a
// thread*: it submits a task to `ex` that sits in f.get() and fires the returned deferred with what that gives.
// The task occupies one thread of `ex` for as long as the future is pending. Give it an executor made for
// blocking (a thread_pool with a thread to spare, a dedicated pool); never a reactor or an Asio io_context,
// whose single thread would stall everything else on it (and might be the thread that must make the future
// ready: a deadlock).
//
// Thread-safety: both functions may be called from any thread. The std::future returned by to_std_future() is a
// plain std::future: one thread calls get() on it.
#pragma once

#include <exception>
#include <future>
#include <memory>
#include <source_location>
#include <type_traits>
#include <utility>

#include "anydefer/deferred.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/failure.hpp"

namespace anydefer {

// A std::future that becomes ready when `d` fires: with its value, or with its failure's exception (which get()
// rethrows). Consumes `d` (it becomes d's one consumer; a failure counts as handled); a deferred that already has
// a consumer throws already_continued_error. Cancelling is not carried over: std::future cannot be cancelled;
// cancel `d` itself if needed, and the future then holds the resulting failure (cancelled_error).
//
// Memory ordering: everything that happened before `d` fired is visible to the thread that returns from the
// future's get() or wait() (std::promise gives that).
template <class T>
  requires(!std::is_reference_v<T>)
std::future<T> to_std_future(const deferred<T>& d, std::source_location loc = std::source_location::current()) {
  std::promise<T> promise;
  std::future<T> future = promise.get_future();
  // The promise is only ever fulfilled here, once: set_value/set_exception cannot find it already satisfied.
  (void)d.add_both(
      [promise = std::move(promise)](result<T>&& r) mutable {
        if (r.has_failure()) {
          promise.set_exception(r.error().exception());
        } else if constexpr (std::is_void_v<T>) {
          promise.set_value();
        } else {
          promise.set_value(std::move(r).value());
        }
      },
      loc);
  return future;
}

// A deferred that fires with what `f.get()` gives: its value, or the exception it throws as a failure.
// Blocking: one task on `ex` waits in f.get() until the future is ready, occupying one of `ex`'s threads
// meanwhile (see the top of this file: never a reactor). If `ex` rejects the task, the deferred fails with the
// executor's error (executor_stopped_error) and `f` is dropped. cancel() on the returned deferred fails it at
// once with cancelled_error, but the task still waits for `f` (a std::future cannot be interrupted) and its
// result is then dropped. An invalid `f` (no shared state) throws std::future_error(no_state) here.
// Allocates once (the submitted task is also the deferred's state).
template <class T>
  requires(!std::is_reference_v<T>)
deferred<T> from_std_future(std::future<T> f, executor_ref ex,
                            std::source_location loc = std::source_location::current()) {
  if (!f.valid()) throw std::future_error(std::future_errc::no_state);
  return submit(
      ex, [f = std::move(f)]() mutable -> T { return f.get(); }, loc);
}

}  // namespace anydefer
