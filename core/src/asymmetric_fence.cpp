#include "anydefer/detail/sync/asymmetric_fence.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace anydefer::detail {
namespace {

long membarrier(int command) noexcept { return ::syscall(__NR_membarrier, command, 0U, 0); }

bool register_membarrier() noexcept {
#ifdef ANYDEFER_DETAIL_TSAN
  return false;  // ThreadSanitizer cannot see membarrier's ordering: keep the symmetric fences it models
#else
  const long supported = membarrier(MEMBARRIER_CMD_QUERY);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  return membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
#endif
}

}  // namespace

bool enable_asymmetric_fences() noexcept {
  static const bool registered = [] {
    const bool ok = register_membarrier();
    // relaxed: the executor constructor that calls this happens-before every use of its fences.
    if (ok) asymmetric_fences_enabled.store(true, std::memory_order_relaxed);
    return ok;
  }();
  return registered;
}

bool set_asymmetric_fences_for_measurement(bool on) noexcept {
  // Registers first (once), so that no executor built later turns the split back on behind the caller.
  const bool available = enable_asymmetric_fences();
  // relaxed: by the precondition no executor exists, and the next one is built (and its threads started) after.
  return asymmetric_fences_enabled.exchange(on && available, std::memory_order_relaxed);
}

void heavy_fence() noexcept {
  // relaxed: see light_fence().
  if (!asymmetric_fences_enabled.load(std::memory_order_relaxed)) {
    fence(std::memory_order_seq_cst);
    return;
  }
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) {
    // A registered process's call fails only if something outside anydefer took membarrier away afterwards
    // (a seccomp filter installed after the first executor was built, say). The light sides already rely on
    // it, and continuing could lose a wake-up silently: stop loudly instead.
    std::fputs("anydefer: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after registration\n", stderr);
    std::abort();
  }
}

}  // namespace anydefer::detail
