#include "anydefer/detail/state_allocator.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <new>
#include <type_traits>

namespace anydefer::detail {
namespace {

// Freed states are kept per thread, by size class, and handed out again before asking the global heap: a
// deferred's state lives briefly and a server makes millions, so the allocation is most of the cost of a link.
// Every cached block came from ::operator new with its class's size and goes back there (unless it ends in the
// depot, which keeps what it holds for the life of the process), so a block may be freed on another thread than
// the one that made it (it then joins that thread's cache).
constexpr std::size_t kGranule = 16;
// 16 .. 1024 bytes: a coroutine frame is often 300 B, and one that keeps several deferreds and awaiters across
// its suspensions (a node forking ten children, say) exceeds 512 B. Larger: the heap.
constexpr std::size_t kClasses = 64;

// How many blocks of class c one thread keeps, and the size of a depot batch: 256, or fewer for large blocks so
// that no class holds more than 16 KiB (at most 1 MiB per thread over all classes). A table: the
// free path reads it on every call.
constexpr std::size_t max_cached_for(std::size_t c) noexcept {
  const std::size_t by_bytes = 16384 / ((c + 1) * kGranule);
  return by_bytes > 256 ? 256 : by_bytes;
}
constexpr auto kMaxCached = [] {
  std::array<std::size_t, kClasses> table{};
  for (std::size_t c = 0; c < kClasses; ++c) table[c] = max_cached_for(c);
  return table;
}();
constexpr std::size_t max_cached(std::size_t c) noexcept { return kMaxCached[c]; }

struct free_block {
  free_block* next;
  free_block* next_batch;  // the depot's link between batches, in a batch's first block (blocks are >= 16 B)
};

// Where a thread puts a full class when it frees yet another block of it, and where a thread whose class ran
// empty looks before the global heap: whole batches of max_cached(c) blocks, so the lock is taken once per
// batch. This is what makes a producer/consumer pair cheap: states made on one thread and freed on another
// (every post to a pool through submit()) would otherwise fill the consumer's cache and drain the producer's,
// and go through the global heap, whose cross-thread frees contend on its arena lock.
constexpr std::size_t kMaxDepotBatches = 8;  // per class: at most 128 KiB, 8 MiB in all

struct class_depot {
  std::mutex mutex;
  free_block* batches = nullptr;     // guarded by mutex
  std::size_t batch_count = 0;       // guarded by mutex
  std::atomic<std::size_t> hint{0};  // batch_count, readable without the lock (relaxed: a hint)
};
// constinit and trivially destructible: valid for every thread_local destructor, including at exit.
constinit class_depot depot[kClasses];
static_assert(std::is_trivially_destructible_v<class_depot>);

// Takes a batch for class c, or nullptr. On success the batch holds max_cached(c) blocks.
free_block* take_batch(std::size_t c) noexcept {
  class_depot& d = depot[c];
  if (d.hint.load(std::memory_order_relaxed) == 0) return nullptr;
  std::lock_guard<std::mutex> lock(d.mutex);
  free_block* b = d.batches;
  if (b == nullptr) return nullptr;
  d.batches = b->next_batch;
  d.hint.store(--d.batch_count, std::memory_order_relaxed);
  return b;
}

// Gives a full batch of class c to the depot; false if the depot is full (the caller keeps it).
bool give_batch(std::size_t c, free_block* batch) noexcept {
  class_depot& d = depot[c];
  std::lock_guard<std::mutex> lock(d.mutex);
  if (d.batch_count == kMaxDepotBatches) return false;
  batch->next_batch = d.batches;
  d.batches = batch;
  d.hint.store(++d.batch_count, std::memory_order_relaxed);
  return true;
}

// This thread's lists. Trivial and constant-initialised, so reading it needs no guard: the fast paths are a few
// instructions. Emptied at thread exit by cache_owner, which is constructed (and so registered for destruction)
// the first time this thread's cache takes a slow path.
struct thread_cache {
  free_block* head[kClasses] = {};
  std::size_t count[kClasses] = {};
  bool owner_registered = false;
  // Set once the cache is emptied at thread exit: frees that come later (from other thread_local destructors)
  // go to the heap.
  bool gone = false;
};
constinit thread_local thread_cache cache;
std::atomic<bool> cache_enabled{true};  // relaxed: a test flips it while no state is being made

struct cache_owner {
  ~cache_owner();
};
thread_local cache_owner owner;

[[gnu::noinline]] void register_cache_owner() noexcept {
  [[maybe_unused]] cache_owner& touched = owner;  // the first use constructs it and registers its destructor
  cache.owner_registered = true;
}

// GCC says __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__; clang says __has_feature(...).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ANYDEFER_DETAIL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ANYDEFER_DETAIL_SANITIZED 1
#endif
#endif
#ifdef ANYDEFER_DETAIL_SANITIZED
constexpr bool kCacheCompiledIn = false;
#else
constexpr bool kCacheCompiledIn = true;
#endif

bool use_cache() noexcept { return kCacheCompiledIn && !cache.gone && cache_enabled.load(std::memory_order_relaxed); }

cache_owner::~cache_owner() {
  thread_cache& tc = cache;
  tc.gone = true;
  for (std::size_t c = 0; c < kClasses; ++c) {
    while (free_block* b = tc.head[c]) {
      tc.head[c] = b->next;
      ::operator delete(b);
    }
    tc.count[c] = 0;
  }
}

constexpr std::size_t class_of(std::size_t size) noexcept { return (size + kGranule - 1) / kGranule - 1; }

// The slow paths, out of line so that the fast paths (a pop or a push on this thread's list) need no stack frame.
// Only for a cached class while the cache is in use.
[[gnu::noinline]] void* allocate_slow(std::size_t c) {
  thread_cache& tc = cache;
  if (!tc.owner_registered) register_cache_owner();
  if ((tc.head[c] = take_batch(c)) != nullptr) {
    tc.count[c] = max_cached(c) - 1;
    free_block* b = tc.head[c];
    tc.head[c] = b->next;
    return b;
  }
  return ::operator new((c + 1) * kGranule);
}

[[gnu::noinline]] void deallocate_slow(void* p, std::size_t c) noexcept {
  thread_cache& tc = cache;
  if (!tc.owner_registered) {
    register_cache_owner();
    deallocate_state(p, (c + 1) * kGranule);
    return;
  }
  if (tc.count[c] == max_cached(c) && give_batch(c, tc.head[c])) {
    tc.head[c] = new (p) free_block{nullptr, nullptr};
    tc.count[c] = 1;
    return;
  }
  ::operator delete(p);
}

}  // namespace

void* allocate_state(std::size_t size) {
  const std::size_t c = class_of(size);
  if (c >= kClasses) return ::operator new(size);
  if (!use_cache()) return ::operator new((c + 1) * kGranule);
  thread_cache& tc = cache;
  if (free_block* b = tc.head[c]) {
    tc.head[c] = b->next;
    --tc.count[c];
    return b;
  }
  return allocate_slow(c);
}

void deallocate_state(void* p, std::size_t size) noexcept {
  const std::size_t c = class_of(size);
  if (c >= kClasses || !use_cache()) {
    ::operator delete(p);
    return;
  }
  thread_cache& tc = cache;
  if (tc.count[c] < max_cached(c) && tc.owner_registered) {
    tc.head[c] = new (p) free_block{tc.head[c], nullptr};
    ++tc.count[c];
    return;
  }
  deallocate_slow(p, c);
}

bool set_state_cache_enabled(bool enabled) noexcept {
  return cache_enabled.exchange(enabled, std::memory_order_relaxed);
}

}  // namespace anydefer::detail
