// anydefer/executors/detail/reject.hpp: refusing a task the way every anydefer executor does after stop.
#pragma once

#include <exception>

#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"

namespace anydefer::detail {

// Rejects `t` with executor_stopped_error naming `who` (e.g. "thread_pool"). Never throws: if building the
// exception fails (out of memory), `t` is rejected with that failure instead.
inline void reject_stopped(task& t, const char* who) noexcept {
  std::exception_ptr why;
  try {
    why = std::make_exception_ptr(
        executor_stopped_error(std::string("anydefer: ") + who + " is stopped and rejects new work"));
  } catch (...) {
    why = std::current_exception();
  }
  t.reject(std::move(why));
}

}  // namespace anydefer::detail
