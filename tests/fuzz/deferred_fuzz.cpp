// libFuzzer target: differential fuzzing of anydefer::deferred<int> against the reference model in harness.hpp.
// Each input is a little program over eight handle slots (create, chain, fire, cancel, drop, copy, get, gather,
// deferred_list, race); any difference between anydefer and the model aborts with the program and both event
// logs. Built and run by tools/fuzz; the committed corpus (tests/fuzz/corpus/) and any kept crashes
// (tests/fuzz/crashes/) are replayed by tests/executors/fuzz_regression_test.cpp in the normal test suite.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string why;
  if (!anydefer_fuzz::run_ops(data, size, &why)) {
    std::fputs(why.c_str(), stderr);
    std::abort();
  }
  return 0;
}
