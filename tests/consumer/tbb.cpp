// Installed-package test of anydefer::tbb alone: a continuation on oneTBB's workers.
#include <anydefer/deferred.hpp>
#include <anydefer/executors/tbb_executor.hpp>

#include <cstdio>

int main() {
  anydefer::tbb_executor tbb(2);
  anydefer::deferred<int> d;
  anydefer::deferred<int> next = d.add_callback(tbb, [](int v) { return v + 1; });
  d.callback(41);
  const int value = next.get();
  tbb.stop();
  if (value != 42) {
    std::fprintf(stderr, "anydefer consumer (tbb): expected 42, got %d\n", value);
    return 1;
  }
  std::printf("anydefer consumer (tbb): ok\n");
  return 0;
}
