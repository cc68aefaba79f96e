// anydefer::grpc: a gRPC status as a failure and back.
#include "anydefer/grpc/status.hpp"

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>

#include "../keep_tsan_suppressions.hpp"  // gRPC's libraries are not instrumented: see tsan_suppressions.cpp
#include "anydefer/errors.hpp"

namespace anydefer::grpc {
namespace {

std::string describe(const ::grpc::Status& status) {
  if (status.ok()) throw std::invalid_argument("anydefer::grpc::grpc_error: the status is OK, not an error");
  std::string text = code_name(status.error_code());
  if (!status.error_message().empty()) {
    text += ": ";
    text += status.error_message();
  }
  return text;
}

}  // namespace

grpc_error::grpc_error(const ::grpc::Status& status)
    : std::runtime_error(describe(status)), status_(std::make_shared<const ::grpc::Status>(status)) {}

grpc_error::grpc_error(::grpc::StatusCode code, const std::string& message, const std::string& details)
    : grpc_error(::grpc::Status(code, message, details)) {}

std::string code_name(::grpc::StatusCode code) {
  switch (code) {
    case ::grpc::StatusCode::OK:
      return "OK";
    case ::grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case ::grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case ::grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case ::grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case ::grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case ::grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case ::grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case ::grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case ::grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case ::grpc::StatusCode::ABORTED:
      return "ABORTED";
    case ::grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case ::grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case ::grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case ::grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case ::grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case ::grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "CODE(" + std::to_string(static_cast<int>(code)) + ")";
  }
}

::grpc::Status status_of(const std::exception_ptr& error) {
  if (!error) return {::grpc::StatusCode::INTERNAL, "anydefer::grpc::status_of: no exception (a null failure)"};
  try {
    std::rethrow_exception(error);
  } catch (const grpc_error& e) {
    return e.status();
  } catch (const cancelled_error& e) {
    return {::grpc::StatusCode::CANCELLED, e.what()};
  } catch (const timeout_error& e) {
    return {::grpc::StatusCode::DEADLINE_EXCEEDED, e.what()};
  } catch (const std::exception& e) {
    return {::grpc::StatusCode::INTERNAL, e.what()};
  } catch (...) {
    return {::grpc::StatusCode::INTERNAL, "unknown exception"};
  }
}

}  // namespace anydefer::grpc
