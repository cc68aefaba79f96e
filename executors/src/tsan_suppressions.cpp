// ThreadSanitizer suppressions for every program that links anydefer's executors (only in -fsanitize=thread
// builds). thread_pool.cpp references the anchor below so that a static link always pulls this file in.
//
// Two third-party sources of false reports, and nothing else:
//   - moodycamel::ConcurrentQueue (the pool's injection queue) synchronises element slots with standalone
//     atomic_thread_fence calls, which ThreadSanitizer does not model; its author documents the reports as
//     false positives (cameron314/concurrentqueue issues #49 and #62).
//   - oneTBB's shared library is not instrumented, so the happens-before edge that its task queue provides
//     between arena.enqueue() and the worker running the functor is invisible; every access made by code that
//     TBB runs is then reported against the submitting thread.
//   - gRPC and the Abseil it runs on (anydefer::grpc's programs) are uninstrumented shared libraries too: the
//     edges their completion queues, event engine and absl::Mutex provide are invisible, so their own threads
//     race with each other in every report, and a callback that gRPC runs is reported against the thread that
//     started the call. What anydefer::grpc hands between threads itself goes through deferreds and executors,
//     which are checked everywhere else.
// Our own lock-free code (work_stealing_deque, event_count, admission_gate, intrusive_inbox, reactor) has no
// suppression.
#include "anydefer/detail/sync/sanitizers.hpp"

namespace anydefer::detail {
// Referenced from thread_pool.cpp and tbb_executor.cpp: linking either links these suppressions.
int tsan_suppressions_anchor = 0;
}  // namespace anydefer::detail

#ifdef ANYDEFER_DETAIL_TSAN
extern "C" const char* __tsan_default_suppressions() {
  return "race:moodycamel::ConcurrentQueue\n"
         "race:oneapi/tbb/\n"
         "race:libtbb.so\n"
         "race:libgrpc.so\n"
         "race:libgrpc++.so\n"
         "race:libgpr.so\n"
         "race:libabsl_\n"
         "race:libprotobuf.so\n"
         "thread:libgpr.so\n";  // gRPC leaves some of its own threads unjoined at exit
}
#endif
