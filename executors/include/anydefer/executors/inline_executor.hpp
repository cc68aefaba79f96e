// anydefer/executors/inline_executor.hpp: the executor that runs a task right away, on the calling thread.
//
// execute(t) calls t.run() before it returns. This is the one executor that runs tasks inline, as the executor
// contract (anydefer/executor.hpp) requires it to say. Use it where a continuation is cheap and may run
// wherever the deferred fires:
//
//   anydefer::inline_executor now;
//   d.add_callback(now, [](int v) { return v + 1; });   // runs in whichever thread fires d
//
// Beware: a chain of tasks that each execute() the next on an inline_executor recurses, one stack frame per
// link. It never stops and never rejects; it has no state, so any number of threads may share one and it may be
// destroyed whenever no execute() is in progress.
//
// Thread-safety: thread-safe (stateless). Never allocates.
#pragma once

#include "anydefer/executor.hpp"

namespace anydefer {

class inline_executor {
 public:
  // Runs `t` now, on the calling thread. Thread-safe. Never allocates.
  void execute(task& t) noexcept { t.run(); }
};

static_assert(executor<inline_executor>);

}  // namespace anydefer
