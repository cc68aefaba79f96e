// anydefer/combinators.hpp: waiting on several deferreds at once (Twisted's gatherResults, DeferredList, race).
//
//   std::vector<anydefer::deferred<int>> parts = fetch_all();
//   anydefer::gather(parts).add_callback([](std::vector<int> values) { ... });   // all, in input order
//   anydefer::gather(user, orders).add_callback([](std::tuple<user_t, orders_t> both) { ... });
//   anydefer::race(parts).add_callback([](std::pair<std::size_t, int> first) { ... });
//
// Each combinator becomes the one consumer of every input (an input that already has a consumer fails the
// combinator with already_continued_error at that index). Inputs may fire on any threads, in any order.
// Cancelling a combinator's deferred before it fires cancels every input; its outcome then follows from how the
// inputs settle, as in Twisted. After it fired, cancel() is a no-op.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "anydefer/deferred.hpp"

namespace anydefer {

// The failure of gather() and of deferred_list(fire_on_one_errback) when an input fails (Twisted's FirstError):
// which input, and its failure.
class first_error : public detail::error_base<std::runtime_error> {
 public:
  first_error(std::size_t index, failure sub_failure)
      : error_base("anydefer: input #" + std::to_string(index) + " failed: " + sub_failure.what()),
        index_(index),
        sub_failure_(std::move(sub_failure)) {}
  std::size_t index() const noexcept { return index_; }
  const failure& sub_failure() const noexcept { return sub_failure_; }

 private:
  std::size_t index_;
  failure sub_failure_;
};

// The failure of race() when every input failed: their failures, in input order (Twisted's FailureGroup).
class failure_group : public detail::error_base<std::runtime_error> {
 public:
  explicit failure_group(std::vector<failure> failures)
      : error_base("anydefer: every input of race() failed (" + std::to_string(failures.size()) + ")"),
        failures_(std::move(failures)) {}
  const std::vector<failure>& failures() const noexcept { return failures_; }

 private:
  std::vector<failure> failures_;
};

// The entry of a deferred_list that had not fired yet when a fire_on_one_* option fired the list.
class not_fired_error : public detail::error_base<std::runtime_error> {
 public:
  not_fired_error() : error_base("anydefer: this input had not fired when the deferred_list fired") {}
};

struct deferred_list_options {
  bool fire_on_one_callback = false;  // fire as soon as one input succeeds
  bool fire_on_one_errback = false;   // fail with first_error as soon as one input fails
  // Twisted's consumeErrors. The list is every input's one consumer, so an input failure recorded here would
  // otherwise be lost to the chain it came from; with consume_errors false it is also reported to the
  // unhandled-error handler, as Twisted logs it.
  bool consume_errors = false;
};

namespace detail {

// What every combinator shares: the output it fires once, and its inputs, to cancel them.
template <class Out>
class combinator_core {
 public:
  // The output fires once: the first caller to claim it builds the result and delivers it; later claims fail.
  bool claim_fire() noexcept { return !fired_.exchange(true, std::memory_order_acq_rel); }
  bool has_fired() const noexcept { return fired_.load(std::memory_order_acquire); }

  // Deliver after a successful claim_fire(). The output's reference is dropped after firing, which breaks the
  // output -> core -> output cycle.
  template <class... A>
  void deliver_value(A&&... a) noexcept {
    output_->fire_value(std::forward<A>(a)...);
    output_ref_ = {};
  }
  void fire_failure(std::exception_ptr e) noexcept {
    if (!claim_fire()) return;
    output_->fire_failure(std::move(e));
    output_ref_ = {};
  }

  void cancel_inputs() noexcept {
    for (auto& c : cancellers_) c();
  }
  // Where the output was created; kept here because the output may be freed while inputs still report.
  const std::source_location& output_created_at() const noexcept { return created_at_; }
  std::source_location created_at_;

  state<Out>* output_ = nullptr;
  state_ref<Out> output_ref_;
  // Complete before any input is attached, so an input firing on another thread may cancel the others safely.
  std::vector<std::function<void()>> cancellers_;

 private:
  std::atomic<bool> fired_{false};
};

// The output state of a combinator: fired by the library; cancel() cancels the inputs.
template <class Out, class Core>
class combinator_state final : public state<Out> {
 public:
  explicit combinator_state(std::source_location loc) : state<Out>(state_base::kind::driven, loc) {}
  std::shared_ptr<Core> core_;

 protected:
  void cancel_here() noexcept override {
    if (auto core = core_) core->cancel_inputs();
  }
};

// Creates the output state and its core, wired together. The core keeps the output alive until it fires it.
template <class Out, class Core>
std::pair<deferred<Out>, std::shared_ptr<Core>> make_combinator(std::source_location loc) {
  auto core = std::make_shared<Core>();
  core->created_at_ = loc;
  auto* out = new combinator_state<Out, Core>(loc);
  out->core_ = core;
  core->output_ = out;
  core->output_ref_ = state_ref<Out>(out);
  return {access::adopt<Out>(out), std::move(core)};
}

// Lets the core cancel `input`, through a reference, not a handle (so an abandoned input is still detected).
// Every input is registered before any is attached, which keeps cancellers_ immutable once an input can fire.
template <class Core, class T>
void add_input_canceller(Core& core, const deferred<T>& input) {
  auto ref = std::make_shared<state_ref<T>>(access::state_of(input));
  core.cancellers_.push_back([ref] {
    if (ref->get() != nullptr) ref->get()->cancel();
  });
}

// Attaches make_handler() as `input`'s consumer. An empty input, or one that already has a consumer, is handed to
// a handler as that failure instead.
template <class T, class MakeHandler>
void attach_input(const deferred<T>& input, MakeHandler&& make_handler, std::source_location loc) {
  if (!input.valid()) {
    make_handler()(result<T>(failure::of(empty_deferred_error())));
    return;
  }
  try {
    (void)input.add_both(make_handler(), loc);
  } catch (const already_continued_error&) {
    make_handler()(result<T>(failure::current()));
  }
}

// Registers every input's canceller, then attaches make_handler(i) as input i's consumer.
template <class T, class Core, class MakeHandler>
void consume_inputs(Core& core, const std::vector<deferred<T>>& inputs, MakeHandler make_handler,
                    std::source_location loc) {
  core.cancellers_.reserve(inputs.size());
  for (const deferred<T>& input : inputs) add_input_canceller(core, input);
  for (std::size_t i = 0; i < inputs.size(); ++i)
    attach_input(
        inputs[i], [&] { return make_handler(i); }, loc);
}

template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
struct gather_core : combinator_core<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>> {
  std::vector<std::optional<stored_t<T>>> values;
  std::atomic<std::size_t> remaining{0};
};

template <class T>
struct list_core : combinator_core<std::vector<result<T>>> {
  std::vector<std::optional<result<T>>> entries;
  std::unique_ptr<std::atomic<bool>[]> entry_done;
  std::atomic<std::size_t> remaining{0};
  deferred_list_options options;

  // Builds the output from the entries that are complete; an entry still being written belongs to its writer.
  std::vector<result<T>> collect() {
    std::vector<result<T>> out;
    out.reserve(entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) {
      // acquire: pairs with the writer's release of entry_done[i], after it wrote entries[i].
      if (entry_done[i].load(std::memory_order_acquire)) {
        out.push_back(std::move(*entries[i]));
      } else {
        out.push_back(result<T>(failure::of(not_fired_error())));
      }
    }
    return out;
  }
};

template <class T>
using race_value_t = std::conditional_t<std::is_void_v<T>, std::size_t, std::pair<std::size_t, T>>;

template <class T>
struct race_core : combinator_core<race_value_t<T>> {
  std::vector<std::optional<failure>> failures;
  std::atomic<std::size_t> remaining{0};
  std::atomic<bool> won{false};
};

}  // namespace detail

// All values in input order (Twisted's gatherResults(consumeErrors=True)); the first failure fails it with
// first_error. deferred<void> for void inputs. One allocation for the shared state plus one link per input.
template <class T>
auto gather(const std::vector<deferred<T>>& inputs, std::source_location loc = std::source_location::current()) {
  using core_t = detail::gather_core<T>;
  using out_t = std::conditional_t<std::is_void_v<T>, void, std::vector<T>>;
  auto made = detail::make_combinator<out_t, core_t>(loc);
  auto& out = made.first;  // named, not a structured binding: lambdas capture `core`
  auto& core = made.second;
  const std::size_t n = inputs.size();
  core->values.resize(n);
  core->remaining.store(n + 1, std::memory_order_relaxed);  // +1: the setup itself, so nothing fires mid-setup
  auto finish_one = [c = core.get()] {
    // acq_rel: each input's value write happens before its decrement; the last one sees them all.
    if (c->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1 || !c->claim_fire()) return;
    if constexpr (std::is_void_v<T>) {
      c->deliver_value();
    } else {
      std::vector<T> values;
      values.reserve(c->values.size());
      for (auto& v : c->values) values.push_back(std::move(*v));
      c->deliver_value(std::move(values));
    }
  };
  detail::consume_inputs(
      *core, inputs,
      [&core, finish_one](std::size_t i) {
        return [core = core, i, finish_one](result<T>&& r) {
          if (r.has_failure()) {
            core->fire_failure(std::make_exception_ptr(first_error(i, r.error())));
            return;  // `remaining` never reaches zero now: the output already failed
          }
          if constexpr (std::is_void_v<T>) {
            core->values[i].emplace();
          } else {
            core->values[i].emplace(std::move(r).value());
          }
          finish_one();
        };
      },
      loc);
  finish_one();
  return out;
}

// gather(a, b, c): the same over deferreds of different types, giving a tuple (std::monostate for void
// inputs). Cancelling it cancels every input; the first failure fails it with first_error naming the argument.
template <class... Ts>
  requires(sizeof...(Ts) > 0)
auto gather(const deferred<Ts>&... inputs) {
  using out_t = std::tuple<detail::stored_t<Ts>...>;
  struct core_t : detail::combinator_core<out_t> {
    std::tuple<std::optional<detail::stored_t<Ts>>...> values;
    std::atomic<std::size_t> remaining{sizeof...(Ts) + 1};
  };
  auto made = detail::make_combinator<out_t, core_t>(std::source_location::current());
  auto& out = made.first;  // named, not a structured binding: lambdas capture `core`
  auto& core = made.second;
  auto finish_one = [c = core.get()] {
    if (c->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1 || !c->claim_fire()) return;
    c->deliver_value(std::apply([](auto&... v) { return out_t(std::move(*v)...); }, c->values));
  };
  (detail::add_input_canceller(*core, inputs), ...);  // every canceller first, as consume_inputs does
  auto attach = [&]<std::size_t I, class T>(std::integral_constant<std::size_t, I>, const deferred<T>& input) {
    detail::attach_input(
        input,
        [&] {
          return [core = core, finish_one](result<T>&& r) {
            if (r.has_failure()) {
              core->fire_failure(std::make_exception_ptr(first_error(I, r.error())));
              return;
            }
            if constexpr (std::is_void_v<T>) {
              std::get<I>(core->values).emplace();
            } else {
              std::get<I>(core->values).emplace(std::move(r).value());
            }
            finish_one();
          };
        },
        std::source_location::current());
  };
  [&]<std::size_t... I>(std::index_sequence<I...>) { (attach(std::integral_constant<std::size_t, I>{}, inputs), ...); }
  (std::index_sequence_for<Ts...>{});
  finish_one();
  return out;
}

// Every input's result<T> in input order (Twisted's DeferredList). With fire_on_one_callback it fires at the first
// success, with fire_on_one_errback it fails with first_error at the first failure; entries that had not fired
// by then hold not_fired_error. An empty list fires at once with an empty vector.
template <class T>
deferred<std::vector<result<T>>> deferred_list(const std::vector<deferred<T>>& inputs,
                                               deferred_list_options options = {},
                                               std::source_location loc = std::source_location::current()) {
  using core_t = detail::list_core<T>;
  auto made = detail::make_combinator<std::vector<result<T>>, core_t>(loc);
  auto& out = made.first;  // named, not a structured binding: lambdas capture `core`
  auto& core = made.second;
  const std::size_t n = inputs.size();
  core->entries.resize(n);
  core->entry_done = std::make_unique<std::atomic<bool>[]>(n);
  core->options = options;
  core->remaining.store(n + 1, std::memory_order_relaxed);
  auto finish_one = [c = core.get()] {
    if (c->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1 && c->claim_fire()) c->deliver_value(c->collect());
  };
  detail::consume_inputs(
      *core, inputs,
      [&core, finish_one](std::size_t i) {
        return [core = core, i, finish_one](result<T>&& r) {
          const bool ok = r.has_value();
          if (!ok && !core->options.consume_errors) detail::report_unhandled(r.error(), core->output_created_at());
          std::optional<failure> first;
          if (!ok && core->options.fire_on_one_errback) first = r.error();
          core->entries[i].emplace(std::move(r));
          core->entry_done[i].store(true, std::memory_order_release);
          if (ok && core->options.fire_on_one_callback) {
            if (core->claim_fire()) core->deliver_value(core->collect());
          } else if (first) {
            core->fire_failure(std::make_exception_ptr(first_error(i, *first)));
          }
          finish_one();
        };
      },
      loc);
  finish_one();
  return out;
}

// The index and value of the first input to succeed; every other input is then cancelled and its result
// dropped. If all fail, fails with failure_group (their failures in input order). An empty range fails at once
// with std::invalid_argument (Twisted's race([]) never fires).
template <class T>
auto race(const std::vector<deferred<T>>& inputs, std::source_location loc = std::source_location::current()) {
  using core_t = detail::race_core<T>;
  using out_t = detail::race_value_t<T>;
  auto made = detail::make_combinator<out_t, core_t>(loc);
  auto& out = made.first;  // named, not a structured binding: lambdas capture `core`
  auto& core = made.second;
  const std::size_t n = inputs.size();
  if (n == 0) {
    core->fire_failure(std::make_exception_ptr(std::invalid_argument("anydefer: race() of no deferreds")));
    return out;
  }
  core->failures.resize(n);
  core->remaining.store(n, std::memory_order_relaxed);
  detail::consume_inputs(
      *core, inputs,
      [&core](std::size_t i) {
        return [core = core, i](result<T>&& r) {
          if (r.has_value()) {
            if (!core->won.exchange(true, std::memory_order_acq_rel) && core->claim_fire()) {
              if constexpr (std::is_void_v<T>) {
                core->deliver_value(i);
              } else {
                core->deliver_value(std::pair<std::size_t, T>(i, std::move(r).value()));
              }
              core->cancel_inputs();
            }
          } else {
            core->failures[i] = r.error();
          }
          // acq_rel: failure writes happen before the decrement; the last one reads them all, and sees `won`.
          if (core->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
              !core->won.load(std::memory_order_acquire)) {
            std::vector<failure> all;
            all.reserve(core->failures.size());
            for (auto& f : core->failures) all.push_back(*f);
            core->fire_failure(std::make_exception_ptr(failure_group(std::move(all))));
          }
        };
      },
      loc);
  return out;
}

}  // namespace anydefer
