#include "anydefer/executors/reactor.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
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
#include "anydefer/detail/sync/cpu_relax.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/executors/detail/intrusive_inbox.hpp"
#include "anydefer/executors/detail/io_operation.hpp"
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

// A descriptor that closes itself, for the constructor's error paths.
class owned_fd {
 public:
  explicit owned_fd(int fd, const char* what) : fd_(fd) {
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), std::string("anydefer::reactor: ") + what);
  }
  owned_fd(const owned_fd&) = delete;
  owned_fd& operator=(const owned_fd&) = delete;
  ~owned_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::string fd_message(const char* what, int fd) {
  return std::string("anydefer::reactor: ") + what + " fd " + std::to_string(fd);
}

// epoll_pwait2 (Linux 5.11) takes a timespec; where it is refused, epoll_wait with the timeout rounded up to
// whole milliseconds (a timer then fires up to 1 ms late, never early). Refused: ENOSYS from an older kernel, or
// EPERM from a seccomp filter that does not know the call (container runtimes' default profiles answer unknown
// system calls so), which would otherwise fail every wait and leave the loop spinning, deaf to its sockets.
std::atomic<bool> pwait2_refused{false};

int wait_for_events(int epoll_fd, epoll_event* events, int capacity, const timespec* timeout) noexcept {
  if (!pwait2_refused.load(std::memory_order_relaxed)) {
    const int n = ::epoll_pwait2(epoll_fd, events, capacity, timeout, nullptr);
    if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n;
    pwait2_refused.store(true, std::memory_order_relaxed);
  }
  int ms = -1;
  if (timeout != nullptr) {
    const long long ns = static_cast<long long>(timeout->tv_sec) * 1'000'000'000 + timeout->tv_nsec;
    const long long rounded_up = (ns + 999'999) / 1'000'000;
    ms = rounded_up > 86'400'000 ? 86'400'000 : static_cast<int>(rounded_up);
  }
  return ::epoll_wait(epoll_fd, events, capacity, ms);
}

}  // namespace

struct reactor::impl {
  explicit impl(std::size_t q) : quota(q == 0 ? 1 : q) {
    owned_fd wake(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd");
    owned_fd poller(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = wake_token;
    if (::epoll_ctl(poller.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0) {
      throw std::system_error(errno, std::generic_category(), "anydefer::reactor: epoll_ctl on its eventfd");
    }
    event_fd = wake.release();
    epoll_fd = poller.release();
  }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  ~impl() {
    ::close(epoll_fd);
    ::close(event_fd);
  }

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
  //
  // The sleep check is a Dekker pair made of seq_cst accesses alone, no fence. A producer publishes with a
  // seq_cst RMW or store (the inbox's or channel's push CAS, the gate's close) and then loads `sleeping` seq_cst;
  // the loop stores `sleeping` seq_cst and then loads what producers publish, seq_cst (sleep()). All four are in
  // one total order, so either the producer's load comes after the loop's store (it sees the loop going to
  // sleep and writes the eventfd) or the loop's load comes after the publication (it sees the work and does not
  // sleep): no wake-up is lost. On x86 the producer pays nothing for it (its CAS is locked anyway, a seq_cst load
  // is a plain load) and the loop one locked exchange, where a fence-based pair would need a fence on every post
  // or a membarrier() system call on every sleep. Timers synchronise through timer_mutex instead (sleep()).
  void wake() noexcept {
    // The exchange lets only one producer pay for the write per sleep.
    if (!sleeping.load(std::memory_order_seq_cst)) return;
    if (!sleeping.exchange(false, std::memory_order_relaxed)) return;
    const std::uint64_t one = 1;
    // Can fail only with EAGAIN (counter saturated), and then the eventfd is readable anyway.
    [[maybe_unused]] const ssize_t written = ::write(event_fd, &one, sizeof one);
  }

  // --- I/O readiness (loop thread only) -------------------------------------------------------------------------
  // Every descriptor that has a waiter is in the epoll set with the interest of its waiters. When a wait fires the
  // interest stays (the common case is a loop that waits again at once: no epoll_ctl); a descriptor reported in a
  // direction nobody waits for then loses that interest, and one reported with an error or hang-up while nobody
  // waits at all leaves the set (level-triggered, both would otherwise be reported on every iteration).

  struct fd_entry {
    detail::io_waiter* reader = nullptr;
    detail::io_waiter* writer = nullptr;
    std::uint32_t interest = 0;  // EPOLLIN | EPOLLOUT as registered
    bool in_epoll = false;
  };

  static constexpr std::uint64_t wake_token = ~std::uint64_t{0};  // epoll data of the eventfd
  static constexpr std::uint32_t read_events = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
  static constexpr std::uint32_t write_events = EPOLLOUT | EPOLLHUP | EPOLLERR;
  static constexpr int max_events = 128;

  static detail::io_waiter*& slot_of(fd_entry& e, detail::io_waiter::direction d) noexcept {
    return d == detail::io_waiter::direction::read ? e.reader : e.writer;
  }
  static std::uint32_t bit_of(detail::io_waiter::direction d) noexcept {
    return d == detail::io_waiter::direction::read ? EPOLLIN : EPOLLOUT;
  }

  // Registers `interest` for `fd` (ADD or MOD as the table says, falling back to the other when the kernel
  // disagrees: a descriptor closed and reopened under the same number). Throws std::system_error.
  void set_interest(int fd, std::uint32_t interest) {
    fd_entry& e = fds[static_cast<std::size_t>(fd)];
    epoll_event ev{};
    ev.events = interest;
    ev.data.u64 = static_cast<std::uint64_t>(fd);
    int op = e.in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = ::epoll_ctl(epoll_fd, op, fd, &ev);
    if (rc != 0 && ((op == EPOLL_CTL_MOD && errno == ENOENT) || (op == EPOLL_CTL_ADD && errno == EEXIST))) {
      op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
      rc = ::epoll_ctl(epoll_fd, op, fd, &ev);
    }
    if (rc != 0) throw std::system_error(errno, std::generic_category(), fd_message("epoll_ctl cannot watch", fd));
    e.in_epoll = true;
    e.interest = interest;
  }

  // Takes `fd` out of the epoll set (errors mean the kernel had already forgotten it: closed).
  void remove_from_epoll(int fd) noexcept {
    fd_entry& e = fds[static_cast<std::size_t>(fd)];
    if (e.in_epoll) ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    e.in_epoll = false;
    e.interest = 0;
  }

  void watch(detail::io_waiter& w) {
    const int fd = w.fd();
    if (fd < 0) throw std::system_error(EBADF, std::generic_category(), fd_message("cannot watch", fd));
    if (static_cast<std::size_t>(fd) >= fds.size()) fds.resize(static_cast<std::size_t>(fd) + 1);
    fd_entry& e = fds[static_cast<std::size_t>(fd)];
    detail::io_waiter*& slot = slot_of(e, w.waits_for());
    if (slot != nullptr && slot->cancelled()) {  // stale: cancelled from another thread, take-back on its way
      detail::io_waiter* stale = std::exchange(slot, nullptr);
      --io_waiters;
      stale->ready();  // lets it go; it cannot wait on this descriptor again, being cancelled
    }
    if (slot != nullptr) {
      throw std::logic_error(fd_message(w.waits_for() == detail::io_waiter::direction::read
                                            ? "a wait for readable is already pending on"
                                            : "a wait for writable is already pending on",
                                        fd));
    }
    // The interest registered for this descriptor is trusted only while its own report is being dispatched (a
    // reader that waits again from its callback: the steady state of a server, no system call). Anywhere else
    // it is registered again, one epoll_ctl: the descriptor may have been closed and its number reused since
    // (the kernel then forgot it; MOD fails with ENOENT and set_interest() adds it).
    const std::uint32_t bit = bit_of(w.waits_for());
    if (!e.in_epoll || (e.interest & bit) == 0 || fd != dispatching_fd) set_interest(fd, e.interest | bit);
    slot = &w;
    ++io_waiters;
  }

  bool unwatch(detail::io_waiter& w) noexcept {
    const auto fd = static_cast<std::size_t>(w.fd());
    if (w.fd() < 0 || fd >= fds.size()) return false;
    detail::io_waiter*& slot = slot_of(fds[fd], w.waits_for());
    if (slot != &w) return false;
    slot = nullptr;
    --io_waiters;
    return true;
  }

  void forget_fd(int fd, const std::exception_ptr& why) noexcept {
    if (fd < 0 || static_cast<std::size_t>(fd) >= fds.size()) return;
    fd_entry& e = fds[static_cast<std::size_t>(fd)];
    detail::io_waiter* r = std::exchange(e.reader, nullptr);
    detail::io_waiter* w = std::exchange(e.writer, nullptr);
    remove_from_epoll(fd);
    if (r != nullptr) {
      --io_waiters;
      r->abandoned(why);
    }
    if (w != nullptr) {
      --io_waiters;
      w->abandoned(why);
    }
  }

  // One descriptor's report. Each waiter is taken out of the table before it runs (it may wait again, forget the
  // descriptor, or free itself); the second is looked up again after the first ran.
  void dispatch(int fd, std::uint32_t events) noexcept {
    const auto index = static_cast<std::size_t>(fd);
    if (index >= fds.size()) return;
    bool idle_read = false;
    bool idle_write = false;
    dispatching_fd = fd;
    if ((events & read_events) != 0) {
      if (detail::io_waiter* r = std::exchange(fds[index].reader, nullptr)) {
        --io_waiters;
        r->ready();
      } else {
        idle_read = (events & EPOLLIN) != 0;
      }
    }
    if ((events & write_events) != 0) {
      if (detail::io_waiter* w = std::exchange(fds[index].writer, nullptr)) {
        --io_waiters;
        w->ready();
      } else {
        idle_write = (events & EPOLLOUT) != 0;
      }
    }
    dispatching_fd = -1;
    fd_entry& e = fds[index];  // the waiters may have grown the table
    if (!e.in_epoll) return;
    std::uint32_t keep = e.interest;
    if (idle_read && e.reader == nullptr) keep &= ~std::uint32_t{EPOLLIN};
    if (idle_write && e.writer == nullptr) keep &= ~std::uint32_t{EPOLLOUT};
    const bool nobody = e.reader == nullptr && e.writer == nullptr;
    if (keep == 0 || (nobody && (events & (EPOLLHUP | EPOLLERR)) != 0)) {
      remove_from_epoll(fd);
    } else if (keep != e.interest) {
      try {
        set_interest(fd, keep);
      } catch (const std::system_error&) {
        remove_from_epoll(fd);  // closed meanwhile: the waiters left, if any, see EBADF when they retry
      }
    }
  }

  // Waits in epoll for at most `timeout` (nullptr: until something happens), runs the waiters of what was
  // reported and clears the eventfd if it was among the reports. Returns how many descriptors were reported
  // (the eventfd included).
  int poll_io(const timespec* timeout) noexcept {
    std::array<epoll_event, max_events> events;  // NOLINT(cppcoreguidelines-pro-type-member-init): the kernel fills it
    const int n = wait_for_events(epoll_fd, events.data(), max_events, timeout);
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      const epoll_event& e = events[static_cast<std::size_t>(i)];
      if (e.data.u64 == wake_token) {
        woken = true;
      } else {
        dispatch(static_cast<int>(e.data.u64), e.events);
      }
    }
    if (woken) drain_eventfd();
    return n > 0 ? n : 0;
  }

  void drain_eventfd() const noexcept {
    std::uint64_t drained_count = 0;
    // Clears the eventfd (EAGAIN if nobody wrote it).
    [[maybe_unused]] const ssize_t got = ::read(event_fd, &drained_count, sizeof drained_count);
  }

  // The final drain's last step for I/O: every pending wait fails with executor_stopped_error.
  void abandon_waiters() noexcept {
    if (io_waiters == 0) return;
    std::exception_ptr why;
    try {
      why = std::make_exception_ptr(executor_stopped_error("anydefer: reactor is stopped; the wait is abandoned"));
    } catch (...) {
      why = std::current_exception();
    }
    for (std::size_t fd = 0; fd < fds.size() && io_waiters > 0; ++fd) {
      if (fds[fd].reader != nullptr || fds[fd].writer != nullptr) forget_fd(static_cast<int>(fd), why);
    }
  }

  // Loop side of the sleep protocol: announce, re-check, then block until the eventfd is written, a watched
  // descriptor reports, or the next timer is due.
  void sleep() noexcept {
    // seq_cst: the loop's half of the Dekker pair (wake()); the re-checks below load seq_cst.
    sleeping.store(true, std::memory_order_seq_cst);
    std::optional<time_point> deadline;
    {
      std::lock_guard<std::mutex> lock(timer_mutex);  // a timer added after this wakes us (schedule_at)
      deadline = timers.next_deadline();
    }
    bool skip = anything_posted(std::memory_order_seq_cst) || gate.closed(std::memory_order_seq_cst);
    if (!skip && deadline && *deadline <= clock::now()) skip = true;
    if (!skip) {
      timespec timeout{};
      timespec* timeout_ptr = nullptr;
      if (deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - clock::now());
        const auto ns = left.count() > 0 ? left.count() : 0;
        timeout.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        timeout.tv_nsec = static_cast<long>(ns % 1'000'000'000);
        timeout_ptr = &timeout;
      }
      // EINTR or timeout: the loop re-checks everything anyway. An eventfd written while the loop was not
      // blocked here stays readable, so it is reported (and cleared) by a later wait.
      poll_io(timeout_ptr);
      polled_just_now = true;
    }
    sleeping.store(false, std::memory_order_relaxed);  // relaxed: only ever causes a redundant eventfd write
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

  // True if a task waits in the inbox or in a channel from another shard. Relaxed loads for polling
  // (spin_before_sleep()); the sleep check asks for seq_cst (wake()).
  bool anything_posted(std::memory_order order = std::memory_order_relaxed) const noexcept {
    if (!inbox.empty(order)) return true;
    for (const detail::intrusive_inbox* channel : channels_in) {
      if (!channel->empty(order)) return true;
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

  // Before sleeping, poll for a short while: the inbox, and epoll (without blocking) while any wait is pending. A
  // hand-off from another thread (a cross-reactor continuation) or a socket report that arrives within the window
  // costs neither side a wake-up: no eventfd write or epoll wake-up on the sender's side, no sleep on ours. A
  // peer's send() to a loop blocked in epoll must wake it (on a virtual machine an inter-processor interrupt, a
  // VM exit); under redis-benchmark at pipeline 1 (B10), where the client is the bottleneck, the client spent
  // about 13% less CPU per request once the loop polled (medians of four runs each). Bounded, so an idle reactor
  // still uses no CPU. True if work (or a stop) arrived, or reports were handled.
  bool spin_before_sleep() noexcept {
    // The clock is read once per round: a round is 1024 inbox polls, or, with waits pending, one epoll poll (a
    // system call, which dwarfs a clock read) and 16 inbox polls. In a virtual machine a clock read can cost as
    // much as a hand-off, and a reactor reading it is not watching its inbox. The deadline is set at the first
    // read and checked after each round, so the spin lasts idle_spin plus up to two rounds; a timer that falls due
    // meanwhile runs that much late (sleep() takes the exact deadline).
    std::optional<time_point> until;
    for (;;) {
      const bool with_io = io_waiters > 0;
      if (with_io) {
        const timespec now_only{};
        if (poll_io(&now_only) > 0) {
          polled_just_now = true;  // iterate() need not poll again before it runs what the reports queued
          return true;
        }
      }
      for (int i = 0, polls = with_io ? 16 : 1024; i < polls; ++i) {
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
    // Sockets between batches of tasks, unless the sleep, or the spin before it, just polled them.
    if (io_waiters > 0 && !polled_just_now) {
      const timespec now_only{};
      poll_io(&now_only);
    }
    polled_just_now = false;
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
      abandon_waiters();
      if (ready.empty() && !anything_posted() && io_waiters == 0) break;
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
      if (ready.empty() && !spin_before_sleep()) sleep();
    }
    finish();
  }

  // Read-mostly: constant once the loop runs, read by producers on every execute() (channels, shard_index).
  const std::size_t quota;
  int event_fd = -1;  // constant once constructed
  int epoll_fd = -1;  // constant once constructed
  // For a shard of a reactor_group (set by join_group() before the loop starts): the group's channels, this
  // shard's index, and the channels it consumes (detail/shard_channels.hpp).
  detail::shard_channels* channels = nullptr;
  std::size_t shard_index = 0;
  std::vector<detail::intrusive_inbox*> channels_in;

  alignas(64) detail::task_fifo ready;            // loop thread only, written by every iteration
  alignas(64) detail::intrusive_inbox inbox;      // a line of its own: see intrusive_inbox.hpp
  alignas(64) std::atomic<bool> sleeping{false};  // the loop announced it may block in epoll
  detail::admission_gate gate;

  std::mutex timer_mutex;
  detail::timer_heap timers;            // guarded by timer_mutex
  std::atomic<bool> has_timers{false};  // written under timer_mutex: the heap is not empty (a hint for iterate())
  bool timers_closed = false;           // guarded by timer_mutex: set by the final drain, then schedule_* reject

  // Loop thread only: the waits on descriptors, indexed by descriptor; how many are pending; whether the sleep
  // that just ended, or the spin before it, polled epoll and found reports (iterate() then does not poll again).
  std::vector<fd_entry> fds;
  std::size_t io_waiters = 0;
  bool polled_just_now = false;
  int dispatching_fd = -1;  // the descriptor whose report dispatch() is running the waiters of

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
  if (!try_execute(t)) detail::reject_stopped(t, "reactor");
}

bool reactor::try_execute(task& t) noexcept {
  impl& p = *impl_;
  if (current_loop == &p) {  // the loop thread itself: local FIFO, accepted even while draining
    p.ready.push_back(t);
    return true;
  }
  if (!p.gate.try_enter()) return false;
  // Only a push onto an empty inbox can find the loop asleep: while an inbox is non-empty, the loop's re-check
  // before sleeping sees it (see intrusive_inbox.hpp and the sleep protocol in reactor.hpp).
  if (p.inbox_for_caller().push(t)) p.wake();
  p.gate.leave();
  return true;
}

timer_id reactor::schedule_after(std::chrono::nanoseconds delay, task& t) noexcept {
  return schedule_at(deadline_after(clock::now(), delay), t);
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
  // The loop never joins itself, and must not wait for the lock either: another thread may hold it while it
  // joins this very loop (its stop()), which then waits for a task here that called stop() too.
  if (current_loop == &p) return;
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

void reactor::watch(detail::io_waiter& w) {
  impl& p = *impl_;
  if (current_loop != &p) throw std::logic_error("anydefer::reactor::watch: only on the reactor's loop thread");
  if (p.gate.closed()) {
    std::exception_ptr why;
    try {
      why = std::make_exception_ptr(executor_stopped_error("anydefer: reactor is stopped and accepts no new wait"));
    } catch (...) {
      why = std::current_exception();
    }
    w.abandoned(std::move(why));
    return;
  }
  p.watch(w);
}

bool reactor::unwatch(detail::io_waiter& w) noexcept { return impl_->unwatch(w); }

void reactor::forget_fd(int fd) {
  impl& p = *impl_;
  if (current_loop != &p) throw std::logic_error("anydefer::reactor::forget_fd: only on the reactor's loop thread");
  p.forget_fd(fd, std::make_exception_ptr(cancelled_error()));
}

namespace {

// The deferred of wait_readable()/wait_writable(): fires once the descriptor reports.
class fd_wait final : public detail::io_operation<void> {
 public:
  fd_wait(reactor& loop, int fd, direction d, std::source_location loc) noexcept : io_operation(loop, fd, d, loc) {}

 private:
  void on_ready() noexcept override {
    settle_value();  // false if cancelled meanwhile: nothing was taken from the descriptor
    finished();
  }
};

deferred<void> start_wait(reactor& loop, int fd, detail::io_waiter::direction d, std::source_location loc) {
  auto* s = new fd_wait(loop, fd, d, loc);
  deferred<void> out = detail::access::adopt<void>(s);
  s->start();
  return out;
}

}  // namespace

deferred<void> reactor::wait_readable(int fd, std::source_location loc) {
  return start_wait(*this, fd, detail::io_waiter::direction::read, loc);
}

deferred<void> reactor::wait_writable(int fd, std::source_location loc) {
  return start_wait(*this, fd, detail::io_waiter::direction::write, loc);
}

}  // namespace anydefer
