// anydefer/executors/detail/io_operation.hpp: a deferred<T> settled by a wait on a reactor: the state of
// reactor::wait_readable()/wait_writable() and of the net layer's operations (read, write, accept, connect).
//
// The state is also the io_waiter, so an operation costs one allocation. An operation tries its system call when
// the descriptor reports (on_ready(), loop thread), and then either settles its deferred (settle_value() then
// finished(), or settle_failure()), or calls wait_again() after a spurious report (EAGAIN). on_ended() runs before
// the deferred settles, so a continuation that starts the next operation finds the stream's bookkeeping done.
//
// References: the handle, and one that the reactor's side holds from start() until the operation leaves the
// reactor for good (settled, abandoned, or taken back by cancel); a registration forwarded from another thread
// holds that same one while it is queued, and a cancellation forwarded from another thread holds one more.
// on_ended() runs exactly once, on the loop thread, when the reactor's side lets go (or on the thread that
// rejected the registration, when the reactor had stopped before the operation reached it).
//
// Cancel on the loop thread takes the wait back at once, then fails the deferred with cancelled_error. From another
// thread it fails the deferred first (Twisted's cancel() settles before it returns), then forwards the take-back to
// the loop thread. Until that arrives, the wait is stale: a report finds the deferred claimed and lets it go without
// trying the system call, and a new wait on the same descriptor and direction replaces it (reactor::watch asks
// is_cancelled()). An operation whose system call succeeded just as another thread's cancel claimed the deferred
// sees fire_value() return false, and must keep what it got (the net layer keeps accepted connections for the
// next accept): nothing is lost to a cancel.
//
// Except for an operation on the caller's memory (`settles::on_loop`: read_some's and write_all's buffers, valid
// only until the deferred fires): its system call may be using that memory on the loop thread at the very moment
// another thread cancels, so a cancel from another thread only forwards itself, and the loop fails the deferred
// when it gets there, unless the operation settled first. Only the loop thread ever fires such an operation.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <source_location>
#include <utility>

#include "anydefer/detail/state.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/executors/detail/io_waiter.hpp"
#include "anydefer/executors/reactor.hpp"

namespace anydefer::detail {

template <class T>
// NOLINTNEXTLINE(cppcoreguidelines-virtual-class-destructor): virtual through state<T>, which the check cannot see
class io_operation : public state<T>, public io_waiter {
 public:
  io_operation(const io_operation&) = delete;
  io_operation& operator=(const io_operation&) = delete;
  // Public and virtual as every state's: the last release() deletes through state_base.
  ~io_operation() override = default;

  // Registers the wait: at once on the loop thread, else through a task run there (after stop: fails with
  // executor_stopped_error). A watch() that throws fails the deferred with what it threw.
  void start() noexcept {
    if (loop_.running_in_this_thread()) {
      register_here();
    } else {
      loop_.execute(registration_);
    }
  }

  // Loop thread: takes the wait back and fails the deferred with `why` (a stream closed under it). False if the
  // operation was not waiting.
  bool abort(std::exception_ptr why) noexcept {
    if (!loop_.unwatch(*this)) return false;
    settle_failure(std::move(why), end_reason::abandoned);
    return true;
  }

  // Loop thread: if the deferred was cancelled from another thread and the take-back has not arrived yet, ends the
  // operation now (on_ended() runs). True if the operation has ended, now or before.
  bool end_if_cancelled() noexcept {
    if (cancel_awaits_loop()) {
      // A cancel from another thread is on its way (settles::on_loop): carried out now, so that a new operation
      // may follow at once. The cancel's queued task holds a reference: `this` outlives the settle.
      if (!loop_.unwatch(*this)) return false;
      settle_cancelled();
      return true;
    }
    if (!this->is_claimed() || ended_) return ended_;
    if (loop_.unwatch(*this)) end();
    return ended_;
  }

 protected:
  // Who fires the deferred when another thread cancels (see the file comment).
  enum class settles : bool { on_any_thread, on_loop };

  io_operation(reactor& loop, int fd, direction d, std::source_location loc,
               settles cancelled = settles::on_any_thread) noexcept
      : state<T>(state_base::kind::driven, loc),
        io_waiter(&wait_operations, fd, d),
        loop_(loop),
        cancel_settles_on_loop_(cancelled == settles::on_loop),
        registration_(&registration_operations, *this),
        cancellation_(&cancellation_operations, *this) {
    this->counts_.store(state_base::handle_unit + state_base::one_ref, std::memory_order_relaxed);
  }

  // Loop thread: the descriptor reported and the deferred is not settled yet.
  virtual void on_ready() noexcept = 0;
  // Why an operation ended: its system call settled it (settle_value/settle_failure), a cancel, or the reactor
  // (stop, forget_fd) or the stream's close (abort) ended the wait.
  enum class end_reason : std::uint8_t { settled, cancelled, abandoned };

  // Loop thread, once: the reactor's side lets go of the operation (its deferred is settled, or is about to be
  // failed).
  virtual void on_ended(end_reason /*why*/) noexcept {}

  // From on_ready(): waits for the next report (keeps the reactor's reference). A watch() that throws fails the
  // deferred and ends the operation.
  void wait_again() noexcept { register_here(); }

  // From on_ready(): ends the operation (on_ended()) and fires the deferred with a value. False if another thread's
  // cancel claimed it first: the caller keeps what its system call got. Then call finished().
  template <class... A>
  bool settle_value(A&&... value) noexcept {
    ended_ = true;
    on_ended(end_reason::settled);
    return this->fire_value(std::forward<A>(value)...);
  }
  // After settle_value(): drops the reactor's reference (the operation may be freed).
  void finished() noexcept { state_base::release(this); }

  // From on_ready(): ends the operation and fails the deferred with `error` (a no-op if cancelled meanwhile).
  void settle_failure(std::exception_ptr error, end_reason why = end_reason::settled) noexcept {
    ended_ = true;
    on_ended(why);
    this->fire_failure(std::move(error));
    state_base::release(this);
  }

  reactor& loop() const noexcept { return loop_; }

  void cancel_here() noexcept override {
    if (loop_.running_in_this_thread()) {
      const bool removed = loop_.unwatch(*this);
      if (removed) {
        ended_ = true;
        on_ended(end_reason::cancelled);
      }
      this->fail_internal(std::make_exception_ptr(cancelled_error()));
      if (removed) state_base::release(this);
      return;
    }
    if (cancel_settles_on_loop_) {
      // The loop may be in the system call on the caller's buffer now: it fails the deferred itself, once.
      // The flag also keeps cancellation_ from being queued twice; acq_rel pairs with cancel_awaits_loop().
      if (this->is_claimed() || cancel_forwarded_.exchange(true, std::memory_order_acq_rel)) return;
    } else if (!this->fail_internal(std::make_exception_ptr(cancelled_error()))) {
      return;  // settled meanwhile
    }
    this->add_ref();
    loop_.execute(cancellation_);
  }

 private:
  class loop_task final : public task {
   public:
    loop_task(const operations* ops, io_operation& owner) noexcept : task(ops), owner_(owner) {}
    io_operation& owner() const noexcept { return owner_; }

   private:
    io_operation& owner_;
  };

  // settles::on_loop, on the loop thread: another thread cancelled and its task has not run yet. acquire: pairs
  // with the canceller's exchange (nothing is read on its strength but the flag itself; the task hand-over orders
  // the rest).
  bool cancel_awaits_loop() const noexcept {
    return cancel_settles_on_loop_ && cancel_forwarded_.load(std::memory_order_acquire) && !this->is_claimed();
  }
  // Carries out that cancel: the operation, no longer watched, fails with cancelled_error.
  void settle_cancelled() noexcept {
    settle_failure(std::make_exception_ptr(cancelled_error()), end_reason::cancelled);
  }

  // Ends an operation that a cancel from another thread claimed.
  void end() noexcept {
    ended_ = true;
    on_ended(end_reason::cancelled);
    state_base::release(this);
  }

  void register_here() noexcept {
    try {
      loop_.watch(*this);
    } catch (...) {
      settle_failure(std::current_exception());
    }
  }

  static io_operation& of(io_waiter& w) noexcept { return static_cast<io_operation&>(w); }
  static io_operation& of(task& t) noexcept { return static_cast<loop_task&>(t).owner(); }

  static void ready(io_waiter& w) noexcept {
    io_operation& self = of(w);
    if (self.is_claimed()) {
      self.end();  // cancelled from another thread: the take-back is on its way
    } else if (self.cancel_awaits_loop()) {
      self.settle_cancelled();  // cancelled from another thread, to be carried out here: now, not the system call
    } else {
      self.on_ready();
    }
  }
  static void abandoned(io_waiter& w, std::exception_ptr why) noexcept {
    of(w).settle_failure(std::move(why), end_reason::abandoned);
  }
  static bool cancelled(const io_waiter& w) noexcept {
    const auto& self = static_cast<const io_operation&>(w);
    return self.is_claimed() || self.cancel_awaits_loop();
  }
  static void run_registration(task& t) noexcept {
    io_operation& self = of(t);
    if (self.is_claimed()) {
      self.end();  // cancelled before it reached the loop
    } else {
      self.register_here();
    }
  }
  static void reject_registration(task& t, std::exception_ptr why) noexcept {
    of(t).settle_failure(std::move(why), end_reason::abandoned);
  }
  static void run_cancellation(task& t) noexcept {
    io_operation& self = of(t);
    if (self.cancel_settles_on_loop_ && !self.is_claimed()) {
      if (self.loop_.unwatch(self)) {
        self.settle_cancelled();
      } else if (!self.ended_) {
        // Its registration is still queued: it finds the deferred claimed and ends the operation.
        self.fail_internal(std::make_exception_ptr(cancelled_error()));
      }
    } else if (self.loop_.unwatch(self)) {
      self.end();
    }
    state_base::release(&self);
  }
  static void reject_cancellation(task& t, std::exception_ptr /*why*/) noexcept {
    // The reactor's final drain abandons the wait, which drops the reactor's reference.
    state_base::release(&of(t));
  }

  static constexpr io_waiter::operations wait_operations{&ready, &abandoned, &cancelled};
  static constexpr task::operations registration_operations{&run_registration, &reject_registration};
  static constexpr task::operations cancellation_operations{&run_cancellation, &reject_cancellation};

  reactor& loop_;
  const bool cancel_settles_on_loop_;
  std::atomic<bool> cancel_forwarded_{false};  // settles::on_loop: a cancel from another thread was queued
  loop_task registration_;
  loop_task cancellation_;
  bool ended_ = false;  // loop thread only
};

}  // namespace anydefer::detail
