// anydefer/executors/detail/bound_links.hpp: how anydefer's executors report being destroyed too early.
//
// In builds without NDEBUG a deferred link continued on an executor (`d.add_callback(ex, f)`) counts itself on
// that executor from its creation until the executor runs or rejects its task (executor_ref::track_bound_links).
// An executor whose count is not zero at the end of its destructor would leave those links calling a destroyed
// object: it says so on stderr and aborts, instead of leaving undefined behaviour to surface later. Release builds
// do not count (a shared counter per scheduled link would cost the pool cross-core traffic); there, outliving the
// deferreds continued on it stays the documented precondition.
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace anydefer::detail {

class bound_links {
 public:
  // relaxed: the count is read only at destruction, after the executor's own joins and drains ordered everything.
  void track(int n) noexcept { count_.fetch_add(n, std::memory_order_relaxed); }

  void check_none_left(const char* executor) const noexcept {
    const long left = count_.load(std::memory_order_acquire);
    if (left == 0) return;
    std::fprintf(stderr,
                 "anydefer: %s destroyed while %ld deferred link(s) continued on it have not run yet; an executor "
                 "must outlive the deferreds continued on it\n",
                 executor, left);
    std::abort();
  }

 private:
  std::atomic<long> count_{0};
};

}  // namespace anydefer::detail
