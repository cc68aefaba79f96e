#include "anydefer/executors/reactor.hpp"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "anydefer/detail/sync/admission_gate.hpp"
#include "anydefer/detail/sync/asymmetric_fence.hpp"
#include "anydefer/detail/sync/cpu_relax.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/executors/detail/intrusive_inbox.hpp"
#include "anydefer/executors/detail/reject.hpp"
#include "anydefer/executors/detail/shard_channels.hpp"
#include "anydefer/executors/detail/task_fifo.hpp"
#include "anydefer/executors/detail/timer_heap.hpp"

namespace anydefer {
namespace {

// The reactor whose loop the calling thread is running, if any.
thread_local const void* current_loop = nullptr;

// Installed on a thread while it runs a reactor loop: blocking there would deadlock (see reactor.hpp).
// NOLINTNEXTLINE(cppcoreguidelines-virtual-class-destructor): final, and a wait_policy is never owned as such
class reactor_wait_policy final : public wait_policy {
 public:
  bool before_block() override {
    throw would_block_error(
        "wait() on a reactor thread would deadlock: the reactor cannot run the work that fires the deferred; "
        "use add_callback or co_await");
  }
};
reactor_wait_policy reactor_policy;  // stateless: one instance serves every reactor thread

}  // namespace

struct reactor::impl {
  explicit impl(std::size_t q) : quota(q == 0 ? 1 : q), event_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (event_fd < 0) throw std::system_error(errno, std::generic_category(), "anydefer::reactor: eventfd");
  }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  ~impl() { ::close(event_fd); }

  // While alive, the calling thread is this reactor's loop thread: local execute(), would-block wait policy.
  class loop_scope {
   public:
    explicit loop_scope(const impl& p) noexcept
        : previous_loop_(std::exchange(current_loop, &p)), previous_policy_(set_thread_wait_policy(&reactor_policy)) {}
    loop_scope(const loop_scope&) = delete;
    loop_scope& operator=(const loop_scope&) = delete;
    ~loop_scope() {
      set_thread_wait_policy(previous_policy_);
      current_loop = previous_loop_;
    }

   private:
    const void* previous_loop_;
    wait_policy* previous_policy_;
  };

  // Producer side of the sleep protocol (reactor.hpp): called after publishing work or a change of state.
  void wake() noexcept {
    // The publication before this call is ordered before the read of `sleeping` (the producer half of the
    // Dekker pair with sleep(); the light side, since it runs on every post: detail/sync/asymmetric_fence.hpp).
    detail::light_fence();
    // relaxed: ordered by the fence. The exchange lets only one producer pay for the write per sleep.
    if (!sleeping.load(std::memory_order_relaxed)) return;
    if (!sleeping.exchange(false, std::memory_order_relaxed)) return;
    const std::uint64_t one = 1;
    // Can fail only with EAGAIN (counter saturated), and then the eventfd is readable anyway.
    [[maybe_unused]] const ssize_t written = ::write(event_fd, &one, sizeof one);
  }

  // Loop side of the sleep protocol: announce, re-check, then block until the eventfd is written or the next
  // timer is due.
  void sleep() noexcept {
    sleeping.store(true, std::memory_order_relaxed);
    // The announcement is ordered before the re-checks below (the loop half of the Dekker pair, the heavy side:
    // the loop is about to make a system call anyway).
    detail::heavy_fence();
    std::optional<time_point> deadline;
    {
      std::lock_guard<std::mutex> lock(timer_mutex);  // a timer added after this wakes us (schedule_at)
      deadline = timers.next_deadline();
    }
    bool skip = anything_posted() || gate.closed();
    if (!skip && deadline && *deadline <= clock::now()) skip = true;
    if (!skip) {
      pollfd fd{event_fd, POLLIN, 0};
      timespec timeout{};
      timespec* timeout_ptr = nullptr;
      if (deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - clock::now());
        const auto ns = left.count() > 0 ? left.count() : 0;
        timeout.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        timeout.tv_nsec = static_cast<long>(ns % 1'000'000'000);
        timeout_ptr = &timeout;
      }
      ::ppoll(&fd, 1, timeout_ptr, nullptr);  // EINTR or timeout: the loop re-checks everything anyway
    }
    sleeping.store(false, std::memory_order_relaxed);  // relaxed: only ever causes a redundant eventfd write
    std::uint64_t drained_count = 0;
    // Clears the eventfd (EAGAIN if nobody wrote it).
    [[maybe_unused]] const ssize_t got = ::read(event_fd, &drained_count, sizeof drained_count);
  }

  // The channels from other shards first, then the general inbox. Each source keeps its producers' order; there
  // is none between sources, as there is none between the tasks of different threads.
  void collect_inbox() noexcept {
    for (detail::intrusive_inbox* channel : channels_in) collect(*channel);
    collect(inbox);
  }

  void collect(detail::intrusive_inbox& from) noexcept {
    const detail::intrusive_inbox::batch b = from.take_all();
    ready.append_chain(b.first, b.last, b.size);
  }

  // True if a task waits in the inbox or in a channel from another shard. Relaxed loads (see spin_for_inbox()):
  // callers that need ordering put a fence first.
  bool anything_posted() const noexcept {
    if (!inbox.empty()) return true;
    for (const detail::intrusive_inbox* channel : channels_in) {
      if (!channel->empty()) return true;
    }
    return false;
  }

  // Where a task executed on this reactor from the calling thread goes: the channel from the calling thread's
  // shard if it runs the loop of another shard of the same group, else the general inbox.
  detail::intrusive_inbox& inbox_for_caller() noexcept {
    const auto* from = static_cast<const impl*>(current_loop);
    if (from != nullptr && channels != nullptr && from->channels == channels) {
      return channels->between(from->shard_index, shard_index);
    }
    return inbox;
  }

  void collect_due_timers() noexcept {
    // Most iterations have no timer at all: skip the mutex then. relaxed: a timer scheduled by another thread
    // that this misses is still found by sleep(), which reads the heap under the mutex before blocking, so it
    // fires at most one iteration later.
    if (!has_timers.load(std::memory_order_relaxed)) return;
    std::lock_guard<std::mutex> lock(timer_mutex);
    const time_point now = clock::now();
    while (task* t = timers.pop_due(now)) ready.push_back(*t);
    has_timers.store(!timers.empty(), std::memory_order_relaxed);
  }

  // Before sleeping, poll the inbox for a short while: a hand-off from another thread that arrives within it costs
  // neither side a system call (no eventfd write, no ppoll wake-up), which is what cross-reactor round trips
  // are made of. Bounded, so an idle reactor still uses no CPU. True if work (or a stop) arrived.
  bool spin_for_inbox() noexcept {
    // The clock is read once per 1024 polls, and not before the first 1024: in a virtual machine a clock read
    // can cost as much as a hand-off, and a reactor reading it is not watching its inbox. The deadline is set
    // at the first read, so the spin lasts idle_spin plus those first polls (a few microseconds).
    std::optional<time_point> until;
    for (;;) {
      for (int i = 0; i < 1024; ++i) {
        // Relaxed loads of the inboxes' heads: whatever they find, iterate() collects with acquire.
        if (anything_posted() || gate.closed()) return true;
        detail::cpu_relax();
      }
      const time_point now = clock::now();
      if (!until) {
        until = now + idle_spin;
      } else if (now >= *until) {
        return false;
      }
    }
  }
  static constexpr std::chrono::microseconds idle_spin{20};

  // One iteration: inbox and due timers join the back of the ready FIFO, then at most `quota` tasks run.
  std::size_t iterate() noexcept {
    collect_inbox();
    collect_due_timers();
    std::size_t ran = 0;
    while (ran < quota) {
      task* t = ready.pop_front();
      if (t == nullptr) break;
      t->run();
      ++ran;
    }
    return ran;
  }

  // After stop: run everything accepted, reject pending timers, repeat until nothing is left (a rejected timer's
  // owner, or a drained task, may still queue work on this thread).
  std::size_t finish() noexcept {
    std::size_t ran = 0;
    detail::admission_gate::backoff drain_pause;
    for (;;) {
      collect_inbox();
      while (task* t = ready.pop_front()) {
        t->run();
        ++ran;
      }
      // drained(): no execute() from another thread is in flight and none will be accepted again, and all those
      // accepted are in the inbox by now (acquire, see admission_gate.hpp).
      if (!gate.drained()) {
        // An execute() is between try_enter() and leave(), normally a matter of nanoseconds; nobody would wake
        // a sleep. Each drained() interrupts the process's running CPUs (a heavy fence): back off.
        drain_pause.wait();
        continue;
      }
      collect_inbox();
      detail::task_fifo doomed;
      {
        std::lock_guard<std::mutex> lock(timer_mutex);
        timers_closed = true;
        while (task* t = timers.pop_any()) doomed.push_back(*t);
        has_timers.store(false, std::memory_order_relaxed);
      }
      while (task* t = doomed.pop_front()) detail::reject_stopped(*t, "reactor");
      if (ready.empty() && !anything_posted()) break;
    }
    finished = true;
    return ran;
  }

  // The loop proper; loop_mutex held by the caller.
  void run_locked() {
    if (finished) return;
    loop_scope scope(*this);
    while (!gate.closed()) {
      iterate();
      if (ready.empty() && !spin_for_inbox()) sleep();
    }
    finish();
  }

  // Read-mostly: constant once the loop runs, read by producers on every execute() (channels, shard_index).
  const std::size_t quota;
  const int event_fd;
  // For a shard of a reactor_group (set by join_group() before the loop starts): the group's channels, this
  // shard's index, and the channels it consumes (detail/shard_channels.hpp).
  detail::shard_channels* channels = nullptr;
  std::size_t shard_index = 0;
  std::vector<detail::intrusive_inbox*> channels_in;

  alignas(64) detail::task_fifo ready;            // loop thread only, written by every iteration
  alignas(64) detail::intrusive_inbox inbox;      // a line of its own: see intrusive_inbox.hpp
  alignas(64) std::atomic<bool> sleeping{false};  // the loop announced it may block in ppoll
  detail::admission_gate gate;

  std::mutex timer_mutex;
  detail::timer_heap timers;            // guarded by timer_mutex
  std::atomic<bool> has_timers{false};  // written under timer_mutex: the heap is not empty (a hint for iterate())
  bool timers_closed = false;           // guarded by timer_mutex: set by the final drain, then schedule_* reject

  std::mutex loop_mutex;  // held by whichever thread runs the loop (run, run_once, start's thread, destructor)
  bool finished = false;  // guarded by loop_mutex

  std::mutex thread_mutex;  // guards thread
  std::thread thread;
};

reactor::reactor(std::size_t quota) : impl_(std::make_unique<impl>(quota)) {}

reactor::~reactor() {
  impl& p = *impl_;
  if (current_loop == &p) {
    std::fputs("anydefer::reactor destroyed from its own loop thread\n", stderr);
    std::abort();
  }
  stop();
  std::lock_guard<std::mutex> lock(p.loop_mutex);  // waits for a run() on another thread to return
  if (!p.finished) {
    impl::loop_scope scope(p);
    p.finish();
  }
  bound_links_.check_none_left("anydefer::reactor");
}

void reactor::start(std::optional<unsigned> cpu) {
  impl& p = *impl_;
  if (cpu) {
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1 || *cpu >= static_cast<unsigned long>(online) || *cpu >= CPU_SETSIZE) {
      throw std::invalid_argument("anydefer::reactor: cannot pin to CPU " + std::to_string(*cpu) + ": only " +
                                  std::to_string(online) + " CPUs are online");
    }
  }
  std::lock_guard<std::mutex> thread_lock(p.thread_mutex);
  if (p.thread.joinable()) throw std::logic_error("anydefer::reactor::start: the reactor already has a thread");
  std::promise<int> started;  // 0: running; -1: a loop already runs elsewhere; else the pinning error
  std::future<int> outcome = started.get_future();
  p.thread = std::thread([&p, cpu, started = std::move(started)]() mutable {
    std::unique_lock<std::mutex> loop_lock(p.loop_mutex, std::try_to_lock);
    if (!loop_lock.owns_lock()) {
      started.set_value(-1);
      return;
    }
    if (cpu) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(*cpu, &set);
      if (const int rc = ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set); rc != 0) {
        started.set_value(rc);
        return;
      }
    }
    started.set_value(0);
    p.run_locked();
  });
  const int rc = outcome.get();
  if (rc == 0) return;
  p.thread.join();
  if (rc < 0) throw std::logic_error("anydefer::reactor::start: the loop is already running on another thread");
  throw std::system_error(rc, std::generic_category(),
                          "anydefer::reactor: cannot pin the reactor thread to CPU " + std::to_string(*cpu));
}

void reactor::run() {
  impl& p = *impl_;
  if (current_loop == &p) throw std::logic_error("anydefer::reactor::run: called from the reactor's own loop");
  std::unique_lock<std::mutex> lock(p.loop_mutex, std::try_to_lock);
  if (!lock.owns_lock()) throw std::logic_error("anydefer::reactor::run: the loop is already running elsewhere");
  p.run_locked();
}

std::size_t reactor::run_once() {
  impl& p = *impl_;
  if (current_loop == &p) throw std::logic_error("anydefer::reactor::run_once: called from the reactor's own loop");
  std::unique_lock<std::mutex> lock(p.loop_mutex, std::try_to_lock);
  if (!lock.owns_lock()) throw std::logic_error("anydefer::reactor::run_once: the loop is running elsewhere");
  if (p.finished) return 0;
  impl::loop_scope scope(p);
  if (p.gate.closed()) return p.finish();
  return p.iterate();
}

void reactor::execute(task& t) noexcept {
  impl& p = *impl_;
  if (current_loop == &p) {  // the loop thread itself: local FIFO, accepted even while draining
    p.ready.push_back(t);
    return;
  }
  if (!p.gate.try_enter()) {
    detail::reject_stopped(t, "reactor");
    return;
  }
  // Only a push onto an empty inbox can find the loop asleep: while an inbox is non-empty, the loop's re-check
  // before sleeping sees it (see intrusive_inbox.hpp and the sleep protocol in reactor.hpp).
  if (p.inbox_for_caller().push(t)) p.wake();
  p.gate.leave();
}

timer_id reactor::schedule_after(std::chrono::nanoseconds delay, task& t) noexcept {
  return schedule_at(clock::now() + delay, t);
}

timer_id reactor::schedule_at(time_point deadline, task& t) noexcept {
  impl& p = *impl_;
  std::uint64_t id = 0;
  bool earliest = false;
  std::exception_ptr failure;
  {
    std::lock_guard<std::mutex> lock(p.timer_mutex);
    if (!p.timers_closed) {
      try {
        id = p.timers.insert(deadline, t);
        earliest = p.timers.front_id() == id;
        p.has_timers.store(true, std::memory_order_relaxed);
      } catch (...) {
        failure = std::current_exception();
      }
    }
  }
  if (failure) {
    t.reject(std::move(failure));
    return timer_id{};
  }
  if (id == 0) {
    detail::reject_stopped(t, "reactor");
    return timer_id{};
  }
  // A new earliest deadline must shorten a sleep already computed from the old one.
  if (earliest && current_loop != &p) p.wake();
  return timer_id{id};
}

bool reactor::cancel_timer(timer_id id) noexcept {
  impl& p = *impl_;
  std::lock_guard<std::mutex> lock(p.timer_mutex);
  const bool removed = p.timers.cancel(id.value()) != nullptr;
  p.has_timers.store(!p.timers.empty(), std::memory_order_relaxed);
  return removed;
}

void reactor::request_stop() noexcept {
  impl& p = *impl_;
  p.gate.close();
  p.wake();
}

void reactor::stop() noexcept {
  request_stop();
  join();
}

void reactor::join() noexcept {
  impl& p = *impl_;
  std::lock_guard<std::mutex> lock(p.thread_mutex);
  if (p.thread.joinable() && p.thread.get_id() != std::this_thread::get_id()) p.thread.join();
}

bool reactor::running_in_this_thread() const noexcept { return current_loop == impl_.get(); }

void reactor::join_group(detail::shard_channels& channels, std::size_t index) {
  impl& p = *impl_;
  p.channels_in.reserve(channels.shards() - 1);
  for (std::size_t from = 0; from < channels.shards(); ++from) {
    if (from != index) p.channels_in.push_back(&channels.between(from, index));
  }
  p.channels = &channels;
  p.shard_index = index;
}

}  // namespace anydefer
