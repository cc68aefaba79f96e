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
//   - The coroutine starts at once and runs until it awaits a deferred that has not fired.
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
//   - Any awaitable can be awaited inside (no await_transform), and a deferred can be awaited from any coroutine
//     type.
//
// Budget: one allocation per call (the frame, which also holds the deferred's state).
#pragma once

#include <atomic>
#include <coroutine>
#include <exception>
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
class coroutine_state;

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
template <class U>
class deferred_awaiter final : public continuation {
 public:
  // The state stays alive through a handle for as long as the awaiter reads it: the awaited lvalue's (the
  // coroutine holds it across the suspension), or the one the awaiter took over from an rvalue (`owns_handle`).
  // An owned handle is given up once attached, so that a producer dropping every handle of its own is still
  // detected (broken_deferred_error); a reference replaces it then.
  deferred_awaiter(state<U>* s, bool owns_handle) noexcept : state_(s), owns_handle_(owns_handle && s != nullptr) {}
  deferred_awaiter(const deferred_awaiter&) = delete;
  deferred_awaiter& operator=(const deferred_awaiter&) = delete;
  ~deferred_awaiter() {
    if (owns_handle_) state_->drop_handle();
    if (holds_ref_) state_base::release(state_);
  }

  // A fired deferred is consumed in await_resume, without suspending.
  bool await_ready() const noexcept { return state_ == nullptr || state_->is_ready(); }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    resume_.handle = h;
    if (state_->is_continued()) {
      already_continued_ = true;
      return false;
    }
    // Lend the awaited state to cancel() *before* attaching: once attached, another thread may fire it and
    // resume the coroutine before this function returns, so nothing here may run after a successful attach.
    if constexpr (std::is_base_of_v<awaiting_slot, P>) {
      slot_ = &h.promise();
      slot_->begin(state_);
    }
    state<U>* const s = state_;
    const bool drop_handle = std::exchange(owns_handle_, false);
    if (drop_handle) {
      s->add_ref();  // replaces the handle given up below, for await_resume and the destructor
      holds_ref_ = true;
    }
    switch (s->try_attach(this)) {
      case state_base::attach_result::attached:
        // Only locals from here: the handle keeps s alive until this drop; if it was the last one, s fails as
        // broken and may resume the coroutine right here, which is allowed while it is suspended.
        if (drop_handle) s->drop_handle();
        return true;
      case state_base::attach_result::ready_now:
        attached_ = true;  // consumed by try_attach
        break;
      case state_base::attach_result::already_continued:
        already_continued_ = true;
        break;
    }
    if (drop_handle) {  // not suspending: keep the handle after all
      owns_handle_ = true;
      holds_ref_ = false;
      state_base::release(s);
    }
    if (slot_ != nullptr) slot_->end();
    return false;
  }

  U await_resume() {
    if (state_ == nullptr) throw empty_deferred_error();
    if (already_continued_) throw already_continued_error();
    if (!attached_) state_->consume_for_get();  // await_ready found it fired
    return state_->take_result().value();
  }

  step on_ready(state_base&) noexcept override {
    attached_ = true;
    if (slot_ != nullptr) slot_->end();
    resume_via_trampoline(&resume_);
    return {};
  }

 private:
  state<U>* state_;
  bool owns_handle_;
  bool holds_ref_ = false;
  awaiting_slot* slot_ = nullptr;
  queued_resume resume_;
  bool attached_ = false;
  bool already_continued_ = false;
};

template <class T>
class coroutine_promise_base : public state<T>, public awaiting_slot {
 public:
  coroutine_promise_base() noexcept : state<T>(state_base::kind::driven, std::source_location::current()) {
    // The handle get_return_object() gives out, and one reference held by the running coroutine until it
    // finishes.
    this->counts_.store(state_base::handle_unit + state_base::one_ref, std::memory_order_relaxed);
  }

  deferred<T> get_return_object() noexcept { return access::adopt<T>(static_cast<state<T>*>(this)); }
  std::suspend_never initial_suspend() const noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) noexcept {
      h.promise().complete();  // may free the frame: nothing after this touches it
    }
    void await_resume() const noexcept {}
  };
  final_awaiter final_suspend() const noexcept { return {}; }

  void unhandled_exception() noexcept { this->store_failure(std::current_exception()); }

  // Publishes the result stored by co_return / unhandled_exception and runs what follows. Nothing else claims a
  // coroutine's state (it is not fired by hand and cancel() only forwards), so claim and publish are one RMW.
  void complete() noexcept {
    continuation* next = this->publish_unclaimable();
    run_continuations({next, this});
    state_base::release(this);  // the running coroutine's reference
  }

 protected:
  // Never hands out the awaited state bare (see awaiting_slot): cancel() ends here and borrows it.
  state_base* awaited() const noexcept override { return nullptr; }
  void cancel_here() noexcept override { cancel_awaited(); }
};

template <class T>
class coroutine_promise final : public coroutine_promise_base<T> {
 public:
  template <class V>
    requires std::convertible_to<V&&, T>
  void return_value(V&& value) noexcept(std::is_nothrow_constructible_v<T, V&&>) {
    this->store_value(std::forward<V>(value));
  }

 protected:
  void destroy_self() noexcept override { std::coroutine_handle<coroutine_promise>::from_promise(*this).destroy(); }
};

template <>
class coroutine_promise<void> final : public coroutine_promise_base<void> {
 public:
  void return_void() noexcept { this->store_value(); }

 protected:
  void destroy_self() noexcept override { std::coroutine_handle<coroutine_promise>::from_promise(*this).destroy(); }
};

// co_await resume_on(ex): continues the coroutine on `ex`. The task node lives in the awaiter, in the frame.
class resume_on_awaiter final : public task {
 public:
  explicit resume_on_awaiter(executor_ref ex) noexcept : task(&operations_), executor_(ex) {}

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    resume_.handle = h;
    // Ran or rejected before execute() returned: carry on here without suspending (no recursion).
    return execute_noting_inline(executor_, *this, rejection_) == settled_inline::no;
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
inline detail::resume_on_awaiter resume_on(executor_ref ex) noexcept { return detail::resume_on_awaiter(ex); }

}  // namespace anydefer

template <class T, class... Args>
struct std::coroutine_traits<anydefer::deferred<T>, Args...> {
  using promise_type = anydefer::detail::coroutine_promise<T>;
};
