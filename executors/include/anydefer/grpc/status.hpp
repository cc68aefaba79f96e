// anydefer/grpc/status.hpp: a gRPC status as a failure, and a failure as a gRPC status (target anydefer::grpc).
//
//   try {
//     Reply r = co_await anydefer::grpc::call(stub->async(), &Echo::Stub::async::Say, request);
//   } catch (const anydefer::grpc::grpc_error& e) {
//     if (e.code() == grpc::StatusCode::DEADLINE_EXCEEDED) ...
//   }
//
// A call that ends with a status other than OK fails its deferred with a grpc_error that keeps the whole status
// (code, message, details). A handler's failure becomes the RPC's status through status_of().
#pragma once

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <grpcpp/support/status.h>

namespace anydefer::grpc {

// A gRPC call ended with a status other than OK; on a server, throw it (or fail with it) to choose the status.
class grpc_error : public std::runtime_error {
 public:
  // `status` must not be OK: std::invalid_argument otherwise (an error that says "OK" hides the real outcome).
  explicit grpc_error(const ::grpc::Status& status);
  grpc_error(::grpc::StatusCode code, const std::string& message, const std::string& details = {});

  ::grpc::StatusCode code() const noexcept { return status_->error_code(); }
  // The status message, without the code's name that what() adds.
  std::string message() const { return status_->error_message(); }
  // The binary error details (google.rpc.Status, usually empty).
  std::string details() const { return status_->error_details(); }
  const ::grpc::Status& status() const noexcept { return *status_; }

 private:
  std::shared_ptr<const ::grpc::Status> status_;  // shared: copying an exception must not throw
};

// The name of a status code as gRPC spells it: "DEADLINE_EXCEEDED"; "CODE(42)" for a number outside the enum.
std::string code_name(::grpc::StatusCode code);

// The status a server answers with for a handler's failure:
//   grpc_error                 its own status
//   anydefer::cancelled_error  CANCELLED (the client cancelled, or the handler's deferred was cancelled)
//   anydefer::timeout_error    DEADLINE_EXCEEDED (an add_timeout inside the handler expired)
//   any other exception        INTERNAL, with what() as the message ("unknown exception" for a non-std one)
// A null `error` is a bug of the caller: INTERNAL, saying so.
::grpc::Status status_of(const std::exception_ptr& error);

}  // namespace anydefer::grpc
