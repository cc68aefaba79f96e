#include "anydefer/executors/reactor_group.hpp"

#include <algorithm>
#include <thread>

namespace anydefer {

reactor_group::reactor_group(std::size_t size, bool pin, std::size_t quota) {
  if (size == 0) size = std::max<std::size_t>(1, std::thread::hardware_concurrency());
  if (size > 1 && size <= detail::shard_channels::max_shards) {
    channels_ = std::make_unique<detail::shard_channels>(size);
  }
  shards_.reserve(size);
  try {
    for (std::size_t i = 0; i < size; ++i) {
      shards_.push_back(std::make_unique<reactor>(quota));
      if (channels_) shards_.back()->join_group(*channels_, i);
      shards_.back()->start(pin ? std::optional<unsigned>(static_cast<unsigned>(i)) : std::nullopt);
    }
  } catch (...) {
    stop();
    throw;
  }
}

reactor_group::~reactor_group() { stop(); }

void reactor_group::stop() noexcept {
  for (auto& r : shards_) r->request_stop();  // all drain in parallel
  // On a shard's own thread, joining the others could wait forever: one of them may be running a stop() of its
  // own that waits for this shard. The destructor, which never runs on a shard, joins them all.
  for (auto& r : shards_) {
    if (r->running_in_this_thread()) return;
  }
  for (auto& r : shards_) r->join();
}

}  // namespace anydefer
