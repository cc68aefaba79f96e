// anydefer/executors/detail/shard_channels.hpp: the inboxes through which the shards of a reactor_group post to
// each other.
//
// Each pair of shards (i, j) shares one cache line that holds two intrusive inboxes: the one shard i consumes
// (only j's loop thread posts into it) and the one shard j consumes. A task that shard j's loop executes on shard
// i goes there instead of into i's general inbox:
//
//   shard_channels channels(n);
//   channels.between(/*from=*/j, /*to=*/i).push(t);   // on shard j's loop thread
//   channels.between(j, i).take_all();               // on shard i's loop thread
//
// Why one line for both directions: in a ping-pong between two shards, each side polls its inbox, takes the task,
// runs it and pushes the reply into the other side's inbox. With two separate lines every hop moves two lines:
// the producer's CAS fetches the line the consumer last wrote, and the consumer's poll fetches it back. With
// both inboxes on one line, the line a shard has just read (and written, taking its inbox) is the one it pushes
// into: a hop moves one line once, as in a bare atomic ping-pong. On the 2-core test machine a loop that receives,
// runs and sends measured about 60 ns per round trip this way against about 120 ns with separate lines.
//
// A shard polls n - 1 channels besides its general inbox, so the group uses channels only up to max_shards.
//
// Thread-safety: as intrusive_inbox (one producer thread and one consumer thread per inbox here). The object is
// built before the shards start and destroyed after they finished. Never allocates after construction.
#pragma once

#include <cstddef>
#include <memory>

#include "anydefer/executors/detail/intrusive_inbox.hpp"

namespace anydefer::detail {

class shard_channels {
 public:
  // Above this many shards a group posts through the general inboxes only: polling costs a load per channel.
  static constexpr std::size_t max_shards = 64;

  // Channels for every pair of `shards` shards. Throws std::bad_alloc.
  explicit shard_channels(std::size_t shards)
      : shards_(shards), lines_(std::make_unique<pair_line[]>(shards * (shards - 1) / 2)) {}

  std::size_t shards() const noexcept { return shards_; }

  // The inbox that shard `to` consumes and shard `from` posts into. Precondition: from != to, both < shards().
  intrusive_inbox& between(std::size_t from, std::size_t to) noexcept {
    const std::size_t low = from < to ? from : to;
    const std::size_t high = from < to ? to : from;
    pair_line& line = lines_[high * (high - 1) / 2 + low];
    return to == low ? line.to_low : line.to_high;
  }

 private:
  struct alignas(64) pair_line {
    intrusive_inbox to_low;   // consumed by the lower-numbered shard of the pair
    intrusive_inbox to_high;  // consumed by the higher-numbered one
  };

  std::size_t shards_;
  std::unique_ptr<pair_line[]> lines_;  // pair (low, high) at high * (high - 1) / 2 + low
};

}  // namespace anydefer::detail
