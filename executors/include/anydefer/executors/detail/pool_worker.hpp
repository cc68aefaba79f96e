// anydefer/executors/detail/pool_worker.hpp: what a thread_pool worker thread knows about itself.
//
// Set for the lifetime of a worker thread, empty elsewhere. It holds what the inline fast paths of
// thread_pool::execute(), try_offer() and try_reclaim() need (the worker's own deque and the pool's parking
// lot), so that a worker queuing or taking back its own task pays a thread-local load and the deque operation,
// not a call into the pool and two indirections through it.
#pragma once

#include <cstddef>

#include "anydefer/detail/sync/event_count.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/executors/detail/work_stealing_deque.hpp"

namespace anydefer::detail {

struct pool_worker_context {
  const void* pool = nullptr;                   // the thread_pool::impl this thread works for
  work_stealing_deque<task*>* deque = nullptr;  // this worker's own deque (owner operations only)
  event_count* parking = nullptr;               // where the pool's idle workers sleep
  std::size_t index = 0;
  int help_depth = 0;  // nested before_block() helps now on the stack
};
// Written only by the worker thread itself (when it starts and when it ends), so plain fields. Constant
// initialised: reading it needs no guard.
inline constinit thread_local pool_worker_context this_pool_worker{};

}  // namespace anydefer::detail
