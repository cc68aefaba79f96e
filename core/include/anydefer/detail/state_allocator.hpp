// anydefer/detail/state_allocator.hpp: where deferred states (and deferred coroutine frames) get their memory.
//
// A per-thread cache of recently freed blocks by 16-byte size class, in front of ::operator new: creating and
// dropping a deferred is the hot path of every chain, and a trip through the global heap was most of its cost.
// Blocks freed on another thread join that thread's cache; each thread keeps a bounded number per class. A
// thread that frees more hands the full class, as one batch, to a bounded process-wide depot, where a thread
// that runs out takes a batch before it asks the heap: a producer that makes states and a consumer that frees
// them (a pool fed through submit()) recycle blocks a batch at a time. Beyond the depot's bound blocks go back
// to the heap, and a thread's own cache goes back when it exits. Under AddressSanitizer or ThreadSanitizer the
// cache is compiled out so every state is a real heap allocation the sanitizer can track.
#pragma once

#include <cstddef>

namespace anydefer::detail {

void* allocate_state(std::size_t size);
void deallocate_state(void* p, std::size_t size) noexcept;

// Turns the caches of every thread on or off (for tests that count heap allocations); returns the old setting.
// Blocks already cached stay until their thread frees or exits. Thread-safe.
bool set_state_cache_enabled(bool enabled) noexcept;

}  // namespace anydefer::detail
