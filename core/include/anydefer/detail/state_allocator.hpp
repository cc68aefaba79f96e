// anydefer/detail/state_allocator.hpp: where deferred states (and deferred coroutine frames) get their memory.
//
// A per-thread cache of recently freed blocks by 16-byte size class, in front of ::operator new: creating and
// dropping a deferred is the hot path of every chain, and a trip through the global heap was most of its cost.
// Blocks freed on another thread join that thread's cache; each thread keeps a bounded number per class. A
// thread that frees more hands the full class, as one batch, to a bounded process-wide depot, where a thread
// that runs out takes a batch before it asks the heap: a producer that makes states and a consumer that frees
// them (a pool fed through submit()) recycle blocks a batch at a time. Beyond the depot's bound blocks go back
// to the heap, and a thread's own cache goes back when it exits. A block of 64 bytes or more starts on a cache
// line, so that it spans as few lines as it can and shares none with the block before it. Under
// AddressSanitizer or ThreadSanitizer the cache is compiled out so every state is a real heap allocation the
// sanitizer can track (aligned the same way).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <new>

#include "anydefer/detail/sync/sanitizers.hpp"

namespace anydefer::detail {

// Freed states are kept per thread, by size class, and handed out again before asking the global heap: a
// deferred's state lives briefly and a server makes millions, so the allocation is most of the cost of a link.
// The fast paths (a pop or a push on this thread's list) are inline; the slow ones, and the depot, are in
// state_allocator.cpp.
namespace state_cache {

#ifdef ANYDEFER_DETAIL_SANITIZED
inline constexpr bool compiled_in = false;
#else
inline constexpr bool compiled_in = true;
#endif

inline constexpr std::size_t granule = 16;
// 16 .. 1024 bytes: a coroutine frame is often 300 B, and one that keeps several deferreds and awaiters across
// its suspensions (a node forking ten children, say) exceeds 512 B. Larger: the heap.
inline constexpr std::size_t classes = 64;

constexpr std::size_t class_of(std::size_t size) noexcept { return (size + granule - 1) / granule - 1; }
// The size of every block of class c: what a request of class_of(size) == c is given.
constexpr std::size_t block_bytes(std::size_t c) noexcept { return (c + 1) * granule; }

// How many blocks of class c one magazine holds, and the size of a depot batch: 256, or fewer for large blocks so
// that no magazine holds more than 16 KiB. A thread keeps two per class (the current one and a spare), so at
// most 2 MiB over all classes.
constexpr std::size_t max_cached_for(std::size_t c) noexcept {
  const std::size_t by_bytes = 16384 / block_bytes(c);
  return by_bytes > 256 ? 256 : by_bytes;
}
inline constexpr auto max_cached = [] {
  std::array<std::size_t, classes> table{};
  for (std::size_t c = 0; c < classes; ++c) table[c] = max_cached_for(c);
  return table;
}();

struct free_block {
  free_block* next;
  free_block* next_batch;  // the depot's link between batches, in a batch's first block (blocks are >= 16 B)
};

// This thread's lists. Trivial and constant-initialised, so reading it needs no guard. Emptied at thread exit by
// an owner object that the slow path constructs (and so registers for destruction) the first time.
//
// room[c] is how many more blocks the current magazine of class c takes: max_cached[c] minus the blocks on
// head[c]. It is 0 until this thread's owner is registered, once the cache is gone, and from the moment the
// cache is turned off (its lists are emptied then) until the next free after it is turned on again, so the fast
// free tests one word for every condition; the fast allocation needs no test of its own either, since head[c]
// stays null in all those cases (only the slow paths refill it, and they check). Right after the cache is turned
// on again a class may have room 0 and an empty list: the next slow free starts a new magazine.
struct lists {
  free_block* head[classes] = {};
  std::size_t room[classes] = {};
  free_block* spare[classes] = {};  // a full magazine (max_cached[c] blocks) kept back, or null: slow paths only
  bool owner_registered = false;
  // Set once the cache is emptied at thread exit: frees that come later (from other thread_local destructors)
  // go to the heap.
  bool gone = false;
};
inline constinit thread_local lists this_thread{};
// Read by the slow paths only (relaxed: a test flips it while no state is being made): turning the cache off
// empties the calling thread's lists, so that its fast paths miss and come to the slow ones (see
// set_state_cache_enabled()).
inline std::atomic<bool> enabled{true};

void* allocate_slow(std::size_t size);
void deallocate_slow(void* p, std::size_t size) noexcept;

}  // namespace state_cache

// A block of `size` bytes for a state or a coroutine frame: this thread's list of its class if it has one, else
// the slow path (a batch from the depot, or the heap). Never throws except std::bad_alloc from the heap.
inline void* allocate_state(std::size_t size) {
  if constexpr (state_cache::compiled_in) {
    const std::size_t c = state_cache::class_of(size);
    state_cache::lists& tc = state_cache::this_thread;
    if (c < state_cache::classes) {
      if (state_cache::free_block* b = tc.head[c]) {
        tc.head[c] = b->next;
        ++tc.room[c];
        // The next block, for the next allocation of this class, which reads its `next` and then writes the whole
        // block. A block freed on another thread (a pool worker's, after a submit() from here) is in that thread's
        // cache: fetched only then, the load stalls the allocation for a cross-core miss (a sixth of the time of
        // a submit() from outside in B8). For writing: the caller's constructor will.
        __builtin_prefetch(b->next, 1);
        return b;
      }
    }
  }
  return state_cache::allocate_slow(size);
}

// Gives back a block from allocate_state(size), on any thread: onto this thread's list while it has room.
inline void deallocate_state(void* p, std::size_t size) noexcept {
  if constexpr (state_cache::compiled_in) {
    const std::size_t c = state_cache::class_of(size);
    state_cache::lists& tc = state_cache::this_thread;
    if (c < state_cache::classes && tc.room[c] != 0) {
      tc.head[c] = ::new (p) state_cache::free_block{tc.head[c], nullptr};
      --tc.room[c];
      return;
    }
  }
  state_cache::deallocate_slow(p, size);
}

// Turns the state cache on or off, for tests and benchmarks that count heap allocations; returns the old setting.
// Off: the calling thread's cache is emptied (its blocks go back to the heap) and, until the cache is on again,
// every allocation and free on it goes to the heap, as on any thread that starts meanwhile. A thread that already
// holds cached blocks (or room for them) keeps using them until they run out, so counting across threads must
// start the threads it counts after turning the cache off. The fast paths do not read the setting (it would cost
// each allocation and free a load and a branch): an empty list and no room send them to the slow paths, which do.
// Thread-safe.
bool set_state_cache_enabled(bool enabled) noexcept;

}  // namespace anydefer::detail
