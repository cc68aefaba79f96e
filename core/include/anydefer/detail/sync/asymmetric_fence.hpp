// anydefer/detail/sync/asymmetric_fence.hpp: a Dekker pair whose frequent side pays no fence.
//
// Executors hand work over with Dekker's pattern: the producer publishes a task and then reads "is the consumer
// asleep?", the consumer announces "I am going to sleep" and then re-checks for tasks; a seq_cst fence on each
// side, between its write and its read, guarantees that at least one of them sees the other's write, so no
// wake-up is lost. The producer's fence runs on every post, and it is expensive: it waits until the producer's
// stores (the task, the queue's indices) reach the caches other cores read them from, and those lines are
// exactly the ones the consumers contend for. The consumer's side runs only when it is about to sleep.
//
// So the fences are split, as Linux's RCU and Folly's hazard pointers do:
//   light_fence()  the frequent side: only a compiler barrier, so program order is kept in the instruction stream.
//   heavy_fence()  the rare side: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), which makes every CPU that is
//                  running a thread of this process execute a full memory barrier before it returns (threads not
//                  running get one from the context switch).
// Why that suffices: take a producer "store X; light_fence(); load Y" and a consumer "store Y; heavy_fence();
// load X". The barrier forced on the producer's CPU lands somewhere in its instruction stream. If before the
// load of Y, that load comes after the consumer's store of Y was made visible (the consumer's own membarrier
// call includes a full fence), so it sees Y. If after it, the store of X, earlier in program order, is drained
// by the barrier before membarrier returns, so the consumer's load of X sees it. In the terms of the C++ model,
// heavy_fence() acts as a seq_cst fence in every thread at once, and both sides then argue as with fences.
//
// Fallback: without membarrier (an old kernel, a seccomp filter), and under ThreadSanitizer (which cannot see
// it), both functions are detail::fence(seq_cst): the symmetric protocol, correct and slower. The choice is
// made once per process by enable_asymmetric_fences(), which every executor that uses these calls in its
// constructor, before any of its threads or users exist: a heavy side then always knows the choice, and a
// light side that reads a stale "not yet" issues a real fence, which is only stronger.
//
// Thread-safety: all functions are thread-safe. Never allocate.
#pragma once

#include <atomic>

#include "anydefer/detail/sync/fence.hpp"

namespace anydefer::detail {

// Set once, false to true, by enable_asymmetric_fences(); changed after that only by
// set_asymmetric_fences_for_measurement(), while no executor exists.
inline std::atomic<bool> asymmetric_fences_enabled{false};

// Registers the process for expedited membarrier if the kernel allows it (idempotent). Returns whether
// light_fence() is now only a compiler barrier.
bool enable_asymmetric_fences() noexcept;

// For A/B measurements (B5, B8): false turns the split off, so both sides use the symmetric seq_cst fence; true
// turns it back on if the process could register membarrier. Returns whether it was on. Precondition: no
// executor exists at the time (none may be between one side of a pair and the other). Never allocates.
bool set_asymmetric_fences_for_measurement(bool on) noexcept;

// The frequent side's fence. See the file comment.
inline void light_fence() noexcept {
  // relaxed: a stale false only means a real fence, which is stronger; true is never stale (see the file comment).
  if (asymmetric_fences_enabled.load(std::memory_order_relaxed)) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    fence(std::memory_order_seq_cst);
  }
}

// The rare side's fence: a system call when asymmetric fences are enabled. See the file comment.
void heavy_fence() noexcept;

}  // namespace anydefer::detail
