// anydefer/detail/state.hpp: the shared state behind a deferred handle, and its lock-free state machine.
//
// Each deferred owns one heap-allocated state. A chain `d.add_callback(f).add_callback(g)` is a list of states:
// the root (fired by hand), then one *link* per add_*: the link stores the callable and, once its upstream has a
// result, runs it and gets its own result. A link is the upstream's *continuation*.
//
// The state word (`word_`) decides the only real race: the producer firing while the consumer attaches its
// continuation, possibly on two threads. Its layout is a continuation pointer (16-byte aligned, below bit 61)
// plus 7 flags:
//
//   bits 4..60  continuation* c   the one consumer, set once by try_attach(), never cleared
//   bit 63      driving           a link's or a coroutine's driver still runs it (see "drivers" below)
//   bit 62      orphaned          every owner left while it was driving: the driver frees it
//   bit 61      walked            a cancel() walk passed through it and may look at what it awaits (a link only:
//                                 see "Lifetime")
//   bit 0       claimed           someone won the right to write the result (fire, cancel, abandonment); a
//                                 link or a coroutine is claimed and made ready by one RMW (see below)
//   bit 1       ready             the result is written and visible (published with release)
//   bit 2       consumed          the result was taken by a consumer that attached after `ready` (get(), a late
//                                 add_*, a co_await of a fired deferred)
//   bit 3       waiting           a thread blocks in wait(): the publisher must wake it (futex on the low half)
//
//        try_attach: CAS c in          claim: fetch_or(claimed)           publish: fetch_or(ready) / store
//   {}  ------------------------>  {c}  ------------------------> {c,claimed} -----------> {c,claimed,ready}
//    |  claim                                                                      publisher runs c
//    +------> {claimed} --publish--> {claimed,ready} --try_attach: CAS consumed--> {claimed,ready,consumed}
//                 |  try_attach: CAS c in (before publish)                          attacher runs c
//                 +------> {c,claimed} --publish: fetch_or sees c--> publisher runs c
//
// Exactly one side runs the continuation: whichever of "publish" and "attach" comes second in the word's
// modification order sees the other's bit and runs it; the first one only sets its bit. Nobody waits for the
// other side, so there is no lock and no spin on the fire/continue paths (wait() alone yields while a claimed
// result is being written, which is bounded by a move).
//
// Who writes the result, and how many RMWs that takes:
//   - a root (fired by hand): claim (fetch_or), write, publish (a plain store if a consumer was already there,
//     else fetch_or(ready)). Two producers may race, so the claim comes first.
//   - a link or a coroutine has one writer, its driver: it writes first, then claims and publishes in one RMW
//     (publish_written(), complete_unclaimable(): CAS {..} -> {..,claimed,ready}). cancel() of such a
//     state (of any driven state without a cancel_here() of its own) therefore never writes the result: it
//     claims, sets `holds_cancellation` in cancel_flags_ and publishes (cancel_driven()), and every reader
//     checks that flag first. A driver that finds the state claimed drops what it wrote. Other driven states
//     (timers, Asio operations, combinators, split()) claim first, like a root.
//   - a coroutine whose deferred nobody else can reach yet (it never suspended: its handle is still inside the
//     call that created it) publishes with plain stores, as fork() does for a child nobody else saw, and so does
//     a link attached to a fired upstream, which runs before its handle leaves add_*().
//
// Lifetime: `counts_` counts deferred handles and references in one word (each handle holds a reference). Every
// consumer holds one ref on the state it consumes (a link on its upstream and on the inner deferred it waits on),
// so walking "what am I waiting on" for cancel() never touches freed memory. A link lets go of its upstream when
// it is freed itself (one added after its upstream fired, as soon as it has run, before anyone else could reach
// it: no walk can be looking; most such links hold none at all, link::run_detached()), and of the inner deferred
// as soon as it has published the result it took from it, unless a cancel() walk passed through the link before
// (then when it is freed). A walk holds no references: before
// it reads what a link awaits it sets `walked` in the link's word with an RMW, and the link publishes with an RMW
// on the same word, so one of the two sees the other: a walk that comes second finds the link claimed and stops
// there; a link that comes second finds `walked` and keeps the inner deferred. A Twisted-style loop of callbacks
// that return the next iteration's deferred thus frees each iteration as it goes (a recursion in that style frees
// its subtrees: B5's callbacks form held every state of fib(n) until the end otherwise), at no cost beyond the
// publishing RMW the link pays anyway. A link or a coroutine also keeps itself alive
// from creation until it publishes its result, with the `driving` bit rather than a count, so a chain whose handles
// were all dropped still runs and the driver's publishing RMW is also its release. Release is iterative (a million-link
// chain is freed in constant stack).
//
// Sole owner: every thread that touches a state holds a counted reference (or handle), with three exceptions. A
// driver holds its state with the `driving` bit. The cancel() borrowers of a coroutine's awaiting_slot
// (coroutine.hpp) are covered by the awaiter's own reference and force locked count updates while they may exist
// (add_ref_racing_borrowers()). A cancel() walk past its first hop holds no reference either, but each hop it
// visits is held by the one before, a consumer that lets go of it only once it fired and (for an inner deferred)
// only if no walk passed through the consumer (`walked`), so the count it sees is never a sole owner's. So a caller
// whose load of the count equals what it holds itself, and whose load of the word shows no driver, is alone with the
// state and changes the count and the word with plain stores: a single-threaded chain pays no locked instruction for
// its bookkeeping. (A driver never touches the count, so a lone owner may change the count with a plain store even
// while it runs.) One handle object must not be used by two threads at once (copies may).
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <new>
#include <source_location>
#include <type_traits>
#include <utility>
#include <variant>

#include "anydefer/detail/assert.hpp"
#include "anydefer/detail/state_allocator.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/failure.hpp"

namespace anydefer {

template <class T>
class deferred;

namespace detail {

class state_base;

// Where a drive loop goes next: run `next` with the result of `from`, or stop when `next` is null.
struct step {
  class continuation* next = nullptr;
  state_base* from = nullptr;
};

// Something that consumes the result of one state: a link, a coroutine awaiter, a combinator slot.
// 16-byte aligned so its address leaves the state word four flag bits.
class alignas(16) continuation {
 public:
  // `from` has its result and this continuation is its consumer: take the result and return the next step.
  // Never throws; errors become failures of whatever this continuation feeds.
  virtual step on_ready(state_base& from) noexcept = 0;

 protected:
  ~continuation() = default;
};

// Runs continuations until the chain pauses (waits on an unfired deferred, or hops to an executor) or ends.
// One loop for every kind of hand-over keeps the stack constant however long the chain.
inline void run_continuations(step s) noexcept {
  while (s.next != nullptr) s = s.next->on_ready(*s.from);
}

void report_unhandled(const failure& error, const std::source_location& created_at) noexcept;

class state_base;
// Throws already_called_error naming where `s` was created and, if noted, where it first fired.
[[noreturn, gnu::cold]] void throw_already_called(const state_base& s);
void futex_wait(std::atomic<std::uintptr_t>& word, std::uintptr_t expected, const void* deadline) noexcept;
void futex_wake_all(std::atomic<std::uintptr_t>& word) noexcept;
bool wait_ready_until(std::atomic<std::uintptr_t>& word, const void* deadline);

class state_base : public continuation {
 public:
  static constexpr std::uintptr_t claimed = 1;
  static constexpr std::uintptr_t ready = 2;
  static constexpr std::uintptr_t consumed = 4;
  static constexpr std::uintptr_t waiting = 8;
  // A link or a coroutine whose driver keeps it alive in the word rather than in counts_ (see "drivers" below).
  static constexpr std::uintptr_t driving = std::uintptr_t{1} << 63;   // the driver has not finished
  static constexpr std::uintptr_t orphaned = std::uintptr_t{1} << 62;  // every owner left while it was driving
  static constexpr std::uintptr_t walked = std::uintptr_t{1} << 61;    // a cancel() walk passed (a link's word)
  static constexpr std::uintptr_t flag_mask = 15 | driving | orphaned | walked;

  // cancel_flags_ bits.
  static constexpr std::uint8_t cancel_requested = 1;    // cancel() ran on this root: its canceller runs at most once
  static constexpr std::uint8_t swallow_late_fire = 2;   // a no-canceller cancel: swallow the producer's next fire
  static constexpr std::uint8_t holds_cancellation = 4;  // a driven state failed by cancel(): cancelled_error is its
                                                         // result, not what result_ holds (see cancel_driven())
  static constexpr std::uint8_t fire_site_noted = 8;     // note_first_fire() recorded where this root first fired

  enum class kind : std::uint8_t {
    root,       // fired by hand: callback()/errback()
    driven,     // fired by the library (a "driven state" below): a link, a combinator, a submitted task
    coroutine,  // a driven state too: a deferred coroutine's promise, freed with its frame
  };

  // A link or a coroutine starts with `driving` set (see "drivers" below): its driver keeps it alive from birth.
  enum class driver : bool { none, from_start };
  state_base(kind k, std::source_location created_at, driver d = driver::none) noexcept
      : word_(d == driver::from_start ? driving : 0), created_at_(created_at), kind_(k) {}

  // States (and the frames of deferred coroutines, whose promise is a state) come from a per-thread cache.
  static void* operator new(std::size_t size) { return allocate_state(size); }
  static void operator delete(void* p, std::size_t size) noexcept { deallocate_state(p, size); }
  state_base(const state_base&) = delete;
  state_base& operator=(const state_base&) = delete;
  virtual ~state_base() = default;

  static continuation* continuation_of(std::uintptr_t word) noexcept {
    return reinterpret_cast<continuation*>(word & ~flag_mask);  // NOLINT(performance-no-int-to-ptr)
  }

  bool is_ready() const noexcept { return (word_.load(std::memory_order_acquire) & ready) != 0; }
  bool is_claimed() const noexcept { return (word_.load(std::memory_order_acquire) & claimed) != 0; }
  bool is_continued() const noexcept {
    std::uintptr_t w = word_.load(std::memory_order_relaxed);
    return (w & consumed) != 0 || continuation_of(w) != nullptr;
  }
  kind state_kind() const noexcept { return kind_; }
  const std::source_location& created_at() const noexcept { return created_at_; }

  // Where a root first fired, for already_called_error's message: callback() and errback() note it in builds
  // without NDEBUG. A side table rather than a field, so that no state's layout depends on NDEBUG (which may
  // differ between the library and the code using it). An entry is trusted only if the state's fire_site_noted
  // bit is set and the entry names this state, so entries are never erased (a state that reuses the address
  // overwrites it when it is noted) and a release build pays nothing. The table has a fixed size: a site may be
  // forgotten when another state takes its slot, never misreported. Never allocates.
  static void note_first_fire(state_base& s, const std::source_location& where) noexcept;
  // The site noted for `s`, if any.
  static bool first_fire_site(const state_base& s, std::source_location& where) noexcept;

  // --- reference counting ----------------------------------------------------------------------------------
  // One 64-bit word counts both kinds of owner: the low half counts references, the high half handles, and
  // every handle also holds one reference, so a handle is added or dropped with one RMW (handle_unit).
  //
  // "Sole owner": a caller that holds a reference and loads the count equal to what it holds itself knows that
  // nobody else can reach the state (a new reference is only ever made from an existing one), so it may change
  // the count, and the state word, with plain stores. A single-threaded chain therefore pays no locked
  // instruction for its bookkeeping. acquire on that load: every other owner released its reference with a
  // release RMW, so what it wrote to the state before (the word, the result) happens before our plain writes.
  static constexpr std::uint64_t one_ref = 1;
  static constexpr std::uint64_t handle_unit = (std::uint64_t{1} << 32) | one_ref;
  static constexpr std::uint32_t handles_in(std::uint64_t counts) noexcept {
    return static_cast<std::uint32_t>(counts >> 32);
  }

  // True if the caller's one handle is the only owner counted. A driver may still run the state: the caller's
  // next load of the word must show `driving` clear before it uses a plain store (that load acquires: a driver
  // that finished released its writes with the RMW that cleared the bit, and touches nothing after).
  bool sole_handle_counted() const noexcept { return counts_.load(std::memory_order_acquire) == handle_unit; }

  // Relaxed increments otherwise: a new reference is always made from an existing one, which already keeps the
  // state alive; no data is published by taking a reference.
  void add_ref() noexcept { add_counts(one_ref); }
  void add_handle() noexcept { add_counts(handle_unit); }
  // For awaiting_slot::end() only: cancel() borrowers may be inside this state without a reference of their own
  // (a canceller's try_add_handle() among them), so the sole-owner shortcut does not apply.
  void add_ref_racing_borrowers() noexcept { counts_.fetch_add(one_ref, std::memory_order_relaxed); }

  // Takes a handle only if one still exists (weak_ptr::lock): a canceller may run while the producer drops the
  // last handle, and must not resurrect a state that is being failed as broken.
  bool try_add_handle() noexcept {
    std::uint64_t c = counts_.load(std::memory_order_relaxed);
    while (handles_in(c) != 0) {
      if (counts_.compare_exchange_weak(c, c + handle_unit, std::memory_order_relaxed)) return true;
    }
    return false;
  }

  // Drops one handle. The last one: an unfired root with a consumer can never be fired by its producer any
  // more, so it fails with broken_deferred_error (the consumer learns it now instead of waiting forever). That
  // holds with a canceller too: a producer able to complete keeps a handle to fire it, and a chain left to a
  // canceller nobody may ever trigger would never be freed.
  void drop_handle() noexcept {
    // acquire: the sole-owner case frees the state, and the CAS below may be the last step before another
    // owner frees it; either way every other owner's writes must be visible (see release()).
    std::uint64_t c = counts_.load(std::memory_order_acquire);
    if (c == handle_unit) {  // the last handle and the last reference: nobody else can see the state
      destroy_released(this);
      return;
    }
    // Inline, the common shared case: another owner remains and ours cannot be the last handle of a root (the
    // case that may fail it as broken), so one CAS drops it and never frees (c - handle_unit > 0 since c is not
    // handle_unit). acq_rel and acquire as in drop_shared_handle(), which takes every other case and a lost race.
    if ((handles_in(c) >= 2 || kind_ != kind::root) &&
        counts_.compare_exchange_strong(c, c - handle_unit, std::memory_order_acq_rel, std::memory_order_acquire)) {
      return;
    }
    drop_shared_handle(c);
  }

  // Drops one reference; frees the state (and, iteratively, what it held) at zero. A sole owner pays no RMW.
  static void release(state_base* s) noexcept {
    if (s->drop_ref_was_last()) destroy_released(s);
  }

  // Frees a state whose last reference is gone (unless its driver still runs it: then the driver frees it when
  // it finishes), and, iteratively, what it held. Inline up to the common end, a state that held nothing it was
  // the last to let go of; the loop over the rest is out of line.
  static void destroy_released(state_base* s) noexcept {
    std::uintptr_t w = 0;
    if (!s->last_owner_may_free(w)) return;
    s->report_if_unhandled(w);
    dispose_with_what_it_held(s);
  }

  // Frees a state that the caller's one handle owned alone, with no driver, and whose result it consumed as the
  // sole owner (consume_if_fired_and_sole()): drop_handle() without the checks, whose answers the caller knows.
  static void destroy_consumed_by_sole_owner(state_base* s) noexcept {
    assert_consumed_by_sole_owner(s);
    dispose_with_what_it_held(s);
  }
  // What destroy_consumed_by_sole_owner() requires, for a caller that frees such a state itself.
  static void assert_consumed_by_sole_owner([[maybe_unused]] const state_base* s) noexcept {
    ANYDEFER_ASSERT(s->counts_.load(std::memory_order_relaxed) == handle_unit &&
                    s->word_.load(std::memory_order_relaxed) == (claimed | ready | consumed));
  }

 private:
  // Frees s, then, iteratively, the states it held and was the last to let go of.
  static void dispose_with_what_it_held(state_base* s) noexcept {
    state_base* dead = nullptr;  // what the freed states held and let go of last, linked by their dead words
    s->dispose(dead);
    if (dead != nullptr) destroy_queued(dead);
  }
  // Frees the states queued on `dead` (linked by their dead words) and what they let go of in turn.
  static void destroy_queued(state_base* dead) noexcept;
  // The slow halves of drop_handle() and consume_for_get(), out of line: other owners exist.
  void drop_shared_handle(std::uint64_t counts) noexcept;
  void consume_shared(std::uintptr_t word);

 public:
  // --- the state machine -----------------------------------------------------------------------------------
  enum class attach_result : std::uint8_t { attached, ready_now, already_continued };

  // --- drivers ---------------------------------------------------------------------------------------------
  // A link or a coroutine keeps itself alive while its driver runs with the `driving` bit of its word instead of
  // a reference in counts_: the driver's last RMW on the word (publishing its result, or giving up after a
  // cancel() won) clears the bit, so the reference costs no locked instruction of its own. The state is freed
  // when both the owners in counts_ and the driver are gone, by whichever leaves second:
  //   - an owner that brings counts_ to zero while `driving` is set sets `orphaned` (fetch_or) and, if `driving`
  //     was still set in what that RMW read, leaves the state to the driver (last_owner_may_free());
  //   - a driver whose clearing RMW reads `orphaned` frees it (publish_written(), end_driving()).
  // The two RMWs are ordered on the word, so exactly one side sees the other's bit. While `driving` is set nobody
  // writes the word with a plain store (sole owners check the bit, and publish() uses an RMW), so no store can lose
  // the driver's clearing of the bit. A driver publishing to a blocked waiter (`waiting`) keeps the bit until it
  // has woken it (end_driving()): the waiter may free the state as soon as it sees `ready`.

  // Whether the owner that dropped the last count may free the state now. acquire on the load, acq_rel on the
  // RMW: a finished driver released its writes with the RMW that cleared `driving`.
  // `w` is left holding the word as it is now, for report_if_unhandled().
  bool last_owner_may_free(std::uintptr_t& w) noexcept {
    w = word_.load(std::memory_order_acquire);
    if ((w & driving) == 0) [[likely]]
      return true;
    if (!orphan_unless_driver_left()) return false;
    w = word_.load(std::memory_order_acquire);
    return true;
  }
  // The RMW half, out of line: true if the driver left after all (the caller frees the state).
  [[gnu::cold]] bool orphan_unless_driver_left() noexcept;

  // The driver leaves without publishing (a cancel() won), or after waking a waiter: clears `driving`, and frees
  // the state if every owner left. The caller must not touch the state after.
  void end_driving() noexcept {
    // acq_rel: release so the driver's writes happen before whoever frees the state; acquire for the free here.
    const std::uintptr_t w = word_.fetch_and(~driving, std::memory_order_acq_rel);
    if ((w & driving) == 0) return;  // published already cleared it
    if ((w & orphaned) != 0) destroy_released(this);
  }

  // A driver that ends before anything but the caller's handle could see the state (a link never attached):
  // plain store.
  void end_driving_unshared() noexcept {
    word_.store(word_.load(std::memory_order_relaxed) & ~driving, std::memory_order_relaxed);
  }

  // Makes `c` the consumer. `attached`: the publisher will run it. `ready_now`: the result is already there,
  // marked consumed, and the caller runs `c` itself. `already_continued`: there is a consumer; nothing changed.
  attach_result try_attach(continuation* c) noexcept {
    ANYDEFER_ASSERT((reinterpret_cast<std::uintptr_t>(c) & flag_mask) == 0 &&
                    "a continuation's address must be 16-byte aligned and below bit 61 (user space is below 47)");
    // acquire: if we find `ready`, we read the result next and must see the publisher's writes.
    std::uintptr_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      if ((w & consumed) != 0 || continuation_of(w) != nullptr) return attach_result::already_continued;
      if ((w & ready) != 0) {
        // Transition {ready} -> {ready,consumed}. acquire pairs with the publisher's release (the load above
        // already did; a failed CAS reloads with acquire too).
        if (word_.compare_exchange_weak(w, w | consumed, std::memory_order_acquire, std::memory_order_acquire)) {
          return attach_result::ready_now;
        }
      } else {
        // Transition {} or {claimed} -> {c,...}. release: the publisher acquires the word and then runs `c`, so
        // it must see everything the attacher wrote into `c` (the callable, the upstream pointer). On failure the
        // publisher raced us to `ready`: reload with acquire and take the ready_now path.
        if (word_.compare_exchange_weak(w, w | reinterpret_cast<std::uintptr_t>(c), std::memory_order_release,
                                        std::memory_order_acquire)) {
          return attach_result::attached;
        }
      }
    }
  }

  // Wins the right to write the result; returns the word as it was. If `claimed` was already set, the caller
  // lost and must not write. acquire: if a continuation was attached before, the claimant will run it and must
  // see its construction (pairs with try_attach's release).
  std::uintptr_t claim() noexcept { return word_.fetch_or(claimed, std::memory_order_acquire); }

  // After the claimant wrote the result: makes it visible and returns the continuation to run, if any.
  // Not for a state a driver may still run (`driving`): see publish_racing_driver().
  continuation* publish(std::uintptr_t at_claim) noexcept {
    ANYDEFER_ASSERT((at_claim & driving) == 0);
    if (continuation* c = continuation_of(at_claim)) {
      // The consumer was attached before the claim; once claimed nobody else writes the word (try_attach sees a
      // consumer and returns, a waiter yields while claimed-but-not-ready, and cancel() marks only links, which
      // publish with publish_written()), so a plain release store suffices.
      // release: a waiter or is_ready() that acquires `ready` sees the result.
      word_.store(at_claim | claimed | ready, std::memory_order_release);
      if ((at_claim & waiting) != 0) futex_wake_all(word_);
      return c;
    }
    return publish_racing_driver();
  }
  // publish() with an RMW even if a consumer was there at the claim: a driver may still run the state and clear
  // `driving` when it gives up (end_driving()), which a plain store could undo. acq_rel: release publishes the
  // result to whoever sees `ready`; acquire because a consumer may have been attached since the claim and we
  // are about to run it.
  continuation* publish_racing_driver() noexcept {
    const std::uintptr_t old = word_.fetch_or(ready, std::memory_order_acq_rel);
    if ((old & waiting) != 0) futex_wake_all(word_);
    return continuation_of(old);
  }

  // attach for a caller whose handle is the only owner counted (sole_handle_counted()): unless a driver still
  // runs the state (then try_attach()), nobody else can fire, cancel, wait on or continue it, so plain stores
  // replace the CAS. Same results as try_attach().
  attach_result attach_as_sole_owner(continuation* c) noexcept {
    const std::uintptr_t w = word_.load(std::memory_order_acquire);  // acquire: see sole_handle_counted()
    if ((w & driving) != 0) return try_attach(c);
    if ((w & consumed) != 0 || continuation_of(w) != nullptr) return attach_result::already_continued;
    if ((w & ready) != 0) {
      store_as_sole_owner(w, w | consumed);
      return attach_result::ready_now;
    }
    store_as_sole_owner(w, w | reinterpret_cast<std::uintptr_t>(c));
    return attach_result::attached;
  }

  // Publishes a result that the state's driver (a link, a coroutine) wrote *before* claiming: claim, `ready` and
  // the driver's leaving (`driving` cleared) in one RMW. That is safe because the driver is the only writer of
  // result_ a driven state has: cancel() claims it without writing result_ (cancel_driven()). Returns false,
  // having changed nothing, if cancel() claimed first; the cancellation stands, and the caller discards what it
  // wrote and leaves with end_driving(). On success `next` is the continuation to run, if any, and the state may
  // be gone unless there is one (its reference keeps the state while it reads): one whose owners all left is
  // freed here.
  // Forced inline: one per link and per coroutine, where GCC would otherwise call it.
  [[gnu::always_inline]] bool publish_written(continuation*& next) noexcept {
    std::uintptr_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      ANYDEFER_ASSERT((w & driving) != 0 && ((w & ready) == 0 || (w & claimed) != 0));
      if ((w & (claimed | waiting)) != 0) [[unlikely]] {
        if ((w & claimed) != 0) return false;
        return publish_to_waiter(next);
      }
      // Transition {driving,..} -> {..,claimed,ready}. acq_rel: release publishes the result to whoever acquires
      // `ready` and hands the state over to its owners; acquire because a consumer attached concurrently is run
      // next and its fields must be visible, and an owner that orphaned the state wrote before we free it.
      // relaxed on failure: the reload only decides whether to try again.
      if (word_.compare_exchange_weak(w, w ^ (claimed | ready | driving), std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
        break;
      }
    }
    next = continuation_of(w);
    if ((w & orphaned) != 0) [[unlikely]] {
      ANYDEFER_ASSERT(next == nullptr && "a consumer holds a reference: the state was not orphaned");
      free_orphan();
    }
    return true;
  }
  // publish_written()'s rare ends, out of line: a blocked waiter to wake (false if cancel() claimed first after
  // all), and a state whose owners all left while it was driving.
  [[gnu::cold]] bool publish_to_waiter(continuation*& next) noexcept;

  // publish_written() for a link that lets go of the deferred its handler returned once it has published: only if
  // no cancel() walk passed through it, which may be looking at that deferred (kept alive by the link's reference
  // alone). The same RMW decides: a walk that sets `walked` after it finds the link claimed and stops (cancel()).
  // Returns false, having changed nothing, if a walk passed, a waiter blocks or cancel() claimed first (all rare):
  // the caller keeps its reference until the link is freed and takes publish_written(). On success as
  // publish_written().
  [[gnu::always_inline]] bool publish_written_unless_walked(continuation*& next) noexcept {
    std::uintptr_t w = word_.load(std::memory_order_relaxed);
    do {
      ANYDEFER_ASSERT((w & driving) != 0 && ((w & ready) == 0 || (w & claimed) != 0));
      if ((w & (claimed | waiting | walked)) != 0) [[unlikely]]
        return false;
      // acq_rel and relaxed, as in publish_written().
    } while (!word_.compare_exchange_weak(w, w ^ (claimed | ready | driving), std::memory_order_acq_rel,
                                          std::memory_order_relaxed));
    next = continuation_of(w);
    if ((w & orphaned) != 0) [[unlikely]] {
      ANYDEFER_ASSERT(next == nullptr && "a consumer holds a reference: the state was not orphaned");
      free_orphan();
    }
    return true;
  }
  [[gnu::cold]] void free_orphan() noexcept;

  // publish_written() for a state nothing but its driver ever claims (a coroutine's: cancel() only forwards to
  // what it awaits), then runs what follows. A coroutine's end, or a fork() child's that fork() publishes. The
  // state may be gone after: the caller must not touch it.
  void complete_unclaimable() noexcept {
    continuation* next = nullptr;
    [[maybe_unused]] const bool published = publish_written(next);
    ANYDEFER_ASSERT(published && "nothing but its driver claims this state");
    run_continuations({next, this});
  }

  // Publishes, with plain stores and no locked instruction, a state whose result is written and whose one handle
  // the caller holds, if that handle is its only owner. Returns false, having done nothing, if another owner
  // exists. The caller must know that no other thread can be touching the state; this checks only that nothing
  // on this thread copied the handle or took a reference (a consumer does). What can reach the word through the
  // one handle without a count is a wait, and one that has returned (timed out) leaves its `waiting` mark with
  // nobody waiting: the word holds `driving` and at most that mark, and the publish overwrites both.
  bool publish_unshared_if_sole_handle() noexcept {
    // relaxed: by the caller's precondition nothing else writes these words now.
    if (counts_.load(std::memory_order_relaxed) != handle_unit) return false;
    ANYDEFER_ASSERT((word_.load(std::memory_order_relaxed) & ~waiting) == driving);
    word_.store(claimed | ready, std::memory_order_relaxed);  // and the driver leaves
    return true;
  }

  // For a caller that knows the state is unshared (its one handle not handed out, no consumer, no waiter) and that
  // its result is written.
  void publish_unshared() noexcept {
    ANYDEFER_ASSERT(counts_.load(std::memory_order_relaxed) == handle_unit &&
                    word_.load(std::memory_order_relaxed) == driving);
    word_.store(claimed | ready, std::memory_order_relaxed);  // and the driver leaves
  }

  // cancel() reached a driven state waiting on nothing unfired: it fails with cancelled_error now, and what its
  // driver produces later finds it claimed and is dropped. The failure is a flag, not a write to result_, which
  // the driver may be writing at this very moment (publish_written()).
  void cancel_driven() noexcept {
    const std::uintptr_t w = claim();
    if ((w & claimed) != 0) return;
    // relaxed: ordered before the publish's release, which whoever reads the result acquires.
    cancel_flags_.fetch_or(holds_cancellation, std::memory_order_relaxed);
    run_continuations({publish_racing_driver(), this});
  }
  // For the consumer, after acquiring `ready`: the result is cancelled_error, whatever result_ holds.
  bool holds_cancellation_flag() const noexcept {
    return (cancel_flags_.load(std::memory_order_relaxed) & holds_cancellation) != 0;
  }

  // Consumes a published, unconsumed result if the caller's handle is the only owner and no driver runs the
  // state (nobody else can touch it). Plain stores. Returns false, doing nothing, otherwise.
  bool consume_if_sole_and_ready() noexcept {
    if (!sole_handle_counted()) return false;
    const std::uintptr_t w = word_.load(std::memory_order_acquire);  // acquire: see sole_handle_counted()
    if ((w & (ready | consumed | driving)) != ready || continuation_of(w) != nullptr) return false;
    store_as_sole_owner(w, w | consumed);
    return true;
  }

  // For add_*(): what a new consumer of this state finds, from one load of the word. acquire: on `fired` the
  // caller may consume the result (consume_ready()) and read it.
  enum class outlook : std::uint8_t { continued, fired, pending };
  outlook outlook_for_consumer() const noexcept {
    const std::uintptr_t w = word_.load(std::memory_order_acquire);
    // One test for the common case, an add_*() before the fire.
    if ((w & (~flag_mask | ready | consumed)) == 0) [[likely]]
      return outlook::pending;
    if ((w & consumed) != 0 || continuation_of(w) != nullptr) return outlook::continued;
    return outlook::fired;
  }

  // Consumes a published result for a consumer that comes after it and reads it at once, attaching nothing (a
  // late add_*()): with a plain store if the caller's handle is the only owner (`sole`, as
  // consume_if_sole_and_ready()), else with one CAS. Returns false, changing nothing, unless the word says
  // "ready, no consumer, not consumed, no driver": the caller then takes the general path (try_attach()).
  bool consume_ready(bool sole) noexcept {
    if (sole) return consume_if_sole_and_ready();
    std::uintptr_t w = word_.load(std::memory_order_acquire);
    while ((w & (ready | consumed | driving)) == ready && continuation_of(w) == nullptr) {
      // Transition {ready} -> {ready,consumed}, as try_attach()'s. acquire (both ways): we read the result next.
      if (word_.compare_exchange_weak(w, w | consumed, std::memory_order_acquire, std::memory_order_acquire)) {
        return true;
      }
    }
    return false;
  }

  // The fast path of co_await: says whether the result is there and, in the common case, consumes it at once
  // with a plain store: when the caller's handle is the only owner and the word says exactly "fired, not
  // consumed, no consumer, no waiter". Otherwise the caller takes the general path. Sole first, then the word:
  // see consume_for_get(). acquire on the word (shared case): as in is_ready().
  enum class readiness : std::uint8_t { not_ready, ready, consumed_now };
  // Forced inline, as is take_value(): the fired co_await's path, which GCC leaves out of line in a large
  // (recursive) coroutine, where the call cost as much as the work (about 13 instructions per fib call in B5).
  [[gnu::always_inline]] readiness consume_if_fired_and_sole() noexcept {
    if (!sole_handle_counted()) return is_ready() ? readiness::ready : readiness::not_ready;
    // acquire: see sole_handle_counted(). Exactly "fired, not consumed, no consumer, no waiter" also says that
    // no driver runs it.
    const std::uintptr_t w = word_.load(std::memory_order_acquire);
    if (w == (claimed | ready)) {
      store_as_sole_owner(w, w | consumed);
      return readiness::consumed_now;
    }
    return (w & ready) != 0 ? readiness::ready : readiness::not_ready;
  }

  // Marks a ready result as taken by get(). Throws already_continued_error if a consumer exists.
  void consume_for_get() {
    // Sole first, then the word: a word read before another owner consumed the result and dropped its handle
    // would look unconsumed to a caller that is alone only since.
    const bool sole = sole_handle_counted();
    const std::uintptr_t w = word_.load(std::memory_order_acquire);  // acquire: see sole_handle_counted()
    if (sole && (w & (driving | consumed)) == 0 && continuation_of(w) == nullptr) {
      store_as_sole_owner(w, w | consumed);  // no other consumer can race us: a plain store
      return;
    }
    consume_shared(w);  // which also throws if there is a consumer
  }

  // A fire that lost the claim: swallowed once after a cancel() without canceller (the producer could not know
  // it was cancelled), else already_called_error. acq_rel on the RMW: pairs with cancel_here()'s release so the
  // swallow flag it set before claiming is seen here.
  void on_late_fire() {
    if ((cancel_flags_.fetch_and(static_cast<std::uint8_t>(~swallow_late_fire), std::memory_order_acq_rel) &
         swallow_late_fire) != 0) {
      return;
    }
    throw_already_called(*this);
  }

  // Blocks until the result is ready (or the deadline, a std::chrono::steady_clock::time_point*, passes).
  bool wait_ready(const void* deadline) {
    // acquire: as in is_ready(); the caller reads the result next.
    return (word_.load(std::memory_order_acquire) & ready) != 0 || wait_ready_until(word_, deadline);
  }

  // Fails the state with `error` unless it already has a result; runs its continuations. Returns false if the
  // state had already been claimed. `site`, if not null, is noted as where it first fired (errback(), see
  // fire_value_noting()).
  bool fail_internal(std::exception_ptr error, const std::source_location* site = nullptr) noexcept;

  // --- cancellation ----------------------------------------------------------------------------------------
  // Cancels what this chain waits on: walks down "what am I waiting on" to the deepest unfired state and
  // cancels that (Twisted: a deferred waiting on another cancels that one instead of itself). Each hop is kept
  // alive by the previous one's reference, so the walk needs no reference counting of its own; the walk marks each
  // hop `walked` before it reads what the hop awaits, so that no link lets go of the hop after it.
  void cancel() noexcept;

  // The result type, for the unhandled-error report and the internal failure path.
  virtual void store_failure(std::exception_ptr error) noexcept = 0;

 protected:
  // What this state is waiting on (its upstream, or the deferred its callback returned), or null.
  virtual state_base* awaited() const noexcept { return nullptr; }
  // Cancels this state itself; called when it waits on nothing.
  virtual void cancel_here() noexcept;
  // For roots with a canceller: runs it, and settles the deferred (cancel_here()). Returns false if there is no
  // canceller.
  virtual bool run_canceller() noexcept { return false; }
  // Frees the state once the last reference went, and drops the references it held on others with
  // release_into(held, dead), which queues a state whose last reference that was on `dead` (freed next, by the
  // same loop: a million-link chain is freed in constant stack). A coroutine's state lives in its frame and
  // frees that instead. The one virtual call of a state's end.
  virtual void dispose(state_base*& dead) noexcept {
    static_cast<void>(dead);
    delete this;
  }
  // Reports the result if it is a failure; called when nobody consumed it (report_if_unhandled()).
  virtual void report_unconsumed() noexcept = 0;

  // Drops the reference a dying state held on `held` (as release() does); at zero, reports `held` if nobody
  // consumed its failure and queues it on `dead`.
  // Inline up to the null test: a link holds no inner deferred as a rule, and one added after its upstream fired
  // no upstream either; the call alone cost such a link's end 7 of its instructions (B2).
  [[gnu::always_inline]] static void release_into(state_base* held, state_base*& dead) noexcept {
    if (held != nullptr) release_held_into(held, dead);
  }
  static void release_held_into(state_base* held, state_base*& dead) noexcept {
    std::uintptr_t w = 0;
    if (!held->drop_ref_was_last() || !held->last_owner_may_free(w)) return;
    held->report_if_unhandled(w);
    // A dead state's word is free: it links the list of states still to free, so that freeing a million-link
    // chain is a loop, not a recursion (destroy_released()).
    held->word_.store(reinterpret_cast<std::uintptr_t>(dead), std::memory_order_relaxed);
    dead = held;
  }

  // Drops one reference and says whether it was the last. A sole owner pays no RMW. acquire on the load: as in
  // sole_handle_counted(). acq_rel on the decrement: release so our writes to the state happen before its destruction,
  // acquire so the owner that frees it sees every other owner's writes.
  bool drop_ref_was_last() noexcept {
    return counts_.load(std::memory_order_acquire) == one_ref ||
           counts_.fetch_sub(one_ref, std::memory_order_acq_rel) == one_ref;
  }

  // A result nobody took (no consumer attached, none consumed it): a failure there is reported. Called once,
  // when the last reference goes. Non-virtual for the common case, a consumed result.
  // `w`: the word, loaded (acquire) once the last reference went.
  void report_if_unhandled(std::uintptr_t w) noexcept {
    if ((w & ready) == 0 || (w & consumed) != 0 || continuation_of(w) != nullptr) return;
    report_unconsumed();
  }

  step on_ready(state_base&) noexcept override { return {}; }  // a plain state consumes nothing

  // The fields are ordered to leave no padding: 38 bytes with the vtable pointer, and a state<T> puts its tag in
  // the last two (a pending deferred and its one link take 128 bytes for an int).
  std::atomic<std::uintptr_t> word_{0};
  std::atomic<std::uint64_t> counts_{handle_unit};  // handles << 32 | references (each handle holds one)

 private:
  std::source_location created_at_;

 public:
  // Borrows by cancel() of a coroutine awaiting this state that outlived the await (see awaiting_slot in
  // coroutine.hpp): the await's end adds their count, each late borrower subtracts one; whoever brings it back
  // to zero drops the reference that kept this state alive for them.
  std::atomic<std::int32_t> borrow_balance_{0};

 protected:
  std::atomic<std::uint8_t> cancel_flags_{0};

 private:
  const kind kind_;

 private:
  // Adds `n` to the counts; a sole owner (the caller holds the one reference or handle there is) with a store.
  void add_counts(std::uint64_t n) noexcept {
    const std::uint64_t c = counts_.load(std::memory_order_acquire);
    if (c == handle_unit || c == one_ref) {
#ifdef NDEBUG
      counts_.store(c + n, std::memory_order_relaxed);
#else
      // Checked: another thread changing the count now breaks the one-handle-per-thread rule.
      std::uint64_t expected = c;
      const bool alone = counts_.compare_exchange_strong(expected, c + n, std::memory_order_relaxed);
      ANYDEFER_ASSERT(alone && "one deferred handle used by two threads at once");
#endif
    } else {
      counts_.fetch_add(n, std::memory_order_relaxed);
    }
  }

  // A sole owner's write of the word (attach, consume): a plain store. release: a thread given a handle later,
  // through its own synchronisation, acquires the word before it runs or reads what this published. Builds
  // without NDEBUG check that nobody else wrote the word meanwhile, which only a handle object shared between
  // threads against the rules could do.
  void store_as_sole_owner(std::uintptr_t expected, std::uintptr_t desired) noexcept {
#ifdef NDEBUG
    static_cast<void>(expected);
    word_.store(desired, std::memory_order_release);
#else
    const bool alone = word_.compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
    ANYDEFER_ASSERT(alone && "one deferred handle used by two threads at once");
#endif
  }

  // An unfired root with a consumer: its last handle going means nobody can fire it any more.
  bool abandoned_with_consumer() const noexcept {
    const std::uintptr_t w = word_.load(std::memory_order_acquire);
    return (w & claimed) == 0 && continuation_of(w) != nullptr;
  }
};

// The state of a deferred<T>: state_base plus the result.
template <class T>
class state : public state_base {
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

 public:
  using stored_value = stored;  // what take_stored() moves from
  using state_base::state_base;
  ~state() override { reset(); }

  // Writes the result. Only the claimant calls these, between claim() and publish().
  template <class... A>
  void store_value(A&&... a) noexcept {
    ANYDEFER_ASSERT(holds_ == holds::nothing);
    try {
      ::new (static_cast<void*>(&result_.value)) stored(std::forward<A>(a)...);
      holds_ = holds::value;
    } catch (...) {
      ::new (static_cast<void*>(&result_.error)) std::exception_ptr(std::current_exception());
      holds_ = holds::error;
    }
  }
  void store_failure(std::exception_ptr error) noexcept override {
    ANYDEFER_ASSERT(holds_ == holds::nothing);
    ::new (static_cast<void*>(&result_.error)) std::exception_ptr(std::move(error));
    holds_ = holds::error;
  }
  void store_result(result<T>&& r) noexcept {
    if (r.has_value()) {
      if constexpr (std::is_void_v<T>) {
        store_value();
      } else {
        store_value(std::move(r).value());
      }
    } else {
      store_failure(r.error().exception());
    }
  }

  // Moves the result out. Only the one consumer calls this, after `ready` was acquired.
  result<T> take_result() noexcept {
    ANYDEFER_ASSERT(this->is_ready());
    if (this->holds_cancellation_flag()) return result<T>(failure::of(cancelled_error()));
    if (holds_ == holds::error) return result<T>(failure(std::move(result_.error)));
    if constexpr (std::is_void_v<T>) {
      return result<T>();
    } else {
      return result<T>(std::move(result_.value));
    }
  }

  // The value, or the failure's exception rethrown: take_result().value() without building a result<T>, for
  // get() and co_await. The same preconditions.
  [[gnu::always_inline]] T take_value() {
    ANYDEFER_ASSERT(this->is_ready());
    if (this->holds_cancellation_flag()) throw cancelled_error();
    if (holds_ == holds::error) std::rethrow_exception(result_.error);
    if constexpr (!std::is_void_v<T>) return std::move(result_.value);
  }

  bool holds_failure() const noexcept { return this->holds_cancellation_flag() || holds_ == holds::error; }

  // For a link reading its upstream in place, after `ready` was acquired: the failure (holds_failure()), moved
  // out, or the value, left moved-from when the callee moves from it.
  std::exception_ptr take_error() noexcept {
    ANYDEFER_ASSERT(this->is_ready() && holds_failure());
    if (this->holds_cancellation_flag()) return std::make_exception_ptr(cancelled_error());
    return std::move(result_.error);
  }
  stored&& take_stored() noexcept {
    ANYDEFER_ASSERT(this->is_ready() && holds_ == holds::value);
    return std::move(result_.value);
  }

  // Drops what the driver wrote after cancel() won (publish_written() returned false): nobody reads the result
  // of a cancelled driven state, and what it holds (a handle, say) must not live on with the state.
  void discard_result() noexcept { reset(); }

  // Builds an already-fired state (succeed()/fail()), before any other thread can see it.
  template <class... A>
  void prefire_value(A&&... a) noexcept {
    store_value(std::forward<A>(a)...);
    word_.store(claimed | ready, std::memory_order_relaxed);
  }
  void prefire_failure(std::exception_ptr error) noexcept {
    store_failure(std::move(error));
    word_.store(claimed | ready, std::memory_order_relaxed);
  }

  // Claims, stores, publishes and runs what follows. Returns false if the state had already been claimed.
  template <class... A>
  bool fire_value(A&&... a) noexcept {
    return fire_value_noting(nullptr, std::forward<A>(a)...);
  }

  // The same for a failure.
  bool fire_failure(std::exception_ptr error) noexcept { return fail_internal(std::move(error)); }

  // callback()/errback(): the same, and once the claim is won, notes `site` as where the root first fired (if
  // not null: builds without NDEBUG). Before running what follows, not after: the continuations may drop every
  // handle (the one fired through included, by reassigning the variable that holds it) and free the state.
  template <class... A>
  bool fire_value_noting(const std::source_location* site, A&&... a) noexcept {
    std::uintptr_t w = claim();
    if ((w & claimed) != 0) return false;
    if (site != nullptr) note_first_fire(*this, *site);
    store_value(std::forward<A>(a)...);
    run_continuations({publish(w), this});
    return true;
  }
  bool fire_failure_noting(const std::source_location* site, std::exception_ptr error) noexcept {
    return fail_internal(std::move(error), site);
  }

 protected:
  [[gnu::cold, gnu::noinline]] void report_unconsumed() noexcept override {
    if (this->holds_cancellation_flag()) {
      report_unhandled(failure::of(cancelled_error()), created_at());
    } else if (holds_ == holds::error) {
      report_unhandled(failure(result_.error), created_at());
    }
  }

 private:
  [[gnu::always_inline]] void reset() noexcept {
    if (holds_ == holds::value) {
      result_.value.~stored();
    } else if (holds_ == holds::error) {
      result_.error.~exception_ptr();
    }
    holds_ = holds::nothing;
  }

  // Nothing yet, a value or a failure: a tagged union, so that moving the result out or destroying it is a
  // branch on the tag rather than std::variant's visitor.
  enum class holds : unsigned char { nothing, value, error };
  holds holds_ = holds::nothing;  // first: it fits in state_base's tail padding
  union storage {
    storage() noexcept {}  // NOLINT(modernize-use-equals-default): = default is deleted for non-trivial members
    ~storage() {}          // NOLINT(modernize-use-equals-default): as above; state<T> destroys the live member
    stored value;
    std::exception_ptr error;
  } result_;
};

// The library's view of a deferred handle's internals (deferred<T> befriends it).
struct access {
  template <class T>
  static state<T>* state_of(const deferred<T>& d) noexcept {
    return d.state_;
  }
  // A handle that takes over one handle count already held on `s`.
  template <class T>
  static deferred<T> adopt(state<T>* s) noexcept {
    return deferred<T>(adopt_tag{}, s);
  }
  // Takes over the handle held by `d`, leaving it empty.
  template <class T>
  static state<T>* take(deferred<T>& d) noexcept {
    return std::exchange(d.state_, nullptr);
  }
  struct adopt_tag {};
};

// A deferred<T>{} or deferred<T>{canceller}: fired by hand.
template <class T>
class root_state : public state<T> {
 public:
  explicit root_state(std::source_location created_at) noexcept : state<T>(state_base::kind::root, created_at) {}
};

}  // namespace detail
}  // namespace anydefer
