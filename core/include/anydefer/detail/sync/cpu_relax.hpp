// anydefer/detail/sync/cpu_relax.hpp: the spin-wait hint used by bounded spin loops.
//
// Tells the core that this is a spin loop (x86 PAUSE, Arm YIELD): the sibling hyper-thread gets the pipeline and
// the loop exit does not pay a memory-order mis-speculation. Never blocks. Never allocates.
#pragma once

namespace anydefer::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace anydefer::detail
