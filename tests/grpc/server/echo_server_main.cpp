// anydefer_grpc_echo_server: the Echo service of tests/grpc/echo.proto in a process of its own, for the
// two-process test. Listens on 127.0.0.1 with an ephemeral port, prints "listening on 127.0.0.1:<port>" once it
// serves, and exits 0 on SIGTERM or SIGINT.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <exception>

#include "echo_service.hpp"

int main() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  // Blocked before any thread starts, so every thread inherits the mask and only sigwait() takes them.
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  try {
    anydefer_test::echo_server server;
    std::printf("listening on %s\n", server.target().c_str());
    std::fflush(stdout);
    int signal = 0;
    sigwait(&stop_signals, &signal);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "anydefer_grpc_echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
