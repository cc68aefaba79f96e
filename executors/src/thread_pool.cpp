#include "anydefer/executors/thread_pool.hpp"

#include "anydefer/coroutine.hpp"

#include <concurrentqueue/concurrentqueue.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "anydefer/detail/sync/admission_gate.hpp"
#include "anydefer/detail/sync/cpu_relax.hpp"
#include "anydefer/detail/sync/event_count.hpp"
#include "anydefer/executors/detail/reject.hpp"
#include "anydefer/executors/detail/work_stealing_deque.hpp"
#include "keep_tsan_suppressions.hpp"

namespace anydefer {
namespace {

// Bounded spinning before parking: spin_rounds scans of every queue, pauses_per_round pause hints apart (a few
// tens of microseconds in all). Long enough to catch the next task of a busy burst without a futex round trip,
// short enough that an idle pool is asleep almost at once. After pause_rounds the rounds yield instead of
// pausing: when the machine has more runnable threads than cores (outside producers plus every worker), a
// spinning worker would otherwise hold the core the producer needs to make the very work it waits for.
constexpr int spin_rounds = 32;
constexpr int pause_rounds = 4;
constexpr int pauses_per_round = 32;

// Every injection_interval-th task a worker looks at the injection queue before its own deque (as Tokio does
// every 61 ticks), so outside submissions are not starved by a worker that keeps feeding itself.
constexpr unsigned injection_interval = 61;

// A worker takes outside submissions in batches of up to this many (moodycamel's bulk dequeue). Taken one at a
// time, every task made the workers contend on the queue's shared indices, and two workers drained the queue
// more slowly than one consumer alone (B8: raw_moodycamel_pool_sized against raw_moodycamel). The rest of a
// batch goes onto the taker's deque, so a long task at the front of a batch does not hold the others back while
// another worker is free to steal them.
constexpr std::size_t injection_batch = 8;

std::exception_ptr bad_alloc_error() noexcept {
  try {
    return std::make_exception_ptr(std::bad_alloc());
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace

struct thread_pool::impl {
  // One worker: its deque, its thread, and the wait policy its thread uses.
  // NOLINTNEXTLINE(cppcoreguidelines-virtual-class-destructor): final, and a wait_policy is never owned as such
  struct alignas(64) worker final : wait_policy {
    worker(impl& p, std::size_t i)
        : pool(p), index(i), rng(0x9E3779B97F4A7C15ull * (i + 1)), injection_token(p.injection) {}

    // Runs one task: own deque (LIFO end) first, else the oldest task of another worker or of the injection
    // queue. Bounded nesting: see thread_pool.hpp.
    bool before_block() override {
      if (detail::this_pool_worker.help_depth >= max_help_depth) return false;
      // Not from the own deque while this thread runs a fork() child: the caller's continuation may be there,
      // and running it nested above the child that blocks (or letting an address it leaves behind be reused
      // for another task that fork() would take for its own) is wrong. Other workers' tasks are safe.
      task* t = detail::this_thread_inline_fork.child == nullptr ? deque.pop() : nullptr;
      if (t == nullptr) t = pool.steal_from_others(*this);
      // One outside task, not a batch: a batch would put unrelated tasks on the own deque, ahead of the work
      // this waiter would otherwise steal on its next help.
      if (t == nullptr) t = pool.take_injected(*this, 1);
      if (t == nullptr) return false;
      ++detail::this_pool_worker.help_depth;
      t->run();
      --detail::this_pool_worker.help_depth;
      return true;
    }

    std::size_t next_random() noexcept {  // xorshift64: victim selection only
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      return static_cast<std::size_t>(rng);
    }

    impl& pool;
    const std::size_t index;
    std::uint64_t rng;
    unsigned tick = 0;
    detail::work_stealing_deque<task*> deque;
    // Remembers which producer's sub-queue this worker last took from, so a dequeue does not rescan them all.
    moodycamel::ConsumerToken injection_token;
    std::thread thread;
  };

  explicit impl(std::size_t threads) {
    workers.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) workers.push_back(std::make_unique<worker>(*this, i));
  }

  // Where a task of an outside batch that a worker took goes (take_injected() wakes a sleeper once for all of
  // them): its own deque; if the deque cannot grow, back to the injection queue; if that cannot grow either,
  // nowhere: the task is rejected with std::bad_alloc.
  void place_from_worker(worker& w, task& t) noexcept {
    if (w.deque.push(&t) || injection.enqueue(&t)) return;
    t.reject(bad_alloc_error());
  }

  // Takes up to `max` (at most injection_batch) outside tasks in one dequeue: returns the oldest and queues the
  // others on this worker's deque, newest first, so that its owner pops them in the order they were posted
  // (thieves, taking from the other end, get the newest first).
  task* take_injected(worker& w, std::size_t max = injection_batch) noexcept {
    task* batch[injection_batch];
    const std::size_t n = injection.try_dequeue_bulk(w.injection_token, batch, max);
    if (n == 0) return nullptr;
    for (std::size_t i = n; i-- > 1;) place_from_worker(w, *batch[i]);
    // Stealable work appeared: a parked worker must hear of it, or the batch waits for this worker's task to end.
    // Workers that looked while the batch was in nobody's queue may have parked too: each thief passes the
    // wake-up on while there is more to steal (steal_from_others).
    if (n > 1) parking.notify_one();
    return batch[0];
  }

  task* steal_from_others(worker& self) noexcept {
    const std::size_t n = workers.size();
    if (n < 2) return nullptr;
    const std::size_t start = self.next_random() % n;
    for (std::size_t k = 0; k < n; ++k) {
      worker& victim = *workers[(start + k) % n];
      if (&victim == &self) continue;
      if (task* t = victim.deque.steal()) {
        // More where this came from: one wake-up per stolen task reaches as many parked workers as there is work
        // to steal. The relaxed hint first: the victim's bottom index is a line its owner keeps writing, and
        // reading it on every steal slowed fork-join work measurably. A stale "nobody parked" only delays
        // parallelism: the victim still runs its own tasks, and its next push wakes a sleeper (execute()).
        if (parking.waiters_approx() != 0 && !victim.deque.empty_approx()) parking.notify_one();
        return t;
      }
    }
    return nullptr;
  }

  task* find_task(worker& w) noexcept {
    if (++w.tick % injection_interval == 0) {
      if (task* t = take_injected(w)) return t;
    }
    if (task* t = w.deque.pop()) return t;
    if (task* t = take_injected(w)) return t;
    return steal_from_others(w);
  }

  task* spin_for_task(worker& w) noexcept {
    for (int round = 0; round < spin_rounds; ++round) {
      if (round < pause_rounds) {
        for (int i = 0; i < pauses_per_round; ++i) detail::cpu_relax();
      } else {
        std::this_thread::yield();
      }
      if (task* t = find_task(w)) return t;
      if (gate.closed()) return nullptr;  // stopping: go straight to the drain check
    }
    return nullptr;
  }

  void work(worker& w) noexcept {
    detail::this_pool_worker = detail::pool_worker_context{this, &w.deque, &parking, w.index, 0};
    wait_policy* const previous_policy = set_thread_wait_policy(&w);
    detail::admission_gate::backoff drain_pause;  // only while stopping
    for (;;) {
      task* t = find_task(w);
      if (t == nullptr) t = spin_for_task(w);
      if (t != nullptr) {
        t->run();
        continue;
      }
      if (gate.closed()) {
        // Stopping: never park again (nobody wakes a worker when the last in-flight execute() leaves the gate).
        // drained() means no outside execute() can enqueue any more and every enqueue that was accepted is
        // visible now; if the queues are empty after that, nothing is left for this worker. Work that running
        // tasks put on other workers' deques is run by those workers, which drain their own deques before
        // exiting.
        if (!gate.drained()) {
          drain_pause.wait();  // an execute() is between try_enter() and leave(): normally nanoseconds
          continue;
        }
        if ((t = find_task(w)) != nullptr) {
          t->run();
          continue;
        }
        if (injection.size_approx() != 0) continue;
        break;
      }
      // Park: register, re-check everything, then sleep (detail/sync/event_count.hpp explains why no wake-up is lost).
      const detail::event_count::key key = parking.prepare_wait();
      if ((t = find_task(w)) != nullptr) {
        parking.cancel_wait();
        t->run();
        continue;
      }
      if (gate.closed()) {  // stop() came in meanwhile: the branch above handles it
        parking.cancel_wait();
        continue;
      }
      // Woken by: an outside submission (notify_one), a worker with surplus work (notify_one), or stop()
      // (notify_all).
      parking.commit_wait(key);
    }
    set_thread_wait_policy(previous_policy);
    detail::this_pool_worker = detail::pool_worker_context{};
  }

  void start_threads() {
    try {
      for (auto& w : workers) w->thread = std::thread([this, wp = w.get()] { work(*wp); });
    } catch (...) {
      gate.close();
      parking.notify_all();
      join_all();
      throw;
    }
  }

  void join_all() noexcept {
    std::lock_guard<std::mutex> lock(join_mutex);
    for (auto& w : workers) {
      if (w->thread.joinable()) w->thread.join();
    }
  }

  std::vector<std::unique_ptr<worker>> workers;
  moodycamel::ConcurrentQueue<task*> injection;
  detail::event_count parking;
  detail::admission_gate gate;
  std::mutex join_mutex;  // serialises concurrent stop() calls that join
};

thread_pool::thread_pool(std::size_t threads) {
  if (threads == 0) threads = std::max<std::size_t>(1, std::thread::hardware_concurrency());
  impl_ = std::make_unique<impl>(threads);
  impl_->start_threads();
}

thread_pool::~thread_pool() {
  if (detail::this_pool_worker.pool == impl_.get()) {
    std::fputs("anydefer::thread_pool destroyed from one of its own workers (it cannot join itself)\n", stderr);
    std::abort();
  }
  stop();
  bound_links_.check_none_left("anydefer::thread_pool");
}

bool thread_pool::queue_elsewhere(task& t) noexcept {
  impl& p = *impl_;
  if (detail::this_pool_worker.pool == &p) {
    // From our own worker whose deque could not grow (try_execute() tried it): the injection queue, accepted
    // even while stopping (the workers drain it before exiting).
    if (!p.injection.enqueue(&t)) return false;
    p.parking.notify_one();
    return true;
  }
  if (!p.gate.try_enter()) return false;
  const bool queued = p.injection.enqueue(&t);
  if (queued) p.parking.notify_one();
  p.gate.leave();
  return queued;
}

void thread_pool::refuse(task& t) noexcept {
  // A worker's own tasks are accepted even while stopping, so only an outside caller is refused for that; the
  // gate, once closed, stays closed.
  if (detail::this_pool_worker.pool != impl_.get() && impl_->gate.closed()) {
    detail::reject_stopped(t, "thread_pool");
  } else {
    t.reject(bad_alloc_error());  // outside the gate: rejecting runs the owner's code, which may post again
  }
}

void thread_pool::stop() noexcept {
  impl& p = *impl_;
  p.gate.close();
  p.parking.notify_all();
  if (detail::this_pool_worker.pool == &p) return;  // a worker cannot join itself; see thread_pool.hpp
  p.join_all();
}

std::size_t thread_pool::size() const noexcept { return impl_->workers.size(); }

bool thread_pool::running_in_this_thread() const noexcept { return detail::this_pool_worker.pool == impl_.get(); }

std::optional<std::size_t> thread_pool::current_worker_index() const noexcept {
  if (detail::this_pool_worker.pool != impl_.get()) return std::nullopt;
  return detail::this_pool_worker.index;
}

}  // namespace anydefer
