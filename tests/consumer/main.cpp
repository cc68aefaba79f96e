// Installed-package smoke test: compiles against the installed headers and links the installed libraries
// (anydefer::core through the umbrella header, anydefer::executors through a thread_pool).
#include <anydefer/anydefer.hpp>
#include <anydefer/executors.hpp>

#include <cstdio>

int main() {
  anydefer::deferred<int> d;
  anydefer::deferred<int> next = d.add_callback([](int v) { return v + 1; });
  d.callback(41);
  const int value = next.get();
  if (value != 42) {
    std::fprintf(stderr, "anydefer consumer: expected 42, got %d\n", value);
    return 1;
  }

  anydefer::thread_pool pool(1);
  anydefer::deferred<int> start;
  anydefer::deferred<int> on_pool = start.add_callback(pool, [](int v) { return v * 2; });
  start.callback(21);
  const int pooled = on_pool.get();
  pool.stop();
  if (pooled != 42) {
    std::fprintf(stderr, "anydefer consumer: expected 42 from the pool, got %d\n", pooled);
    return 1;
  }

  std::printf("anydefer consumer: ok (%d, %d)\n", value, pooled);
  return 0;
}
