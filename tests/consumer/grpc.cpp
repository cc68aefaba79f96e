// Installed-package test of anydefer::grpc alone (it finds gRPC through the package config): a failure as a gRPC
// status and back, and the client and server headers compile.
#include <anydefer/grpc/client.hpp>
#include <anydefer/grpc/server.hpp>
#include <anydefer/grpc/status.hpp>

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

int main() {
  const grpc::Status s = anydefer::grpc::status_of(std::make_exception_ptr(std::runtime_error("boom")));
  if (s.error_code() != grpc::StatusCode::INTERNAL || s.error_message() != "boom") {
    std::fprintf(stderr, "anydefer consumer (grpc): status_of gave %d '%s'\n", static_cast<int>(s.error_code()),
                 s.error_message().c_str());
    return 1;
  }
  const anydefer::grpc::grpc_error e(grpc::StatusCode::NOT_FOUND, "missing");
  if (e.code() != grpc::StatusCode::NOT_FOUND || std::string(e.what()) != "NOT_FOUND: missing") {
    std::fprintf(stderr, "anydefer consumer (grpc): grpc_error says '%s'\n", e.what());
    return 1;
  }
  std::printf("anydefer consumer (grpc): ok\n");
  return 0;
}
