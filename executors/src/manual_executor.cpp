#include "anydefer/executors/manual_executor.hpp"

#include "anydefer/executors/detail/reject.hpp"

namespace anydefer {

manual_executor::~manual_executor() {
  detail::task_fifo leftovers;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopped_ = true;
    leftovers = std::move(queue_);
  }
  // Reject outside the lock: a reject handler may call back into this executor (it is rejected inline then).
  while (task* t = leftovers.pop_front()) detail::reject_stopped(*t, "manual_executor");
  bound_links_.check_none_left("anydefer::manual_executor");
}

void manual_executor::execute(task& t) noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stopped_) {
      queue_.push_back(t);
      return;
    }
  }
  detail::reject_stopped(t, "manual_executor");
}

bool manual_executor::run_one() noexcept {
  task* t = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    t = queue_.pop_front();
  }
  if (t == nullptr) return false;
  t->run();
  return true;
}

std::size_t manual_executor::run_all() noexcept {
  std::size_t count = 0;
  while (run_one()) ++count;
  return count;
}

void manual_executor::stop() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  stopped_ = true;
}

bool manual_executor::stopped() const noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  return stopped_;
}

std::size_t manual_executor::pending() const noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

}  // namespace anydefer
