// anydefer/executor.hpp: what an executor is, as far as a deferred is concerned.
//
// A deferred hands a continuation to an executor as a `task`: an intrusive node that lives inside the deferred's
// own state, so scheduling never allocates. Anything with a `noexcept` member `execute(task&)` is an executor:
//
//   struct my_loop {
//     void execute(anydefer::task& t) noexcept { queue_.push(&t); }   // later, on the loop's thread: t.run();
//   };
//   my_loop loop;
//   d.add_callback(loop, [](int v) { return v + 1; });               // runs on loop's thread
//
// The contract every executor keeps:
//   - `execute(t)` never throws and never blocks for long.
//   - Exactly one of `t.run()` or `t.reject(error)` is called, exactly once, for every task handed to `execute`
//     (unless the executor offers `try_reclaim()` and it returned true: see reclaiming_executor).
//     Until then the executor may use `t.next` as it likes (intrusive queues); after it, it must not touch `t`,
//     which may already be destroyed.
//   - `execute` does not call `t.run()` inline (before returning) unless the executor documents it does, as
//     `inline_executor` does. `t.reject()` may be called inline: that is how a stopped executor refuses work,
//     and the waiting deferred then fails with the given error (usually `executor_stopped_error`).
//   - Tasks that were accepted before a stop still run: stopping never silently drops a task.
//
// Executors are referred to, not owned: an `executor_ref` is a pointer, so an executor must outlive every deferred
// link that may still be scheduled on it. anydefer's own executors run what they already accepted when they stop
// and reject (never drop) what comes after, until they are destroyed; in builds without NDEBUG they also count the
// links bound to them and abort with a message if destroyed while any is left (executor_ref::track_bound_links).
#pragma once

#include <concepts>
#include <cstdint>
#include <exception>
#include <type_traits>

namespace anydefer {

// A unit of work handed to an executor. Not copyable: its address is its identity while queued.
class task {
 public:
  struct operations {
    void (*run)(task&) noexcept;
    void (*reject)(task&, std::exception_ptr) noexcept;
  };

  explicit constexpr task(const operations* ops) noexcept : ops_(ops) {}
  task(const task&) = delete;
  task& operator=(const task&) = delete;

  // Runs the work. Called once, by the executor, on the thread it chose. The task may be destroyed before this
  // returns.
  void run() noexcept { ops_->run(*this); }

  // Refuses the work: the task's owner settles with `why` (a non-null exception). Called at most once, instead
  // of `run()`.
  void reject(std::exception_ptr why) noexcept { ops_->reject(*this, std::move(why)); }

  // Free for the executor that holds the task (intrusive queue link). Meaningless outside an executor.
  task* next = nullptr;

 private:
  const operations* ops_;
};

// Anything that accepts tasks under the contract above.
// clang-format 14 would split a compound requirement's noexcept onto its own line.
// clang-format off
template <class E>
concept executor = requires(E& e, task& t) {
  { e.execute(t) } noexcept;
};
// clang-format on

// An executor that can offer a task to its other threads from one of its own and take it back before anyone
// started it. `e.try_offer(t)` queues `t` without running or rejecting it inline and returns a non-zero ticket,
// or returns 0 having queued nothing (the caller then uses execute()). `e.try_reclaim(t, ticket)` returns true if
// it removed that offer of `t` (neither t.run() nor t.reject() will then be called), false if `t` was or will be
// run as usual. The ticket names the offer, not the address: once taken, a task's memory may hold another task
// offered later (a coroutine's frame reuses it), which must not be mistaken for it.
// anydefer::fork() uses them to continue a coroutine in place when no other thread took it.
using offer_ticket = std::uint64_t;
// clang-format off
template <class E>
concept reclaiming_executor = executor<E> && requires(E& e, task& t, offer_ticket ticket) {
  { e.try_offer(t) } noexcept -> std::same_as<offer_ticket>;
  { e.try_reclaim(t, ticket) } noexcept -> std::same_as<bool>;
};
// clang-format on

// An executor that can queue a task without settling it inline: `e.try_execute(t)` queues `t` (it will be run or
// rejected later, never before try_execute returns) and returns true, or returns false having done nothing with
// `t` (stopped, or out of memory: the caller then uses execute(), which settles it as usual). A deferred handing
// its continuation to such an executor skips the thread-local bookkeeping that guards against an inline run or
// rejection (which, in a long chain, would recurse). thread_pool and reactor offer it.
// clang-format off
template <class E>
concept queueing_executor = executor<E> && requires(E& e, task& t) {
  { e.try_execute(t) } noexcept -> std::same_as<bool>;
};
// clang-format on

// A non-owning, type-erased reference to an executor: two pointers (the executor and a per-type table of its
// operations), trivially copyable.
class executor_ref {
 public:
  template <executor E>
    requires(!std::same_as<std::remove_cvref_t<E>, executor_ref>)
  // clang-format 14 would break `noexcept` after a requires-clause onto its own line.
  // clang-format off
  executor_ref(E& ex) noexcept  // NOLINT(google-explicit-constructor): an executor converts implicitly by design.
      : self_(&ex), operations_(&operations_of<E>) {}
  // clang-format on

  void execute(task& t) const noexcept { operations_->execute(self_, t); }

  // As queueing_executor's try_execute(); always false (nothing queued) for an executor without one.
  bool try_execute(task& t) const noexcept {
    return operations_->try_execute != nullptr && operations_->try_execute(self_, t);
  }

  // Builds without NDEBUG: a deferred link bound to this executor counts itself (+1) until its task has been run
  // or rejected (-1), for executors that offer `track_bound_links(int)` (all of anydefer's do, to report being
  // destroyed while links still point to them). A no-op for others.
  void track_bound_links(int n) const noexcept {
    if (operations_->track != nullptr) operations_->track(self_, n);
  }

  // The executor this refers to, for identity comparisons ("am I already on it?").
  const void* address() const noexcept { return self_; }
  friend bool operator==(const executor_ref& a, const executor_ref& b) noexcept { return a.self_ == b.self_; }

 private:
  struct operations {
    void (*execute)(void*, task&) noexcept;
    bool (*try_execute)(void*, task&) noexcept;  // null if the executor has none
    void (*track)(void*, int) noexcept;          // null if the executor has none
  };

  template <class E>
  static void execute_on(void* self, task& t) noexcept {
    static_cast<E*>(self)->execute(t);
  }
  template <class E>
  static constexpr auto try_executor() noexcept -> bool (*)(void*, task&) noexcept {
    if constexpr (queueing_executor<E>) {
      return [](void* self, task& t) noexcept { return static_cast<E*>(self)->try_execute(t); };
    } else {
      return nullptr;
    }
  }
  template <class E>
  static constexpr auto tracker() noexcept -> void (*)(void*, int) noexcept {
    if constexpr (requires(E & e) { e.track_bound_links(1); }) {
      return [](void* self, int n) noexcept { static_cast<E*>(self)->track_bound_links(n); };
    } else {
      return nullptr;
    }
  }
  template <class E>
  static constexpr operations operations_of{&execute_on<E>, try_executor<E>(), tracker<E>()};

  void* self_;
  const operations* operations_;
};

static_assert(executor<executor_ref>);

// What `wait()`/`get()` do on a thread that an executor owns. An executor installs one on its threads with
// `set_thread_wait_policy` (and restores the previous one when the thread leaves it); threads without one block.
class wait_policy {
 public:
  // Called by a blocking wait on this thread, before it blocks and again after each `true`. Return true after
  // running one unit of other work (the wait checks its deferred again); false to block normally. Throw
  // (`would_block_error`) if blocking this thread would deadlock, for instance because this thread is the only
  // one that could run what fires the deferred.
  virtual bool before_block() = 0;

 protected:
  ~wait_policy() = default;
};

// Installs `policy` for the calling thread and returns the previous one. Thread-safe (thread-local).
wait_policy* set_thread_wait_policy(wait_policy* policy) noexcept;

// The calling thread's wait policy, or nullptr.
wait_policy* thread_wait_policy() noexcept;

}  // namespace anydefer
