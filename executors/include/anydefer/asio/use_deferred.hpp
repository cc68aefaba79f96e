// anydefer/asio/use_deferred.hpp: `anydefer::use_deferred`, an Asio completion token that makes any Asio
// asynchronous operation return a deferred.
//
//   anydefer::deferred<void> session(asio::ip::tcp::socket s) {
//     std::array<char, 1024> buf;
//     std::size_t n = co_await s.async_read_some(asio::buffer(buf), anydefer::use_deferred);
//     co_await asio::async_write(s, asio::buffer(buf, n), anydefer::use_deferred);
//   }
//
// The deferred's type follows the operation's completion signature:
//   void(std::error_code)                 -> deferred<void>
//   void(std::error_code, A)              -> deferred<A>            (async_read_some: deferred<std::size_t>)
//   void(std::error_code, A, B, ...)      -> deferred<std::tuple<A, B, ...>>
//   void(std::exception_ptr, A...)        -> the same, a non-null exception_ptr being the failure
//   void(A...)                            -> the same, never failing on its own
// A non-zero error_code becomes a failure carrying std::system_error(code) (failure::check<std::system_error>()),
// whatever it is: eof, connection_reset, operation_aborted (after socket.cancel(), timer.cancel(), close()).
//
// Where it fires: from the operation's completion handler, which Asio runs on the operation's I/O executor (a
// thread inside io_context::run(), or the strand), so callbacks and coroutines continue there.
//
// Cancellation: cancel() on the deferred requests terminal cancellation of that one operation through Asio's
// per-operation cancellation (a cancellation_signal bound to the handler with bind_cancellation_slot). The emit is
// posted onto the operation's I/O executor (Asio requires it to run there), so cancel() may be called from any
// thread. The deferred does not fail at cancel(): it fires when Asio completes the operation, that is
//   - with anydefer::cancelled_error if the operation ended with operation_aborted after the cancel() (so
//     cancel() behaves as on any deferred, and add_timeout turns it into timeout_error),
//   - with the operation's own result if it completed before the cancellation reached it (no data is lost).
// Operations whose initiation does not tell its executor (initiation.get_executor(); every Asio I/O object and
// composed operation does) cannot be cancelled that way: cancel() fails the deferred at once with
// cancelled_error and the operation's late result is dropped.
// With a multi-threaded io_context, Asio requires an operation that may be cancelled to run on a strand (bind the
// I/O object to one), because the emit and the operation's own steps must not run concurrently; and keep the I/O
// object alive (close it rather than destroy it) while a cancel() may be on its way.
//
// If Asio destroys the operation without completing it (its io_context is destroyed with the operation still
// pending), the deferred fails with executor_stopped_error, on the destroying thread.
//
// Cost: one allocation of the deferred's state (which holds the cancellation signal), plus what the operation
// allocates inside Asio (its handler is 16 bytes: a reference to the state, and the slot).
//
// Thread-safety: the deferred is an ordinary deferred: any thread may continue, cancel or wait on it. Starting the
// operation follows Asio's rules for the I/O object.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <source_location>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

#include <asio/async_result.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/error.hpp>
#include <asio/post.hpp>

#include "anydefer/deferred.hpp"
#include "anydefer/errors.hpp"

namespace anydefer {

// The completion token type; use the `use_deferred` object.
struct use_deferred_t {
  constexpr use_deferred_t() noexcept = default;
};

// Pass as the last argument of an Asio asynchronous operation to get a deferred of its result.
inline constexpr use_deferred_t use_deferred{};

namespace asio_detail {

// The deferred's value type for the non-error arguments of a completion signature.
template <class... Args>
struct value_of {
  using type = std::tuple<std::decay_t<Args>...>;
};
template <>
struct value_of<> {
  using type = void;
};
template <class A>
struct value_of<A> {
  using type = std::decay_t<A>;
};
template <class... Args>
using value_of_t = typename value_of<Args...>::type;

// The initiation's I/O executor, or void when it does not say.
template <class Initiation>
struct initiation_executor {
  using type = void;
};
template <class Initiation>
  requires requires(Initiation& i) { i.get_executor(); }
struct initiation_executor<Initiation> {
  using type = std::decay_t<decltype(std::declval<Initiation&>().get_executor())>;
};

// The deferred's state: a driven state (only the completion handler fires it) that also owns the cancellation
// signal, and whose cancel() asks Asio to cancel instead of failing at once.
//
// Who touches what:
//   signal_             the initiation connects the operation's slot to it (before anything can cancel: the
//                       deferred is not returned yet); emit() runs on the I/O executor.
//   cancel_requested_   set by cancel_here() (any thread), read by the completion (I/O executor).
//   completed_          set by the completion, read by emit() (both on the I/O executor, possibly on different
//                       threads of a multi-threaded io_context): an emit after completion is skipped, since the
//                       operation's cancellation handler may then refer to freed operation data.
template <class T, class IoExecutor>
class operation_state final : public detail::state<T> {
 public:
  template <class E>
  operation_state(E&& io_executor, std::source_location loc)
      : detail::state<T>(detail::state_base::kind::driven, loc), io_executor_(std::forward<E>(io_executor)) {}
  explicit operation_state(std::source_location loc) : detail::state<T>(detail::state_base::kind::driven, loc) {}

  asio::cancellation_slot slot() noexcept { return signal_.slot(); }

  // The initiation returned (it did not throw): from now on a handler destroyed unrun fails the deferred.
  void mark_started() noexcept { started_.store(true, std::memory_order_release); }
  bool started() const noexcept { return started_.load(std::memory_order_acquire); }

  // The operation completed with `ec` (and, on success, `args`). Runs on the operation's executor.
  template <class... A>
  void complete_with_code(const std::error_code& ec, A&&... args) noexcept {
    // release: an emit that reads `completed_` (acquire) skips the signal.
    completed_.store(true, std::memory_order_release);
    if (!ec) {
      deliver_value(std::forward<A>(args)...);
      return;
    }
    // acquire pairs with cancel_here's release: a cancel() that reached Asio is seen here.
    if (ec == asio::error::operation_aborted && cancel_requested_.load(std::memory_order_acquire)) {
      this->fire_failure(std::make_exception_ptr(cancelled_error()));
    } else {
      fire_error(ec);
    }
  }
  template <class... A>
  void complete_with_exception(std::exception_ptr ep, A&&... args) noexcept {
    completed_.store(true, std::memory_order_release);
    if (ep) {
      this->fire_failure(std::move(ep));
    } else {
      deliver_value(std::forward<A>(args)...);
    }
  }
  template <class... A>
  void complete_with_value(A&&... args) noexcept {
    completed_.store(true, std::memory_order_release);
    deliver_value(std::forward<A>(args)...);
  }

  // Asio destroyed the operation without completing it.
  void abandon() noexcept {
    std::exception_ptr why;
    try {
      why = std::make_exception_ptr(
          executor_stopped_error("anydefer: the Asio operation was destroyed before it completed"));
    } catch (...) {
      why = std::current_exception();
    }
    this->fire_failure(std::move(why));  // no-op if cancel_here() already failed it
  }

 protected:
  // cancel() reached this state (it is unfired and waits on nothing): ask Asio to cancel the operation.
  void cancel_here() noexcept override {
    // acq_rel: only the first cancel() posts; release publishes the request to the completion.
    if (cancel_requested_.exchange(true, std::memory_order_acq_rel)) return;
    if constexpr (std::is_void_v<IoExecutor>) {
      // No executor to emit on: fail now, drop the operation's result when it comes.
      this->fail_internal(std::make_exception_ptr(cancelled_error()));
    } else {
      try {
        // The posted emit holds a reference so the signal outlives it.
        asio::post(io_executor_, [self = detail::state_ref<T>(this)]() noexcept {
          static_cast<operation_state*>(self.get())->emit();
        });
      } catch (...) {
        this->fail_internal(std::current_exception());
      }
    }
  }

 private:
  struct no_executor {};
  using io_executor_t = std::conditional_t<std::is_void_v<IoExecutor>, no_executor, IoExecutor>;

  void emit() noexcept {
    if (completed_.load(std::memory_order_acquire)) return;
    signal_.emit(asio::cancellation_type::terminal);
  }

  // Fires with the operation's values: none (void), one, or several packed into T (a tuple).
  template <class... A>
  void deliver_value(A&&... args) noexcept {
    if constexpr (sizeof...(A) <= 1) {
      this->fire_value(std::forward<A>(args)...);
    } else {
      this->fire_value(T(std::forward<A>(args)...));
    }
  }
  void fire_error(const std::error_code& ec) noexcept {
    std::exception_ptr why;
    try {
      why = std::make_exception_ptr(std::system_error(ec));
    } catch (...) {
      why = std::current_exception();
    }
    this->fire_failure(std::move(why));
  }

  [[no_unique_address]] io_executor_t io_executor_;
  asio::cancellation_signal signal_;
  std::atomic<bool> cancel_requested_{false};
  std::atomic<bool> completed_{false};
  std::atomic<bool> started_{false};
};

enum class error_kind { code, exception, none };

// The completion handler handed to the operation (wrapped in a cancellation_slot_binder). Holds a reference on
// the state; if Asio destroys it without calling it, the deferred fails.
template <class T, class State, error_kind Kind>
class completion_handler {
 public:
  explicit completion_handler(State* s) noexcept : ref_(s) {}
  completion_handler(completion_handler&&) noexcept = default;
  completion_handler(const completion_handler&) = delete;
  completion_handler& operator=(const completion_handler&) = delete;
  completion_handler& operator=(completion_handler&&) = delete;
  ~completion_handler() {
    if (auto* s = state(); s != nullptr && s->started()) s->abandon();
  }

  template <class... A>
  void operator()(A&&... args) {
    detail::state_ref<T> ref = std::move(ref_);  // called once: from now on the destructor does nothing
    auto* s = static_cast<State*>(ref.get());
    if constexpr (Kind == error_kind::code) {
      s->complete_with_code(std::forward<A>(args)...);
    } else if constexpr (Kind == error_kind::exception) {
      s->complete_with_exception(std::forward<A>(args)...);
    } else {
      s->complete_with_value(std::forward<A>(args)...);
    }
  }

 private:
  State* state() const noexcept { return static_cast<State*>(ref_.get()); }

  detail::state_ref<T> ref_;
};

template <class T, error_kind Kind>
struct use_deferred_result {
  using return_type = deferred<T>;

  template <class Initiation, class... InitArgs>
  static return_type initiate(Initiation&& init, use_deferred_t, InitArgs&&... args) {
    using io_executor_t = typename initiation_executor<std::decay_t<Initiation>>::type;
    using state_t = operation_state<T, io_executor_t>;
    const auto loc = std::source_location::current();
    state_t* s;
    if constexpr (std::is_void_v<io_executor_t>) {
      s = new state_t(loc);
    } else {
      s = new state_t(init.get_executor(), loc);
    }
    deferred<T> d = detail::access::adopt<T>(static_cast<detail::state<T>*>(s));
    std::forward<Initiation>(init)(asio::bind_cancellation_slot(s->slot(), completion_handler<T, state_t, Kind>(s)),
                                   std::forward<InitArgs>(args)...);
    s->mark_started();
    return d;
  }
};

}  // namespace asio_detail
}  // namespace anydefer

// The specializations Asio looks up for anydefer::use_deferred, by completion signature.
template <class... Args>
class asio::async_result<anydefer::use_deferred_t, void(std::error_code, Args...)>
    : public anydefer::asio_detail::use_deferred_result<anydefer::asio_detail::value_of_t<Args...>,
                                                        anydefer::asio_detail::error_kind::code> {};

template <class... Args>
class asio::async_result<anydefer::use_deferred_t, void(const std::error_code&, Args...)>
    : public anydefer::asio_detail::use_deferred_result<anydefer::asio_detail::value_of_t<Args...>,
                                                        anydefer::asio_detail::error_kind::code> {};

template <class... Args>
class asio::async_result<anydefer::use_deferred_t, void(std::exception_ptr, Args...)>
    : public anydefer::asio_detail::use_deferred_result<anydefer::asio_detail::value_of_t<Args...>,
                                                        anydefer::asio_detail::error_kind::exception> {};

template <class... Args>
class asio::async_result<anydefer::use_deferred_t, void(Args...)>
    : public anydefer::asio_detail::use_deferred_result<anydefer::asio_detail::value_of_t<Args...>,
                                                        anydefer::asio_detail::error_kind::none> {};
