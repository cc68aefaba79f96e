// Installed-package test of anydefer::asio alone: an Asio timer's completion as a deferred.
#include <anydefer/asio/use_deferred.hpp>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>

int main() {
  asio::io_context io;
  asio::steady_timer timer(io, std::chrono::milliseconds(1));
  anydefer::deferred<int> waited = timer.async_wait(anydefer::use_deferred).add_callback([] { return 42; });
  io.run();
  const int value = waited.get();
  if (value != 42) {
    std::fprintf(stderr, "anydefer consumer (asio): expected 42, got %d\n", value);
    return 1;
  }
  std::printf("anydefer consumer (asio): ok\n");
  return 0;
}
