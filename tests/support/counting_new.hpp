// tests/support/counting_new.hpp: the one replacement of the global operator new/delete used by the test and
// benchmark programs that count heap allocations (the allocation-budget tests, the leak checks of the stress
// tests, the benchmarks' allocs_per_op). Include it in exactly one translation unit of a program: it defines the
// replaceable functions.
//
// Two ways to count, for two questions:
//   thread_scope       "how many allocations did this code make?": the calling thread's allocations, frees and
//                      bytes since the scope began. Plain thread-local counts, always kept, so counting costs a
//                      few instructions per allocation and no atomic operation (benchmarks stay honest).
//   all_threads_scope  "did these threads free everything they allocated?": totals over every thread while the
//                      scope lives, in relaxed atomics (read them after joining the threads, which orders them).
// Both turn anydefer's state cache off while they live, so that every deferred state is a real heap allocation to
// count (a state parked in a thread's cache would otherwise look like a leak, or like no allocation at all).
// Turning it off empties the calling thread's cache; a thread started after that caches nothing, but one started
// before keeps what it cached, so all_threads_scope counts exactly only threads started inside it. The replacement
// allocates with malloc, so AddressSanitizer still tracks every block.
#pragma once

#include <anydefer/detail/state_allocator.hpp>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace anydefer_testing {

struct counts {
  std::uint64_t allocations = 0;
  std::uint64_t deallocations = 0;
  std::uint64_t bytes = 0;
};
inline constinit thread_local counts this_thread_counts{};

namespace detail {

// relaxed: the totals are read after the counting threads were joined (or on the one counting thread).
inline std::atomic<bool> counting_all_threads{false};
inline std::atomic<std::uint64_t> all_allocations{0};
inline std::atomic<std::uint64_t> all_deallocations{0};

inline void* counted_allocate(std::size_t size, std::size_t alignment) noexcept {
  counts& c = this_thread_counts;
  ++c.allocations;
  c.bytes += size;
  if (counting_all_threads.load(std::memory_order_relaxed)) all_allocations.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  if (alignment <= __STDCPP_DEFAULT_NEW_ALIGNMENT__) return std::malloc(size);
  return std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
}

inline void* counted_allocate_or_throw(std::size_t size, std::size_t alignment) {
  void* p = counted_allocate(size, alignment);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

inline void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  ++this_thread_counts.deallocations;
  if (counting_all_threads.load(std::memory_order_relaxed)) all_deallocations.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}

// anydefer's state cache off for the lifetime of the object (see set_state_cache_enabled: the calling thread's
// cache is emptied, threads started meanwhile cache nothing).
class state_cache_off {
 public:
  state_cache_off() noexcept : was_on_(anydefer::detail::set_state_cache_enabled(false)) {}
  ~state_cache_off() { anydefer::detail::set_state_cache_enabled(was_on_); }
  state_cache_off(const state_cache_off&) = delete;
  state_cache_off& operator=(const state_cache_off&) = delete;

 private:
  bool was_on_;
};

}  // namespace detail

// The calling thread's allocations, frees and bytes from construction until stop() (or now).
class thread_scope {
 public:
  thread_scope() noexcept : start_(this_thread_counts) {}
  thread_scope(const thread_scope&) = delete;
  thread_scope& operator=(const thread_scope&) = delete;

  void stop() noexcept {
    if (!stopped_) end_ = this_thread_counts;
    stopped_ = true;
  }
  long allocations() const noexcept { return static_cast<long>(now().allocations - start_.allocations); }
  long deallocations() const noexcept { return static_cast<long>(now().deallocations - start_.deallocations); }
  long bytes() const noexcept { return static_cast<long>(now().bytes - start_.bytes); }

 private:
  counts now() const noexcept { return stopped_ ? end_ : this_thread_counts; }

  detail::state_cache_off cache_off_;
  counts start_;
  counts end_{};
  bool stopped_ = false;
};

// Allocations and frees on every thread from construction until stop(). One at a time.
class all_threads_scope {
 public:
  all_threads_scope() noexcept {
    detail::all_allocations.store(0, std::memory_order_relaxed);
    detail::all_deallocations.store(0, std::memory_order_relaxed);
    detail::counting_all_threads.store(true, std::memory_order_relaxed);
  }
  ~all_threads_scope() { stop(); }
  all_threads_scope(const all_threads_scope&) = delete;
  all_threads_scope& operator=(const all_threads_scope&) = delete;

  void stop() noexcept { detail::counting_all_threads.store(false, std::memory_order_relaxed); }
  long allocations() const noexcept {
    return static_cast<long>(detail::all_allocations.load(std::memory_order_relaxed));
  }
  long deallocations() const noexcept {
    return static_cast<long>(detail::all_deallocations.load(std::memory_order_relaxed));
  }

 private:
  detail::state_cache_off cache_off_;
};

}  // namespace anydefer_testing

// NOLINTBEGIN(misc-new-delete-overloads): every replaceable form is replaced.
void* operator new(std::size_t n) {
  return anydefer_testing::detail::counted_allocate_or_throw(n, __STDCPP_DEFAULT_NEW_ALIGNMENT__);
}
void* operator new[](std::size_t n) {
  return anydefer_testing::detail::counted_allocate_or_throw(n, __STDCPP_DEFAULT_NEW_ALIGNMENT__);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return anydefer_testing::detail::counted_allocate(n, __STDCPP_DEFAULT_NEW_ALIGNMENT__);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return anydefer_testing::detail::counted_allocate(n, __STDCPP_DEFAULT_NEW_ALIGNMENT__);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return anydefer_testing::detail::counted_allocate_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return anydefer_testing::detail::counted_allocate_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return anydefer_testing::detail::counted_allocate(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return anydefer_testing::detail::counted_allocate(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { anydefer_testing::detail::counted_free(p); }
void operator delete[](void* p) noexcept { anydefer_testing::detail::counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { anydefer_testing::detail::counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { anydefer_testing::detail::counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { anydefer_testing::detail::counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { anydefer_testing::detail::counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { anydefer_testing::detail::counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { anydefer_testing::detail::counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { anydefer_testing::detail::counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { anydefer_testing::detail::counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  anydefer_testing::detail::counted_free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  anydefer_testing::detail::counted_free(p);
}
// NOLINTEND(misc-new-delete-overloads)
