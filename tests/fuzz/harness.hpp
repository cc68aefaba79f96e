// tests/fuzz/harness.hpp: differential harness for deferred<int>. run_ops() decodes a byte string into a sequence
// of operations over a small pool of handle slots, applies it to anydefer and to a reference model written from
// the documented rules (deferred.hpp, combinators.hpp, coroutine.hpp, timers.hpp, README), and compares the two
// event logs (which function ran, in which order, on what; what each call threw), the fired() state of every slot
// after every operation, and, once every slot is dropped, the number of unhandled-failure reports.
//
// What the operations reach: chains (every add_*, callbacks that return values, throw, or return deferreds, new,
// fired or existing ones), roots with cancellers that do nothing, fire, throw, or fire and then throw, cancel()
// anywhere in a chain, dropped and copied handles, get(), gather/deferred_list/race, deferred coroutines that await
// a slot (fired, unfired, empty or already continued; try/catch around the await; after a resume_on hop;
// cancelled while suspended or hopping), callbacks that cancel while they run, timers on a test_clock
// (defer_later, add_timeout, a looping_call, advance, and the clock destroyed with timers pending), the
// semaphore, lock and queue, and links continued on two manual_executors whose run order the input chooses.
// Every misuse row of README that a single thread can reach is among them (negative delays, add_timeout on a
// continued deferred, continuing on a stopped executor, ...).
//
// Single-threaded and deterministic: every hop to an executor waits in that executor's queue until the input runs
// it, so any mismatch replays from its input. Shared by the libFuzzer target (deferred_fuzz.cpp) and the corpus
// replay test (tests/executors/fuzz_regression_test.cpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "anydefer/combinators.hpp"
#include "anydefer/coroutine.hpp"
#include "anydefer/deferred.hpp"
#include "anydefer/deferred_lock.hpp"
#include "anydefer/deferred_queue.hpp"
#include "anydefer/executors/manual_executor.hpp"
#include "anydefer/executors/test_clock.hpp"
#include "anydefer/executors/timers.hpp"

// GCC 12 at -O3 reports a false -Wrestrict inside std::string's operator+ (GCC bug 105329) for the
// "literal" + std::string expressions that build the logs.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

namespace anydefer_fuzz {

inline constexpr int kSlots = 8;
inline constexpr std::size_t kMaxOps = 64;
inline constexpr int kExecutors = 2;
// The toolkit the harness shares between slots: a semaphore of kPermits (which 0) and a lock (which 1), and a
// queue of ints holding at most kQueueSize items with at most kQueueBacklog getters waiting.
inline constexpr int kPermits = 2;
inline constexpr std::size_t kQueueSize = 2;
inline constexpr std::size_t kQueueBacklog = 2;

// Time on the test clock moves in ticks of one millisecond.
inline std::chrono::milliseconds ticks(int n) { return std::chrono::milliseconds(n); }
// A delay byte: 0 to 3 ticks, or (one value in five) a negative delay, which must be refused.
inline int delay_ticks(int byte) { return byte % 5 == 4 ? -1 : byte % 5; }
// A coroutine's action after its await: one that returns an int (types 0 to 4, see model::action).
inline int coro_action(int byte) { return (byte & ~7) | ((byte & 7) % 5); }

// With ANYDEFER_FUZZ_KEEP_ADAPTERS defined, the harness keeps every combinator's adapter until the very end,
// which keeps the combinator's output alive (a way to fuzz past a bug in freeing a combinator's output, should
// one be found again).
#ifdef ANYDEFER_FUZZ_KEEP_ADAPTERS
inline constexpr bool keep_adapters = true;
#else
inline constexpr bool keep_adapters = false;
#endif

// The only exception the harness's own functions throw; its code keeps logs exact.
struct fuzz_error : std::runtime_error {
  explicit fuzz_error(int c) : std::runtime_error("fuzz error " + std::to_string(c)), code(c) {}
  int code;
};

// A short, exact description of an exception (both sides must produce the same text).
inline std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const anydefer::first_error& f) {
    return "first(" + std::to_string(f.index()) + "," + describe(f.sub_failure().exception()) + ")";
  } catch (const anydefer::failure_group& g) {
    std::string s = "group(";
    for (std::size_t i = 0; i < g.failures().size(); ++i) s += (i ? "," : "") + describe(g.failures()[i].exception());
    return s + ")";
  } catch (const fuzz_error& f) {
    return "E" + std::to_string(f.code);
  } catch (const anydefer::cancelled_error&) {
    return "cancelled";
  } catch (const anydefer::timeout_error&) {
    return "timeout";
  } catch (const anydefer::executor_stopped_error&) {
    return "stopped";
  } catch (const anydefer::queue_overflow&) {
    return "overflow";
  } catch (const anydefer::queue_underflow&) {
    return "underflow";
  } catch (const anydefer::abandoned_waiter_error&) {
    return "abandoned";
  } catch (const anydefer::broken_deferred_error&) {
    return "broken";
  } catch (const anydefer::already_called_error&) {
    return "called";
  } catch (const anydefer::already_continued_error&) {
    return "continued";
  } catch (const anydefer::not_fireable_error&) {
    return "notfireable";
  } catch (const anydefer::empty_deferred_error&) {
    return "empty";
  } catch (const anydefer::not_fired_error&) {
    return "notfired";
  } catch (const std::invalid_argument&) {
    return "invalid_argument";
  } catch (const std::logic_error&) {
    return "logic";
  } catch (const std::exception& x) {
    return std::string("other:") + x.what();
  } catch (...) {
    return "unknown";
  }
}

// --- decoding ---------------------------------------------------------------------------------------------------

enum class op_kind : std::uint8_t {
  new_root,     // slot d = deferred<int>{} or deferred<int>(canceller)
  new_fired,    // slot d = succeed(v) or fail<int>(E)
  add,          // slot d = slot s.add_callback / add_errback / add_both / add_callbacks
  fire_value,   // slot s.callback(v)
  fire_error,   // slot s.errback(E) or errback(empty exception_ptr)
  cancel,       // slot s.cancel()
  drop,         // slot s = moved-from
  copy,         // slot d = slot s
  get,          // fired() then get() on slot s
  gather,       // slot d = gather(slots...).add_both(adapter)
  list,         // slot d = deferred_list(slots..., options).add_both(adapter)
  race,         // slot d = race(slots...).add_both(adapter)
  later,        // slot d = defer_later(clock, delay, callback with action b) (its input is 0)
  timeout,      // slot d = add_timeout(slot s, delay, clock)
  advance,      // clock.advance(a % 4 ticks)
  new_clock,    // destroy the clock (its pending timers are rejected) and make a new one
  add_on,       // slot d = slot s.add_callback / add_both(executor a & 1, action b)
  run_one,      // executor a & 1 runs its oldest task
  stop_exec,    // executor a & 1 stops: hand-overs to it are rejected from now on (queued tasks still run)
  coro,         // slot d = a deferred coroutine: try { co_await (copy of slot s) } catch, log, then action b
  acquire,      // slot d = (a & 1 ? lock : semaphore).acquire().add_callback(action b) (its input is 0)
  release,      // (a & 1 ? lock : semaphore).release()
  put,          // queue.put(a)
  take,         // slot d = queue.get()
  new_toolkit,  // destroy the semaphore, the lock and the queue (their waiters fail) and make new ones
  loop_start,   // slot d = looping_call.start(1 + a % 3 ticks, now = a & 4).add_callback(log): its function logs
                // each call, and (b % 3) throws, or stops the loop, on call 1 + (b >> 2) % 3
  loop_stop,    // looping_call.stop()
  count_
};

struct op {
  op_kind kind = op_kind::new_root;
  int s = 0;
  int d = 0;
  int a = 0;  // canceller byte, value, add kind, list options
  int b = 0;  // first action byte
  int c = 0;  // second action byte (add_callbacks' errback)
  std::vector<int> in;
};

class reader {
 public:
  reader(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}
  bool done() const { return i_ >= n_; }
  int byte() { return i_ < n_ ? p_[i_++] : 0; }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t i_ = 0;
};

// Combinators per program. cancel() of a combinator cancels every input, and an input that does not settle when
// cancelled (a coroutine hopping to an executor only notes the cancel for its next await) is cancelled again by
// every later cancel that reaches it: nested combinators that each take one deferred several times make that
// exponential (4 inputs, 13 levels: 4^13 walks, half a minute). Past this many, a combinator decodes as a drop.
inline constexpr int kMaxCombinators = 6;

inline std::vector<op> decode(const std::uint8_t* data, std::size_t size) {
  reader r(data, size);
  std::vector<op> ops;
  int combinators = 0;
  while (!r.done() && ops.size() < kMaxOps) {
    op o;
    o.kind = static_cast<op_kind>(r.byte() % static_cast<int>(op_kind::count_));
    switch (o.kind) {
      case op_kind::new_root:
      case op_kind::new_fired:
        o.d = r.byte() % kSlots;
        o.a = r.byte();
        break;
      case op_kind::add: {
        int sd = r.byte();
        o.s = sd % kSlots;
        o.d = (sd / kSlots) % kSlots;
        o.a = r.byte() % 4;
        o.b = r.byte();
        if (o.a == 3) o.c = r.byte();
        break;
      }
      case op_kind::fire_value:
      case op_kind::fire_error:
        o.s = r.byte() % kSlots;
        o.a = r.byte();
        break;
      case op_kind::cancel:
      case op_kind::drop:
      case op_kind::get:
        o.s = r.byte() % kSlots;
        break;
      case op_kind::copy: {
        int sd = r.byte();
        o.s = sd % kSlots;
        o.d = (sd / kSlots) % kSlots;
        break;
      }
      case op_kind::gather:
      case op_kind::list:
      case op_kind::race: {
        o.d = r.byte() % kSlots;
        if (o.kind == op_kind::list) o.a = r.byte() % 8;
        int n = r.byte() % 5;
        for (int i = 0; i < n; ++i) o.in.push_back(r.byte() % kSlots);
        if (++combinators > kMaxCombinators) {
          o.kind = op_kind::drop;
          o.s = o.d;
          o.in.clear();
        }
        break;
      }
      case op_kind::later:
        o.d = r.byte() % kSlots;
        o.a = r.byte();
        o.b = r.byte();
        break;
      case op_kind::timeout: {
        int sd = r.byte();
        o.s = sd % kSlots;
        o.d = (sd / kSlots) % kSlots;
        o.a = r.byte();
        break;
      }
      case op_kind::advance:
      case op_kind::run_one:
      case op_kind::stop_exec:
        o.a = r.byte();
        break;
      case op_kind::new_clock:
      case op_kind::new_toolkit:
        break;
      case op_kind::acquire:
        o.d = r.byte() % kSlots;
        o.a = r.byte() % 2;
        o.b = r.byte();
        break;
      case op_kind::release:
      case op_kind::put:
        o.a = r.byte();
        break;
      case op_kind::take:
        o.d = r.byte() % kSlots;
        break;
      case op_kind::loop_start:
        o.d = r.byte() % kSlots;
        o.a = r.byte();
        o.b = r.byte();
        break;
      case op_kind::loop_stop:
        break;
      case op_kind::add_on:
      case op_kind::coro: {
        int sd = r.byte();
        o.s = sd % kSlots;
        o.d = (sd / kSlots) % kSlots;
        o.a = r.byte() % 4;  // add_on: executor and add_both; coro: bit 1 hops through resume_on(executor bit 0)
        o.b = r.byte();
        break;
      }
      case op_kind::count_:
        break;
    }
    ops.push_back(std::move(o));
  }
  return ops;
}

inline std::string action_text(int a) { return std::to_string(a & 7) + "/" + std::to_string(a >> 3); }

inline std::string op_text(const op& o) {
  auto sl = [](int s) { return "s" + std::to_string(s); };
  auto list = [&] {
    std::string t;
    for (std::size_t i = 0; i < o.in.size(); ++i) t += (i ? "," : "") + sl(o.in[i]);
    return t;
  };
  static const char* const add_names[] = {"add_callback", "add_errback", "add_both", "add_callbacks"};
  switch (o.kind) {
    case op_kind::new_root:
      return sl(o.d) + " = root(canceller " + std::to_string(o.a % 6) + "/" + std::to_string(o.a / 6) + ")";
    case op_kind::new_fired:
      return sl(o.d) + " = " +
             ((o.a & 1) ? "fail(E" + std::to_string(o.a >> 1) + ")" : "succeed(" + std::to_string(o.a >> 1) + ")");
    case op_kind::add:
      return sl(o.d) + " = " + sl(o.s) + "." + add_names[o.a] + "(" + action_text(o.b) +
             (o.a == 3 ? ", " + action_text(o.c) : "") + ")";
    case op_kind::fire_value:
      return sl(o.s) + ".callback(" + std::to_string(o.a) + ")";
    case op_kind::fire_error:
      return sl(o.s) + ".errback(" + (o.a >= 240 ? std::string("null") : "E" + std::to_string(o.a % 32)) + ")";
    case op_kind::cancel:
      return sl(o.s) + ".cancel()";
    case op_kind::drop:
      return "drop " + sl(o.s);
    case op_kind::copy:
      return sl(o.d) + " = " + sl(o.s);
    case op_kind::get:
      return sl(o.s) + ".get()";
    case op_kind::gather:
      return sl(o.d) + " = gather(" + list() + ")";
    case op_kind::list:
      return sl(o.d) + " = deferred_list(" + list() + ", occ=" + std::to_string(o.a & 1) +
             " oeb=" + std::to_string((o.a >> 1) & 1) + " consume=" + std::to_string((o.a >> 2) & 1) + ")";
    case op_kind::race:
      return sl(o.d) + " = race(" + list() + ")";
    case op_kind::later:
      return sl(o.d) + " = defer_later(" + std::to_string(delay_ticks(o.a)) + " ms, " + action_text(o.b) + ")";
    case op_kind::timeout:
      return sl(o.d) + " = add_timeout(" + sl(o.s) + ", " + std::to_string(delay_ticks(o.a)) + " ms)";
    case op_kind::advance:
      return "clock.advance(" + std::to_string(o.a % 4) + " ms)";
    case op_kind::new_clock:
      return "clock destroyed, a new one made";
    case op_kind::add_on:
      return sl(o.d) + " = " + sl(o.s) + ((o.a & 2) != 0 ? ".add_both(e" : ".add_callback(e") +
             std::to_string(o.a & 1) + ", " + action_text(o.b) + ")";
    case op_kind::run_one:
      return "e" + std::to_string(o.a & 1) + ".run_one()";
    case op_kind::stop_exec:
      return "e" + std::to_string(o.a & 1) + ".stop()";
    case op_kind::coro:
      return sl(o.d) + " = coroutine(" + ((o.a & 2) != 0 ? "resume_on(e" + std::to_string(o.a & 1) + "), " : "") +
             "await " + sl(o.s) + ", then " + action_text(coro_action(o.b)) + ")";
    case op_kind::acquire:
      return sl(o.d) + " = " + ((o.a & 1) != 0 ? "lock" : "semaphore") + ".acquire().add_callback(" + action_text(o.b) +
             ")";
    case op_kind::release:
      return std::string((o.a & 1) != 0 ? "lock" : "semaphore") + ".release()";
    case op_kind::put:
      return "queue.put(" + std::to_string(o.a) + ")";
    case op_kind::take:
      return sl(o.d) + " = queue.get()";
    case op_kind::new_toolkit:
      return "semaphore, lock and queue destroyed, new ones made";
    case op_kind::loop_start: {
      static const char* const modes[] = {"", ", throws on call ", ", stops itself on call "};
      return sl(o.d) + " = looping_call.start(" + std::to_string(1 + o.a % 3) +
             " ms, now=" + std::to_string((o.a >> 2) & 1) + modes[o.b % 3] +
             (o.b % 3 != 0 ? std::to_string(1 + (o.b >> 2) % 3) : "") + ")";
    }
    case op_kind::loop_stop:
      return "looping_call.stop()";
    case op_kind::count_:
      break;
  }
  return "?";
}

// Canceller behaviours: 0 none, 1 does nothing, 2 fires value p, 3 fires E p, 4 throws E p,
// 5 fires value p then throws E p+1.
inline int canceller_type(int byte) { return byte % 6; }
inline int canceller_param(int byte) { return (byte / 6) % 32; }
// The canceller of a root created inside a callback (action 5), from the action's parameter.
inline int inner_canceller_type(int p) {
  static const int types[] = {0, 1, 2, 4};
  return types[(p >> 3) & 3];
}

// The "may this callback return that deferred" check. A callback of link L returning a deferred X that waits
// (transitively) on L would make L and X wait on each other; this graph of "consumed by" edges over harness ids
// (an over-approximation, maintained identically on both sides from the operations alone) rules that out.
class consumer_graph {
 public:
  void add(int from, int to) {
    if (from >= 0 && to >= 0) out_[from].push_back(to);
  }
  bool reaches(int from, int to) const {
    std::vector<int> stack{from};
    std::map<int, bool> seen;
    while (!stack.empty()) {
      int x = stack.back();
      stack.pop_back();
      if (x == to) return true;
      if (seen[x]) continue;
      seen[x] = true;
      auto it = out_.find(x);
      if (it != out_.end()) stack.insert(stack.end(), it->second.begin(), it->second.end());
    }
    return false;
  }

 private:
  std::map<int, std::vector<int>> out_;
};

// --- anydefer ---------------------------------------------------------------------------------------------------

class real_side {
 public:
  using deferred = anydefer::deferred<int>;

  explicit real_side(std::vector<std::string>& log) : log_(log) {
    for (auto& s : slots_) {
      deferred made;
      deferred sink(std::move(made));
      s = std::move(made);  // an empty (moved-from) handle
    }
  }

  bool slot_valid(int s) const { return slot_id_[s] >= 0; }
  int slot_id(int s) const { return slot_id_[s]; }
  bool handle_valid(int s) const { return slots_[s].valid(); }
  bool fired(int s) const { return slots_[s].fired(); }

  void apply(const op& o, std::size_t index) {
    const std::string tag = "op" + std::to_string(index) + ":";
    try {
      switch (o.kind) {
        case op_kind::new_root: {
          int id = next_id_++;
          int ct = canceller_type(o.a);
          if (ct == 0) {
            put(o.d, deferred(), id);
          } else {
            put(o.d, deferred(canceller{this, id, ct, canceller_param(o.a)}), id);
          }
          break;
        }
        case op_kind::new_fired: {
          int id = next_id_++;
          put(o.d,
              (o.a & 1) ? anydefer::fail<int>(anydefer::failure::of(fuzz_error(o.a >> 1)))
                        : anydefer::succeed(o.a >> 1),
              id);
          break;
        }
        case op_kind::add: {
          int id = next_id_++;
          graph_.add(slot_id_[o.s], id);
          put(o.d, add(o, id), id);
          break;
        }
        case op_kind::fire_value:
          slots_[o.s].callback(o.a);
          break;
        case op_kind::fire_error:
          if (o.a >= 240) {
            slots_[o.s].errback(std::exception_ptr{});
          } else {
            slots_[o.s].errback(fuzz_error(o.a % 32));
          }
          break;
        case op_kind::cancel:
          slots_[o.s].cancel();
          break;
        case op_kind::drop:
          drop(o.s);
          break;
        case op_kind::copy:
          put(o.d, deferred(slots_[o.s]), slot_id_[o.s]);
          break;
        case op_kind::get:
          if (!slots_[o.s].fired()) {
            log_.push_back(tag + "unfired");
            return;
          } else {
            int v = slots_[o.s].get();
            log_.push_back(tag + "get=" + std::to_string(v));
            return;
          }
        case op_kind::gather:
        case op_kind::list:
        case op_kind::race:
          combine(o);
          break;
        case op_kind::later: {
          int id = next_id_++;
          const auto delay = ticks(delay_ticks(o.a));
          put(o.d,
              (o.b & 7) >= 5 ? anydefer::defer_later(*clock_, delay, later_function<deferred>(id, o.b))
                             : anydefer::defer_later(*clock_, delay, later_function<int>(id, o.b)),
              id);
          break;
        }
        case op_kind::timeout: {
          int id = next_id_++;
          graph_.add(slot_id_[o.s], id);
          put(o.d, anydefer::add_timeout(slots_[o.s], ticks(delay_ticks(o.a)), *clock_), id);
          break;
        }
        case op_kind::advance:
          log_.push_back(tag + "ran=" + std::to_string(clock_->advance(ticks(o.a % 4))));
          return;
        case op_kind::new_clock:
          new_clock();
          break;
        case op_kind::add_on: {
          int id = next_id_++;
          graph_.add(slot_id_[o.s], id);
          put(o.d, add_on(o, id), id);
          break;
        }
        case op_kind::run_one:
          log_.push_back(tag + (executors_[o.a & 1].run_one() ? "ran" : "idle"));
          return;
        case op_kind::stop_exec:
          executors_[o.a & 1].stop();
          break;
        case op_kind::coro: {
          int id = next_id_++;
          graph_.add(slot_id_[o.s], id);
          anydefer::manual_executor* hop = (o.a & 2) != 0 ? &executors_[o.a & 1] : nullptr;
          put(o.d, await_then_act(this, id, slots_[o.s], coro_action(o.b), hop), id);
          break;
        }
        case op_kind::acquire: {
          int id = next_id_++;
          anydefer::deferred<void> permit = (o.a & 1) != 0 ? lock_->acquire() : semaphore_->acquire();
          put(o.d,
              (o.b & 7) >= 5 ? permit.add_callback(later_function<deferred>(id, o.b))
                             : permit.add_callback(later_function<int>(id, o.b)),
              id);
          break;
        }
        case op_kind::release:
          if ((o.a & 1) != 0) {
            lock_->release();
          } else {
            semaphore_->release();
          }
          break;
        case op_kind::put:
          queue_->put(o.a);
          break;
        case op_kind::take: {
          int id = next_id_++;
          put(o.d, queue_->get(), id);
          break;
        }
        case op_kind::new_toolkit:
          new_toolkit();
          break;
        case op_kind::loop_start: {
          int id = next_id_++;
          loop_calls_ = 0;
          loop_mode_ = o.b % 3;
          loop_at_ = 1 + (o.b >> 2) % 3;
          put(o.d, loop_->start(ticks(1 + o.a % 3), (o.a & 4) != 0).add_callback(later_function<int>(id, 0)), id);
          break;
        }
        case op_kind::loop_stop:
          loop_->stop();
          break;
        case op_kind::count_:
          break;
      }
      log_.push_back(tag + "ok");
    } catch (...) {
      log_.push_back(tag + describe(std::current_exception()));
    }
  }

  // Destroys the clock, which rejects its pending timers, and starts a new one at time zero (with a new
  // looping_call: the old one, stopped by the rejection, was bound to the old clock).
  void new_clock() {
    clock_.reset();
    loop_.reset();
    clock_ = std::make_unique<anydefer::test_clock>();
    loop_.emplace(*clock_, loop_function());
  }
  std::size_t pending_timers() const { return clock_->pending(); }

  // Destroys the semaphore, the lock and the queue, in that order (their waiters fail with
  // abandoned_waiter_error, oldest first), and makes new ones.
  void new_toolkit() {
    semaphore_.reset();
    lock_.reset();
    queue_.reset();
    semaphore_.emplace(kPermits);
    lock_.emplace();
    queue_.emplace(kQueueSize, kQueueBacklog);
  }
  std::size_t toolkit_waiters() const { return semaphore_->waiting() + lock_->waiting() + queue_->waiting(); }

  // Runs both executors until neither has a task (what one runs may queue on the other); logs what ran.
  void drain_executors() {
    while (executors_[0].pending() + executors_[1].pending() != 0) {
      for (int k = 0; k < kExecutors; ++k) {
        const std::size_t ran = executors_[k].run_all();
        if (ran != 0) log_.push_back("end: e" + std::to_string(k) + " ran " + std::to_string(ran));
      }
    }
  }

  void drop(int s) {
    deferred gone(std::move(slots_[s]));
    slot_id_[s] = -1;
  }  // `gone` goes here, after the slot is empty: what its drop runs may refill the slot

  // The harness's own handles (see keep_adapters): drops those on roots that fired, or all of them.
  std::vector<int> prune_keepers(bool all) {
    std::vector<keeper> kept;
    for (auto& k : keep_) {
      if (!all && (k.adapter || !k.d.fired())) kept.push_back(std::move(k));
    }
    keep_.clear();
    keep_ = std::move(kept);
    std::vector<int> ids;
    for (const auto& k : keep_) ids.push_back(k.id);
    return ids;
  }
  // Cancels each kept root that is still pending; returns how many.
  int cancel_keepers() {
    int count = 0;
    for (std::size_t i = 0; i < keep_.size(); ++i) {
      if (keep_[i].adapter || keep_[i].d.fired()) continue;
      ++count;
      log_.push_back("end: cancel R" + std::to_string(keep_[i].id));
      deferred d = keep_[i].d;  // keep_ does not change meanwhile, but a copy keeps this obviously safe
      d.cancel();
    }
    return count;
  }

 private:
  struct keeper {
    int id;
    bool adapter;
    deferred d;
  };
  struct canceller {
    real_side* side;
    int id;
    int type;
    int param;
    void operator()(deferred& self) const {
      side->log_.push_back("C" + std::to_string(id));
      switch (type) {
        case 2:
          self.callback(param);
          break;
        case 3:
          self.errback(fuzz_error(param));
          break;
        case 4:
          throw fuzz_error(param);
        case 5:
          self.callback(param);
          throw fuzz_error(param + 1);
        default:
          break;
      }
    }
  };

  // Stores `x` in slot d, then drops what the slot held.
  void put(int d, deferred x, int id) {
    deferred old(std::move(slots_[d]));
    slots_[d] = std::move(x);
    slot_id_[d] = id;
  }

  static std::string text(anydefer::result<int>& r) {
    return r.has_value() ? std::to_string(r.value()) : describe(r.error().exception());
  }

  // cancel() from inside a callback, through a copy: what the cancel runs may replace the slot meanwhile.
  void cancel_from_callback(int k) {
    if (!slots_[k].valid()) return;
    deferred target = slots_[k];
    target.cancel();
  }

  // The action of a callback (see model::action for the meaning of each type).
  template <class Ret>
  Ret act(int link_id, int a, anydefer::result<int>& in) {
    const int t = a & 7;
    const int p = a >> 3;
    if constexpr (std::is_same_v<Ret, int>) {
      switch (t) {
        case 0:
          return p;
        case 1:
          if (p >= 16) cancel_from_callback(p & 7);
          return in.has_value() ? (in.value() + p) & 255 : p;
        case 2:
          throw fuzz_error(p);
        case 3:
          return in.value();  // rethrows a failure
        default:              // 4
          if (in.has_value()) return in.value();
          if (in.error().check<anydefer::cancelled_error>()) return p;
          in.error().rethrow();
      }
    } else {
      switch (t) {
        case 5: {
          int id = next_id_++;
          int ct = inner_canceller_type(p);
          deferred r = ct == 0 ? deferred() : deferred(canceller{this, id, ct, p & 7});
          graph_.add(id, link_id);
          put(p & 7, r, id);
          return r;
        }
        case 6:
          return (p & 1) ? anydefer::fail<int>(anydefer::failure::of(fuzz_error(p >> 1))) : anydefer::succeed(p >> 1);
        default: {  // 7
          const int k = p & 7;
          const int x = slot_id_[k];
          if (x >= 0 && x != link_id && graph_.reaches(link_id, x)) return anydefer::succeed(p >> 3);
          graph_.add(x, link_id);
          return slots_[k];
        }
      }
    }
  }

  template <class Ret>
  auto on_value(int id, int a, const char* tag) {
    return [this, id, a, tag](int v) -> Ret {
      anydefer::result<int> in(v);
      log_.push_back("L" + std::to_string(id) + ":" + tag + "(" + text(in) + ")");
      return act<Ret>(id, a, in);
    };
  }
  template <class Ret>
  auto on_failure(int id, int a, const char* tag) {
    return [this, id, a, tag](anydefer::failure f) -> Ret {
      anydefer::result<int> in(std::move(f));
      log_.push_back("L" + std::to_string(id) + ":" + tag + "(" + text(in) + ")");
      return act<Ret>(id, a, in);
    };
  }
  template <class Ret>
  auto on_result(int id, int a) {
    return [this, id, a](anydefer::result<int>&& in) -> Ret {
      log_.push_back("L" + std::to_string(id) + ":both(" + text(in) + ")");
      return act<Ret>(id, a, in);
    };
  }

  template <class RetF>
  deferred add_callbacks(const deferred& up, int id, int a, int b) {
    if ((b & 7) >= 5) return up.add_callbacks(on_value<RetF>(id, a, "cbv"), on_failure<deferred>(id, b, "cbe"));
    return up.add_callbacks(on_value<RetF>(id, a, "cbv"), on_failure<int>(id, b, "cbe"));
  }

  deferred add(const op& o, int id) {
    const deferred& up = slots_[o.s];
    const bool d = (o.b & 7) >= 5;
    switch (o.a) {
      case 0:
        return d ? up.add_callback(on_value<deferred>(id, o.b, "cb")) : up.add_callback(on_value<int>(id, o.b, "cb"));
      case 1:
        return d ? up.add_errback(on_failure<deferred>(id, o.b, "eb")) : up.add_errback(on_failure<int>(id, o.b, "eb"));
      case 2:
        return d ? up.add_both(on_result<deferred>(id, o.b)) : up.add_both(on_result<int>(id, o.b));
      default:
        return d ? add_callbacks<deferred>(up, id, o.b, o.c) : add_callbacks<int>(up, id, o.b, o.c);
    }
  }

  // defer_later's function: a callback of link `id` whose input is 0.
  template <class Ret>
  std::function<Ret()> later_function(int id, int a) {  // not deduced: apply() comes first
    return [this, id, a]() -> Ret {
      anydefer::result<int> in(0);
      log_.push_back("L" + std::to_string(id) + ":cb(" + text(in) + ")");
      return act<Ret>(id, a, in);
    };
  }

  deferred add_on(const op& o, int id) {
    const deferred& up = slots_[o.s];
    anydefer::manual_executor& ex = executors_[o.a & 1];
    const bool d = (o.b & 7) >= 5;
    if ((o.a & 2) != 0) {
      return d ? up.add_both(ex, on_result<deferred>(id, o.b)) : up.add_both(ex, on_result<int>(id, o.b));
    }
    return d ? up.add_callback(ex, on_value<deferred>(id, o.b, "cb"))
             : up.add_callback(ex, on_value<int>(id, o.b, "cb"));
  }

  // A deferred coroutine: hops to `hop` first if given, then awaits `awaited` (a failure, an empty or already
  // continued deferred, or a hop the executor rejects, is caught), logs what it got, then does action `a` (one
  // returning an int, or throwing). Its parameter never outlives the try: the await takes it, the catch drops it.
  static deferred await_then_act(real_side* side, int id, deferred awaited, int a, anydefer::manual_executor* hop) {
    std::optional<anydefer::result<int>> in;
    try {
      if (hop != nullptr) co_await anydefer::resume_on(*hop);
      in.emplace(co_await std::move(awaited));
    } catch (...) {
      deferred gone(std::move(awaited));
      in.emplace(anydefer::failure::current());
    }
    side->log_.push_back("K" + std::to_string(id) + ":await(" + text(*in) + ")");
    co_return side->act<int>(id, a, *in);
  }

  void combine(const op& o) {
    const int id = next_id_++;
    std::vector<deferred> in;
    for (int s : o.in) {
      in.push_back(slots_[s]);
      graph_.add(slot_id_[s], id);
    }
    const std::string name = "A" + std::to_string(id) + ":";
    auto fail = [this, name](const anydefer::failure& f) {
      log_.push_back(name + "fail:" + describe(f.exception()));
      f.rethrow();
    };
    deferred out = [&]() -> deferred {
      if (o.kind == op_kind::gather) {
        auto c = anydefer::gather(in);
        return c.add_both([this, name, fail](anydefer::result<std::vector<int>>&& r) -> int {
          if (r.has_failure()) fail(r.error());
          std::string t = name + "gather[";
          int sum = 0;
          for (std::size_t i = 0; i < r.value().size(); ++i) {
            t += (i ? "," : "") + std::to_string(r.value()[i]);
            sum += r.value()[i];
          }
          log_.push_back(t + "]");
          return sum & 255;
        });
      }
      if (o.kind == op_kind::list) {
        anydefer::deferred_list_options opts;
        opts.fire_on_one_callback = (o.a & 1) != 0;
        opts.fire_on_one_errback = (o.a & 2) != 0;
        opts.consume_errors = (o.a & 4) != 0;
        auto c = anydefer::deferred_list(in, opts);
        return c.add_both([this, name, fail](anydefer::result<std::vector<anydefer::result<int>>>&& r) -> int {
          if (r.has_failure()) fail(r.error());
          std::string t = name + "list[";
          int ok = 0;
          for (std::size_t i = 0; i < r.value().size(); ++i) {
            auto& e = r.value()[i];
            if (e.has_value()) ++ok;
            t += std::string(i ? "," : "") + (e.has_value() ? "ok" : "err:") + text(e);
          }
          log_.push_back(t + "]");
          return ok;
        });
      }
      auto c = anydefer::race(in);
      return c.add_both([this, name, fail](anydefer::result<std::pair<std::size_t, int>>&& r) -> int {
        if (r.has_failure()) fail(r.error());
        log_.push_back(name + "race(" + std::to_string(r.value().first) + "," + std::to_string(r.value().second) + ")");
        return r.value().second;
      });
    }();
    for (auto& d : in) {
      deferred gone(std::move(d));
    }
    if (keep_adapters) keep_.push_back({id, true, out});
    put(o.d, std::move(out), id);
  }

  std::vector<std::string>& log_;
  // Before the deferreds: an executor must outlive the links continued on it, and so must the clock its timers.
  anydefer::manual_executor executors_[kExecutors];
  std::unique_ptr<anydefer::test_clock> clock_ = std::make_unique<anydefer::test_clock>();
  // The looping_call's function: logs each call; throws, or stops the loop, on call loop_at_ (loop_mode_ 1, 2).
  int loop_calls_ = 0;
  int loop_mode_ = 0;
  int loop_at_ = 1;
  std::function<void()> loop_function() {
    return [this] {
      ++loop_calls_;
      log_.push_back("P" + std::to_string(loop_calls_));
      if (loop_calls_ != loop_at_) return;
      if (loop_mode_ == 1) throw fuzz_error(30);
      if (loop_mode_ == 2) loop_->stop();
    };
  }
  std::optional<anydefer::looping_call> loop_{std::in_place, *clock_, loop_function()};
  std::optional<anydefer::deferred_semaphore> semaphore_{std::in_place, kPermits};
  std::optional<anydefer::deferred_lock> lock_{std::in_place};
  std::optional<anydefer::deferred_queue<int>> queue_{std::in_place, kQueueSize, kQueueBacklog};
  std::vector<keeper> keep_;
  deferred slots_[kSlots];
  int slot_id_[kSlots] = {-1, -1, -1, -1, -1, -1, -1, -1};
  int next_id_ = 0;
  consumer_graph graph_;
};

// --- the reference model ----------------------------------------------------------------------------------------
//
// One node per deferred state. Rules (README "The rules of a chain", "Misuse", cancellation paragraph;
// deferred.hpp and combinators.hpp comments):
//   - a node has at most one consumer (a link, or a combinator input); a second add_*, or get() after one, is
//     already_continued_error; get() and a link added after the fire mark the result consumed;
//   - callback()/errback() only on roots (else not_fireable_error); a fired root throws already_called_error,
//     except for the first late fire after a cancel() without canceller, which is swallowed;
//   - cancel(): on a fired node, nothing; on a node that waits on an unfired one (a link on its upstream or on the
//     deferred its callback returned), cancel that one instead; a root with a canceller calls it once (it may
//     fire; else cancelled_error; if it throws, the root fails with what it threw, or, if it fired first, keeps
//     that result and the exception is reported as unhandled); a root without one fails with
//     cancelled_error and arms the swallow; a link whose function is running fails with cancelled_error now and
//     drops what its function later produces; a combinator cancels every input;
//   - the last handle of an unfired root without a canceller going while it has a consumer fails it with
//     broken_deferred_error (one with a canceller stays pending, still cancellable through its consumer);
//   - a failure no consumer took is reported once when its state goes (counted at the end, when all have gone);
//     deferred_list(consume_errors=false) also reports each failed input as it records it;
//   - a link continued on an executor hands the upstream's result to that executor, which runs it in FIFO order
//     (or rejects it at once if stopped: the link fails with executor_stopped_error); a link cancelled while
//     queued fails with cancelled_error then, and does not run its function when its task runs;
//   - a deferred coroutine starts at once and resumes on the thread that fires what it awaits, but a resumption
//     that comes while another coroutine is resuming on this thread waits until that one returns (a per-thread
//     FIFO); cancel() of a suspended one cancels what it awaits, and one that is about to resume ignores it;
//   - timers (defer_later, add_timeout) fire in advance(), earliest deadline first, equal deadlines in the order
//     they were scheduled; a clock destroyed rejects its timers in the same order (executor_stopped_error);
//     cancelling defer_later's deferred removes its timer; add_timeout's timer cancels the deferred it guards and
//     turns cancelled_error into timeout_error (or, if the clock went, into executor_stopped_error), and a result
//     in time removes the timer;
//   - a semaphore (or lock) grants a free permit at once, else queues the acquire (FIFO); release() hands the
//     permit to the oldest waiter, firing it inside release(), or, if this thread is inside a grant already, right
//     after that grant (a per-thread FIFO); a grant to a waiter cancelled meanwhile is released again; release()
//     with every permit free is std::logic_error; a cancelled waiter leaves the queue;
//   - a queue's put() gives the item to the oldest getter that has not fired (inside put()), else stores it, else
//     throws queue_overflow; get() takes the oldest item, else waits, else (backlog full) throws queue_underflow;
//   - destroying a semaphore, lock or queue fails its queued waiters, oldest first, with abandoned_waiter_error.
struct mresult {
  bool ok = true;
  int v = 0;
  std::string e;
  static mresult value(int v) { return {true, v, {}}; }
  static mresult error(std::string e) { return {false, 0, std::move(e)}; }
  std::string text() const { return ok ? std::to_string(v) : e; }
};

struct mnode {
  enum kind_t : std::uint8_t { root, link, comb, timer, coro } kind = root;
  int id = -1;
  bool ready = false;
  mresult res;
  int consumer = -1;
  int consumer_index = 0;
  bool consumed = false;
  int handles = 0;
  // root
  int ctype = 0;
  int cparam = 0;
  bool cancel_requested = false;
  bool swallow = false;
  // link: waiting on its upstream, queued on its executor, running its function, waiting on an inner deferred,
  // or done; a coroutine: waiting on what it awaits, resuming (queued on the thread's resumptions), or done
  enum lstate_t : std::uint8_t { wait_up, queued, running, wait_inner, done } ls = wait_up;
  int upstream = -1;
  int inner = -1;
  int add_kind = 0;   // 0 callback, 1 errback, 2 both, 3 callbacks, 4 combinator adapter, 5 add_timeout's guard
  int executor = -1;  // a link continued on an executor
  // add_timeout's guard: its timer (an index into model::timers_, or -1), and what the timer did
  enum guard_t : std::uint8_t { pending, timed_out, unenforceable } guard = pending;
  int guard_timer = -1;
  // a defer_later timer node: its timer
  int timer_index = -1;
  // a coroutine: the deferred its parameter holds (until its await takes it), whether a cancel() came while it
  // awaited no deferred, and whether its next resumption delivers what it awaited (else it comes off a hop)
  int awaits = -1;
  bool cancel_pending = false;
  bool resumes_awaited = true;
  int act1 = 0;
  int act2 = 0;
  // combinator
  op_kind comb_kind = op_kind::gather;
  int opts = 0;
  std::vector<int> inputs;
  std::vector<std::optional<mresult>> entries;
  int remaining = 0;
  bool won = false;
  std::string out_text;  // what the adapter logs
};

class model {
 public:
  explicit model(std::vector<std::string>& log) : log_(log) {
    for (int& s : slots_) s = -1;
  }

  bool slot_valid(int s) const { return slots_[s] >= 0; }
  int slot_id(int s) const { return slots_[s] >= 0 ? n_[slots_[s]].id : -1; }
  bool fired(int s) const { return n_[slots_[s]].ready; }

  void apply(const op& o, std::size_t index) {
    const std::string tag = "op" + std::to_string(index) + ":";
    std::optional<std::string> threw;
    switch (o.kind) {
      case op_kind::new_root: {
        int x = make(mnode::root, next_id_++);
        n_[x].ctype = canceller_type(o.a);
        n_[x].cparam = canceller_param(o.a);
        n_[x].handles = 1;
        put(o.d, x);
        break;
      }
      case op_kind::new_fired: {
        int x = make(mnode::root, next_id_++);
        n_[x].ready = true;
        n_[x].res = (o.a & 1) ? mresult::error("E" + std::to_string(o.a >> 1)) : mresult::value(o.a >> 1);
        n_[x].handles = 1;
        put(o.d, x);
        break;
      }
      case op_kind::add:
        threw = add(o);
        break;
      case op_kind::fire_value:
        threw = slots_[o.s] < 0 ? std::optional<std::string>("empty") : fire(slots_[o.s], mresult::value(o.a));
        break;
      case op_kind::fire_error:
        if (o.a >= 240) {
          threw = "invalid_argument";  // failure's constructor rejects the empty exception_ptr first
        } else {
          threw = slots_[o.s] < 0 ? std::optional<std::string>("empty")
                                  : fire(slots_[o.s], mresult::error("E" + std::to_string(o.a % 32)));
        }
        break;
      case op_kind::cancel:
        if (slots_[o.s] < 0) {
          threw = "empty";
        } else {
          cancel(slots_[o.s]);
        }
        break;
      case op_kind::drop:
        drop(o.s);
        break;
      case op_kind::copy: {
        int x = slots_[o.s];
        if (x >= 0) ++n_[x].handles;
        put(o.d, x);
        break;
      }
      case op_kind::get: {
        int x = slots_[o.s];
        if (x < 0) {
          threw = "empty";
        } else if (!n_[x].ready) {
          log_.push_back(tag + "unfired");
          return;
        } else if (n_[x].consumer >= 0 || n_[x].consumed) {
          threw = "continued";
        } else {
          n_[x].consumed = true;
          if (n_[x].res.ok) {
            log_.push_back(tag + "get=" + std::to_string(n_[x].res.v));
            return;
          }
          threw = n_[x].res.e;
        }
        break;
      }
      case op_kind::gather:
      case op_kind::list:
      case op_kind::race:
        combine(o);
        break;
      case op_kind::later:
        threw = later(o);
        break;
      case op_kind::timeout:
        threw = timeout(o);
        break;
      case op_kind::advance:
        log_.push_back(tag + "ran=" + std::to_string(advance(o.a % 4)));
        return;
      case op_kind::new_clock:
        new_clock();
        break;
      case op_kind::add_on:
        threw = add(o, o.a & 1);
        break;
      case op_kind::run_one:
        log_.push_back(tag + (run_one(o.a & 1) ? "ran" : "idle"));
        return;
      case op_kind::stop_exec:
        stopped_[o.a & 1] = true;
        break;
      case op_kind::coro:
        coroutine(o);
        break;
      case op_kind::acquire:
        acquire(o);
        break;
      case op_kind::release:
        threw = release(o.a & 1);
        break;
      case op_kind::put:
        threw = queue_put(o.a);
        break;
      case op_kind::take:
        threw = queue_get(o);
        break;
      case op_kind::new_toolkit:
        new_toolkit();
        break;
      case op_kind::loop_start:
        threw = loop_start(o);
        break;
      case op_kind::loop_stop:
        threw = loop_stop();
        break;
      case op_kind::count_:
        break;
    }
    log_.push_back(tag + (threw ? *threw : "ok"));
  }

  void new_toolkit() {
    for (int which = 0; which < 2; ++which) abandon(sems_[which].waiters);
    abandon(getters_);
    sems_[0] = msem{kPermits, kPermits, {}};
    sems_[1] = msem{1, 1, {}};
    items_.clear();
  }
  std::size_t toolkit_waiters() const { return sems_[0].waiters.size() + sems_[1].waiters.size() + getters_.size(); }

  // The clock's destruction: its pending timers are rejected, earliest first; then a new clock at time zero.
  void new_clock() {
    while (int t = next_timer(std::numeric_limits<long>::max())) reject_timer(t - 1);
    now_ = 0;  // the entries stay, all dead: guards still name theirs by index
  }
  std::size_t pending_timers() const {
    std::size_t n = 0;
    for (const mtimer& t : timers_) n += t.live ? 1 : 0;
    return n;
  }

  void drain_executors() {
    while (!queues_[0].empty() || !queues_[1].empty()) {
      for (int k = 0; k < kExecutors; ++k) {
        std::size_t ran = 0;
        while (run_one(k)) ++ran;
        if (ran != 0) log_.push_back("end: e" + std::to_string(k) + " ran " + std::to_string(ran));
      }
    }
  }

  void drop(int s) {
    int old = slots_[s];
    slots_[s] = -1;
    drop_handle(old);
  }

  std::vector<int> prune_keepers(bool all) {
    std::vector<int> kept;
    for (int x : keep_) {
      if (!all && (n_[x].kind == mnode::link || !n_[x].ready)) kept.push_back(x);
    }
    keep_ = kept;
    std::vector<int> ids;
    for (int x : keep_) ids.push_back(n_[x].id);
    return ids;
  }
  int cancel_keepers() {
    int count = 0;
    for (std::size_t i = 0; i < keep_.size(); ++i) {
      if (n_[keep_[i]].kind == mnode::link || n_[keep_[i]].ready) continue;
      ++count;
      log_.push_back("end: cancel R" + std::to_string(n_[keep_[i]].id));
      cancel(keep_[i]);
    }
    return count;
  }

  // Unhandled-failure reports once every state has gone.
  int expected_reports() const {
    int count = list_reports_ + canceller_reports_;
    for (const mnode& m : n_) {
      if (m.ready && !m.res.ok && m.consumer < 0 && !m.consumed) ++count;
    }
    return count;
  }

 private:
  struct outcome {
    bool is_deferred = false;
    int x = -1;  // the deferred's node (with one temporary handle counted), -1 for an empty handle
    mresult r;
  };
  enum class attach { attached, ready_now, already_continued };

  int make(mnode::kind_t k, int id) {
    n_.emplace_back();
    n_.back().kind = k;
    n_.back().id = id;
    return static_cast<int>(n_.size()) - 1;
  }

  // Slot d takes over one handle already counted on x; then the handle it held goes.
  void put(int d, int x) {
    int old = slots_[d];
    slots_[d] = x;
    drop_handle(old);
  }

  // The abandonment rule: the last handle of an unfired root that something waits on fails it as broken (with or
  // without a canceller).
  void drop_handle(int x) {
    if (x < 0) return;
    if (--n_[x].handles == 0 && n_[x].kind == mnode::root && !n_[x].ready && n_[x].consumer >= 0) {
      fail_internal(x, "broken");
    }
  }

  attach try_attach(int x, int consumer, int index) {
    mnode& m = n_[x];
    if (m.consumer >= 0 || m.consumed) return attach::already_continued;
    if (m.ready) {
      m.consumed = true;
      return attach::ready_now;
    }
    m.consumer = consumer;
    m.consumer_index = index;
    return attach::attached;
  }

  void publish(int x) {
    int c = n_[x].consumer;
    if (c < 0) return;
    if (n_[c].kind == mnode::link) {
      link_on_ready(c, x);
    } else if (n_[c].kind == mnode::coro) {
      resume(c);
    } else {
      comb_input(c, n_[x].consumer_index, n_[x].res);
    }
  }

  // The library's claim, write, publish: x takes r unless it already has a result, and its consumer runs.
  // Returns false if x had a result.
  bool settle_and_publish(int x, const mresult& r) {
    if (n_[x].ready) return false;
    n_[x].ready = true;
    n_[x].res = r;
    publish(x);
    return true;
  }

  void fail_internal(int x, const std::string& e) { settle_and_publish(x, mresult::error(e)); }

  // callback()/errback() on node x.
  std::optional<std::string> fire(int x, const mresult& r) {
    mnode& m = n_[x];
    if (m.kind != mnode::root) return "notfireable";
    if (m.ready) {
      if (m.swallow) {
        m.swallow = false;
        return std::nullopt;
      }
      return "called";
    }
    m.ready = true;
    m.res = r;
    publish(x);
    return std::nullopt;
  }

  // --- links ---

  // add_* (executor -1), or add_callback / add_both on an executor (add_on: o.a bit 1 picks add_both).
  std::optional<std::string> add(const op& o, int executor = -1) {
    int id = next_id_++;
    int up = slots_[o.s];
    if (up < 0) return "empty";
    graph_.add(n_[up].id, id);
    if (n_[up].consumer >= 0 || n_[up].consumed) return "continued";
    int l = make(mnode::link, id);
    n_[l].handles = 1;
    n_[l].upstream = up;
    n_[l].add_kind = executor < 0 ? o.a : ((o.a & 2) != 0 ? 2 : 0);
    n_[l].act1 = o.b;
    n_[l].act2 = o.c;
    n_[l].executor = executor;
    if (try_attach(up, l, 0) == attach::ready_now) link_on_ready(l, up);
    put(o.d, l);
    return std::nullopt;
  }

  void link_on_ready(int l, int from) {
    if (from == n_[l].inner) {
      n_[l].ls = mnode::done;
      if (settle(l, n_[from].res)) publish(l);
      return;
    }
    const int k = n_[l].executor;
    if (k >= 0 && n_[l].ls == mnode::wait_up) {  // hand the upstream's result over to the executor
      if (stopped_[k]) {
        if (settle(l, mresult::error("stopped"))) publish(l);
        return;
      }
      n_[l].ls = mnode::queued;
      queues_[k].push_back(l);
      return;
    }
    run_link(l, from);
  }

  // Runs executor k's oldest task: a queued link's function (unless a cancel failed the link meanwhile).
  bool run_one(int k) {
    if (queues_[k].empty()) return false;
    const int l = queues_[k].front();
    queues_[k].pop_front();
    if (n_[l].kind == mnode::coro) {
      resume(l, false);  // a coroutine's resume_on hop: it goes on to its await
    } else {
      run_link(l, n_[l].upstream);
    }
    return true;
  }

  void run_link(int l, int from) {
    n_[l].ls = mnode::running;
    if (n_[l].ready) {  // cancelled while the upstream's result was on its way: the function does not run
      n_[l].ls = mnode::done;
      return;
    }
    outcome out = invoke(l, n_[from].res);
    if (out.is_deferred) {
      wait_on(l, out.x);
    } else if (settle(l, out.r)) {
      publish(l);
    }
  }

  // Takes the link's result unless a cancel already failed it.
  bool settle(int l, const mresult& r) {
    if (n_[l].ready) {
      n_[l].ls = mnode::done;
      return false;
    }
    n_[l].ready = true;
    n_[l].res = r;
    n_[l].ls = mnode::done;
    return true;
  }

  // The link's function returned the deferred x: the link waits on it. The temporary handle goes once the link
  // is attached or settled, before the link's own consumer runs.
  void wait_on(int l, int x) {
    if (x < 0) {
      if (settle(l, mresult::error("empty"))) publish(l);
      return;
    }
    if (x == l) {
      bool took = settle(l, mresult::error("logic"));
      drop_handle(x);
      if (took) publish(l);
      return;
    }
    n_[l].inner = x;
    n_[l].ls = mnode::wait_inner;
    attach a = try_attach(x, l, 0);
    if (a == attach::attached) {
      drop_handle(x);
      return;
    }
    bool took = settle(l, a == attach::ready_now ? n_[x].res : mresult::error("continued"));
    drop_handle(x);
    if (took) publish(l);
  }

  outcome invoke(int l, const mresult& in) {
    const mnode& m = n_[l];
    if (m.add_kind == 4) {
      log_.push_back("A" + std::to_string(m.id) + ":" + n_[m.upstream].out_text);
      return {false, -1, in};
    }
    if (m.add_kind == 5) return {false, -1, guard_result(l, in)};
    int a = m.act1;
    const char* tag = "cb";
    switch (m.add_kind) {
      case 0:
        if (!in.ok) return {false, -1, in};
        break;
      case 1:
        if (in.ok) return {false, -1, in};
        tag = "eb";
        break;
      case 2:
        tag = "both";
        break;
      default:
        a = in.ok ? m.act1 : m.act2;
        tag = in.ok ? "cbv" : "cbe";
        break;
    }
    log_.push_back("L" + std::to_string(m.id) + ":" + tag + "(" + in.text() + ")");
    return action(l, a, in);
  }

  // What a callback does, by action type (a & 7) and parameter p = a >> 3:
  //   0 returns p; 1 returns (value + p) & 255, or p on a failure, after cancelling slot p & 7 if p >= 16 (a
  //   cancel from inside a running callback, which may reach this very link); 2 throws E p; 3 passes its input on (a
  //   failure rethrown); 4 recovers cancelled_error to p, passes anything else on; 5 makes a new root (canceller
  //   from p), stores it in slot p & 7 and returns it; 6 returns succeed(p >> 1) or fail(E p >> 1); 7 returns
  //   the deferred in slot p & 7 (succeed(p >> 3) instead if that one waits on this link).
  outcome action(int l, int a, const mresult& in) {
    const int t = a & 7;
    const int p = a >> 3;
    switch (t) {
      case 0:
        return {false, -1, mresult::value(p)};
      case 1:
        if (p >= 16 && slots_[p & 7] >= 0) {  // cancel() from the callback, through a copy of the handle
          const int x = slots_[p & 7];
          ++n_[x].handles;
          cancel(x);
          drop_handle(x);
        }
        return {false, -1, mresult::value(in.ok ? (in.v + p) & 255 : p)};
      case 2:
        return {false, -1, mresult::error("E" + std::to_string(p))};
      case 3:
        return {false, -1, in};
      case 4:
        if (!in.ok && in.e == "cancelled") return {false, -1, mresult::value(p)};
        return {false, -1, in};
      case 5: {
        int x = make(mnode::root, next_id_++);
        n_[x].ctype = inner_canceller_type(p);
        n_[x].cparam = p & 7;
        n_[x].handles = 2;  // the slot's and the one returned
        graph_.add(n_[x].id, n_[l].id);
        put(p & 7, x);
        return {true, x, {}};
      }
      case 6:
        return {true, fired_root((p & 1) ? mresult::error("E" + std::to_string(p >> 1)) : mresult::value(p >> 1)), {}};
      default: {
        const int k = p & 7;
        const int x = slots_[k];
        if (x < 0) return {true, -1, {}};
        if (n_[x].id != n_[l].id && graph_.reaches(n_[l].id, n_[x].id)) {
          return {true, fired_root(mresult::value(p >> 3)), {}};
        }
        graph_.add(n_[x].id, n_[l].id);
        ++n_[x].handles;
        return {true, x, {}};
      }
    }
  }

  int fired_root(const mresult& r) {
    int x = make(mnode::root, -1);
    n_[x].ready = true;
    n_[x].res = r;
    n_[x].handles = 1;
    return x;
  }

  // --- cancellation ---

  int awaited(int x) const {
    const mnode& m = n_[x];
    if (m.kind != mnode::link && m.kind != mnode::coro) return -1;
    if (m.ls == mnode::wait_up) return m.upstream;
    if (m.ls == mnode::wait_inner) return m.inner;
    return -1;
  }

  void cancel(int x) {
    for (;;) {
      if (n_[x].ready) return;
      int next = awaited(x);
      if (next < 0 || n_[next].ready) break;
      x = next;
    }
    cancel_here(x);
  }

  void cancel_here(int x) {
    if (n_[x].kind == mnode::link) {
      fail_internal(x, "cancelled");
      return;
    }
    if (n_[x].kind == mnode::coro) {  // awaiting no deferred right now: its next await is cancelled
      n_[x].cancel_pending = true;
      return;
    }
    if (n_[x].kind == mnode::timer) {  // defer_later's timer, before it fired: removed
      timers_[static_cast<std::size_t>(n_[x].timer_index)].live = false;
      fail_internal(x, "cancelled");
      return;
    }
    if (n_[x].kind == mnode::comb) {
      cancel_inputs(x);
      return;
    }
    if (n_[x].cancel_requested) return;
    n_[x].cancel_requested = true;
    if (n_[x].ready) return;
    if (n_[x].ctype == kQueueGetter || n_[x].ctype == kSemaphoreWaiter) {
      cancel_waiter(x);
      return;
    }
    if (n_[x].ctype == 0) {
      n_[x].swallow = true;
      n_[x].ready = true;
      n_[x].res = mresult::error("cancelled");
      publish(x);
      return;
    }
    std::optional<std::string> threw;
    ++n_[x].handles;  // the canceller gets a handle of its own (even after the others went)
    log_.push_back("C" + std::to_string(n_[x].id));
    const int p = n_[x].cparam;
    switch (n_[x].ctype) {
      case 2:
        threw = fire(x, mresult::value(p));
        break;
      case 3:
        threw = fire(x, mresult::error("E" + std::to_string(p)));
        break;
      case 4:
        threw = "E" + std::to_string(p);
        break;
      case 5:
        threw = fire(x, mresult::value(p));
        if (!threw) threw = "E" + std::to_string(p + 1);
        break;
      default:
        break;
    }
    // The canceller's handle goes only once the root is settled, so it never fails it as broken. A canceller
    // that fired and then threw: its exception goes to the unhandled-error handler.
    const bool fired_by_canceller = n_[x].ready;
    fail_internal(x, threw ? *threw : "cancelled");  // nothing if the canceller fired it
    if (threw && fired_by_canceller) ++canceller_reports_;
    drop_handle(x);
  }

  // --- timers ---

  struct mtimer {
    long deadline;
    long sequence;
    int node;    // defer_later's timer node, or add_timeout's guard link (-1: the looping_call's timer)
    bool guard;  // an add_timeout timer
    bool live;
  };

  int schedule_timer(int node, bool guard, int delay) {
    timers_.push_back({now_ + delay, seq_++, node, guard, true});
    return static_cast<int>(timers_.size()) - 1;
  }

  // The earliest live timer due at `limit` (index + 1), or 0.
  int next_timer(long limit) const {
    int best = -1;
    for (std::size_t i = 0; i < timers_.size(); ++i) {
      const mtimer& t = timers_[i];
      if (!t.live || t.deadline > limit) continue;
      if (best < 0 || t.deadline < timers_[static_cast<std::size_t>(best)].deadline ||
          (t.deadline == timers_[static_cast<std::size_t>(best)].deadline &&
           t.sequence < timers_[static_cast<std::size_t>(best)].sequence)) {
        best = static_cast<int>(i);
      }
    }
    return best + 1;
  }

  std::size_t advance(int step) {
    now_ += step;
    std::size_t ran = 0;
    while (int t = next_timer(now_)) {
      fire_timer(t - 1);
      ++ran;
    }
    return ran;
  }

  void fire_timer(int i) {
    mtimer& t = timers_[static_cast<std::size_t>(i)];
    t.live = false;
    const int x = t.node;
    if (x < 0) {  // the looping_call's
      loop_call_now();
      return;
    }
    if (t.guard) {
      const int guarded = n_[x].upstream;
      if (n_[guarded].ready) return;  // its result is on its way: it came in time
      n_[x].guard = mnode::timed_out;
      cancel(guarded);
      return;
    }
    settle_and_publish(x, mresult::value(0));
  }

  void reject_timer(int i) {
    mtimer& t = timers_[static_cast<std::size_t>(i)];
    t.live = false;
    const int x = t.node;
    if (x < 0) {
      loop_finish(mresult::error("stopped"));
      return;
    }
    if (t.guard) {
      n_[x].guard = mnode::unenforceable;
      cancel(n_[x].upstream);
      return;
    }
    fail_internal(x, "stopped");
  }

  // defer_later(clock, delay, f): call_later's timer node, and a callback link on it (input 0).
  std::optional<std::string> later(const op& o) {
    const int id = next_id_++;
    const int delay = delay_ticks(o.a);
    if (delay < 0) return "invalid_argument";
    const int t = make(mnode::timer, -1);
    n_[t].handles = 1;  // call_later's, until add_callback is attached
    n_[t].timer_index = schedule_timer(t, false, delay);
    const int l = make(mnode::link, id);
    n_[l].handles = 1;
    n_[l].upstream = t;
    n_[l].act1 = o.b;
    try_attach(t, l, 0);
    drop_handle(t);
    put(o.d, l);
    return std::nullopt;
  }

  // add_timeout(slot s, delay, clock): a guard link consuming s, and (unless s had fired) its timer.
  std::optional<std::string> timeout(const op& o) {
    const int id = next_id_++;
    const int delay = delay_ticks(o.a);
    const int x = slots_[o.s];
    if (x >= 0) graph_.add(n_[x].id, id);
    if (delay < 0) return "invalid_argument";
    if (x < 0) return "empty";
    if (n_[x].consumer >= 0 || n_[x].consumed) return "continued";  // and no timer
    const int g = make(mnode::link, id);
    n_[g].handles = 1;
    n_[g].upstream = x;
    n_[g].add_kind = 5;
    if (try_attach(x, g, 0) == attach::ready_now) link_on_ready(g, x);
    if (n_[g].ls == mnode::wait_up) n_[g].guard_timer = schedule_timer(g, true, delay);
    put(o.d, g);
    return std::nullopt;
  }

  // The guard's function: stops the timer, then turns the cancel the timer caused into its error.
  mresult guard_result(int g, const mresult& in) {
    const int t = n_[g].guard_timer;
    if (t >= 0) timers_[static_cast<std::size_t>(t)].live = false;
    const bool cancelled = !in.ok && in.e == "cancelled";
    if (n_[g].guard == mnode::timed_out && cancelled) return mresult::error("timeout");
    if (n_[g].guard == mnode::unenforceable && cancelled) return mresult::error("stopped");
    return in;
  }

  // --- the looping_call ---

  std::optional<std::string> loop_start(const op& o) {
    const int id = next_id_++;
    loop_calls_ = 0;
    loop_mode_ = o.b % 3;
    loop_at_ = 1 + (o.b >> 2) % 3;
    if (loop_running_) return "logic";
    const int d = make(mnode::root, -1);
    n_[d].handles = 1;  // the loop's
    loop_done_ = d;
    loop_running_ = true;
    loop_interval_ = 1 + o.a % 3;
    loop_started_at_ = now_;
    if ((o.a & 4) != 0) {
      loop_call_now();
    } else {
      loop_timer_ = schedule_timer(-1, false, static_cast<int>(loop_interval_));
    }
    const int l = make(mnode::link, id);
    n_[l].handles = 1;
    n_[l].upstream = d;
    if (try_attach(d, l, 0) == attach::ready_now) link_on_ready(l, d);
    put(o.d, l);
    return std::nullopt;
  }

  std::optional<std::string> loop_stop() {
    if (!loop_running_) return "logic";
    loop_running_ = false;
    if (!loop_calling_ && loop_timer_ >= 0 && timers_[static_cast<std::size_t>(loop_timer_)].live) {
      timers_[static_cast<std::size_t>(loop_timer_)].live = false;
      loop_finish(mresult::value(0));
    }
    return std::nullopt;
  }

  // Calls the function, then schedules the next call at the next multiple of the interval from the start.
  void loop_call_now() {
    loop_calling_ = true;
    ++loop_calls_;
    log_.push_back("P" + std::to_string(loop_calls_));
    std::optional<std::string> threw;
    if (loop_calls_ == loop_at_ && loop_mode_ == 1) threw = "E30";
    if (loop_calls_ == loop_at_ && loop_mode_ == 2) loop_stop();
    loop_calling_ = false;
    if (threw) {
      loop_finish(mresult::error(*threw));
    } else if (!loop_running_) {
      loop_finish(mresult::value(0));
    } else {
      const long delay = loop_interval_ - (now_ - loop_started_at_) % loop_interval_;
      loop_timer_ = schedule_timer(-1, false, static_cast<int>(delay));
    }
  }

  void loop_finish(const mresult& r) {
    loop_running_ = false;
    const int d = std::exchange(loop_done_, -1);
    if (d >= 0) settle_and_publish(d, r);
  }

  // --- the toolkit: semaphore (0), lock (1), queue ---

  // A waiter's kind: a root fired by its semaphore or queue, with the canceller that takes it out of the queue.
  static constexpr int kQueueGetter = 6;
  static constexpr int kSemaphoreWaiter = 7;

  struct msem {
    int limit;
    int free;
    std::deque<int> waiters;
  };

  void acquire(const op& o) {
    const int id = next_id_++;
    msem& m = sems_[o.a & 1];
    const int w = make(mnode::root, -1);
    n_[w].handles = 1;  // the semaphore's, while it waits; acquire()'s own goes once the link is attached
    if (m.free > 0) {
      --m.free;
      n_[w].ready = true;
      n_[w].res = mresult::value(0);
    } else {
      n_[w].ctype = kSemaphoreWaiter;
      n_[w].cparam = o.a & 1;
      m.waiters.push_back(w);
    }
    const int l = make(mnode::link, id);
    n_[l].handles = 1;
    n_[l].upstream = w;
    n_[l].act1 = o.b;
    if (try_attach(w, l, 0) == attach::ready_now) link_on_ready(l, w);
    put(o.d, l);
  }

  std::optional<std::string> release(int which) {
    msem& m = sems_[which];
    if (!m.waiters.empty()) {
      const int w = m.waiters.front();
      m.waiters.pop_front();
      grant(which, w);
      return std::nullopt;
    }
    if (m.free == m.limit) return "logic";
    ++m.free;
    return std::nullopt;
  }

  // Hands a permit to waiter w now, or, inside another grant on this thread, once that one is done.
  void grant(int which, int w) {
    if (granting_) {
      grants_.push_back({which, w});
      return;
    }
    granting_ = true;
    fire_or_release(which, w);
    while (!grants_.empty()) {
      const auto [next_which, next] = grants_.front();
      grants_.pop_front();
      fire_or_release(next_which, next);
    }
    granting_ = false;
  }

  void fire_or_release(int which, int w) {
    if (!settle_and_publish(w, mresult::value(0))) release(which);  // cancelled after it left the queue
  }

  std::optional<std::string> queue_put(int v) {
    while (!getters_.empty()) {
      const int g = getters_.front();
      getters_.pop_front();
      --n_[g].handles;                                                    // the queue's
      if (settle_and_publish(g, mresult::value(v))) return std::nullopt;  // else fired by hand: it refuses the item
    }
    if (items_.size() >= kQueueSize) return "overflow";
    items_.push_back(v);
    return std::nullopt;
  }

  std::optional<std::string> queue_get(const op& o) {
    const int id = next_id_++;
    if (!items_.empty()) {
      const int g = make(mnode::root, id);
      n_[g].handles = 1;
      n_[g].ready = true;
      n_[g].res = mresult::value(items_.front());
      items_.pop_front();
      put(o.d, g);
      return std::nullopt;
    }
    if (getters_.size() >= kQueueBacklog) return "underflow";
    const int g = make(mnode::root, id);
    n_[g].handles = 2;  // the caller's and the queue's
    n_[g].ctype = kQueueGetter;
    getters_.push_back(g);
    put(o.d, g);
    return std::nullopt;
  }

  // A waiter's canceller: it leaves its queue (if it is still there) and fails with cancelled_error.
  void cancel_waiter(int x) {
    std::deque<int>& q = n_[x].ctype == kQueueGetter ? getters_ : sems_[n_[x].cparam].waiters;
    for (auto it = q.begin(); it != q.end(); ++it) {
      if (*it != x) continue;
      q.erase(it);
      if (n_[x].ctype == kQueueGetter) --n_[x].handles;
      break;
    }
    fail_internal(x, "cancelled");
  }

  void abandon(std::deque<int>& waiters) {
    std::deque<int> all;
    all.swap(waiters);
    for (int w : all) {
      fail_internal(w, "abandoned");
      if (n_[w].ctype == kQueueGetter) drop_handle(w);
    }
  }

  // --- coroutines ---

  void coroutine(const op& o) {
    const int id = next_id_++;
    const int x = slots_[o.s];
    if (x >= 0) graph_.add(n_[x].id, id);
    const int k = make(mnode::coro, id);
    n_[k].handles = 1;
    n_[k].act1 = coro_action(o.b);
    n_[k].awaits = x;
    if (x >= 0) ++n_[x].handles;  // the coroutine's parameter
    if ((o.a & 2) != 0) {         // co_await resume_on(executor): queued there, or refused at once
      const int e = o.a & 1;
      if (stopped_[e]) {
        drop_awaited(k);  // the catch drops the parameter
        finish_coroutine(k, mresult::error("stopped"));
      } else {
        n_[k].ls = mnode::queued;
        n_[k].executor = e;
        queues_[e].push_back(k);
      }
    } else {
      await_deferred(k);
    }
    put(o.d, k);
  }

  // The coroutine's parameter handle goes (taken by the await, or dropped by the catch).
  void drop_awaited(int k) {
    const int x = std::exchange(n_[k].awaits, -1);
    if (x >= 0) drop_handle(x);
  }

  // co_await std::move(awaited): a result now, or suspended on it (a cancel that came while the coroutine awaited
  // nothing cancels it first).
  void await_deferred(int k) {
    const int x = n_[k].awaits;
    if (x < 0) {
      finish_coroutine(k, mresult::error("empty"));
      return;
    }
    if (n_[x].consumer >= 0 || n_[x].consumed) {
      drop_awaited(k);
      finish_coroutine(k, mresult::error("continued"));
      return;
    }
    if (!n_[x].ready && n_[k].cancel_pending) {
      // The awaiting slot names x before the pending cancel is carried out: a cancel() of this coroutine that
      // the cancel of x runs (a callback cancelling it) reaches x too.
      n_[k].upstream = x;
      n_[k].ls = mnode::wait_up;
      n_[k].cancel_pending = false;
      cancel(x);
    }
    if (n_[x].ready) {
      n_[x].consumed = true;
      drop_awaited(k);
      finish_coroutine(k, n_[x].res);
      return;
    }
    n_[k].upstream = x;
    n_[k].ls = mnode::wait_up;
    try_attach(x, k, 0);
    drop_awaited(k);  // suspended: the awaiter gives its handle up
  }

  // Coroutine k resumes (what it awaited fired, or its resume_on hop ran): now, or after the coroutine this
  // thread is resuming returns.
  void resume(int k, bool awaited_fired = true) {
    n_[k].ls = mnode::queued;
    n_[k].resumes_awaited = awaited_fired;
    if (resuming_) {
      resumes_.push_back(k);
      return;
    }
    resuming_ = true;
    continue_coroutine(k);
    while (!resumes_.empty()) {
      const int next = resumes_.front();
      resumes_.pop_front();
      continue_coroutine(next);
    }
    resuming_ = false;
  }

  void continue_coroutine(int k) {
    if (n_[k].resumes_awaited) {
      finish_coroutine(k, n_[n_[k].upstream].res);
    } else {
      await_deferred(k);
    }
  }

  void finish_coroutine(int k, const mresult& in) {
    log_.push_back("K" + std::to_string(n_[k].id) + ":await(" + in.text() + ")");
    const outcome out = action(k, n_[k].act1, in);
    n_[k].ls = mnode::done;
    settle_and_publish(k, out.r);
  }

  // --- combinators ---

  void combine(const op& o) {
    const int id = next_id_++;
    int c = make(mnode::comb, -1);
    n_[c].comb_kind = o.kind;
    n_[c].opts = o.a;
    std::vector<int> in;
    for (int s : o.in) {
      in.push_back(slots_[s]);
      if (slots_[s] >= 0) {
        ++n_[slots_[s]].handles;
        graph_.add(n_[slots_[s]].id, id);
      }
    }
    const std::size_t count = in.size();
    n_[c].inputs = in;
    n_[c].entries.resize(count);
    if (o.kind == op_kind::race && count == 0) {
      comb_fail(c, "invalid_argument");
    } else {
      n_[c].remaining = static_cast<int>(count) + (o.kind == op_kind::race ? 0 : 1);
      for (std::size_t i = 0; i < count; ++i) {
        const int x = in[i];
        const int index = static_cast<int>(i);
        if (x < 0) {
          comb_input(c, index, mresult::error("empty"));
          continue;
        }
        switch (try_attach(x, c, index)) {
          case attach::attached:
            break;
          case attach::ready_now:
            comb_input(c, index, n_[x].res);
            break;
          case attach::already_continued:
            comb_input(c, index, mresult::error("continued"));
            break;
        }
      }
      if (o.kind != op_kind::race) finish_one(c);
    }
    // The adapter link that turns the combinator's output into an int (and logs it).
    int a = make(mnode::link, id);
    n_[a].handles = 1;
    n_[a].upstream = c;
    n_[a].add_kind = 4;
    if (try_attach(c, a, 0) == attach::ready_now) link_on_ready(a, c);
    if (keep_adapters) keep_.push_back(a);
    for (int x : in) drop_handle(x);
    put(o.d, a);
  }

  void comb_deliver(int c, int value, std::string text) {
    n_[c].ready = true;
    n_[c].res = mresult::value(value);
    n_[c].out_text = std::move(text);
    publish(c);
  }

  void comb_fail(int c, const std::string& e) {
    if (n_[c].ready) return;
    n_[c].ready = true;
    n_[c].res = mresult::error(e);
    n_[c].out_text = "fail:" + e;
    publish(c);
  }

  void finish_one(int c) {
    if (--n_[c].remaining != 0 || n_[c].ready) return;
    if (n_[c].comb_kind == op_kind::gather) {
      std::string t = "gather[";
      int sum = 0;
      for (std::size_t i = 0; i < n_[c].entries.size(); ++i) {
        t += (i ? "," : "") + std::to_string(n_[c].entries[i]->v);
        sum += n_[c].entries[i]->v;
      }
      comb_deliver(c, sum & 255, t + "]");
    } else {
      deliver_list(c);
    }
  }

  void deliver_list(int c) {
    std::string t = "list[";
    int ok = 0;
    for (std::size_t i = 0; i < n_[c].entries.size(); ++i) {
      const auto& e = n_[c].entries[i];
      mresult r = e ? *e : mresult::error("notfired");
      if (r.ok) ++ok;
      t += std::string(i ? "," : "") + (r.ok ? "ok" : "err:") + r.text();
    }
    comb_deliver(c, ok, t + "]");
  }

  void cancel_inputs(int c) {
    const std::vector<int> inputs = n_[c].inputs;
    for (int x : inputs) {
      if (x >= 0) cancel(x);
    }
  }

  void comb_input(int c, int i, const mresult& r) {
    const std::size_t ui = static_cast<std::size_t>(i);
    switch (n_[c].comb_kind) {
      case op_kind::gather:
        if (!r.ok) {
          comb_fail(c, "first(" + std::to_string(i) + "," + r.e + ")");
          return;
        }
        n_[c].entries[ui] = r;
        finish_one(c);
        return;
      case op_kind::list: {
        const int opts = n_[c].opts;
        if (!r.ok && (opts & 4) == 0) ++list_reports_;
        n_[c].entries[ui] = r;
        if (r.ok && (opts & 1) != 0) {
          if (!n_[c].ready) deliver_list(c);
        } else if (!r.ok && (opts & 2) != 0) {
          comb_fail(c, "first(" + std::to_string(i) + "," + r.e + ")");
        }
        finish_one(c);
        return;
      }
      default:  // race
        if (r.ok) {
          if (!n_[c].won) {
            n_[c].won = true;
            if (!n_[c].ready) {
              comb_deliver(c, r.v, "race(" + std::to_string(i) + "," + std::to_string(r.v) + ")");
              cancel_inputs(c);
            }
          }
        } else {
          n_[c].entries[ui] = r;
        }
        if (--n_[c].remaining == 0 && !n_[c].won) {
          std::string t = "group(";
          for (std::size_t j = 0; j < n_[c].entries.size(); ++j) t += (j ? "," : "") + n_[c].entries[j]->e;
          comb_fail(c, t + ")");
        }
        return;
    }
  }

  std::vector<std::string>& log_;
  std::vector<int> keep_;
  std::deque<mnode> n_;
  std::vector<mtimer> timers_;
  long now_ = 0;
  long seq_ = 0;
  std::deque<int> queues_[kExecutors];
  bool stopped_[kExecutors] = {false, false};
  bool resuming_ = false;  // a coroutine is resuming on this thread: later resumptions wait in resumes_
  std::deque<int> resumes_;
  msem sems_[2] = {{kPermits, kPermits, {}}, {1, 1, {}}};
  bool granting_ = false;  // a grant is in progress on this thread: later ones wait in grants_
  std::deque<std::pair<int, int>> grants_;
  std::deque<int> getters_;
  std::deque<int> items_;
  bool loop_running_ = false;
  bool loop_calling_ = false;
  int loop_done_ = -1;
  int loop_timer_ = -1;
  long loop_interval_ = 1;
  long loop_started_at_ = 0;
  int loop_calls_ = 0;
  int loop_mode_ = 0;
  int loop_at_ = 1;
  int slots_[kSlots];
  int next_id_ = 0;
  int list_reports_ = 0;
  int canceller_reports_ = 0;  // cancellers that threw after firing their root
  consumer_graph graph_;
};

// --- the driver -------------------------------------------------------------------------------------------------

namespace detail {
inline std::string dump(const std::vector<op>& ops, const std::vector<std::string>& real_log,
                        const std::vector<std::string>& model_log, const std::string& what) {
  std::string s = "anydefer fuzz mismatch: " + what + "\nops:\n";  // "none" for a trace that matched
  for (std::size_t i = 0; i < ops.size(); ++i) s += "  op" + std::to_string(i) + ": " + op_text(ops[i]) + "\n";
  std::size_t first = 0;
  while (first < real_log.size() && first < model_log.size() && real_log[first] == model_log[first]) ++first;
  s += "logs (first difference at line " + std::to_string(first) + "):\n";
  for (std::size_t i = 0; i < real_log.size() || i < model_log.size(); ++i) {
    std::string r = i < real_log.size() ? real_log[i] : "-";
    std::string m = i < model_log.size() ? model_log[i] : "-";
    s += (r == m ? "    " : " !! ") + r + (r == m ? "" : "   | model: " + m) + "\n";
  }
  return s;
}
}  // namespace detail

// Runs the input through anydefer and the model. Returns false and explains in *why on any difference; *trace,
// if given, receives the operations and both logs whatever the outcome.
inline bool run_ops(const std::uint8_t* data, std::size_t size, std::string* why, std::string* trace = nullptr) {
  const std::vector<op> ops = decode(data, size);
  int reports = 0;
  auto previous = anydefer::set_unhandled_error_handler(
      [&reports](const anydefer::failure&, const std::source_location&) { ++reports; });
  std::vector<std::string> real_log;
  std::vector<std::string> model_log;
  std::string what;
  {
    auto owned_real = std::make_unique<real_side>(real_log);
    real_side& real = *owned_real;
    model ref(model_log);
    auto compare = [&](const std::string& at) {
      if (real_log != model_log) {
        what = "event logs differ after " + at;
        return false;
      }
      for (int s = 0; s < kSlots; ++s) {
        if (real.slot_id(s) != ref.slot_id(s) || real.handle_valid(s) != real.slot_valid(s)) {
          what = "slot s" + std::to_string(s) + " holds a different deferred after " + at;
          return false;
        }
        if (real.slot_valid(s) && real.fired(s) != ref.fired(s)) {
          what = "slot s" + std::to_string(s) + ": fired() is " + (real.fired(s) ? "true" : "false") + ", model says " +
                 (ref.fired(s) ? "true" : "false") + " after " + at;
          return false;
        }
      }
      return true;
    };
    auto prune = [&](const std::string& at) {
      if (real.prune_keepers(false) != ref.prune_keepers(false)) {
        what = "different kept roots pending after " + at;
        return false;
      }
      return true;
    };
    bool same = true;
    for (std::size_t i = 0; i < ops.size() && same; ++i) {
      real.apply(ops[i], i);
      ref.apply(ops[i], i);
      same = compare("op" + std::to_string(i)) && prune("op" + std::to_string(i));
    }
    // Drop every handle (what that runs may fill slots again), cancel the roots with a canceller that are still
    // pending through the harness's own handles (see keep_adapters), and run what waits on the executors, until
    // nothing is left; then destroy the clock if timers are still pending, else the toolkit if something waits
    // on it (which settles what waits on them), and go on.
    for (int round = 0; same && round < 8 * kSlots; ++round) {
      bool any = false;
      real.drain_executors();
      ref.drain_executors();
      same = compare("the final run of the executors");
      if (!same) break;
      for (int s = 0; s < kSlots && same; ++s) {
        if (!real.slot_valid(s)) continue;
        any = true;
        real.drop(s);
        ref.drop(s);
        real_log.push_back("end: drop s" + std::to_string(s));
        model_log.push_back("end: drop s" + std::to_string(s));
        same = compare("the final drop of s" + std::to_string(s));
      }
      if (!same) break;
      const int real_cancels = real.cancel_keepers();
      const int model_cancels = ref.cancel_keepers();
      same = compare("the final cancels") && prune("the final cancels");
      if (same && real_cancels != model_cancels) {
        what = "different numbers of pending roots cancelled at the end";
        same = false;
      }
      if (!same || any || real_cancels != 0) continue;
      if (real.pending_timers() != ref.pending_timers()) {
        what = "different numbers of pending timers at the end";
        same = false;
      } else if (real.pending_timers() != 0) {
        real.new_clock();
        ref.new_clock();
        real_log.push_back("end: clock destroyed");
        model_log.push_back("end: clock destroyed");
        same = compare("the final destruction of the clock");
      } else if (real.toolkit_waiters() != ref.toolkit_waiters()) {
        what = "different numbers of waiters on the semaphore, the lock and the queue at the end";
        same = false;
      } else if (real.toolkit_waiters() != 0) {
        real.new_toolkit();
        ref.new_toolkit();
        real_log.push_back("end: toolkit destroyed");
        model_log.push_back("end: toolkit destroyed");
        same = compare("the final destruction of the toolkit");
      } else {
        break;  // the round began by emptying the executors, and nothing has run since
      }
    }
    if (same) {
      real.prune_keepers(true);
      ref.prune_keepers(true);
      real_log.push_back("unhandled reports: " + std::to_string(reports));
      model_log.push_back("unhandled reports: " + std::to_string(ref.expected_reports()));
      if (real_log.back() != model_log.back()) what = "unhandled-failure report counts differ";
    }
    // After a mismatch chains may still be pending on the executors, timers or slots: destroying them now would
    // run callbacks into a harness that stopped keeping track (or trip an executor's "links still bound" abort)
    // before the mismatch is reported. The harness is left alone instead; the input fails either way.
    if (!same) (void)owned_real.release();
  }
  anydefer::set_unhandled_error_handler(std::move(previous));
  if (trace != nullptr) *trace = detail::dump(ops, real_log, model_log, what.empty() ? "none" : what);
  if (what.empty()) return true;
  if (why != nullptr) *why = detail::dump(ops, real_log, model_log, what);
  return false;
}

}  // namespace anydefer_fuzz

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
