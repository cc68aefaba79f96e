// Installed-package test of anydefer::executors alone: a reactor's timer fires a deferred continued on a pool.
#include <anydefer/executors.hpp>

#include <chrono>
#include <cstdio>

int main() {
  anydefer::reactor loop;
  loop.start();
  anydefer::thread_pool pool(1);
  anydefer::deferred<int> later = anydefer::defer_later(loop, std::chrono::milliseconds(1), [] { return 21; });
  const int value = later.add_callback(pool, [](int v) { return 2 * v; }).get();
  pool.stop();
  loop.stop();
  if (value != 42) {
    std::fprintf(stderr, "anydefer consumer (executors): expected 42, got %d\n", value);
    return 1;
  }
  std::printf("anydefer consumer (executors): ok\n");
  return 0;
}
