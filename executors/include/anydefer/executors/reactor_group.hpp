// anydefer/executors/reactor_group.hpp: one reactor per core, for sharded (thread-per-core) designs.
//
// Each shard is an independent reactor on its own thread, optionally pinned to the CPU of the same index. State
// owned by one shard is touched only by continuations scheduled on that shard, so it needs no locks:
//
//   anydefer::reactor_group shards(/*size=*/0, /*pin=*/true);   // hardware_concurrency() pinned reactors
//   auto& home = shards.shard(key % shards.size());
//   home.execute(t);
//   shards.stop();                                              // stops all, then joins all
//
// Shards post to each other through channels: a task one shard's loop executes on another goes into an inbox
// that only that pair uses, kept on one cache line with the inbox of the opposite direction, so a hand-off
// between two shards moves one cache line once (detail/shard_channels.hpp; B7 in BENCHMARKS.md measures it).
// Work from any other thread goes through the shard's general inbox. Groups of more than 64 shards use the
// general inboxes only (each shard polls one channel per other shard). Tasks from one thread run in the order
// that thread executed them; tasks from different threads have no order between them, even when one caused the
// other (a shard collects its channels before its general inbox).
//
// Lifecycle: stop() (and the destructor) asks every shard to stop first, so they drain in parallel, then joins
// them; each shard follows reactor's rules (queued work runs, pending timers are rejected, later execute()
// calls are rejected inline). The group must outlive every user of its shards.
//
// Thread-safety: shard() and size() are thread-safe; stop() may be called from any thread, including a shard's
// own thread: there it only asks every shard to stop and returns (it joins none, since another shard may be
// waiting for this one in a stop() of its own), and the destructor joins them all.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "anydefer/executors/detail/shard_channels.hpp"
#include "anydefer/executors/reactor.hpp"

namespace anydefer {

class reactor_group {
 public:
  // Starts `size` reactors (0 means std::thread::hardware_concurrency(), at least 1), each on its own thread;
  // with `pin`, shard i is pinned to CPU i (throws as reactor::start() does if that fails; the shards already
  // started are stopped). `quota` is passed to each reactor.
  explicit reactor_group(std::size_t size = 0, bool pin = false, std::size_t quota = reactor::default_quota);
  reactor_group(const reactor_group&) = delete;
  reactor_group& operator=(const reactor_group&) = delete;

  // stop().
  ~reactor_group();

  // Shard `i` (precondition: i < size()). Thread-safe.
  reactor& shard(std::size_t i) noexcept { return *shards_[i]; }
  const reactor& shard(std::size_t i) const noexcept { return *shards_[i]; }

  std::size_t size() const noexcept { return shards_.size(); }

  // Asks every shard to stop, then joins them all; on a shard's own thread it only asks (see the file comment).
  // Thread-safe.
  void stop() noexcept;

 private:
  std::unique_ptr<detail::shard_channels> channels_;  // declared first: outlives the shards that use it
  std::vector<std::unique_ptr<reactor>> shards_;
};

}  // namespace anydefer
