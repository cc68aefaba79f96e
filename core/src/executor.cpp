#include "anydefer/executor.hpp"

namespace anydefer {
namespace {
thread_local wait_policy* current_wait_policy = nullptr;
}  // namespace

wait_policy* set_thread_wait_policy(wait_policy* policy) noexcept {
  wait_policy* previous = current_wait_policy;
  current_wait_policy = policy;
  return previous;
}

wait_policy* thread_wait_policy() noexcept { return current_wait_policy; }

}  // namespace anydefer
