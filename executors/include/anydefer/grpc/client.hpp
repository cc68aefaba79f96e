// anydefer/grpc/client.hpp: gRPC client calls as deferreds, on gRPC's callback API (target anydefer::grpc).
//
//   auto stub = Echo::NewStub(channel);
//   anydefer::deferred<Reply> r = anydefer::grpc::call(stub->async(), &Echo::Stub::async::Say, request,
//                                                      {.executor = pool, .timeout = 200ms});
//
//   anydefer::grpc::stream_reader<Reply> replies =
//       anydefer::grpc::read_stream(stub->async(), &Echo::Stub::async::Count, request, {.executor = loop});
//   while (std::optional<Reply> reply = co_await replies.next()) use(*reply);
//
// A unary call:
//   - fires with the response when the status is OK, and fails with anydefer::grpc::grpc_error (code(), message())
//     otherwise: never a default response;
//   - fires on `options.executor` (its callbacks and the coroutines awaiting it run there); without one, on the
//     gRPC thread that completed the call. A stopped executor's error fails it instead. The executor must outlive
//     the call's gRPC side, which may last past a cancel() (calls_in_flight() counts it);
//   - `cancel()` calls ClientContext::TryCancel() and fails the deferred with cancelled_error at once, on the
//     cancelling thread, as every cancel() settles; the response, if it was already on its way, is dropped.
//     add_timeout() therefore works, and `options.timeout` sets gRPC's own deadline (DEADLINE_EXCEEDED);
//   - costs one allocation beside gRPC's own: the deferred's state holds the ClientContext, the request, the
//     response and the task that hands the result to the executor.
//
// A server-streaming call is read one message at a time: `next()` starts one read and returns a deferred of the
// message, or of std::nullopt once the stream ended with OK; a stream that ended with another status fails that
// next() with grpc_error (and every later one). Reading is on demand, so a slow reader slows the server down
// (gRPC's flow control) instead of buffering without bound. One next() at a time: a second one while the first is
// pending is a std::logic_error. Cancelling a pending next(), or `cancel()` on the reader, cancels the whole call
// (gRPC cannot cancel one read): the pending next() fails with cancelled_error. Dropping the reader before the end
// cancels the call too, so the server learns nobody reads any more.
//
// Thread-safety: start calls from any thread; the deferreds are ordinary deferreds. A stream_reader is one
// object used by one thread at a time (as a handle), while gRPC's threads deliver into it.
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <utility>

#include <grpcpp/client_context.h>
#include <grpcpp/support/client_callback.h>
#include <grpcpp/support/status.h>

#include "anydefer/deferred.hpp"
#include "anydefer/detail/assert.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/grpc/status.hpp"

namespace anydefer::grpc {

struct call_options {
  // Where the call's deferreds fire. None: on the gRPC thread that completed the operation (keep what runs
  // there short: it holds up gRPC's own work).
  std::optional<executor_ref> executor{};
  // The call's deadline, from when it starts. None: no deadline (or the one `configure` sets).
  std::optional<std::chrono::nanoseconds> timeout{};
  // Called with the ClientContext before the call starts: metadata, compression, wait_for_ready, an absolute
  // deadline. What it throws is thrown by call()/read_stream(), and no call is made.
  std::function<void(::grpc::ClientContext&)> configure{};
};

namespace detail {
// Calls (unary or streaming) that gRPC has not let go of yet: counted from the start until gRPC's reference on
// the call's state is dropped (and the state freed, if that was the last reference).
inline std::atomic<long> calls_held_by_grpc{0};
inline void grpc_took_call() noexcept { calls_held_by_grpc.fetch_add(1, std::memory_order_relaxed); }
// release: a caller that sees the count drop (acquire) also sees what the release of the state did.
inline void grpc_let_go_of_call() noexcept { calls_held_by_grpc.fetch_sub(1, std::memory_order_release); }
}  // namespace detail

// Calls whose gRPC side has not finished. gRPC holds each call's ClientContext, and the context holds a reference
// on the channel; a cancelled call's deferred settles at once, but gRPC completes the call later, and a call whose
// handles are all gone is freed on gRPC's thread when it does. Wait for zero before dropping the last reference
// to a channel that had calls: with gRPC 1.51 (Debian 12), a channel whose last reference goes inside one of
// gRPC's own callback threads can crash the process later (the race of gRPC's issue #32584 in its callback
// completion queue).
inline long calls_in_flight() noexcept { return detail::calls_held_by_grpc.load(std::memory_order_acquire); }

namespace detail {

// The failure for a status that is not OK.
inline std::exception_ptr failure_of(const ::grpc::Status& status) noexcept {
  try {
    return std::make_exception_ptr(grpc_error(status));
  } catch (...) {
    return std::current_exception();  // bad_alloc
  }
}

inline void prepare(::grpc::ClientContext& context, const call_options& options) {
  if (options.timeout) context.set_deadline(std::chrono::system_clock::now() + *options.timeout);
  if (options.configure) options.configure(context);
}

// The state of a unary call's deferred. gRPC's completion callback holds a reference from the call's start until
// the result has been delivered (on the executor, or at once).
//
// Settling: gRPC's callback stores the status and hands `delivery_` to the executor, whose run fires the deferred
// (fire_value/fire_failure claim it first, so a cancel() that won meanwhile makes them no-ops and the late result
// is dropped). cancel_here() (the deferred is unfired and waits on nothing) asks gRPC to cancel and fails the
// deferred itself. The status and response are written by gRPC's thread before execute() and read by the executor's
// thread after it: the executor's hand-off orders them (its contract), so they need no atomics.
template <class Request, class Response>
// NOLINTNEXTLINE(cppcoreguidelines-virtual-class-destructor): virtual through state<T>, which the check cannot see
class unary_call final : public anydefer::detail::state<Response> {
  using base = anydefer::detail::state<Response>;

 public:
  unary_call(Request request, const call_options& options, std::source_location loc)
      : base(anydefer::detail::state_base::kind::driven, loc),
        request_(std::move(request)),
        executor_(options.executor),
        delivery_(this) {
    // One handle (the deferred returned to the caller) and gRPC's reference.
    this->counts_.store(anydefer::detail::state_base::handle_unit + anydefer::detail::state_base::one_ref,
                        std::memory_order_relaxed);
    prepare(context_, options);
  }

  template <class Async, class Method>
  void start(Async* async, Method method) {
    // release here, acquire in complete(): gRPC orders the call's start before its completion anyway, but inside
    // its uninstrumented libraries; this edge lets ThreadSanitizer see it too (a plain store and load on x86).
    started_.store(true, std::memory_order_release);
    grpc_took_call();
    (async->*method)(&context_, &request_, &response_, [this](::grpc::Status status) { complete(std::move(status)); });
  }

  // start() threw: no callback will come, so gRPC's reference goes now.
  void not_started() noexcept { release_grpc_reference(); }

 protected:
  void cancel_here() noexcept override {
    // Settle first: gRPC may run the call's completion inline in TryCancel(), which would fail the deferred with
    // CANCELLED instead of cancelled_error. The caller's handle keeps the state (and context_) alive meanwhile.
    this->fail_internal(std::make_exception_ptr(cancelled_error()));
    context_.TryCancel();
  }

 private:
  struct delivery_task : task {
    explicit delivery_task(unary_call* o) noexcept : task(&delivery_operations), owner(o) {}
    unary_call* owner;
  };

  void complete(::grpc::Status status) noexcept {
    [[maybe_unused]] const bool started = started_.load(std::memory_order_acquire);
    ANYDEFER_ASSERT(started);
    status_ = std::move(status);
    // A call already settled by cancel() has nothing to deliver: let go here, without the executor.
    if (executor_ && !this->is_claimed()) {
      executor_->execute(delivery_);
    } else {
      deliver();
    }
  }

  void deliver() noexcept {
    if (!this->is_claimed()) {  // a cancel() may have settled it: then there is nothing to build
      if (status_.ok()) {
        this->fire_value(std::move(response_));
      } else {
        this->fire_failure(failure_of(status_));
      }
    }
    release_grpc_reference();
  }

  void release_grpc_reference() noexcept {
    const bool counted = started_.load(std::memory_order_relaxed);
    anydefer::detail::state_base::release(this);  // may free *this
    if (counted) grpc_let_go_of_call();
  }

  static unary_call& owner_of(task& t) noexcept { return *static_cast<delivery_task&>(t).owner; }
  static void run_delivery(task& t) noexcept { owner_of(t).deliver(); }
  static void reject_delivery(task& t, std::exception_ptr why) noexcept {
    unary_call& self = owner_of(t);
    self.fire_failure(std::move(why));
    self.release_grpc_reference();
  }
  static constexpr task::operations delivery_operations{&run_delivery, &reject_delivery};

  ::grpc::ClientContext context_;
  Request request_;
  Response response_;
  ::grpc::Status status_;
  std::optional<executor_ref> executor_;
  delivery_task delivery_;
  std::atomic<bool> started_{false};
};

template <class Response>
class stream_core;  // NOLINT(cppcoreguidelines-virtual-class-destructor): virtual through gRPC's reactor base

}  // namespace detail

// The method pointers call() and read_stream() take: the generated `Stub::async` methods.
template <class Async, class Request, class Response>
using unary_method = void (Async::*)(::grpc::ClientContext*, const Request*, Response*,
                                     std::function<void(::grpc::Status)>);
template <class Async, class Request, class Response>
using server_streaming_method = void (Async::*)(::grpc::ClientContext*, const Request*,
                                                ::grpc::ClientReadReactor<Response>*);

// Starts a unary call: `async` is `stub->async()`, `method` the generated method (`&Stub::async::Say`).
// Throws what `options.configure` throws, or std::bad_alloc; the deferred carries every other outcome.
template <class Async, class Request, class Response>
deferred<Response> call(Async* async, unary_method<Async, Request, Response> method, Request request,
                        const call_options& options = {}, std::source_location loc = std::source_location::current()) {
  using state_t = detail::unary_call<Request, Response>;
  auto* s = new state_t(std::move(request), options, loc);  // a throwing configure frees it (no handle yet)
  deferred<Response> out = anydefer::detail::access::adopt<Response>(s);
  try {
    s->start(async, method);
  } catch (...) {
    s->not_started();
    throw;
  }
  return out;
}

// A server-streaming call being read. Move-only; dropping it before the stream ended cancels the call.
template <class Response>
class stream_reader {
 public:
  stream_reader(stream_reader&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  stream_reader& operator=(stream_reader&& other) noexcept {
    stream_reader(std::move(other)).swap(*this);
    return *this;
  }
  stream_reader(const stream_reader&) = delete;
  stream_reader& operator=(const stream_reader&) = delete;
  ~stream_reader();

  // The next message, std::nullopt at the end of an OK stream, or the call's failure. std::logic_error while the
  // previous next() is pending, or on a moved-from reader.
  deferred<std::optional<Response>> next(std::source_location loc = std::source_location::current());

  // Cancels the call: a pending next() fails with cancelled_error, later ones with grpc_error(CANCELLED) (or with
  // the status the call had already ended with).
  void cancel() noexcept;

  void swap(stream_reader& other) noexcept { std::swap(state_, other.state_); }

  // For read_stream(): takes over the reader's ownership of `state`.
  explicit stream_reader(detail::stream_core<Response>* state) noexcept : state_(state) {}

 private:
  detail::stream_core<Response>* state_;
};

namespace detail {

// What a stream_reader needs of its state, whatever the request type.
template <class Response>
// NOLINTNEXTLINE(cppcoreguidelines-virtual-class-destructor): virtual through gRPC's reactor base
class stream_core : public ::grpc::ClientReadReactor<Response> {
 public:
  // --- owners: the reader, gRPC (until OnDone returns), a queued delivery, and each pending next()'s canceller
  void add_owner() noexcept { owners_.fetch_add(1, std::memory_order_relaxed); }
  void drop_owner() noexcept {
    // acq_rel: the last owner sees every other owner's writes before it deletes.
    if (owners_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  deferred<std::optional<Response>> next(std::source_location loc) {
    std::unique_lock lock(mu_);
    if (pending_.has_value())
      throw std::logic_error("anydefer::grpc::stream_reader::next: the previous next() is pending");
    if (ended_) return end_result(loc);
    add_owner();  // the canceller's
    deferred<std::optional<Response>> d(
        [self = owner_ref(this)](deferred<std::optional<Response>>&) noexcept { self.get()->request_cancel(); }, loc);
    pending_ = d;
    if (read_failed_ || cancel_requested_) return d;  // the stream is over (or going): OnDone settles it
    reading_ = true;
    lock.unlock();
    this->StartRead(&message_);
    return d;
  }

  // Fails a pending next() with cancelled_error, then cancels the call. Settling first matters: gRPC may run
  // OnReadDone and OnDone inline in TryCancel(), which would fail it with CANCELLED instead.
  void request_cancel() noexcept {
    bool release = false;
    std::optional<deferred<std::optional<Response>>> pending;
    {
      std::lock_guard lock(mu_);
      cancel_requested_ = true;
      pending = std::exchange(pending_, std::nullopt);  // answered here: the next next() may come at once
      if (!reading_) release = std::exchange(hold_, false);
    }
    if (pending) anydefer::detail::access::state_of(*pending)->fire_failure(std::make_exception_ptr(cancelled_error()));
    context_.TryCancel();
    if (release) this->RemoveHold();  // no read in flight: OnDone follows
  }

  // The reader is gone: cancel what is left of the call (nothing once it ended) and let go.
  void abandon() noexcept {
    bool ended = false;
    {
      std::lock_guard lock(mu_);
      ended = ended_;
    }
    if (!ended) request_cancel();
    drop_owner();
  }

 protected:
  explicit stream_core(const call_options& options) : executor_(options.executor), delivery_(this) {
    prepare(context_, options);
  }

 public:
  ~stream_core() override = default;  // the last drop_owner() deletes through this type

 protected:
  void OnReadDone(bool ok) override {
    bool deliver_message = false;
    bool release_hold = false;
    {
      std::lock_guard lock(mu_);
      reading_ = false;
      // After a cancel, what was read is dropped: that next() was already answered with cancelled_error.
      deliver_message = ok && !cancel_requested_;
      if (deliver_message) outcome_.emplace(std::move(message_));
      if (!ok) read_failed_ = true;  // the stream is over; the status comes with OnDone
      // After a cancel no read starts again, so the hold goes with the last read.
      if (!ok || cancel_requested_) release_hold = std::exchange(hold_, false);
    }
    if (deliver_message) dispatch();
    if (release_hold) this->RemoveHold();
  }

  void OnDone(const ::grpc::Status& status) override {
    bool settle = false;
    {
      std::lock_guard lock(mu_);
      ended_ = true;
      status_ = status;
      settle = pending_.has_value() && !outcome_.has_value();
    }
    if (settle) dispatch();
    drop_owner();  // gRPC's: it touches the reactor no more (may free *this)
    grpc_let_go_of_call();
  }

  ::grpc::ClientContext context_;

 private:
  // A reference for the canceller of a pending next(), which may outlive the reader.
  class owner_ref {
   public:
    explicit owner_ref(stream_core* s) noexcept : s_(s) {}  // adopts an add_owner() already made
    owner_ref(owner_ref&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    owner_ref(const owner_ref&) = delete;
    owner_ref& operator=(const owner_ref&) = delete;
    owner_ref& operator=(owner_ref&&) = delete;
    ~owner_ref() {
      if (s_ != nullptr) s_->drop_owner();
    }
    stream_core* get() const noexcept { return s_; }

   private:
    stream_core* s_;
  };

  struct delivery_task : task {
    explicit delivery_task(stream_core* o) noexcept : task(&delivery_operations), owner(o) {}
    stream_core* owner;
  };

  deferred<std::optional<Response>> end_result(std::source_location loc) const {
    if (status_.ok()) return succeed<std::optional<Response>>(std::nullopt, loc);
    return fail<std::optional<Response>>(failure(failure_of(status_)), loc);
  }

  // Hands the pending next() its outcome: on the executor, or here.
  void dispatch() noexcept {
    if (executor_) {
      add_owner();  // the queued delivery's
      executor_->execute(delivery_);
    } else {
      deliver();
    }
  }

  void deliver() noexcept {
    std::optional<deferred<std::optional<Response>>> target;
    std::optional<Response> message;
    bool ended = false;
    {
      std::lock_guard lock(mu_);
      target = std::exchange(pending_, std::nullopt);
      if (outcome_) {
        message = std::exchange(outcome_, std::nullopt);
      } else {
        ended = ended_;
      }
    }
    if (!target) return;
    auto* s = anydefer::detail::access::state_of(*target);
    // A cancel() may have settled the deferred: then these find it claimed and do nothing.
    if (message) {
      s->fire_value(std::move(message));
    } else if (ended && status_.ok()) {
      s->fire_value(std::nullopt);
    } else {
      s->fire_failure(ended ? failure_of(status_) : std::make_exception_ptr(cancelled_error()));
    }
  }

  static stream_core& owner_of(task& t) noexcept { return *static_cast<delivery_task&>(t).owner; }
  static void run_delivery(task& t) noexcept {
    stream_core& self = owner_of(t);
    self.deliver();
    self.drop_owner();
  }
  static void reject_delivery(task& t, std::exception_ptr why) noexcept {
    stream_core& self = owner_of(t);
    std::optional<deferred<std::optional<Response>>> target;
    {
      std::lock_guard lock(self.mu_);
      target = std::exchange(self.pending_, std::nullopt);
      self.outcome_.reset();
    }
    if (target) anydefer::detail::access::state_of(*target)->fire_failure(std::move(why));
    self.drop_owner();
  }
  static constexpr task::operations delivery_operations{&run_delivery, &reject_delivery};

  std::atomic<int> owners_{2};  // the reader and gRPC
  std::optional<executor_ref> executor_;
  delivery_task delivery_;
  Response message_;  // gRPC's read target; one read at a time

  std::mutex mu_;  // guards what follows (the reactions run on gRPC's threads, next() on the reader's)
  std::optional<deferred<std::optional<Response>>> pending_;  // the next() being answered
  std::optional<Response> outcome_;                           // a message read for pending_, not yet delivered
  ::grpc::Status status_;                                     // the call's status, once ended_
  bool reading_ = false;                                      // a StartRead is in flight
  bool read_failed_ = false;       // a read came back empty: the stream is over, OnDone follows
  bool ended_ = false;             // OnDone came
  bool cancel_requested_ = false;  // request_cancel() ran: no read starts any more
  bool hold_ = true;               // the hold added before StartCall: OnDone waits for it
};

template <class Request, class Response>
class read_stream_state final : public stream_core<Response> {
 public:
  read_stream_state(Request request, const call_options& options)
      : stream_core<Response>(options), request_(std::move(request)) {}

  template <class Async, class Method>
  void start(Async* async, Method method) {
    grpc_took_call();
    (async->*method)(&this->context_, &request_, this);
    this->AddHold();  // reads are started from outside the reactions: OnDone must wait for the reader
    this->StartCall();
  }

 private:
  Request request_;
};

}  // namespace detail

// Starts a server-streaming call: `method` is the generated `&Stub::async::Method` taking a ClientReadReactor.
// Throws what `options.configure` throws, or std::bad_alloc.
template <class Async, class Request, class Response>
stream_reader<Response> read_stream(Async* async, server_streaming_method<Async, Request, Response> method,
                                    Request request, const call_options& options = {}) {
  auto* s = new detail::read_stream_state<Request, Response>(std::move(request), options);
  s->start(async, method);  // gRPC's generated method and StartCall do not throw
  return stream_reader<Response>(s);
}

template <class Response>
stream_reader<Response>::~stream_reader() {
  if (state_ != nullptr) state_->abandon();
}

template <class Response>
deferred<std::optional<Response>> stream_reader<Response>::next(std::source_location loc) {
  if (state_ == nullptr) throw std::logic_error("anydefer::grpc::stream_reader::next: a moved-from reader");
  return state_->next(loc);
}

template <class Response>
void stream_reader<Response>::cancel() noexcept {
  if (state_ != nullptr) state_->request_cancel();
}

}  // namespace anydefer::grpc
