// anydefer/executors.hpp: every executor anydefer ships, in one include.
//
//   inline_executor  runs the task on the calling thread, inside execute()
//   manual_executor  queues until a test drives it (run_one / run_all / run_until)
//   thread_pool      work-stealing worker threads for CPU-bound continuations
//   reactor          a single-threaded event loop with timers
//   reactor_group    one reactor per core
// and time: call_later, add_timeout, defer_later, looping_call on any timer_service (a reactor, or test_clock for
// tests).
// The adapters are included and linked on their own: anydefer/executors/tbb_executor.hpp (target anydefer::tbb)
// and anydefer/asio/*.hpp (target anydefer::asio).
#pragma once

#include "anydefer/executors/inline_executor.hpp"
#include "anydefer/executors/manual_executor.hpp"
#include "anydefer/executors/reactor.hpp"
#include "anydefer/executors/reactor_group.hpp"
#include "anydefer/executors/test_clock.hpp"
#include "anydefer/executors/thread_pool.hpp"
#include "anydefer/executors/timer_service.hpp"
#include "anydefer/executors/timers.hpp"
