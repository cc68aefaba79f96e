// Included by the sources of executors that use third-party queues ThreadSanitizer cannot see through (moodycamel,
// oneTBB), and by anydefer::grpc (gRPC's libraries): the reference below makes a static link pull in
// tsan_suppressions.cpp along with them.
#pragma once

namespace anydefer::detail {
extern int tsan_suppressions_anchor;
// Keeps executors/src/tsan_suppressions.cpp in every static link that uses this executor.
[[gnu::used]] static int* const keep_tsan_suppressions = &tsan_suppressions_anchor;
}  // namespace anydefer::detail
