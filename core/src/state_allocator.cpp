#include "anydefer/detail/state_allocator.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <new>
#include <type_traits>
#include <utility>

namespace anydefer::detail {
namespace {

using namespace state_cache;  // NOLINT(google-build-using-namespace): this file implements it

// Every cached block came from new_block() for its class and goes back through delete_block() (unless it ends in the
// depot, which keeps what it holds for the life of the process), so a block may be freed on another thread than
// the one that made it (it then joins that thread's cache).

// Where a thread puts a full class when it frees yet another block of it, and where a thread whose class ran
// empty looks before the global heap: whole batches of max_cached[c] blocks, so the lock is taken once per
// batch. This is what makes a producer/consumer pair cheap: states made on one thread and freed on another
// (every post to a pool through submit()) would otherwise fill the consumer's cache and drain the producer's,
// and go through the global heap, whose cross-thread frees contend on its arena lock.
constexpr std::size_t max_depot_batches = 8;  // per class: at most 128 KiB, 8 MiB in all

// A block of a line or more starts on a cache line of its own. The heap's 16-byte alignment puts a 128-byte
// block (a link scheduled on a pool) across three lines at three of its four offsets, and shares its first and
// last lines with the neighbouring blocks, which are other tasks' states, written by other workers. Measured
// alone (B6 skynet through submit(), 2 workers, five interleaved rounds): median 25.0 ms (20.8-29.8) with the
// heap's alignment, 17.1 ms (17.0-17.5) line-aligned, where oneTBB takes 21.9 ms; B5 fib(30) did not change.
// Smaller blocks gained nothing measurable from alignment to 32 or 64 bytes, so they keep the heap's.
constexpr std::size_t cache_line = 64;
constexpr bool line_aligned(std::size_t c) noexcept { return block_bytes(c) >= cache_line; }

// The only places a cached class's block is made and given back to the heap: the same alignment both ways.
void* new_block(std::size_t c) {
  if (line_aligned(c)) return ::operator new (block_bytes(c), std::align_val_t{cache_line});
  return ::operator new(block_bytes(c));
}
void delete_block(void* p, std::size_t c) noexcept {
  if (line_aligned(c)) {
    ::operator delete (p, std::align_val_t{cache_line});
  } else {
    ::operator delete(p);
  }
}

struct class_depot {
  std::mutex mutex;
  free_block* batches = nullptr;     // guarded by mutex
  std::size_t batch_count = 0;       // guarded by mutex
  std::atomic<std::size_t> hint{0};  // batch_count, readable without the lock (relaxed: a hint)
};
// constinit and trivially destructible: valid for every thread_local destructor, including at exit.
constinit class_depot depot[classes];
static_assert(std::is_trivially_destructible_v<class_depot>);

// Takes a batch for class c, or nullptr. On success the batch holds max_cached[c] blocks.
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
  if (d.batch_count == max_depot_batches) return false;
  batch->next_batch = d.batches;
  d.batches = batch;
  d.hint.store(++d.batch_count, std::memory_order_relaxed);
  return true;
}

struct cache_owner {
  ~cache_owner();
};
thread_local cache_owner owner;

[[gnu::noinline]] void register_cache_owner() noexcept {
  [[maybe_unused]] cache_owner& touched = owner;  // the first use constructs it and registers its destructor
  lists& tc = this_thread;
  tc.owner_registered = true;
  // Every list is empty: each class has a whole magazine's room.
  for (std::size_t c = 0; c < classes; ++c) tc.room[c] = max_cached[c];
}

bool use_cache() noexcept { return compiled_in && !this_thread.gone && enabled.load(std::memory_order_relaxed); }

// Gives every block this thread caches back to the heap and leaves no room: its fast paths miss from now on.
void empty_this_thread() noexcept {
  lists& tc = this_thread;
  for (std::size_t c = 0; c < classes; ++c) {
    tc.room[c] = 0;  // first: a free from here on goes to the slow path
    for (free_block** list : {&tc.head[c], &tc.spare[c]}) {
      while (free_block* b = *list) {
        *list = b->next;
        delete_block(b, c);
      }
    }
  }
}

cache_owner::~cache_owner() {
  this_thread.gone = true;
  empty_this_thread();
}

}  // namespace

// The slow paths, out of line so that the inline fast paths (a pop or a push on this thread's list) stay a few
// instructions. They come here for a class that is not cached, with the cache off or gone, or, for a cached
// class, when the fast path could not pop (the class is empty) or push (it is full, or this thread's first free).

// A class that ran empty refills from its spare magazine (no lock), then a batch from the depot, then the heap.
void* state_cache::allocate_slow(std::size_t size) {
  const std::size_t c = class_of(size);
  if (c >= classes) return ::operator new(size);
  if (!use_cache()) return new_block(c);
  lists& tc = this_thread;
  if (!tc.owner_registered) register_cache_owner();
  if (tc.spare[c] != nullptr) {
    tc.head[c] = std::exchange(tc.spare[c], nullptr);
  } else if ((tc.head[c] = take_batch(c)) == nullptr) {
    return new_block(c);
  }
  tc.room[c] = 1;  // a full magazine, less the block handed out below
  free_block* b = tc.head[c];
  tc.head[c] = b->next;
  return b;
}

// A full class becomes the spare magazine (no lock); a spare already there goes to the depot first. Two magazines
// per class (Bonwick's), so a thread whose live blocks swing around one magazine's worth (a recursion that keeps a
// few dozen frames alive) does not trade a batch with the depot, under its lock, on every swing.
void state_cache::deallocate_slow(void* p, std::size_t size) noexcept {
  const std::size_t c = class_of(size);
  if (c >= classes) {
    ::operator delete(p);
    return;
  }
  if (!use_cache()) {
    delete_block(p, c);
    return;
  }
  lists& tc = this_thread;
  if (!tc.owner_registered) {
    register_cache_owner();
    deallocate_state(p, size);  // the fast path takes it now
    return;
  }
  if (tc.room[c] == 0 && (tc.spare[c] == nullptr || give_batch(c, tc.spare[c]))) {
    tc.spare[c] = tc.head[c];
    tc.head[c] = new (p) free_block{nullptr, nullptr};
    tc.room[c] = max_cached[c] - 1;
    return;
  }
  delete_block(p, c);
}

bool set_state_cache_enabled(bool enabled) noexcept {
  const bool was = state_cache::enabled.exchange(enabled, std::memory_order_relaxed);
  // The fast paths do not read `enabled`: empty this thread's lists and take away their room, so that they miss
  // and the slow paths (which do read it) take every allocation and free. Turned on again, the slow paths refill
  // them as after a first use.
  if (!enabled && compiled_in) empty_this_thread();
  return was;
}

}  // namespace anydefer::detail
