// Installed-package test of anydefer::core alone: a chain and a coroutine, no executor library linked.
#include <anydefer/coroutine.hpp>
#include <anydefer/deferred.hpp>

#include <cstdio>

namespace {
anydefer::deferred<int> twice(anydefer::deferred<int> d) { co_return 2 * co_await std::move(d); }
}  // namespace

int main() {
  anydefer::deferred<int> d;
  anydefer::deferred<int> result = twice(d.add_callback([](int v) { return v + 1; }));
  d.callback(20);
  const int value = result.get();
  if (value != 42) {
    std::fprintf(stderr, "anydefer consumer (core): expected 42, got %d\n", value);
    return 1;
  }
  std::printf("anydefer consumer (core): ok\n");
  return 0;
}
