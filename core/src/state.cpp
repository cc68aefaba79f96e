#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>

#include "anydefer/detail/state.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/unhandled_error.hpp"

namespace anydefer {
namespace detail {

void state_base::destroy_queued(state_base* dead) noexcept {
  do {
    state_base* const current = dead;
    dead = reinterpret_cast<state_base*>(current->word_.load(std::memory_order_relaxed));  // NOLINT
    current->dispose(dead);
  } while (dead != nullptr);
}

void state_base::drop_shared_handle(std::uint64_t c) noexcept {
  for (;;) {
    if (c == handle_unit) {  // the other owners went meanwhile
      destroy_released(this);
      return;
    }
    // The last handle of a root something still waits on: keep our reference while failing it (a consumer
    // reached through cancel() may finish and drop its own reference meanwhile). A consumer only attaches
    // through a handle, and ours is the last, so the word read here cannot gain one behind our back.
    if (handles_in(c) == 1 && kind_ == kind::root && abandoned_with_consumer()) {
      // Drop the handle but keep its reference, only if ours is still the last handle: a canceller's
      // try_add_handle() since our load makes the CAS fail, and we look again.
      if (!counts_.compare_exchange_weak(c, c - handle_unit + one_ref, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
        continue;
      }
      if (abandoned_with_consumer()) fail_internal(std::make_exception_ptr(broken_deferred_error()));
      release(this);
      return;
    }
    // acq_rel: release so our writes happen before whoever frees the state; acquire for the reload. With
    // c != handle_unit another owner remains, so this never frees.
    if (counts_.compare_exchange_weak(c, c - handle_unit, std::memory_order_acq_rel, std::memory_order_acquire)) {
      return;
    }
  }
}

bool state_base::orphan_unless_driver_left() noexcept {
  return (word_.fetch_or(orphaned, std::memory_order_acq_rel) & driving) == 0;
}

bool state_base::publish_to_waiter(continuation*& next) noexcept {
  std::uintptr_t w = word_.load(std::memory_order_relaxed);
  do {
    if ((w & claimed) != 0) return false;
    // A thread blocks in wait(): publish, wake it, and only then leave, since once it sees `ready` it may drop
    // the last handle and free the state. acq_rel, relaxed: as in publish_written().
  } while (!word_.compare_exchange_weak(w, w | claimed | ready, std::memory_order_acq_rel, std::memory_order_relaxed));
  next = continuation_of(w);
  futex_wake_all(word_);
  end_driving();
  return true;
}

void state_base::free_orphan() noexcept { destroy_released(this); }

void state_base::consume_shared(std::uintptr_t w) {
  do {
    if ((w & consumed) != 0 || continuation_of(w) != nullptr) throw already_continued_error();
    // acquire (both): the consumer reads the result next and must see the publisher's writes.
  } while (!word_.compare_exchange_weak(w, w | consumed, std::memory_order_acquire, std::memory_order_acquire));
}

bool state_base::fail_internal(std::exception_ptr error, const std::source_location* site) noexcept {
  std::uintptr_t w = claim();
  if ((w & claimed) != 0) return false;
  if (site != nullptr) note_first_fire(*this, *site);
  store_failure(std::move(error));
  run_continuations({publish(w), this});
  return true;
}

void state_base::cancel() noexcept {
  state_base* s = this;
  // A callback that returned a deferred waiting on its own chain makes "what am I waiting on" a cycle (it can
  // never fire, as in Twisted). Brent's cycle detection: `mark` is the hop reached after 1, 2, 4, 8... steps, and
  // meeting it again means a cycle, where the walk cancels where it stands instead of looping forever. It only
  // compares addresses: every hop it reads through is one the walk marked, while a second pointer following
  // behind (Floyd's) would re-read hops whose pointers changed since, and reach states nobody keeps for the walk.
  const state_base* mark = this;
  std::size_t steps = 0;
  std::size_t next_mark_at = 1;
  for (;;) {
    if (s->is_claimed()) return;  // already fired: cancel is a no-op
    // Waiting on nothing (a root, a coroutine, most driven states): cancel s itself. This read is only compared
    // with null; the one below, after the mark, is the one the walk follows.
    if (s->awaited() == nullptr) break;
    // Mark s before reading what it awaits, so that s does not let go of it while we look (see "Lifetime" in
    // state.hpp). acq_rel: the link's publishing RMW on the same word sees the mark or is seen by it; a link
    // that published first has nothing left to cancel.
    if ((s->word_.fetch_or(walked, std::memory_order_acq_rel) & claimed) != 0) return;
    state_base* next = s->awaited();
    // Waiting on nothing, or on something that already fired (its result is on the way to s): cancel s itself.
    if (next == nullptr || next->is_claimed()) break;
    s = next;
    if (s == mark) break;
    if (++steps == next_mark_at) {
      mark = s;
      next_mark_at *= 2;
    }
  }
  s->cancel_here();
}

void state_base::cancel_here() noexcept {
  if (kind_ != kind::root) {
    // A library-driven state waiting on nothing unfired: its result is being computed or is on its way. It fails
    // now; whatever arrives later finds it claimed and is dropped.
    cancel_driven();
    return;
  }
  // The canceller runs at most once, whatever the number of cancel() calls. acq_rel: a second canceller sees
  // the first one's effects.
  if ((cancel_flags_.fetch_or(cancel_requested, std::memory_order_acq_rel) & cancel_requested) != 0) return;
  if (is_claimed()) return;
  if (run_canceller()) return;
  // No canceller: the producer does not know about the cancel and will fire later; swallow that one fire. The
  // flag is set before the claim, and the claim is a release, so a producer whose claim fails after ours sees it.
  cancel_flags_.fetch_or(swallow_late_fire, std::memory_order_relaxed);
  std::uintptr_t w = word_.fetch_or(claimed, std::memory_order_acq_rel);
  if ((w & claimed) != 0) {
    cancel_flags_.fetch_and(static_cast<std::uint8_t>(~swallow_late_fire), std::memory_order_relaxed);
    return;  // the producer fired first
  }
  store_failure(std::make_exception_ptr(cancelled_error()));
  run_continuations({publish(w), this});
}

// --- blocking ------------------------------------------------------------------------------------------------
static_assert(std::endian::native == std::endian::little, "the futex watches the low half of the state word");

void futex_wait(std::atomic<std::uintptr_t>& word, std::uintptr_t expected, const void* deadline) noexcept {
  timespec abs{};
  const timespec* timeout = nullptr;
  if (deadline != nullptr) {
    auto since_epoch = static_cast<const std::chrono::steady_clock::time_point*>(deadline)->time_since_epoch();
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    abs.tv_sec = static_cast<time_t>(secs.count());
    abs.tv_nsec = static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
    timeout = &abs;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, which is what steady_clock measures here.
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_BITSET_PRIVATE,
          static_cast<std::uint32_t>(expected), timeout, nullptr, FUTEX_BITSET_MATCH_ANY);
}

void futex_wake_all(std::atomic<std::uintptr_t>& word) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

bool wait_ready_until(std::atomic<std::uintptr_t>& word, const void* deadline_ptr) {
  const auto* deadline = static_cast<const std::chrono::steady_clock::time_point*>(deadline_ptr);
  std::uintptr_t w = word.load(std::memory_order_acquire);
  if ((w & state_base::ready) != 0) return true;
  if (wait_policy* policy = thread_wait_policy()) {
    // The executor that owns this thread may refuse (throw) or do its own work meanwhile.
    while (policy->before_block()) {
      if ((word.load(std::memory_order_acquire) & state_base::ready) != 0) return true;
      if (deadline != nullptr && std::chrono::steady_clock::now() >= *deadline) return false;
    }
    w = word.load(std::memory_order_acquire);
  }
  for (;;) {
    if ((w & state_base::ready) != 0) return true;
    if (deadline != nullptr && std::chrono::steady_clock::now() >= *deadline) return false;
    if ((w & state_base::claimed) != 0) {
      // The result is being written; once claimed the publisher may store the word without an RMW, so we must
      // not set `waiting` now. The write is a move: yield until it is done.
      std::this_thread::yield();
      w = word.load(std::memory_order_acquire);
      continue;
    }
    if ((w & state_base::waiting) == 0) {
      // The flag carries no data (the publisher's claim or fetch_or reads it from the same word); acquire only
      // because a failed CAS reloads `w`, which may now say `ready`.
      if (!word.compare_exchange_weak(w, w | state_base::waiting, std::memory_order_acquire,
                                      std::memory_order_acquire)) {
        continue;
      }
      w |= state_base::waiting;
    }
    futex_wait(word, w, deadline);
    w = word.load(std::memory_order_acquire);  // pairs with the publisher's release
  }
}

void assertion_failed(const char* condition, const char* file, unsigned line) noexcept {
  std::fprintf(stderr, "anydefer: invariant violated at %s:%u: %s\n", file, line, condition);
  std::abort();
}

// --- unhandled failures --------------------------------------------------------------------------------------
namespace {
std::mutex handler_mutex;
unhandled_error_handler& installed_handler() {
  static unhandled_error_handler handler;
  return handler;
}
void print_unhandled(const failure& error, const std::source_location& where) {
  std::fprintf(stderr, "anydefer: unhandled failure in deferred created at %s:%u (%s): %s: %s\n", where.file_name(),
               static_cast<unsigned>(where.line()), where.function_name(), error.type_name().c_str(),
               error.what().c_str());
}
}  // namespace

// --- where roots first fired (already_called_error) -----------------------------------------------------------
namespace {
// A direct-mapped table in static storage: noting a fire never allocates (tests count allocations on the firing
// path, and a fire must not fail), at the price of forgetting a site when a later state lands on its slot.
struct noted_fire {
  const state_base* state = nullptr;
  std::source_location where;
};
constexpr std::size_t noted_fire_slots = 4096;
std::mutex first_fire_mutex;
noted_fire noted_fires[noted_fire_slots];
noted_fire& slot_of(const state_base* s) noexcept {
  const auto bits = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(s) >> 4);
  return noted_fires[(bits * 0x9E3779B97F4A7C15ULL) >> 52];  // the top 12 bits: 4096 slots
}
std::string site(const std::source_location& where) {
  return std::string(where.file_name()) + ":" + std::to_string(where.line());
}
}  // namespace

void state_base::note_first_fire(state_base& s, const std::source_location& where) noexcept {
  std::lock_guard<std::mutex> lock(first_fire_mutex);
  slot_of(&s) = {&s, where};  // replaces an entry left by a state that had this address, or shared the slot
  // relaxed: read under the same mutex (first_fire_site()).
  s.cancel_flags_.fetch_or(fire_site_noted, std::memory_order_relaxed);
}

bool state_base::first_fire_site(const state_base& s, std::source_location& where) noexcept {
  std::lock_guard<std::mutex> lock(first_fire_mutex);
  const noted_fire& slot = slot_of(&s);
  if ((s.cancel_flags_.load(std::memory_order_relaxed) & fire_site_noted) == 0 || slot.state != &s) return false;
  where = slot.where;
  return true;
}

void throw_already_called(const state_base& s) {
  std::string what =
      "anydefer: deferred already fired; the first result is kept (deferred created at " + site(s.created_at());
  if (std::source_location fired; state_base::first_fire_site(s, fired)) what += ", first fired at " + site(fired);
  throw already_called_error(what + ")");
}

void report_unhandled(const failure& error, const std::source_location& created_at) noexcept {
  unhandled_error_handler handler;
  {
    std::lock_guard<std::mutex> lock(handler_mutex);
    handler = installed_handler();
  }
  try {
    if (handler) {
      handler(error, created_at);
    } else {
      print_unhandled(error, created_at);
    }
  } catch (...) {
    std::fputs("anydefer: the unhandled-error handler threw; its exception is dropped\n", stderr);
  }
}

}  // namespace detail

unhandled_error_handler set_unhandled_error_handler(unhandled_error_handler handler) {
  std::lock_guard<std::mutex> lock(detail::handler_mutex);
  return std::exchange(detail::installed_handler(), std::move(handler));
}

}  // namespace anydefer
