// bench/alloc_counter.hpp: replaces the global operator new/delete to count heap allocations and bytes.
//
// Include it in exactly one translation unit of a benchmark program (it defines the replacement functions).
// The counters are thread-local plain integers, so counting adds a few instructions per allocation and no
// atomic operation; read them on the thread that allocates:
//
//   bench::alloc_scope scope;
//   do_something();
//   scope.allocations();  // operator new calls on this thread since the scope began
//   scope.bytes();        // bytes requested from operator new on this thread since the scope began
#pragma once

#include <anydefer/detail/state_allocator.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace bench {

struct alloc_counts {
  std::uint64_t allocations = 0;
  std::uint64_t bytes = 0;
};
inline constinit thread_local alloc_counts this_thread_allocs{};

// While a scope is alive anydefer's per-thread state cache is off, so every deferred state is a real heap
// allocation: the counters show what a deferred costs the heap when no freed state can be reused (the budget
// "one allocation per deferred"), not the amortised zero of a warm cache.
class alloc_scope {
 public:
  alloc_scope() noexcept
      : cache_was_on_(anydefer::detail::set_state_cache_enabled(false)), start_(this_thread_allocs) {}
  ~alloc_scope() { anydefer::detail::set_state_cache_enabled(cache_was_on_); }
  alloc_scope(const alloc_scope&) = delete;
  alloc_scope& operator=(const alloc_scope&) = delete;
  std::uint64_t allocations() const noexcept { return this_thread_allocs.allocations - start_.allocations; }
  std::uint64_t bytes() const noexcept { return this_thread_allocs.bytes - start_.bytes; }

 private:
  bool cache_was_on_;
  alloc_counts start_;
};

namespace detail {
inline void* counted_alloc(std::size_t size, std::size_t align) noexcept {
  alloc_counts& c = this_thread_allocs;
  ++c.allocations;
  c.bytes += size;
  if (size == 0) size = 1;
  if (align <= alignof(std::max_align_t)) return std::malloc(size);
  return std::aligned_alloc(align, (size + align - 1) / align * align);
}
inline void* counted_alloc_or_throw(std::size_t size, std::size_t align) {
  void* p = counted_alloc(size, align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace detail
}  // namespace bench

// NOLINTBEGIN(misc-new-delete-overloads): the full replacement set, each forwarding to malloc/free.
void* operator new(std::size_t n) { return bench::detail::counted_alloc_or_throw(n, 0); }
void* operator new[](std::size_t n) { return bench::detail::counted_alloc_or_throw(n, 0); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return bench::detail::counted_alloc(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return bench::detail::counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return bench::detail::counted_alloc_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return bench::detail::counted_alloc_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return bench::detail::counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return bench::detail::counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
// NOLINTEND(misc-new-delete-overloads)
