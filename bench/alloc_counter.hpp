// bench/alloc_counter.hpp: the benchmarks' view of the counting operator new/delete (tests/support/counting_new.hpp,
// shared with the tests). Include it in exactly one translation unit of a benchmark program.
//
//   bench::alloc_scope scope;   // this thread, anydefer's state cache off while it lives
//   do_something();
//   scope.allocations();        // operator new calls on this thread since the scope began
//   scope.bytes();              // bytes requested from operator new on this thread since the scope began
#pragma once

#include "counting_new.hpp"

namespace bench {
using alloc_scope = anydefer_testing::thread_scope;
}  // namespace bench
