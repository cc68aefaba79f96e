// anydefer/deferred.hpp: deferred<T>, a typed, thread-safe asynchronous result with Twisted's Deferred semantics.
//
//   anydefer::deferred<int> d;                       // unfired; the producer keeps a copy to fire it
//   d.add_callback([](int v) { return v * 2; })      // runs when d fires, on the firing thread
//    .add_callback([](int v) -> std::string { if (v > 10) throw std::out_of_range("big"); return "ok"; })
//    .add_errback([](anydefer::failure f) { f.trap<std::out_of_range>(); return std::string("recovered"); })
//    .add_callback([](const std::string& s) { std::puts(s.c_str()); });
//   d.callback(21);                                  // prints "recovered"
//
// The rules of a chain (Twisted's):
//   - Each add_* returns the next deferred, typed by what its function returns. A function returning deferred<U>
//     pauses the chain until that deferred fires; its value or failure then flows on.
//   - An exception thrown by a callback switches to the error path; an errback that returns a value recovers, one
//     that throws (or lets trap() rethrow) keeps the error path.
//   - A deferred has one consumer: a second add_* (or get() after one) throws already_continued_error. Fan out
//     explicitly with split(n).
//   - A link added after the deferred fired runs at once, on the calling thread. Otherwise a function runs on the
//     thread that fires, or on the executor given to add_*.
//   - A function that takes its argument by reference may use it only until it returns (a link added after the
//     fire may hand it a temporary).
//   - Firing twice throws already_called_error and keeps the first result. A failure that reaches the end of a
//     chain and is never consumed goes to the unhandled-error handler when the last handle goes.
//   - An unfired deferred whose every handle was dropped while something waits on it fails with
//     broken_deferred_error: its producer is gone.
//
// Thread-safety: any thread may fire, cancel or continue a deferred while others do; exactly one side runs each
// function, exactly once. A single handle object is not itself synchronized, not even its const members (unlike
// std::shared_ptr): give each thread its own copy. A handle that is its state's only owner uses no locked
// instruction, which is what that rule buys.
//
// Memory ordering: everything the firing thread did before callback()/errback() is visible to the functions of
// the chain that run as a result, on whatever thread, and to a thread that returns from wait()/get(). Everything
// a thread did before add_*() is visible to the function it adds.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <source_location>
#include <type_traits>
#include <utility>
#include <vector>

#include "anydefer/detail/link.hpp"
#include "anydefer/detail/state.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/failure.hpp"
#include "anydefer/unhandled_error.hpp"

namespace anydefer {

template <class T>
class deferred;

namespace detail {
template <class T, class Canceller>
class cancellable_root_state;  // defined after deferred<T>, which its canceller takes

template <class T>
inline constexpr bool is_deferred_v = unwrap_deferred<std::remove_cvref_t<T>>::is_deferred;
template <class R>
using unwrap_deferred_t = typename unwrap_deferred<std::remove_cvref_t<R>>::type;

template <class T>
class driven_state final : public state<T> {
 public:
  explicit driven_state(std::source_location created_at) noexcept : state<T>(state_base::kind::driven, created_at) {}
};
// A reference on a state (not a handle: it does not keep an unfired root from being detected as abandoned), for
// the library's own bookkeeping: cancelling inputs, timers.
template <class T>
class state_ref {
 public:
  state_ref() = default;
  explicit state_ref(state<T>* s) noexcept : s_(s) {
    if (s_ != nullptr) s_->add_ref();
  }
  state_ref(state_ref&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  state_ref(const state_ref&) = delete;
  state_ref& operator=(const state_ref&) = delete;
  state_ref& operator=(state_ref&& o) noexcept {
    state_ref(std::move(o)).swap(*this);
    return *this;
  }
  ~state_ref() {
    if (s_ != nullptr) state_base::release(s_);
  }
  void swap(state_ref& o) noexcept { std::swap(s_, o.s_); }
  state<T>* get() const noexcept { return s_; }

 private:
  state<T>* s_ = nullptr;
};

template <class T>
state_ref<T> state_ref_of(const deferred<T>& d) noexcept {
  return state_ref<T>(access::state_of(d));
}

}  // namespace detail

template <class T>
class deferred {
  template <class F>
  using callback_value_t = detail::unwrap_deferred_t<typename detail::invoke_with_value<T, std::decay_t<F>>::type>;

 public:
  using value_type = T;

  // A new, unfired deferred (Twisted's `Deferred()`). Allocates its state once.
  deferred(std::source_location created_at = std::source_location::current())  // NOLINT
      : state_(new detail::root_state<T>(created_at)) {}

  // A new, unfired deferred with a canceller (Twisted's `Deferred(canceller)`): `cancel()` on it calls
  // `canceller(d)` once; the canceller may fire `d`; if it does not, `d` fails with cancelled_error; if it
  // throws, `d` fails with what it threw. The canceller lives as long as the deferred's state: it must not hold a
  // handle to the deferred it cancels (it is given one).
  template <class Canceller>
    requires(std::invocable<Canceller&, deferred<T>&> && !std::same_as<std::decay_t<Canceller>, deferred<T>>)
  explicit deferred(Canceller canceller, std::source_location created_at = std::source_location::current())
      : state_(new detail::cancellable_root_state<T, Canceller>(std::move(canceller), created_at)) {}

  deferred(const deferred& other) noexcept : state_(other.state_) {
    if (state_ != nullptr) state_->add_handle();
  }
  deferred(deferred&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  deferred& operator=(deferred other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~deferred() {
    if (state_ != nullptr) state_->drop_handle();
  }

  // --- firing (only a deferred made by its constructor; others throw not_fireable_error) ------------------

  // Fires with `value`. Throws already_called_error if it already fired (the first result is kept), except that
  // the first fire after a cancel() without canceller is silently swallowed. Thread-safe.
  // already_called_error names where the deferred was created and, in builds without NDEBUG, where it first
  // fired (Twisted's debug mode).
  template <class V = T>
    requires(!std::is_void_v<V>)
  void callback(std::type_identity_t<V> value, std::source_location loc = std::source_location::current()) const {
    detail::state<T>& s = fireable();
    if (!s.fire_value_noting(site_to_note(loc), std::move(value))) s.on_late_fire();
  }
  void callback(std::source_location loc = std::source_location::current()) const requires std::is_void_v<T> {
    detail::state<T>& s = fireable();
    if (!s.fire_value_noting(site_to_note(loc))) s.on_late_fire();
  }

  // Fires with a failure. An empty exception_ptr is std::invalid_argument (thrown by failure's constructor).
  void errback(const failure& error, std::source_location loc = std::source_location::current()) const {
    detail::state<T>& s = fireable();
    if (!s.fire_failure_noting(site_to_note(loc), error.exception())) s.on_late_fire();
  }
  template <class E>
    requires std::derived_from<std::decay_t<E>, std::exception>
  void errback(E&& error, std::source_location loc = std::source_location::current()) const {
    errback(failure::of(std::forward<E>(error)), loc);
  }

  // Cancels (Twisted's model): an unfired deferred calls its canceller, or fails with cancelled_error; one that
  // waits on another deferred (its upstream, or one its callback returned) cancels that one instead; a fired one
  // is left alone. cancel() is a request: racing with a fire on another thread, either may win.
  void cancel() const { checked().cancel(); }

  // --- chaining: each returns the next deferred -------------------------------------------------------------
  // f: T -> U or T -> deferred<U> (no argument for void). Allocates the next state once; never allocates to run
  // `f` on an executor (the task node lives in that state).
  template <class F>
  auto add_callback(F&& f, std::source_location loc = std::source_location::current()) const {
    using U = callback_value_t<F>;
    return chain<U, false>(detail::value_handler<T, U, std::decay_t<F>>{std::forward<F>(f)}, loc, nullptr);
  }
  template <class F>
  auto add_callback(executor_ref ex, F&& f, std::source_location loc = std::source_location::current()) const {
    using U = callback_value_t<F>;
    return chain<U, true>(detail::value_handler<T, U, std::decay_t<F>>{std::forward<F>(f)}, loc, &ex);
  }

  // g: failure -> T or deferred<T>. Returning recovers; throwing keeps the error path.
  template <class G>
  deferred<T> add_errback(G&& g, std::source_location loc = std::source_location::current()) const {
    check_errback<G>();
    return chain<T, false>(detail::failure_handler<T, std::decay_t<G>>{std::forward<G>(g)}, loc, nullptr);
  }
  template <class G>
  deferred<T> add_errback(executor_ref ex, G&& g, std::source_location loc = std::source_location::current()) const {
    check_errback<G>();
    return chain<T, true>(detail::failure_handler<T, std::decay_t<G>>{std::forward<G>(g)}, loc, &ex);
  }

  // f on a value, g on a failure; exactly one runs. Both produce U (or deferred<U>).
  template <class F, class G>
  auto add_callbacks(F&& f, G&& g, std::source_location loc = std::source_location::current()) const {
    using U = callback_value_t<F>;
    check_same_outcome<U, G>();
    return chain<U, false>(detail::value_or_failure_handler<T, U, std::decay_t<F>, std::decay_t<G>>{std::forward<F>(f),
                                                                                                    std::forward<G>(g)},
                           loc, nullptr);
  }
  template <class F, class G>
  auto add_callbacks(executor_ref ex, F&& f, G&& g, std::source_location loc = std::source_location::current()) const {
    using U = callback_value_t<F>;
    check_same_outcome<U, G>();
    return chain<U, true>(detail::value_or_failure_handler<T, U, std::decay_t<F>, std::decay_t<G>>{std::forward<F>(f),
                                                                                                   std::forward<G>(g)},
                          loc, &ex);
  }

  // f: result<T> -> U or deferred<U>, on a value or a failure alike.
  template <class F>
  auto add_both(F&& f, std::source_location loc = std::source_location::current()) const {
    using U = detail::unwrap_deferred_t<std::invoke_result_t<std::decay_t<F>&, result<T>&&>>;
    return chain<U, false>(detail::result_handler<T, U, std::decay_t<F>>{std::forward<F>(f)}, loc, nullptr);
  }
  template <class F>
  auto add_both(executor_ref ex, F&& f, std::source_location loc = std::source_location::current()) const {
    using U = detail::unwrap_deferred_t<std::invoke_result_t<std::decay_t<F>&, result<T>&&>>;
    return chain<U, true>(detail::result_handler<T, U, std::decay_t<F>>{std::forward<F>(f)}, loc, &ex);
  }

  // Explicit fan-out: consumes this deferred and returns `n` deferreds that each fire with a copy of its result
  // (the last one gets the moved original). Cancelling one of them fails only that one.
  std::vector<deferred<T>> split(std::size_t n, std::source_location loc = std::source_location::current()) const
      requires(std::is_void_v<T> || std::copy_constructible<T>) {
    std::vector<deferred<T>> outs;
    outs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) outs.push_back(detail::access::adopt(new detail::driven_state<T>(loc)));
    add_both(
        [outs](result<T>&& r) mutable {
          for (std::size_t i = 0; i < outs.size(); ++i) {
            detail::state<T>* s = detail::access::state_of(outs[i]);
            bool last = i + 1 == outs.size();
            if (r.has_failure()) {
              s->fire_failure(r.error().exception());
            } else if constexpr (std::is_void_v<T>) {
              s->fire_value();
            } else {
              if (last) {
                s->fire_value(std::move(r).value());
              } else {
                s->fire_value(r.value());
              }
            }
          }
        },
        loc);
    return outs;
  }

  // --- synchronous access ---------------------------------------------------------------------------------
  // Blocks until fired. On a thread whose executor forbids blocking (a reactor's) throws would_block_error; on a
  // pool worker, runs other pool work while it waits (bounded). Does not consume the result.
  void wait() const { checked().wait_ready(nullptr); }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    return wait_until(std::chrono::steady_clock::now() + timeout);
  }
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) const {
    auto steady_deadline = std::chrono::steady_clock::now() +
                           std::chrono::duration_cast<std::chrono::steady_clock::duration>(deadline - Clock::now());
    return checked().wait_ready(&steady_deadline);
  }

  // Waits, then takes the value or rethrows the failure. Consumes the result: the deferred must have no other
  // consumer (already_continued_error), and the failure counts as handled.
  T get() const {
    detail::state<T>& s = checked();
    s.wait_ready(nullptr);
    s.consume_for_get();
    return s.take_value();
  }

  // True once the result is there (it may since have been consumed).
  bool fired() const { return checked().is_ready(); }
  // False for a moved-from handle.
  bool valid() const noexcept { return state_ != nullptr; }

 private:
  friend struct detail::access;
  deferred(detail::access::adopt_tag, detail::state<T>* s) noexcept : state_(s) {}

  detail::state<T>& checked() const {
    if (state_ == nullptr) throw empty_deferred_error();
    return *state_;
  }
  detail::state<T>& fireable() const {
    detail::state<T>& s = checked();
    if (s.state_kind() != detail::state_base::kind::root) throw not_fireable_error();
    return s;
  }
  // Where callback()/errback() note that a root first fired: builds without NDEBUG only. A fire that lost is
  // swallowed after a cancel without canceller, else already_called_error (on_late_fire()).
  static const std::source_location* site_to_note([[maybe_unused]] const std::source_location& loc) noexcept {
#ifdef NDEBUG
    return nullptr;
#else
    return &loc;
#endif
  }

  // An errback's return recovers the chain to a T: it returns T, deferred<T>, or a plain value convertible to T
  // (a string literal for a deferred<std::string>).
  template <class R, class U>
  static constexpr bool converts_plainly =  // a pointer ("error") never recovers a bool chain
      !detail::is_deferred_v<R> && !std::is_void_v<U> && std::is_convertible_v<R, U> &&
      !(std::is_pointer_v<std::decay_t<R>> && std::is_same_v<U, bool>);
  template <class R, class U>
  static constexpr bool recovers_to = std::is_same_v<detail::unwrap_deferred_t<R>, U> || converts_plainly<R, U>;

  template <class G>
  static void check_errback() {
    using R = std::invoke_result_t<std::decay_t<G>&, failure>;
    static_assert(recovers_to<R, T>,
                  "an errback returns T, deferred<T> or a value convertible to T: the value the chain recovers to");
  }
  template <class U, class G>
  static void check_same_outcome() {
    using R = std::invoke_result_t<std::decay_t<G>&, failure>;
    static_assert(recovers_to<R, U>,
                  "add_callbacks: the errback must produce the callback's type (or a value convertible to it)");
  }

  template <class U, bool Scheduled, class Handler>
  deferred<U> chain(Handler&& handler, std::source_location loc, const executor_ref* ex) const {
    detail::state<T>& up = checked();
    // Fail early, before allocating; try_attach decides for real.
    const auto outlook = up.outlook_for_consumer();
    if (outlook == detail::state_base::outlook::continued) throw already_continued_error();
    // Read before the link takes its reference: if this handle is the only owner, nobody else can touch `up`
    // until we return the next handle, and attaching needs no locked instruction (unless a driver still runs
    // `up`: attach_as_sole_owner() checks).
    const bool sole = up.sole_handle_counted();
    using link_t = detail::link<T, U, std::decay_t<Handler>, Scheduled>;
    link_t* l;
    if constexpr (link_t::runs_detached) {
      if (outlook == detail::state_base::outlook::fired) {
        // Already fired: the link runs now, on the result consumed for it, and holds no reference on `up`.
        // Allocated before the consume, so that a bad_alloc leaves `up` as it was.
        l = new link_t(typename link_t::detached_tag{}, std::forward<Handler>(handler), loc);
        deferred<U> next = detail::access::adopt<U>(l);
        if (up.consume_ready(sole)) {
          l->run_detached(up);
          return next;
        }
        l->hold_upstream(up);  // a race (or a driver still waking a waiter): the general path says what happened
        return attach(up, l, sole, std::move(next));
      }
    }
    if constexpr (Scheduled) {
      l = new link_t(&up, *ex, std::forward<Handler>(handler), loc);
    } else {
      l = new link_t(&up, std::forward<Handler>(handler), loc);
    }
    return attach(up, l, sole, detail::access::adopt<U>(l));
  }

  // Makes the new link `l` (whose handle is `next`) the consumer of `up` and runs it if `up` has fired. Forced
  // inline: every add_*() before its deferred fires ends here (B1 pays 31 instructions for the call otherwise).
  template <class U, class Link>
  [[gnu::always_inline]] static deferred<U> attach(detail::state<T>& up, Link* l, bool sole, deferred<U> next) {
    switch (sole ? up.attach_as_sole_owner(l) : up.try_attach(l)) {
      case detail::state_base::attach_result::attached:
        break;
      case detail::state_base::attach_result::ready_now:
        detail::run_continuations(l->run_attached_to_fired());
        break;
      case detail::state_base::attach_result::already_continued:
        l->discard_unstarted();
        throw already_continued_error();
    }
    return next;
  }

  detail::state<T>* state_;
};

// An already-fired deferred (Twisted's succeed()). Firing it again throws already_called_error.
template <class T>
deferred<std::decay_t<T>> succeed(T&& value, std::source_location loc = std::source_location::current()) {
  auto* s = new detail::root_state<std::decay_t<T>>(loc);
  s->prefire_value(std::forward<T>(value));
  return detail::access::adopt<std::decay_t<T>>(s);
}
inline deferred<void> succeed(std::source_location loc = std::source_location::current()) {
  auto* s = new detail::root_state<void>(loc);
  s->prefire_value();
  return detail::access::adopt<void>(s);
}

// An already-failed deferred (Twisted's fail()).
template <class T>
deferred<T> fail(const failure& error, std::source_location loc = std::source_location::current()) {
  auto* s = new detail::root_state<T>(loc);
  s->prefire_failure(error.exception());
  return detail::access::adopt<T>(s);
}
// The same with an exception object: fail<int>(std::runtime_error("x")), as d.errback(std::runtime_error("x")).
template <class T, class E>
  requires(std::derived_from<std::decay_t<E>, std::exception>)
deferred<T> fail(E&& error, std::source_location loc = std::source_location::current()) {
  return fail<T>(failure::of(std::forward<E>(error)), loc);
}

// Calls f(args...) now: a returned deferred is returned as is, a value becomes succeed(value), a throw becomes
// fail(...) (Twisted's maybeDeferred).
template <class F, class... A>
auto maybe_deferred(F&& f, A&&... args) -> deferred<detail::unwrap_deferred_t<std::invoke_result_t<F, A...>>> {
  using R = std::invoke_result_t<F, A...>;
  using U = detail::unwrap_deferred_t<R>;
  try {
    if constexpr (detail::is_deferred_v<R>) {
      return std::invoke(std::forward<F>(f), std::forward<A>(args)...);
    } else if constexpr (std::is_void_v<R>) {
      std::invoke(std::forward<F>(f), std::forward<A>(args)...);
      return succeed();
    } else {
      return succeed<U>(std::invoke(std::forward<F>(f), std::forward<A>(args)...));
    }
  } catch (...) {
    return fail<U>(failure::current());
  }
}

// Runs f() on `ex` and returns a deferred of its outcome (a value, a failure, or what a returned deferred gives).
// One allocation: the deferred's state is also the task handed to the executor. If `ex` rejects the task, the
// deferred fails with the executor's error.
template <class F>
auto submit(executor_ref ex, F&& f, std::source_location loc = std::source_location::current()) {
  using U = detail::unwrap_deferred_t<std::invoke_result_t<std::decay_t<F>&>>;
  using link_t = detail::link<void, U, detail::value_handler<void, U, std::decay_t<F>>, true, false>;
  auto* l = new link_t(nullptr, ex, detail::value_handler<void, U, std::decay_t<F>>{std::forward<F>(f)}, loc);
  deferred<U> out = detail::access::adopt<U>(l);
  detail::run_continuations(l->start());
  return out;
}

namespace detail {

// A deferred<T>{canceller}: defined here, where deferred<T> is complete, since its canceller is handed one.
template <class T, class Canceller>
class cancellable_root_state final : public root_state<T> {
 public:
  cancellable_root_state(Canceller c, std::source_location created_at)
      : root_state<T>(created_at), canceller_(std::move(c)) {}

 protected:
  bool run_canceller() noexcept override;

 private:
  Canceller canceller_;
};

template <class T, class Canceller>
bool cancellable_root_state<T, Canceller>::run_canceller() noexcept {
  // A canceller reached through a consumer may race with the producer dropping the last handle; the deferred is
  // then being failed as broken and there is nothing left to cancel.
  if (!this->try_add_handle()) {
    this->fail_internal(std::make_exception_ptr(cancelled_error()));  // a no-op once it is failed as broken
    return true;
  }
  // The canceller's handle outlives the settling below: if the canceller dropped every other handle (a lock
  // removing its waiter from its queue), letting this one go first would fail the deferred as broken.
  deferred<T> self = access::adopt<T>(this);
  try {
    std::invoke(canceller_, self);
  } catch (...) {
    // Twisted leaves the deferred unfired here (its issue #9534); anydefer fails it with the canceller's error
    // so nothing hangs. A canceller that fired the deferred and then threw: the fired result stands, and the
    // exception, which nobody else would ever see, goes to the unhandled-error handler.
    std::exception_ptr thrown = std::current_exception();
    if (!this->fail_internal(thrown)) report_unhandled(failure(std::move(thrown)), this->created_at());
    return true;
  }
  this->fail_internal(std::make_exception_ptr(cancelled_error()));  // a no-op if the canceller fired it
  return true;
}

}  // namespace detail
}  // namespace anydefer
