// anydefer/grpc/server.hpp: gRPC service methods whose handlers return deferreds (target anydefer::grpc).
//
//   class EchoService final : public Echo::CallbackService {
//     grpc::ServerUnaryReactor* Say(grpc::CallbackServerContext* context, const Request* request,
//                                   Reply* reply) override {
//       return anydefer::grpc::serve(context, reply, [this, request]() -> anydefer::deferred<Reply> {
//         std::string value = co_await store_.get(request->key());   // any deferred, on any executor
//         Reply r;
//         r.set_text(value);
//         co_return r;
//       });
//     }
//   };
//
// serve() calls the handler at once, on the gRPC thread that runs the method (a coroutine handler may hop with
// `co_await anydefer::resume_on(pool)`), and finishes the RPC when the deferred it returned fires:
//   - a value is the response, with status OK;
//   - a failure is the status: grpc_error keeps its code, message and details; cancelled_error is CANCELLED;
//     timeout_error is DEADLINE_EXCEEDED; any other exception is INTERNAL with its what() (status_of());
//   - a handler that throws instead of returning fails the same way; it may also return the response itself.
// When the client cancels, or its deadline passes, the handler's deferred is cancelled (Twisted's cancel(): a
// coroutine sees cancelled_error at its co_await), so the work stops and the RPC finishes with CANCELLED. The
// request and the context stay valid until then: the handler may keep pointers to them.
//
// Cost: a handler whose deferred has fired by the time it returns (a synchronous answer) is finished through
// gRPC's own finish-only reactor, as a plain callback handler would be: nothing beside what the handler allocates.
// Otherwise one allocation (the reactor) and one deferred link; gRPC then runs the reactor's OnDone on its
// callback executor (a thread hop), as it does for every reactor an application defines.
#pragma once

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/status.h>

#include "anydefer/deferred.hpp"
#include "anydefer/failure.hpp"
#include "anydefer/grpc/status.hpp"

namespace anydefer::grpc {
namespace detail {

// A unary RPC waiting for its handler's deferred. gRPC owns it until OnDone, which deletes it.
//
// Ordering: gRPC calls OnCancel and OnDone only after the method handler returned the reactor (gRPC binds it
// then), so `finishing_` is set before either reads it; OnCancel happens before OnDone. The link's callback may run
// on any thread, also inside attach() (a deferred that already fired): Finish() before binding is queued by gRPC.
// After Finish() the callback touches nothing of the reactor, which OnDone may delete at once on another thread.
template <class Response>
class unary_reactor final : public ::grpc::ServerUnaryReactor {
 public:
  explicit unary_reactor(Response* response) noexcept : response_(response) {}

  void attach(deferred<Response> reply) noexcept {
    try {
      finishing_.emplace(
          std::move(reply).add_both([this](result<Response> outcome) noexcept { finish(std::move(outcome)); }));
    } catch (...) {  // no memory for the link
      Finish(status_of(std::current_exception()));
    }
  }

  void OnCancel() override {
    if (finishing_) finishing_->cancel();
  }
  void OnDone() override { delete this; }

 private:
  void finish(result<Response>&& outcome) noexcept {
    if (outcome.has_value()) {
      *response_ = std::move(outcome).value();
      Finish(::grpc::Status::OK);
    } else {
      Finish(status_of(outcome.error().exception()));
    }
  }

  Response* response_;
  std::optional<deferred<void>> finishing_;
};

}  // namespace detail

// Runs `handler(args...)` for a unary method of a CallbackService and returns the reactor to return from it.
// The handler returns deferred<Response> (a deferred coroutine, say) or Response.
template <class Response, class F, class... A>
::grpc::ServerUnaryReactor* serve(::grpc::CallbackServerContext* context, Response* response, F&& handler,
                                  A&&... args) {
  using returned = anydefer::detail::unwrap_deferred_t<std::invoke_result_t<F, A...>>;
  static_assert(std::is_same_v<returned, Response>,
                "anydefer::grpc::serve: the handler must return deferred<Response> or Response");
  deferred<Response> reply = maybe_deferred(std::forward<F>(handler), std::forward<A>(args)...);
  if (reply.fired()) {
    // Answered already: gRPC's own finish-only reactor, whose reactions run inline, as a plain handler's would.
    // A reactor of ours would cost an allocation and a hop to gRPC's callback executor for OnDone.
    ::grpc::ServerUnaryReactor* finish_only = context->DefaultReactor();
    ::grpc::Status status = ::grpc::Status::OK;
    try {
      *response = reply.get();
    } catch (...) {
      status = status_of(std::current_exception());
    }
    finish_only->Finish(std::move(status));
    return finish_only;
  }
  auto* reactor = new detail::unary_reactor<Response>(response);
  reactor->attach(std::move(reply));
  return reactor;
}

}  // namespace anydefer::grpc
