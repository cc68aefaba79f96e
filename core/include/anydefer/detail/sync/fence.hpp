// anydefer/detail/sync/fence.hpp: the standalone fences of the lock-free code, in a form that
// ThreadSanitizer can check.
//
// ThreadSanitizer does not model std::atomic_thread_fence (GCC even warns, -Wtsan), so a fence-based pairing
// would be invisible to it and its reports meaningless. Under TSan, fence(order) becomes an RMW with that order
// on one process-wide atomic word: every fence then reads the previous one in a single modification order,
// which yields at least the guarantees of the fences it replaces (and real happens-before edges TSan sees).
// Elsewhere it is the plain fence. Never blocks. Never allocates.
#pragma once

#include <atomic>

#include "anydefer/detail/sync/sanitizers.hpp"

namespace anydefer::detail {

#ifdef ANYDEFER_DETAIL_TSAN
inline std::atomic<unsigned> tsan_fence_word{0};
inline void fence(std::memory_order order) noexcept {
  tsan_fence_word.fetch_add(0, order == std::memory_order_seq_cst ? order : std::memory_order_acq_rel);
}
#else
inline void fence(std::memory_order order) noexcept { std::atomic_thread_fence(order); }
#endif

}  // namespace anydefer::detail
