// anydefer/executors.hpp: every executor anydefer ships, in one include.
//
//   inline_executor  runs the task on the calling thread, inside execute()
//   manual_executor  queues until a test drives it (run_one / run_all / run_until)
//   thread_pool      work-stealing worker threads for CPU-bound continuations
//   reactor          a single-threaded event loop with timers
//   reactor_group    one reactor per core
//   tbb_executor     tasks run in a oneTBB task_arena
#pragma once

#include "anydefer/executors/inline_executor.hpp"
#include "anydefer/executors/manual_executor.hpp"
#include "anydefer/executors/reactor.hpp"
#include "anydefer/executors/reactor_group.hpp"
#include "anydefer/executors/tbb_executor.hpp"
#include "anydefer/executors/thread_pool.hpp"
