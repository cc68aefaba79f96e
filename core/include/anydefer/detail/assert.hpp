// anydefer/detail/assert.hpp: ANYDEFER_ASSERT, an invariant check that is live in builds without NDEBUG (the
// debug and sanitizer presets) and compiles to nothing in release builds.
//
// A failed check prints the condition and where it failed, then aborts: an impossible state in lock-free code is
// never worth carrying on from.
#pragma once

namespace anydefer::detail {
[[noreturn]] void assertion_failed(const char* condition, const char* file, unsigned line) noexcept;
}  // namespace anydefer::detail

#ifdef NDEBUG
#define ANYDEFER_ASSERT(condition) static_cast<void>(0)
#else
#define ANYDEFER_ASSERT(condition) \
  ((condition) ? static_cast<void>(0) : ::anydefer::detail::assertion_failed(#condition, __FILE__, __LINE__))
#endif
