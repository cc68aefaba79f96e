// anydefer/detail/link.hpp: the state of a deferred made by add_callback() and friends.
//
// A link is its upstream's continuation. When the upstream has a result, the link runs its handler on it (inline,
// or as a task on an executor), and then either has its own result or waits on the deferred the handler
// returned (Twisted's "a callback returning a deferred pauses the chain"). Either way it hands the next step back
// to the drive loop instead of calling it, so chains of any length run in constant stack.
#pragma once

#include <functional>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "anydefer/detail/state.hpp"

namespace anydefer::detail {

template <class R>
struct unwrap_deferred {
  using type = R;
  static constexpr bool is_deferred = false;
};
template <class U>
struct unwrap_deferred<deferred<U>> {
  using type = U;
  static constexpr bool is_deferred = true;
};

// What a handler produced: a result now, or a deferred to wait on.
template <class U>
using outcome = std::variant<result<U>, deferred<U>>;

// Calls `f(args...)` and turns whatever happens (a value, void, a deferred, a throw) into an outcome<U>.
template <class U, class F, class... A>
outcome<U> invoke_to_outcome(F& f, A&&... args) noexcept {
  using R = std::invoke_result_t<F&, A...>;
  try {
    if constexpr (unwrap_deferred<R>::is_deferred) {
      return outcome<U>(std::in_place_index<1>, std::invoke(f, std::forward<A>(args)...));
    } else if constexpr (std::is_void_v<R>) {
      std::invoke(f, std::forward<A>(args)...);
      return outcome<U>(std::in_place_index<0>);
    } else {
      return outcome<U>(std::in_place_index<0>, std::invoke(f, std::forward<A>(args)...));
    }
  } catch (...) {
    return outcome<U>(std::in_place_index<0>, failure(std::current_exception()));
  }
}

template <class T, class F>
struct invoke_with_value {
  using type = std::invoke_result_t<F&, T&&>;
};
template <class F>
struct invoke_with_value<void, F> {
  using type = std::invoke_result_t<F&>;
};

// The direct path of a handler that returns a plain value (not a deferred): it reads the upstream's result in
// place and writes its own into the link's state, with no result<T> or outcome<U> in between. `direct` says
// whether a handler has it; the others go through operator() and an outcome. Each produce() is forced inline: a
// link calls it from two places (run_handler(), run_attached_to_fired()), where GCC would otherwise call it.
template <class R>
inline constexpr bool returns_plain_value = !unwrap_deferred<std::remove_cvref_t<R>>::is_deferred;

// Stores f(args...)'s value, or the exception it threw, into `out`.
template <class U, class F, class... A>
void invoke_into(state<U>& out, F& f, A&&... args) noexcept {
  try {
    if constexpr (std::is_void_v<std::invoke_result_t<F&, A...>>) {
      std::invoke(f, std::forward<A>(args)...);
      out.store_value();
    } else {
      out.store_value(std::invoke(f, std::forward<A>(args)...));
    }
  } catch (...) {
    out.store_failure(std::current_exception());
  }
}

// Passes the upstream's value on unchanged.
template <class T>
void pass_value(state<T>& out, state<T>& up) noexcept {
  if constexpr (std::is_void_v<T>) {
    out.store_value();
  } else {
    out.store_value(up.take_stored());
  }
}

// The upstream's value as a handler gets it: in place (an rvalue reference into `up`), or, for a link that holds
// no reference on `up` (link::run_detached()), moved into a temporary first, which lives until the handler
// returns whatever the handler does to the handles on `up`.
template <bool Detached, class T>
[[gnu::always_inline]] inline decltype(auto) value_for_handler(state<T>& up) noexcept {
  if constexpr (Detached) {
    return typename state<T>::stored_value(up.take_stored());
  } else {
    return up.take_stored();
  }
}

// add_callback(f): f gets the value; a failure passes through untouched.
template <class T, class U, class F>
struct value_handler {
  [[no_unique_address]] F on_value;
  static constexpr bool direct = returns_plain_value<typename invoke_with_value<T, F>::type>;
  outcome<U> operator()(result<T>&& r) noexcept {
    if (r.has_failure()) return outcome<U>(std::in_place_index<0>, r.error());
    if constexpr (std::is_void_v<T>) {
      return invoke_to_outcome<U>(on_value);
    } else {
      return invoke_to_outcome<U>(on_value, std::move(r).value());
    }
  }
  // `up` is null for a submitted task, which starts from nothing. `Detached`: see value_for_handler().
  template <bool Detached = false>
  [[gnu::always_inline]] void produce(state<U>& out, state<T>* up) noexcept {
    if (up != nullptr && up->holds_failure()) {
      out.store_failure(up->take_error());
    } else if constexpr (std::is_void_v<T>) {
      invoke_into(out, on_value);
    } else {
      invoke_into(out, on_value, value_for_handler<Detached>(*up));
    }
  }

  // The direct path of a callable that returns deferred<U> (chains_directly): reads the upstream's result in
  // place, and either stores the outcome in `out` (a failure passed through, or what the callable threw; returns
  // true) or leaves the deferred the callable returned in `inner` (returns false), with no outcome<U> in between.
  static constexpr bool chains_directly =
      std::is_same_v<std::remove_cvref_t<typename invoke_with_value<T, F>::type>, deferred<U>>;
  bool produce_or_chain(state<U>& out, state<T>* up, deferred<U>& inner) noexcept {
    if (up != nullptr && up->holds_failure()) {
      out.store_failure(up->take_error());
      return true;
    }
    try {
      if constexpr (std::is_void_v<T>) {
        inner = std::invoke(on_value);
      } else {
        inner = std::invoke(on_value, up->take_stored());
      }
      return false;
    } catch (...) {
      out.store_failure(std::current_exception());
      return true;
    }
  }
};

// Whether a handler has the direct path for a callable that returns a deferred (only add_callback's has).
template <class Handler>
constexpr bool chains_directly() noexcept {
  if constexpr (requires { Handler::chains_directly; }) {
    return Handler::chains_directly;
  } else {
    return false;
  }
}

// add_errback(g): g gets the failure and may recover; a value passes through untouched.
template <class T, class G>
struct failure_handler {
  [[no_unique_address]] G on_failure;
  static constexpr bool direct = returns_plain_value<std::invoke_result_t<G&, failure>>;
  outcome<T> operator()(result<T>&& r) noexcept {
    if (r.has_failure()) return invoke_to_outcome<T>(on_failure, failure(r.error()));
    return outcome<T>(std::in_place_index<0>, std::move(r));
  }
  template <bool Detached = false>  // the same either way: only a failure reaches the callable, as a failure object
  [[gnu::always_inline]] void produce(state<T>& out, state<T>* up) noexcept {
    if (up->holds_failure()) {
      invoke_into(out, on_failure, failure(up->take_error()));
    } else {
      pass_value(out, *up);
    }
  }
};

// add_callbacks(f, g): exactly one of them runs.
template <class T, class U, class F, class G>
struct value_or_failure_handler {
  [[no_unique_address]] F on_value;
  [[no_unique_address]] G on_failure;
  static constexpr bool direct = returns_plain_value<typename invoke_with_value<T, F>::type> &&
                                 returns_plain_value<std::invoke_result_t<G&, failure>>;
  outcome<U> operator()(result<T>&& r) noexcept {
    if (r.has_failure()) return invoke_to_outcome<U>(on_failure, failure(r.error()));
    if constexpr (std::is_void_v<T>) {
      return invoke_to_outcome<U>(on_value);
    } else {
      return invoke_to_outcome<U>(on_value, std::move(r).value());
    }
  }
  template <bool Detached = false>
  [[gnu::always_inline]] void produce(state<U>& out, state<T>* up) noexcept {
    if (up->holds_failure()) {
      invoke_into(out, on_failure, failure(up->take_error()));
    } else if constexpr (std::is_void_v<T>) {
      invoke_into(out, on_value);
    } else {
      invoke_into(out, on_value, value_for_handler<Detached>(*up));
    }
  }
};

// add_both(f): f gets the result<T>, value or failure.
template <class T, class U, class F>
struct result_handler {
  [[no_unique_address]] F on_result;
  static constexpr bool direct = returns_plain_value<std::invoke_result_t<F&, result<T>&&>>;
  outcome<U> operator()(result<T>&& r) noexcept { return invoke_to_outcome<U>(on_result, std::move(r)); }
  template <bool Detached = false>  // the same either way: the callable gets a result<T> of its own
  [[gnu::always_inline]] void produce(state<U>& out, state<T>* up) noexcept {
    invoke_into(out, on_result, up->take_result());
  }
};

// Set while a task of ours is being handed to an executor, so that an executor that runs or rejects it inline
// (before execute() returns) does not recurse: the task notes it here and the caller carries on after execute()
// in its own loop. Thread-local, so a run or reject on another thread never matches.
struct inline_schedule_note {
  const task* scheduling = nullptr;
  enum : unsigned char { none, ran, rejected } what = none;
  std::exception_ptr* rejection = nullptr;  // where an inline reject leaves its error
};
inline constinit thread_local inline_schedule_note this_thread_schedule_note{};

enum class settled_inline : unsigned char { no, ran, rejected };

// Hands `t` to `ex`. If the executor ran or rejected it before execute() returned, says which (the rejection's
// error is in `rejection`) and the caller does that work itself; otherwise the executor will, later. An executor
// that queued it through try_execute() (queueing_executor) settled nothing inline: no note is needed.
inline settled_inline execute_noting_inline(executor_ref ex, task& t, std::exception_ptr& rejection) noexcept {
  if (ex.try_execute(t)) return settled_inline::no;
  inline_schedule_note& note = this_thread_schedule_note;
  const inline_schedule_note saved = note;
  note = {&t, inline_schedule_note::none, &rejection};
  ex.execute(t);
  const auto what = note.what;
  note = saved;
  if (what == inline_schedule_note::ran) return settled_inline::ran;
  if (what == inline_schedule_note::rejected) return settled_inline::rejected;
  return settled_inline::no;
}

// In a task's run/reject: true if `t` is being handed over right now on this thread, in which case the run (or
// the rejection, with its error) is noted for execute_noting_inline() and the task must return at once.
inline bool noted_inline_run(const task& t) noexcept {
  if (this_thread_schedule_note.scheduling != &t) return false;
  this_thread_schedule_note.what = inline_schedule_note::ran;
  return true;
}
inline bool noted_inline_reject(const task& t, std::exception_ptr& why) noexcept {
  if (this_thread_schedule_note.scheduling != &t) return false;
  this_thread_schedule_note.what = inline_schedule_note::rejected;
  *this_thread_schedule_note.rejection = std::move(why);
  return true;
}

// A link's callable, destroyed as soon as it has run (Twisted drops a callback from its list before running it):
// whatever it captured, such as a handle to the deferred it returns, must not outlive the call, or a chain whose
// producer is gone could never be detected as broken. A stateless callable (empty, and trivially destroyed: nothing
// happens when it goes) costs nothing and needs no dropping. The handlers hold their callables
// [[no_unique_address]], so that a handler around a captureless lambda is empty too: 4 instructions fewer per link
// in B1 and B2 than an engaged flag to test and clear.
template <class H, bool Stateless = (std::is_empty_v<H> && std::is_trivially_destructible_v<H>)>
class droppable {
 public:
  template <class A>
    requires(!std::is_same_v<std::remove_cvref_t<A>, droppable>)
  // NOLINTNEXTLINE(bugprone-forwarding-reference-overload): the constraint above (clang-tidy 14 reads enable_if only)
  explicit droppable(A&& a) : h_(std::forward<A>(a)) {}
  H& get() noexcept { return h_; }
  void drop() noexcept {}

 private:
  [[no_unique_address]] H h_;
};
template <class H>
class droppable<H, false> {
 public:
  template <class A>
    requires(!std::is_same_v<std::remove_cvref_t<A>, droppable>)
  // NOLINTNEXTLINE(bugprone-forwarding-reference-overload): as above
  explicit droppable(A&& a) : h_(std::in_place, std::forward<A>(a)) {}
  H& get() noexcept { return *h_; }
  void drop() noexcept { h_.reset(); }

 private:
  std::optional<H> h_;
};

// The task node of a link that runs on an executor; empty for inline links.
template <bool Scheduled>
struct link_task {};
template <>
struct link_task<true> : task {
  link_task(const task::operations* ops, executor_ref ex) noexcept : task(ops), executor(ex) {
#ifndef NDEBUG
    executor.track_bound_links(1);
    bound = true;
#endif
  }
  ~link_task() { unbind(); }
  link_task(const link_task&) = delete;
  link_task& operator=(const link_task&) = delete;

  // The executor has run or rejected our task (or never will be asked): stop counting on it.
  void unbind() noexcept {
    if (bound) {
      bound = false;
      executor.track_bound_links(-1);
    }
  }

  executor_ref executor;
  bool bound = false;
};

// Whether a scheduled link may take its upstream's result into itself when it is queued (stage_input()): only if
// the move cannot throw, since on_ready() could not fail the link with what it threw. A T whose move may throw is
// read in place on the executor's thread, where the handler's path catches it.
template <class T>
inline constexpr bool stages_input = std::is_void_v<T> || std::is_nothrow_move_constructible_v<T>;

// `Staged`: a scheduled link with an upstream takes the upstream's result into itself before its task is queued
// (stage_input()); submit()'s, which starts from nothing, does not carry the room for it.
template <class T, class U, class Handler, bool Scheduled, bool Staged = (Scheduled && stages_input<T>)>
class link final : public state<U>, public link_task<Scheduled> {
 public:
  // `upstream` may be null only for T = void: a submitted task that starts from nothing (see also detached_tag).
  template <class H>
  link(state<T>* upstream, H&& handler, std::source_location created_at) noexcept requires(!Scheduled)
      : state<U>(state_base::kind::driven, created_at, state_base::driver::from_start),
        upstream_(upstream),
        handler_(std::forward<H>(handler)) {
    init(upstream);
  }
  // A link that will run at once on a result add_*() consumed for it (run_detached()), or, if that consume loses a
  // race, be given its upstream (hold_upstream()) and attached as usual.
  struct detached_tag {};
  template <class H>
  link(detached_tag, H&& handler, std::source_location created_at) noexcept requires(!Scheduled)
      : state<U>(state_base::kind::driven, created_at, state_base::driver::from_start),
        upstream_(nullptr),
        handler_(std::forward<H>(handler)) {}
  template <class H>
  link(state<T>* upstream, executor_ref ex, H&& handler, std::source_location created_at) noexcept requires(Scheduled)
      : state<U>(state_base::kind::driven, created_at, state_base::driver::from_start),
        link_task<true>(&task_operations, ex),
        upstream_(upstream),
        handler_(std::forward<H>(handler)) {
    init(upstream);
  }

  step on_ready(state_base& from) noexcept override {
    // relaxed: a cancel() that still reads the old pointer cancels a state that already fired, a no-op; the walk
    // then cancels this link itself (see state_base::cancel).
    awaited_.store(nullptr, std::memory_order_relaxed);
    if (&from == inner_) return finish_with_result_of(*inner_);
    if constexpr (Scheduled) {
      if constexpr (Staged) stage_input();
      return schedule();
    } else {
      return run_handler();
    }
  }

  // Runs a link that found its upstream's result there when it was attached (ready_now) while its one handle is
  // still with the caller of add_*(): nobody else can reach it yet, so a handler that returns a plain value
  // publishes with a plain store, and the link lets go of its upstream at once (it will never read it again).
  // That release is a counted one: the handler may have copied, dropped or moved away the caller's handle on the
  // upstream, so what this thread saw of the count before it ran no longer holds. Others take the general path.
  step run_attached_to_fired() noexcept {
    if constexpr (!Scheduled && Handler::direct) {
      awaited_.store(nullptr, std::memory_order_relaxed);
      handler_.get().produce(*this, upstream_);
      handler_.drop();
      this->publish_unshared();
      state_base::release(std::exchange(upstream_, nullptr));
      return {};
    } else {
      return on_ready(*upstream_);
    }
  }

  // Whether add_*() may run this link detached: inline, a handler with the direct path, and a value whose move
  // cannot throw and which is small enough to move onto the stack (it is moved out of the upstream before the
  // handler runs: value_for_handler()). A large value is read in place by the general path.
  static constexpr bool runs_detached =
      !Scheduled && Handler::direct && stages_input<T> && sizeof(typename state<T>::stored_value) <= 256;

  // Runs a link on the result of `up`, which add_*() found published and consumed for it (consume_ready()), before
  // the link's one handle leaves add_*(). The link takes no reference on `up`: it reads it only here, while the
  // caller's handle keeps it alive, and moves the value out before the handler runs (which may drop that handle).
  // Nobody else can reach the link yet, so it publishes with a plain store. Compared with attaching it, this saves
  // the reference's two count updates, a locked one among them whenever `up` has another owner.
  void run_detached(state<T>& up) noexcept requires(runs_detached) {
    handler_.get().template produce<true>(*this, &up);
    handler_.drop();
    this->publish_unshared();
  }

  // A detached link whose consume lost a race: it takes its upstream, to be attached as usual.
  void hold_upstream(state<T>& up) noexcept requires(runs_detached) {
    upstream_ = &up;
    init(&up);
  }

  // Undoes a link that could not be attached (its upstream already had a consumer): its driver leaves before
  // anyone but the caller's handle saw it, and that handle then frees it.
  void discard_unstarted() noexcept { this->end_driving_unshared(); }

  // Starts a link that has no upstream (submit()).
  step start() noexcept {
    if constexpr (Scheduled) {
      return schedule();
    } else {
      return run_handler();
    }
  }

 protected:
  state_base* awaited() const noexcept override { return awaited_.load(std::memory_order_acquire); }
  void dispose(state_base*& dead) noexcept override {
    state_base* const upstream = upstream_;
    state_base* const inner = inner_;
    delete this;
    state_base::release_into(upstream, dead);
    state_base::release_into(inner, dead);
  }

 private:
  void init(state<T>* upstream) noexcept {
    // The handle the caller gets; the link keeps itself alive until it publishes its result with `driving` (set
    // by the constructor).
    awaited_.store(upstream, std::memory_order_relaxed);
    if (upstream != nullptr) upstream->add_ref();
  }

  // A scheduled link takes its upstream's result into itself on the thread that published it, before handing its
  // task to the executor: the executor's thread then reads the link alone, not the upstream, which was written on
  // the publishing thread (a cache line fewer to fetch across cores on each hop: B7). Only for a T whose move
  // cannot throw (stages_input).
  void stage_input() noexcept requires(Staged) { staged_.emplace(upstream_->take_result()); }
  void drop_staged() noexcept {
    if constexpr (Staged) staged_.reset();
  }

  step run_handler() noexcept {
    // A link cancelled while its upstream's result was on its way (or queued on an executor) already failed with
    // cancelled_error: the upstream's result is dropped unseen and the handler does not run.
    if (this->is_claimed()) {
      drop_staged();
      return finish_discarded();
    }
    if constexpr (Staged) {
      if (staged_.has_value()) return run_handler_on_staged();
    }
    if constexpr (Handler::direct) {
      handler_.get().produce(*this, upstream_);
      handler_.drop();
      return publish_own_result();
    } else if constexpr (chains_directly<Handler>()) {
      deferred<U> inner = access::adopt<U>(nullptr);  // empty: a default deferred<U> would be a new one
      const bool produced = handler_.get().produce_or_chain(*this, upstream_, inner);
      handler_.drop();
      if (produced) return publish_own_result();
      return wait_on(std::move(inner));
    }
    outcome<U> out = [&] {
      if constexpr (std::is_void_v<T>) {
        if (upstream_ == nullptr) return handler_.get()(result<void>());
      }
      return handler_.get()(upstream_->take_result());
    }();
    handler_.drop();
    if (out.index() == 1) return wait_on(std::get<1>(std::move(out)));
    return finish(std::get<0>(std::move(out)));
  }

  // run_handler() for a scheduled link with an upstream, from the result stage_input() took.
  step run_handler_on_staged() noexcept requires(Staged) {
    outcome<U> out = handler_.get()(*std::move(staged_));
    staged_.reset();
    handler_.drop();
    if (out.index() == 1) return wait_on(std::get<1>(std::move(out)));
    return finish(std::get<0>(std::move(out)));
  }

  // The handler returned a deferred: this link now waits on it (Twisted's implicit chaining). Forced inline: GCC
  // otherwise calls it (4 instructions per fib call in B5's callbacks form).
  [[gnu::always_inline]] step wait_on(deferred<U> inner) noexcept {
    state<U>* x = access::state_of(inner);
    if (x == nullptr) return finish(failure::of(empty_deferred_error()));
    if (x == this) {
      return finish(failure::of(std::logic_error("anydefer: a callback returned the deferred it feeds")));
    }
    // A deferred the callback made and finished itself (a coroutine that ran to its end, succeed()), held by
    // nothing but `inner`: take its result now, with plain stores, and let `inner` free it on return.
    if (x->consume_if_sole_and_ready()) return finish_with_result_of(*x);
    x->add_ref();
    inner_ = x;
    // Published before attaching: once attached, another thread may fire x and run this link to its end (even
    // free it) before try_attach returns, so nothing here may touch `this` after a successful attach. release:
    // a cancel() that acquires the pointer sees the reference taken above.
    awaited_.store(x, std::memory_order_release);
    switch (x->try_attach(this)) {
      case state_base::attach_result::attached:
        return {};  // `inner` goes out of scope here; if it was the last handle, x fails as broken and resumes us
      case state_base::attach_result::ready_now:
        awaited_.store(nullptr, std::memory_order_relaxed);
        return finish_with_result_of(*x);
      case state_base::attach_result::already_continued:
        break;
    }
    awaited_.store(nullptr, std::memory_order_relaxed);
    return finish(failure::of(already_continued_error()));
  }

  step finish(result<U>&& r) noexcept {
    this->store_result(std::move(r));
    return publish_own_result();
  }

  // Takes the result of `inner` (whose one consumer this link is, after `ready` was acquired) as its own.
  step finish_with_result_of(state<U>& inner) noexcept {
    if (inner.holds_failure()) {
      this->store_failure(inner.take_error());
    } else {
      pass_value(*this, inner);
    }
    if (&inner == inner_) return publish_letting_go_of_inner();
    return publish_own_result();
  }

  // Publishes the result taken from inner_, the deferred the handler returned, and lets go of the reference on it
  // now rather than when this link is freed (a loop of callbacks returning deferreds frees each iteration as it
  // goes), unless a cancel() walk passed through this link and may be looking at inner_: the publishing RMW tells
  // (publish_written_unless_walked(), and "Lifetime" in state.hpp). inner_ is emptied before that RMW, since the
  // link may be freed as soon as it has published, and put back if it must stay: the link still drives itself
  // then, so nothing else reads or frees it meanwhile.
  step publish_letting_go_of_inner() noexcept {
    ANYDEFER_ASSERT(inner_->is_ready() && "a link lets go only of a deferred whose result it took");
    state<U>* const inner = std::exchange(inner_, nullptr);
    continuation* next = nullptr;
    if (this->publish_written_unless_walked(next)) {
      state_base::release(inner);
      return {next, next != nullptr ? this : nullptr};  // as in publish_own_result()
    }
    inner_ = inner;  // dispose() lets go
    return publish_own_result();
  }

  // The result is written (finish(), or a handler's direct path) before the claim: the link is the only writer
  // of its result (a cancel() that wins the claim fails it with a flag instead, see
  // state_base::cancel_driven()), so one RMW both claims and publishes.
  // Forced inline: the end of every link, which GCC may otherwise call.
  [[gnu::always_inline]] step publish_own_result() noexcept {
    continuation* next = nullptr;
    if (!this->publish_written(next)) {
      this->discard_result();
      return finish_discarded();
    }
    // The driver has left (the state may be gone); if there is a consumer, its reference keeps us alive while it
    // reads.
    return {next, next != nullptr ? this : nullptr};
  }

  step finish_discarded() noexcept {
    this->end_driving();
    return {};
  }

  step schedule() noexcept requires(Scheduled) {
    std::exception_ptr rejection;
    const settled_inline settled = execute_noting_inline(this->executor, *this, rejection);
    if (settled != settled_inline::no) this->unbind();  // settled inline: the executor is done with us
    if (settled == settled_inline::ran) return run_handler();
    if (settled == settled_inline::rejected) {
      drop_staged();
      return finish(failure(std::move(rejection)));
    }
    return {};  // the executor will run or reject us later, elsewhere
  }

  static link& from_task(task& t) noexcept { return static_cast<link&>(static_cast<link_task<true>&>(t)); }

  static void run_task(task& t) noexcept {
    if (noted_inline_run(t)) return;
    link& self = from_task(t);
    self.unbind();
    run_continuations(self.run_handler());
  }
  static void reject_task(task& t, std::exception_ptr why) noexcept {
    if (!why) why = std::make_exception_ptr(executor_stopped_error());
    if (noted_inline_reject(t, why)) return;
    link& self = from_task(t);
    self.unbind();
    self.drop_staged();
    run_continuations(self.finish(failure(std::move(why))));
  }
  static constexpr task::operations task_operations{&run_task, &reject_task};

  struct no_staging {};

  state<T>* upstream_;
  state<U>* inner_ = nullptr;
  std::atomic<state_base*> awaited_{nullptr};
  [[no_unique_address]] droppable<Handler> handler_;
  // The upstream's result, between stage_input() and the run.
  [[no_unique_address]] std::conditional_t<Staged, std::optional<result<T>>, no_staging> staged_;
};

}  // namespace anydefer::detail
