// anydefer/errors.hpp: the exceptions anydefer itself raises or fails deferreds with.
//
// Each one names a misuse or an outcome precisely, so a caller can `failure::check<E>()` for it instead of
// matching messages. All derive from `anydefer::error` (itself a `std::logic_error` or `std::runtime_error`
// through the intermediate classes below), so one `catch (const anydefer::error&)` sees them all.
#pragma once

#include <stdexcept>
#include <string>

namespace anydefer {

// The common base of every exception type anydefer defines.
class error {
 public:
  virtual ~error() = default;
  virtual const char* what() const noexcept = 0;
};

namespace detail {
template <class Std>
class error_base : public Std, public error {
 public:
  using Std::Std;
  const char* what() const noexcept override { return Std::what(); }
};
}  // namespace detail

// `callback()` or `errback()` on a deferred that already has a result (Twisted's AlreadyCalledError).
// The first result is kept.
class already_called_error : public detail::error_base<std::logic_error> {
 public:
  already_called_error() : error_base("anydefer: deferred already fired; the first result is kept") {}
  explicit already_called_error(const std::string& what) : error_base(what) {}
};

// A second `add_callback()`/`add_errback()`/`add_both()`/`co_await` on the same deferred. A deferred has one
// consumer; use `deferred<T>::split()` for several.
class already_continued_error : public detail::error_base<std::logic_error> {
 public:
  already_continued_error()
      : error_base("anydefer: deferred already continued; a deferred has one consumer (use split() to fan out)") {}
};

// A `deferred` handle used after it was moved from.
class empty_deferred_error : public detail::error_base<std::logic_error> {
 public:
  empty_deferred_error() : error_base("anydefer: operation on an empty (moved-from) deferred handle") {}
};

// `callback()`/`errback()` on a deferred that its upstream, coroutine or combinator fires: only a deferred
// made with `deferred<T>{}` (or `deferred<T>{canceller}`) is fired by hand.
class not_fireable_error : public detail::error_base<std::logic_error> {
 public:
  not_fireable_error()
      : error_base("anydefer: this deferred is fired by the chain that made it, not by callback()/errback()") {}
};

// The failure of a deferred whose `cancel()` ran and no canceller produced another result (Twisted's
// CancelledError).
class cancelled_error : public detail::error_base<std::runtime_error> {
 public:
  cancelled_error() : error_base("anydefer: deferred cancelled") {}
};

// The failure of a deferred that `add_timeout` cancelled because time ran out (Twisted's TimeoutError).
class timeout_error : public detail::error_base<std::runtime_error> {
 public:
  timeout_error() : error_base("anydefer: deferred timed out") {}
};

// The failure of an unfired deferred whose every handle was dropped: nothing can fire it any more, so whatever
// waits on it learns that now instead of waiting forever.
class broken_deferred_error : public detail::error_base<std::runtime_error> {
 public:
  broken_deferred_error()
      : error_base("anydefer: every handle to an unfired deferred was dropped; it can never fire") {}
};

// An executor refused a task because it is stopping or stopped; the deferred waiting for that task fails with
// this error.
class executor_stopped_error : public detail::error_base<std::runtime_error> {
 public:
  executor_stopped_error() : error_base("anydefer: executor is stopped and rejects new work") {}
  explicit executor_stopped_error(const std::string& what) : error_base(what) {}
};

// `deferred_queue::put()` on a queue that holds `size` items and has no waiting getter (Twisted's QueueOverflow).
// Thrown by put(); the item stays with the caller.
class queue_overflow : public detail::error_base<std::runtime_error> {
 public:
  queue_overflow() : error_base("anydefer: deferred_queue is full (put() beyond its size)") {}
};

// `deferred_queue::get()` on an empty queue that already has `backlog` waiting getters (Twisted's
// QueueUnderflow). Thrown by get().
class queue_underflow : public detail::error_base<std::runtime_error> {
 public:
  queue_underflow() : error_base("anydefer: deferred_queue has too many waiting getters (get() beyond its backlog)") {}
};

// The failure of a pending acquire() or get() whose deferred_lock, deferred_semaphore or deferred_queue was
// destroyed before it could be served: it can never be served now.
class abandoned_waiter_error : public detail::error_base<std::runtime_error> {
 public:
  abandoned_waiter_error()
      : error_base("anydefer: the lock, semaphore or queue this deferred waited on was destroyed") {}
};

// `wait()`/`get()` called where blocking would deadlock (for instance on a reactor's own thread, which is the
// thread that would have to fire the deferred).
class would_block_error : public detail::error_base<std::logic_error> {
 public:
  explicit would_block_error(const std::string& what) : error_base(what) {}
};

}  // namespace anydefer
