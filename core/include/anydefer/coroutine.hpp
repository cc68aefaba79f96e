// anydefer/coroutine.hpp: deferred generators, C++20 coroutines that co_await deferreds and return one.
//
//   anydefer::deferred<int> some_function() {
//     int a = 1;
//     int b = co_await deferred_returning_function(a);            // suspends until it fires; no thread blocks
//     int c = co_await another_deferred_returning_function(a, b);  // a failure is thrown right here
//     co_return c;
//   }
//
// The rules (Twisted's ensureDeferred / inlineCallbacks, typed):
//   - The coroutine starts at once and runs until it awaits a deferred that has not fired (a child started by
//     fork() starts once its caller's continuation is offered, a moment later, on the same thread).
//   - `co_await d` gives d's value or throws its failure's exception at that point; it consumes d (a deferred
//     has one consumer). Awaiting a fired deferred does not suspend.
//   - It resumes on the thread that fires d. `co_await anydefer::resume_on(ex)` hops to executor `ex` (no
//     allocation); if `ex` rejects the hop, that co_await throws the executor's error.
//   - A value returned, or an exception escaping, settles the coroutine's deferred; nothing reaches
//     std::terminate.
//   - cancel() on the coroutine's deferred cancels the deferred it is awaiting. The coroutine sees the result of
//     that cancellation (usually cancelled_error) at its co_await, and may catch it; whatever it then returns or
//     throws settles its deferred. If it is not awaiting anything when cancel() is called (it is running), the
//     next deferred it awaits is cancelled as soon as it suspends on it.
//   - Dropping every handle to the coroutine's deferred neither cancels nor destroys a suspended coroutine: like a
//     chain, it runs to completion when what it awaits fires, and its failure, if any, is reported as unhandled.
//     The frame is freed exactly once, when the coroutine has finished and no handle or consumer remains.
//   - Nested resumptions on one thread (a coroutine that fires what another awaits, which fires what a third
//     awaits, ...) are queued and run one after the other by the outermost one, so the stack stays constant. A
//     fire from inside a resumed coroutine therefore returns before the coroutine it wakes runs.
//   - Any awaitable can be awaited inside (the promise's await_transform passes every awaitable through, noting
//     only that a foreign one may hand the coroutine to another thread), and a deferred can be awaited from any
//     coroutine type.
//
// Budget: one allocation per call (the frame, which also holds the deferred's state).
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <tuple>
#include <type_traits>
#include <utility>

#include "anydefer/deferred.hpp"

namespace anydefer {
namespace detail {

// A coroutine waiting to be resumed by the per-thread trampoline.
struct queued_resume {
  std::coroutine_handle<> handle;
  queued_resume* next = nullptr;
};

// Resumes coroutines one after the other on this thread instead of inside each other.
struct resume_trampoline {
  queued_resume* head = nullptr;
  queued_resume* tail = nullptr;
  bool draining = false;
};
inline constinit thread_local resume_trampoline this_thread_resumes{};

// Resumes `node->handle` now, or, if this thread is already resuming a coroutine further up its stack, queues it
// for that outer loop. `node` must stay valid until resumed (it lives in the suspended coroutine's frame).
inline void resume_via_trampoline(queued_resume* node) noexcept {
  resume_trampoline& t = this_thread_resumes;
  if (t.draining) {
    node->next = nullptr;
    (t.tail != nullptr ? t.tail->next : t.head) = node;
    t.tail = node;
    return;
  }
  t.draining = true;
  node->handle.resume();
  while (t.head != nullptr) {
    queued_resume* n = t.head;
    t.head = n->next;
    if (t.head == nullptr) t.tail = nullptr;
    n->handle.resume();  // may queue more
  }
  t.draining = false;
}

template <class T>
class coroutine_promise_base;
template <class T>
class coroutine_promise;

// Whether a deferred coroutine's handle may have reached another thread. Until the coroutine first truly
// suspends, its deferred is still inside the call that created it: nobody can consume, wait on or cancel it, so
// it completes without a locked instruction. Written and read only along the coroutine's own execution (each
// resumption happens after the suspension that preceded it), so a plain bool.
struct escape_mark {
  bool escaped = false;
};

// The base of anydefer's awaitables whose awaiters mark the awaiting coroutine escaped themselves, only when
// they really suspend (await_transform lets them through untouched).
struct notes_own_suspension {};

// fork() asks the next deferred coroutine created on this thread to start suspended and to name itself here.
struct fork_request {
  std::coroutine_handle<> child;
  state_base* child_state = nullptr;
};
inline constinit thread_local fork_request* this_thread_fork_request = nullptr;

// Set while fork() runs its child on this thread: if the child reaches its end right there, it parks at its
// final suspension without publishing, and fork() publishes it, with plain stores when nobody else took the
// caller's continuation. Thread-local, so a child resumed later on any thread (after fork() returned) completes
// as usual.
struct inline_fork_run {
  const state_base* child = nullptr;
  bool parked = false;
};
inline constinit thread_local inline_fork_run this_thread_inline_fork{};

// What a deferred coroutine's promise knows about the deferred it is suspended on, for cancel().
//
// The hazard: cancel() on another thread reads "the deferred being awaited" just as that deferred fires, the
// coroutine resumes and its awaiter drops the last reference. So cancel() never reads the pointer bare: it
// *borrows* it through one word, a split reference count (Williams' lock-free stack):
//
//   bits 48..63  borrowers   cancel() calls currently using `awaited`
//   bits 4..47   awaited     the state the coroutine is suspended on (16-byte aligned), or null
//   bit 0        pending     cancel() arrived while the coroutine awaited nothing: cancel its next await
//
//   begin(s)  owner, before attaching:  exchange(s); if `pending` was set, cancel s
//   end()     owner, when s fired:      exchange(0); if n borrowers were counted, add a reference to s and n to
//                                       s->borrow_balance_; whoever brings the balance to 0 drops that reference
//   borrow    cancel():                 CAS borrowers+1 while awaited is non-null, else CAS pending in
//   give back cancel(), done with s:    CAS borrowers-1 if awaited is still s, else borrow_balance_-1
//
// The owner's end() runs while its awaiter still holds its own reference to s, so s is alive whichever of the
// two decrements comes first. No side ever waits for the other.
class awaiting_slot {
  static constexpr std::uint64_t pending = 1;
  static constexpr std::uint64_t borrower = std::uint64_t{1} << 48;
  static constexpr std::uint64_t pointer_mask = borrower - 16;

  static_assert(sizeof(void*) == 8, "user-space pointers fit in 48 bits on the 64-bit targets anydefer supports");

  static state_base* pointer_of(std::uint64_t w) noexcept {
    return reinterpret_cast<state_base*>(w & pointer_mask);  // NOLINT(performance-no-int-to-ptr)
  }

 public:
  // The coroutine is about to suspend on `s`. acq_rel: release publishes s to borrowers (its fields were built
  // before); acquire sees the pending flag's setter's writes.
  void begin(state_base* s) noexcept {
    ANYDEFER_ASSERT((reinterpret_cast<std::uintptr_t>(s) & ~pointer_mask) == 0 &&
                    "awaiting_slot: a state's address must fit in 48 bits and be 16-byte aligned");
    std::uint64_t w = word_.exchange(reinterpret_cast<std::uintptr_t>(s), std::memory_order_acq_rel);
    if ((w & pending) != 0) s->cancel();
  }

  // The awaited state fired (or was never attached): stop lending it.
  void end() noexcept {
    std::uint64_t w = word_.exchange(0, std::memory_order_acq_rel);
    std::int32_t borrowers = static_cast<std::int32_t>(w >> 48);
    if (borrowers == 0) return;
    state_base* s = pointer_of(w);
    // For the borrowers still out; our awaiter's own reference keeps s alive meanwhile. Always a locked add: the
    // borrowers hold no reference of their own, so the count alone cannot tell that they are there.
    s->add_ref_racing_borrowers();
    if (s->borrow_balance_.fetch_add(borrowers, std::memory_order_acq_rel) + borrowers == 0) state_base::release(s);
  }

  // cancel() on the coroutine's deferred.
  void cancel_awaited() noexcept {
    std::uint64_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      if (pointer_of(w) == nullptr) {
        // Not suspended on anything: the next begin() cancels what it awaits.
        if (word_.compare_exchange_weak(w, w | pending, std::memory_order_acq_rel, std::memory_order_acquire)) return;
        continue;
      }
      ANYDEFER_ASSERT((w >> 48) < 0xFFFF && "awaiting_slot: borrower count overflows its 16 bits");
      if (word_.compare_exchange_weak(w, w + borrower, std::memory_order_acq_rel, std::memory_order_acquire)) break;
    }
    state_base* s = pointer_of(w);
    s->cancel();
    give_back(s);
  }

 private:
  void give_back(state_base* s) noexcept {
    std::uint64_t w = word_.load(std::memory_order_acquire);
    while (pointer_of(w) == s) {
      if (word_.compare_exchange_weak(w, w - borrower, std::memory_order_acq_rel, std::memory_order_acquire)) return;
    }
    // The await ended while we held s: our share moved to s's balance.
    if (s->borrow_balance_.fetch_sub(1, std::memory_order_acq_rel) - 1 == 0) state_base::release(s);
  }

  std::atomic<std::uint64_t> word_{0};
};

// Awaits a deferred<U>: from a deferred coroutine or from any other coroutine type.
//
// The common case, a deferred that has already fired, touches two fields: the state and the flags. What a real
// suspension needs (the continuation node the awaited state runs, the slot lent to cancel(), the resume node) is
// written only by await_suspend: the awaiter is not itself a continuation, so the fired path writes no vtable
// pointer (a polymorphic awaiter wrote one when made and again when destroyed).
template <class U>
class deferred_awaiter {
  static constexpr std::uint8_t owns_handle = 1;        // took over the awaited rvalue's handle
  static constexpr std::uint8_t holds_ref = 2;          // holds a reference instead (while suspended on it)
  static constexpr std::uint8_t attached = 4;           // the result is ours to take (a consumer was attached)
  static constexpr std::uint8_t already_continued = 8;  // another consumer had it: await_resume throws
  static constexpr std::uint8_t consumed_alone = 16;    // with owns_handle: await_ready() consumed it as the sole
                                                        // owner, so the destructor frees it unchecked

 public:
  // The state stays alive through a handle for as long as the awaiter reads it: the awaited lvalue's (the
  // coroutine holds it across the suspension), or the one the awaiter took over from an rvalue (`owns_handle`).
  // An owned handle is given up once attached, so that a producer dropping every handle of its own is still
  // detected (broken_deferred_error); a reference replaces it then.
  deferred_awaiter(state<U>* s, bool take_handle) noexcept
      : state_(s), flags_(take_handle && s != nullptr ? owns_handle : 0) {}
  deferred_awaiter(const deferred_awaiter&) = delete;
  deferred_awaiter& operator=(const deferred_awaiter&) = delete;
  // The fired path (await_ready, await_resume, the destructor) is forced inline: a recursive coroutine is too
  // large for GCC to inline these otherwise, and the calls cost as much as the work.
  [[gnu::always_inline]] ~deferred_awaiter() {
    if ((flags_ & (owns_handle | holds_ref)) == 0) return;
    ANYDEFER_ASSERT((flags_ & (owns_handle | holds_ref)) != (owns_handle | holds_ref));
    // One of the three: await_suspend() trades owns_handle for holds_ref, and consumed_alone is set only by
    // await_ready() consuming (then await_suspend() never runs).
    if ((flags_ & consumed_alone) != 0) {
      destroy_consumed_alone(state_);
    } else if ((flags_ & owns_handle) != 0) {
      state_->drop_handle();
    } else {
      state_base::release(state_);
    }
  }

  // A fired deferred is not suspended on. The common case (this handle alone, the result untouched) is consumed
  // here, while the state's words are at hand; any other fired one in await_resume.
  [[gnu::always_inline]] bool await_ready() noexcept {
    if (state_ == nullptr) return true;  // await_resume throws
    // A copy, so that the compiler need not read flags_ again after the state's word was written.
    const std::uint8_t flags = flags_;
    switch (state_->consume_if_fired_and_sole()) {
      case state_base::readiness::consumed_now:
        // Nobody else can reach the state now: if the handle is ours, nothing changes until we free it.
        flags_ = static_cast<std::uint8_t>(flags | attached | ((flags & owns_handle) != 0 ? consumed_alone : 0));
        return true;
      case state_base::readiness::ready:
        return true;
      case state_base::readiness::not_ready:
        break;
    }
    return false;
  }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    ::new (static_cast<void*>(&resume_)) queued_resume{h, nullptr};
    ::new (static_cast<void*>(&node_)) ready_node(*this);
    slot_ = nullptr;
    if (state_->is_continued()) {
      flags_ |= already_continued;
      return false;
    }
    state<U>* const s = state_;
    // The owned handle becomes a reference before s is lent to cancel() below: borrowers hold no reference of
    // their own, so from then on only locked count updates are safe.
    const bool drop_handle = (flags_ & owns_handle) != 0;
    if (drop_handle) {
      s->add_ref();  // replaces the handle given up below, for await_resume and the destructor
      flags_ = static_cast<std::uint8_t>((flags_ & ~owns_handle) | holds_ref);
    }
    // Lend the awaited state to cancel() *before* attaching: once attached, another thread may fire it and
    // resume the coroutine before this function returns, so nothing here may run after a successful attach.
    // For the same reason the coroutine counts as escaped before the attach (undone if it does not suspend).
    bool escaped_before = true;
    if constexpr (std::is_base_of_v<awaiting_slot, P>) {
      slot_ = &h.promise();
      slot_->begin(state_);
    }
    if constexpr (std::is_base_of_v<escape_mark, P>) escaped_before = std::exchange(h.promise().escaped, true);
    const state_base::attach_result attach = s->try_attach(&node_);
    if (attach == state_base::attach_result::attached) [[likely]] {
      // Only locals from here: the handle keeps s alive until this drop; if it was the last one, s fails as
      // broken and may resume the coroutine right here, which is allowed while it is suspended.
      if (drop_handle) s->drop_handle();
      return true;
    }
    return undo_suspension(h, attach, drop_handle, escaped_before);
  }

  [[gnu::always_inline]] U await_resume() {
    if ((flags_ & (attached | already_continued)) != attached) take_over_result();
    return state_->take_value();
  }

 private:
  // Frees a state that await_ready() consumed as its sole owner: a coroutine's frame at once (its promise holds
  // nothing more to let go of), any other state through its dispose().
  [[gnu::always_inline]] static void destroy_consumed_alone(state<U>* s) noexcept {
    if (s->state_kind() == state_base::kind::coroutine) {
      state_base::assert_consumed_by_sole_owner(s);
      const auto frame = static_cast<coroutine_promise_base<U>&>(*s).frame();
      ANYDEFER_ASSERT(frame.done() && "a coroutine's result is there only once it reached its final suspension");
      frame.destroy();
    } else {
      state_base::destroy_consumed_by_sole_owner(s);
    }
  }

  // await_suspend() found the result there after all (or another consumer): the coroutine goes on without
  // suspending. Out of line, to keep the suspending path small enough to be inlined.
  template <class P>
  [[gnu::noinline]] bool undo_suspension(std::coroutine_handle<P> h, state_base::attach_result attach, bool drop_handle,
                                         bool escaped_before) noexcept {
    flags_ |= attach == state_base::attach_result::ready_now ? attached : already_continued;  // ready_now: consumed
    if constexpr (std::is_base_of_v<escape_mark, P>) h.promise().escaped = escaped_before;
    if (slot_ != nullptr) slot_->end();
    if (drop_handle) {  // keep the handle after all
      flags_ = static_cast<std::uint8_t>((flags_ & ~holds_ref) | owns_handle);
      state_base::release(state_);
    }
    return false;
  }

  // await_resume() when the result is not ours yet: consumes a fired deferred that await_ready() left alone, or
  // throws for an empty deferred or one that another consumer had.
  [[gnu::noinline]] void take_over_result() {
    if ((flags_ & already_continued) != 0) throw already_continued_error();
    if (state_ == nullptr) throw empty_deferred_error();
    state_->consume_for_get();
  }

  // What the awaited state runs once it has a result (see continuation).
  // NOLINTNEXTLINE(cppcoreguidelines-virtual-class-destructor): final, and a continuation is never owned as such
  class ready_node final : public continuation {
   public:
    explicit ready_node(deferred_awaiter& awaiter) noexcept : awaiter_(awaiter) {}
    step on_ready(state_base&) noexcept override {
      awaiter_.flags_ |= attached;
      if (awaiter_.slot_ != nullptr) awaiter_.slot_->end();
      resume_via_trampoline(&awaiter_.resume_);
      return {};
    }

   private:
    deferred_awaiter& awaiter_;
  };

  state<U>* state_;
  std::uint8_t flags_;
  // Made by await_suspend, read only after it: left uninitialised on the fired path.
  awaiting_slot* slot_;
  union {
    queued_resume resume_;  // trivially destructible: the union needs no destructor
  };
  union {
    ready_node node_;  // trivially destructible too
  };
};

template <class T>
class coroutine_promise_base : public state<T>, public awaiting_slot, public escape_mark {
 public:
  // The handle get_return_object() gives out; the running coroutine keeps its state alive until it finishes with
  // `driving`.
  coroutine_promise_base() noexcept
      : state<T>(state_base::kind::coroutine, std::source_location::current(), state_base::driver::from_start) {}

  deferred<T> get_return_object() noexcept { return access::adopt<T>(static_cast<state<T>*>(this)); }

  // Starts at once, unless fork() asked this thread's next coroutine to wait until the caller's continuation is
  // offered to other threads (see fork()).
  struct start_awaiter {
    bool await_ready() const noexcept { return this_thread_fork_request == nullptr; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) noexcept {
      fork_request* request = std::exchange(this_thread_fork_request, nullptr);
      request->child = h;
      request->child_state = &h.promise();
      h.promise().escaped = true;  // its handle goes to the caller of fork() and on to whoever resumes the caller
    }
    void await_resume() const noexcept {}
  };
  start_awaiter initial_suspend() const noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) noexcept {
      coroutine_promise_base& self = h.promise();
      // A child of fork() counts as escaped from its start, so the common unescaped case need not look further.
      if (!self.escaped) {
        self.publish_unescaped();
        return;
      }
      if (this_thread_inline_fork.child == &self) {  // fork() is running us on this thread: it publishes
        this_thread_inline_fork.parked = true;
        return;
      }
      self.complete_unclaimable();  // may free the frame: nothing after this touches it
    }
    void await_resume() const noexcept {}
  };
  final_awaiter final_suspend() const noexcept { return {}; }

  void unhandled_exception() noexcept { this->store_failure(std::current_exception()); }

  // Every co_await passes through unchanged. anydefer's own awaiters note a real suspension themselves; any other
  // awaitable may hand the coroutine to another thread, so the coroutine counts as escaped.
  // (Not const: the generic overload below must not win on the object argument's qualification.)
  template <class U>
  const deferred<U>& await_transform(const deferred<U>& d) noexcept {
    return d;
  }
  template <class U>
  deferred<U>& await_transform(deferred<U>& d) noexcept {
    return d;
  }
  template <class U>
  deferred<U>&& await_transform(deferred<U>&& d) noexcept {
    return std::move(d);
  }
  template <class A>
    requires(std::is_base_of_v<notes_own_suspension, std::remove_cvref_t<A>>)
  A && await_transform(A&& a)
  noexcept { return std::forward<A>(a); }
  template <class A>
    requires(!std::is_base_of_v<notes_own_suspension, std::remove_cvref_t<A>>)
  A && await_transform(A&& a)
  noexcept {
    escaped = true;
    return std::forward<A>(a);
  }

  // Publishes the result stored by co_return / unhandled_exception of a coroutine that never escaped: it never
  // suspended, so its handle is still in the call that creates it (get_return_object()'s, not yet returned) and
  // nobody could copy it, attach to it, wait on it or cancel it (publish_unshared() asserts so). Plain stores.
  // An escaped one publishes with complete_unclaimable(): nothing else claims a coroutine's state (it is not
  // fired by hand and cancel() only forwards), so claim and publish are one RMW.
  void publish_unescaped() noexcept {
    ANYDEFER_ASSERT(!escaped);
    this->publish_unshared();
  }

  // The coroutine this promise belongs to (the promise is a coroutine_promise<T>, which is final).
  std::coroutine_handle<coroutine_promise<T>> frame() noexcept {
    return std::coroutine_handle<coroutine_promise<T>>::from_promise(static_cast<coroutine_promise<T>&>(*this));
  }

 protected:
  // Never hands out the awaited state bare (see awaiting_slot): cancel() ends here and borrows it.
  state_base* awaited() const noexcept override { return nullptr; }
  void cancel_here() noexcept override { cancel_awaited(); }
  void dispose(state_base*&) noexcept override { frame().destroy(); }
};

template <class T>
class coroutine_promise final : public coroutine_promise_base<T> {
 public:
  template <class V>
    requires std::convertible_to<V&&, T>
  void return_value(V&& value) noexcept(std::is_nothrow_constructible_v<T, V&&>) {
    this->store_value(std::forward<V>(value));
  }
};

template <>
class coroutine_promise<void> final : public coroutine_promise_base<void> {
 public:
  void return_void() noexcept { this->store_value(); }
};

// co_await resume_on(ex): continues the coroutine on `ex`. The task node lives in the awaiter, in the frame.
class resume_on_awaiter final : public task {
 public:
  explicit resume_on_awaiter(executor_ref ex) noexcept : task(&operations_), executor_(ex) {}

  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    resume_.handle = h;
    // The executor may resume the coroutine on another thread before execute() returns: escaped first.
    bool escaped_before = true;
    if constexpr (std::is_base_of_v<escape_mark, P>) escaped_before = std::exchange(h.promise().escaped, true);
    // Ran or rejected before execute() returned: carry on here without suspending (no recursion).
    if (execute_noting_inline(executor_, *this, rejection_) == settled_inline::no) return true;
    if constexpr (std::is_base_of_v<escape_mark, P>) h.promise().escaped = escaped_before;
    return false;
  }
  void await_resume() const {
    if (rejection_) std::rethrow_exception(rejection_);
  }

 private:
  static void run(task& t) noexcept {
    if (noted_inline_run(t)) return;
    resume_via_trampoline(&static_cast<resume_on_awaiter&>(t).resume_);
  }
  static void reject(task& t, std::exception_ptr why) noexcept {
    if (!why) why = std::make_exception_ptr(executor_stopped_error());
    if (noted_inline_reject(t, why)) return;
    auto& self = static_cast<resume_on_awaiter&>(t);
    self.rejection_ = std::move(why);
    resume_via_trampoline(&self.resume_);
  }
  static constexpr task::operations operations_{&run, &reject};

  executor_ref executor_;
  queued_resume resume_;
  std::exception_ptr rejection_;
};

// What resume_on() returns: its awaiter is made in the coroutine frame by operator co_await (an awaiter is a task
// whose address is queued, so it is never copied or moved).
struct resume_on_awaitable : notes_own_suspension {
  executor_ref executor;
  resume_on_awaiter operator co_await() const noexcept { return resume_on_awaiter(executor); }
};

// co_await fork(ex, f, args...): see fork() below. The task node is the awaiter, in the parent's frame; running it
// resumes the parent.
template <class Executor, class U, class F, class... A>
class fork_awaiter final : public task {
 public:
  fork_awaiter(Executor& ex, F&& f, std::tuple<A&&...>&& args) noexcept
      : task(&operations_), executor_(ex), f_(std::forward<F>(f)), args_(std::move(args)) {}
  fork_awaiter(const fork_awaiter&) = delete;
  fork_awaiter& operator=(const fork_awaiter&) = delete;

  bool await_ready() const noexcept { return false; }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> parent) noexcept {
    parent_ = parent;
    if constexpr (std::is_base_of_v<escape_mark, P>) {
      mark_escaped_ = &mark_escaped<P>;
    } else {
      mark_escaped_ = nullptr;
    }
    // 1. Create the child, suspended at its start if it is a deferred coroutine (the first one created here).
    fork_request request;
    fork_request* const outer_request = std::exchange(this_thread_fork_request, &request);
    // Made in child_'s place, not move-assigned: the empty deferred there has nothing to let go of.
    try {
      std::construct_at(&child_, std::apply(static_cast<F&&>(f_), std::move(args_)));
    } catch (...) {
      std::construct_at(&child_, fail<U>(failure::current()));
    }
    this_thread_fork_request = outer_request;
    // f made no deferred coroutine (it ran to its end already): nothing is left to run beside the parent, which
    // goes on here. (A coroutine f made but did not return still has to run: it is held at its start.)
    if (request.child_state == nullptr) return false;
    state_base* const child = request.child_state;
    const std::coroutine_handle<> child_handle = request.child;
    const bool child_is_returned = child == access::state_of(child_);
    Executor& ex = executor_;
    // 2. Offer the parent's continuation to the executor's other threads. From here on, unless we take it back,
    //    another thread may resume the parent (and end this awaiter): only locals are used.
    offer_ticket ticket = 0;
    if constexpr (reclaiming_executor<Executor>) ticket = ex.try_offer(*this);
    bool offered = ticket != 0;
    if (!offered) {
      std::exception_ptr rejection;  // a rejection, like a run, before execute() returned: nothing was offered
      offered = execute_noting_inline(executor_, *this, rejection) == settled_inline::no;
    }
    // 3. Run the child here, now, until it finishes or first suspends.
    // The outer run's `parked` may be set: a child that parked inside a loop of resumptions it started itself
    // (resume_via_trampoline) is still in that loop, which may resume a coroutine that forks, here.
    const state_base* const outer_child = std::exchange(this_thread_inline_fork.child, child);
    const bool outer_parked = std::exchange(this_thread_inline_fork.parked, false);
    child_handle.resume();
    const bool parked = std::exchange(this_thread_inline_fork.parked, outer_parked);
    this_thread_inline_fork.child = outer_child;
    // 4. Take the parent back if no other thread has.
    bool reclaimed = !offered;
    if constexpr (reclaiming_executor<Executor>) {
      // By ticket: `this` may be gone, its memory holding another awaiter offered since.
      if (ticket != 0) reclaimed = ex.try_reclaim(*this, ticket);
    }
    if (reclaimed) {
      // Nobody else ran the parent, so nobody else saw the child's deferred (it is in this awaiter): publish it
      // with plain stores when that is all there is.
      if (parked) publish_parked(*child, child_is_returned);
      return false;
    }
    // Another thread has the parent (or will run it): the child's result is published for real, and may resume
    // the parent's join right here.
    if (parked) child->complete_unclaimable();
    return true;
  }

  deferred<U> await_resume() noexcept { return std::move(child_); }

 private:
  static void publish_parked(state_base& child, bool returned) noexcept {
    if (returned && child.publish_unshared_if_sole_handle()) return;
    child.complete_unclaimable();
  }

  template <class P>
  static void mark_escaped(std::coroutine_handle<> h) noexcept {
    std::coroutine_handle<P>::from_address(h.address()).promise().escaped = true;
  }

  static void run(task& t) noexcept {
    if (noted_inline_run(t)) return;
    auto& self = static_cast<fork_awaiter&>(t);
    // Resumed by another thread than the one that forked: the parent's deferred has escaped.
    if (self.mark_escaped_ != nullptr) self.mark_escaped_(self.parent_);
    std::construct_at(&self.resume_, queued_resume{self.parent_, nullptr});
    resume_via_trampoline(&self.resume_);
  }
  // A rejection after execute() returned (an executor that refuses work later) resumes the parent too: it needs
  // nothing from the executor to go on.
  static void reject(task& t, std::exception_ptr why) noexcept {
    if (noted_inline_reject(t, why)) return;
    run(t);
  }
  static constexpr task::operations operations_{&run, &reject};

  Executor& executor_;
  F&& f_;
  std::tuple<A&&...> args_;
  // Written before they are read, not zeroed first: parent_ and mark_escaped_ by await_suspend(), resume_ by run().
  union {
    std::coroutine_handle<> parent_;  // a union member's lifetime starts with its (trivial) assignment
  };
  void (*mark_escaped_)(std::coroutine_handle<>) noexcept;
  union {
    queued_resume resume_;  // trivially destructible
  };
  // Empty until await_suspend() makes the child's deferred here. An awaiter destroyed without being suspended on
  // (a foreign coroutine's await_transform may skip that) lets go of nothing.
  deferred<U> child_ = access::adopt<U>(nullptr);
};

template <class Executor, class U, class F, class... A>
struct fork_awaitable : notes_own_suspension {
  Executor& executor;
  F&& f;
  std::tuple<A&&...> args;
  fork_awaiter<Executor, U, F, A...> operator co_await() && noexcept {
    return fork_awaiter<Executor, U, F, A...>(executor, std::forward<F>(f), std::move(args));
  }
};

}  // namespace detail

// co_await d: d's value, or its failure thrown here. Consumes d. Awaiting an rvalue (`co_await f()`,
// `co_await std::move(d)`) also gives up that handle while suspended, so if the producer then drops every handle
// the coroutine resumes with broken_deferred_error; a named deferred the coroutine still holds keeps it waiting.
template <class U>
detail::deferred_awaiter<U> operator co_await(const deferred<U>& d) noexcept {
  return detail::deferred_awaiter<U>(detail::access::state_of(d), false);
}
template <class U>
detail::deferred_awaiter<U> operator co_await(deferred<U>&& d) noexcept {
  return detail::deferred_awaiter<U>(detail::access::take(d), true);
}

// co_await resume_on(ex): the rest of the coroutine runs on `ex`. Never allocates. If `ex` rejects the task,
// the co_await throws the executor's error (executor_stopped_error) on the thread that rejected it.
inline detail::resume_on_awaitable resume_on(executor_ref ex) noexcept { return detail::resume_on_awaitable{{}, ex}; }

// co_await fork(ex, f, args...): starts the deferred coroutine f(args...) at once on this thread and offers the
// rest of the calling coroutine to executor `ex` (continuation stealing, as in Cilk and libfork). If another
// thread of `ex` takes the offer, the caller goes on there while the child runs here; if nobody has when the
// child finishes or first suspends, the caller goes on here. Either way the co_await gives the child's
// deferred, joined later with co_await:
//
//   anydefer::deferred<long> fib(anydefer::thread_pool& pool, int n) {
//     if (n < 2) co_return n;
//     anydefer::deferred<long> left = co_await anydefer::fork(pool, fib, pool, n - 1);
//     long right = co_await fib(pool, n - 2);
//     co_return co_await std::move(left) + right;
//   }
//
// Where nothing was stolen, the child's deferred is published and joined without a locked instruction (taking
// the caller back costs the deque pop's fence): only a thief pays for synchronisation. Only a reclaiming_executor
// (thread_pool, from one of its workers) can take the offer back; with any other executor the caller always goes on
// where the executor runs it. `args` are used before the co_await completes (the child's parameters are copies), so
// temporaries are fine; use the awaiter at once, in the co_await expression. f must be a deferred coroutine, or a
// function whose first act is to call one and return its deferred: the first deferred coroutine created on this thread
// while f runs is the one held at its start until the caller is offered (a function that first makes and waits on
// another coroutine would wait on a coroutine that has not started). A function that returns a deferred without making
// a coroutine just runs to its end first, and the caller goes on. If f throws, the co_await gives a failed deferred.
// While the child runs inline, a blocking wait on this thread does not help with this worker's own queued tasks (the
// caller's continuation is among them), only with other workers'. Never allocates beyond the child's frame.
template <class Executor, class F, class... A>
  requires(executor<Executor>&& detail::is_deferred_v<std::invoke_result_t<F&&, A&&...>>)
auto fork(Executor& ex, F&& f, A&&... args) noexcept {
  using U = detail::unwrap_deferred_t<std::invoke_result_t<F&&, A&&...>>;
  return detail::fork_awaitable<Executor, U, F, A...>{{}, ex, std::forward<F>(f), {std::forward<A>(args)...}};
}

}  // namespace anydefer

template <class T, class... Args>
struct std::coroutine_traits<anydefer::deferred<T>, Args...> {
  using promise_type = anydefer::detail::coroutine_promise<T>;
};
