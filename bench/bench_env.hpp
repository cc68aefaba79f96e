// bench/bench_env.hpp: run-time knobs shared by the benchmark programs, read from the environment when the
// benchmarks are registered.
//
//   ANYDEFER_BENCH_ITERATIONS=n   every benchmark that applies fixed_iterations_from_env runs exactly n
//                                 iterations, once (tools/bench --instructions uses it so that instruction
//                                 counts under callgrind do not depend on timing).
//   ANYDEFER_BENCH_FULL=1         the sizes that only a full run measures (tools/bench sets it for a full run).
#pragma once

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

namespace bench {

inline void fixed_iterations_from_env(benchmark::internal::Benchmark* b) {
  if (const char* n = std::getenv("ANYDEFER_BENCH_ITERATIONS"); n != nullptr && *n != '\0') {
    b->Iterations(std::stoll(n));
  }
}

inline bool full_run() {
  const char* full = std::getenv("ANYDEFER_BENCH_FULL");
  return full != nullptr && std::string(full) == "1";
}

}  // namespace bench
