// A test executor that queues tasks until drain(), on the calling thread: the order in which a coroutine's hops
// and fork()'s offers run is then the test's to choose.
#pragma once

#include <exception>
#include <vector>

#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"

namespace anydefer_test {

struct queue_executor {
  std::vector<anydefer::task*> tasks;
  int offered = 0;         // tasks handed to execute()
  bool rejecting = false;  // refuse every task, as a stopped executor does

  void execute(anydefer::task& t) noexcept {
    ++offered;
    if (rejecting) {
      t.reject(std::make_exception_ptr(anydefer::executor_stopped_error()));
      return;
    }
    tasks.push_back(&t);
  }
  void drain() {
    while (!tasks.empty()) {
      anydefer::task* t = tasks.front();
      tasks.erase(tasks.begin());
      t->run();
    }
  }
};

}  // namespace anydefer_test
