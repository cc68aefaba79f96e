#include "anydefer/detail/sync/admission_gate.hpp"

#include <mutex>
#include <type_traits>

namespace anydefer::detail {
namespace {

// The records of every live thread that ever entered a gate. constinit and trivially destructible, so it
// outlives every thread_local record, including the main thread's, which are destroyed at exit.
struct record_registry {
  std::mutex mutex;
  gate_thread_record* head = nullptr;  // guarded by mutex
};
constinit record_registry registry;
static_assert(std::is_trivially_destructible_v<record_registry>);

}  // namespace

gate_thread_record::gate_thread_record() noexcept {
  std::lock_guard<std::mutex> lock(registry.mutex);
  next_ = registry.head;
  if (next_ != nullptr) next_->prev_ = this;
  registry.head = this;
}

gate_thread_record::~gate_thread_record() {
  record_destroyed = true;
  std::lock_guard<std::mutex> lock(registry.mutex);
  if (prev_ != nullptr) {
    prev_->next_ = next_;
  } else {
    registry.head = next_;
  }
  if (next_ != nullptr) next_->prev_ = prev_;
}

bool gate_thread_record::anyone_inside(const admission_gate* gate) noexcept {
  std::lock_guard<std::mutex> lock(registry.mutex);
  for (const gate_thread_record* r = registry.head; r != nullptr; r = r->next_) {
    // acquire: pairs with leave()'s release, so a holder that has left has its enqueue visible to the caller.
    if (r->inside.load(std::memory_order_acquire) == gate) return true;
  }
  return false;
}

}  // namespace anydefer::detail
