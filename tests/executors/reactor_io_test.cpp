// Tests for the reactor's I/O readiness: wait_readable()/wait_writable(), cancel from the loop and from other
// threads, timeouts, forget_fd(), stop with waits pending, and that sockets, timers and tasks share one loop fairly.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/executors/reactor.hpp"
#include "anydefer/executors/timers.hpp"

namespace {

using namespace std::chrono_literals;

// A connected pair of non-blocking stream sockets, closed at the end. Given the reactor that waits on them, it
// first has the loop forget them, as reactor.hpp asks of a descriptor closed while a reactor may still use it.
struct socket_pair {
  explicit socket_pair(anydefer::reactor* loop = nullptr) : loop(loop) {
    int fds[2];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
      throw std::system_error(errno, std::generic_category(), "socketpair");
    }
    a = fds[0];
    b = fds[1];
  }
  socket_pair(const socket_pair&) = delete;
  socket_pair& operator=(const socket_pair&) = delete;
  ~socket_pair() {
    if (loop != nullptr) {
      try {
        anydefer::submit(*loop, [this] {
          loop->forget_fd(a);
          loop->forget_fd(b);
        }).get();
      } catch (const anydefer::executor_stopped_error&) {
        // stopped: nothing runs on the loop any more
      }
    }
    if (a >= 0) ::close(a);
    if (b >= 0) ::close(b);
  }
  void send_to_a(const std::string& text) const {
    ASSERT_EQ(::write(b, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }
  std::string read_a() const {
    char buf[256];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
    const ssize_t n = ::read(a, buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }
  anydefer::reactor* loop;
  int a = -1;
  int b = -1;
};

// Runs f on the loop thread and returns what its deferred gives (f may return a value or a deferred).
template <class F>
auto on_loop(anydefer::reactor& loop, F f) {
  return anydefer::submit(loop, std::move(f)).get();
}

template <class E, class T>
bool fails_with(const anydefer::deferred<T>& d) {
  try {
    d.get();
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

TEST(ReactorIo, WaitReadableFiresOnTheLoopThreadWhenDataArrives) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  std::atomic<bool> on_loop_thread{false};
  anydefer::deferred<void> ready = loop.wait_readable(p.a);  // from this thread: forwarded to the loop
  anydefer::deferred<void> seen = ready.add_callback([&] { on_loop_thread = loop.running_in_this_thread(); });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(seen.fired());
  p.send_to_a("x");
  ASSERT_TRUE(seen.wait_for(10s));
  seen.get();
  EXPECT_TRUE(on_loop_thread);
  EXPECT_EQ(p.read_a(), "x");  // waiting took nothing from the socket
}

#ifdef __NR_epoll_pwait2
// In a child process: refuses epoll_pwait2 alone with EPERM through a seccomp filter, then exits 0 if a reactor
// still hears a socket become readable, 1 if not.
[[noreturn]] void hear_a_socket_with_epoll_pwait2_refused() {
  // NOLINTNEXTLINE(cppcoreguidelines-avoid-c-arrays): the kernel's layout
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_epoll_pwait2, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    std::fputs("no seccomp filters here: nothing to prove\n", stderr);
    std::_Exit(0);
  }
  int fds[2];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) std::_Exit(2);
  anydefer::reactor loop;
  loop.start();  // its thread starts under the filter
  anydefer::deferred<void> ready = loop.wait_readable(fds[0]);
  std::this_thread::sleep_for(20ms);  // the loop sleeps in epoll by now
  if (::write(fds[1], "x", 1) != 1) std::_Exit(3);
  std::_Exit(ready.wait_for(5s) ? 0 : 1);
}
#endif

// Container runtimes' seccomp profiles answer a system call they do not know with EPERM. A reactor whose
// epoll_pwait2 is refused so must fall back to epoll_wait and still hear its sockets (it spun, deaf to them,
// when only ENOSYS made it fall back).
TEST(ReactorIoDeathTest, AReactorWhoseEpollPwait2IsRefusedWithEpermStillHearsItsSockets) {
#ifdef __NR_epoll_pwait2
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(hear_a_socket_with_epoll_pwait2_refused(), testing::ExitedWithCode(0), "");
#else
  GTEST_SKIP() << "this system's headers do not know epoll_pwait2";
#endif
}

TEST(ReactorIo, ALevelTriggeredWaitFiresAtOnceForDataAlreadyThereAndAgainWhileItStays) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  p.send_to_a("abc");
  for (int i = 0; i < 3; ++i) {
    anydefer::deferred<void> d = loop.wait_readable(p.a);
    ASSERT_TRUE(d.wait_for(10s)) << i;
    d.get();
  }
  EXPECT_EQ(p.read_a(), "abc");
  // Drained: a new wait does not fire until more comes.
  anydefer::deferred<void> d = loop.wait_readable(p.a);
  EXPECT_FALSE(d.wait_for(30ms));
  p.send_to_a("d");
  ASSERT_TRUE(d.wait_for(10s));
}

TEST(ReactorIo, WaitWritableFiresForASocketWithRoomAndWaitsWhileItIsFull) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  ASSERT_TRUE(loop.wait_writable(p.a).wait_for(10s));
  std::vector<char> chunk(65536, 'z');
  while (::write(p.a, chunk.data(), chunk.size()) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);
  anydefer::deferred<void> room = loop.wait_writable(p.a);
  EXPECT_FALSE(room.wait_for(30ms));
  while (::read(p.b, chunk.data(), chunk.size()) > 0) {
  }
  ASSERT_TRUE(room.wait_for(10s));
  room.get();
}

TEST(ReactorIo, ReadAndWriteWaitsOnOneDescriptorAreIndependent) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  anydefer::deferred<void> readable = loop.wait_readable(p.a);
  anydefer::deferred<void> writable = loop.wait_writable(p.a);
  ASSERT_TRUE(writable.wait_for(10s));
  EXPECT_FALSE(readable.wait_for(20ms));
  p.send_to_a("q");
  ASSERT_TRUE(readable.wait_for(10s));
}

TEST(ReactorIo, CancelOnTheLoopThreadRemovesTheWaitAndLeavesTheDataForTheNextOne) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  const bool cancelled = on_loop(loop, [&] {
    anydefer::deferred<void> d = loop.wait_readable(p.a);
    d.cancel();
    return fails_with<anydefer::cancelled_error>(d);
  });
  EXPECT_TRUE(cancelled);
  p.send_to_a("kept");
  anydefer::deferred<void> again = loop.wait_readable(p.a);  // not refused as "already pending"
  ASSERT_TRUE(again.wait_for(10s));
  again.get();
  EXPECT_EQ(p.read_a(), "kept");
}

TEST(ReactorIo, CancelFromAnotherThreadFailsAtOnceAndANewWaitMayFollowImmediately) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  for (int i = 0; i < 200; ++i) {
    anydefer::deferred<void> d = loop.wait_readable(p.a);
    d.cancel();
    EXPECT_TRUE(d.fired());  // Twisted's cancel(): settled before it returns
    EXPECT_TRUE(fails_with<anydefer::cancelled_error>(d)) << i;
  }
  p.send_to_a("y");
  anydefer::deferred<void> d = loop.wait_readable(p.a);
  ASSERT_TRUE(d.wait_for(10s));
  d.get();
  EXPECT_EQ(p.read_a(), "y");
}

TEST(ReactorIo, ASecondWaitInTheSameDirectionIsRefusedWithLogicError) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  anydefer::deferred<void> first = loop.wait_readable(p.a);
  anydefer::deferred<void> second = loop.wait_readable(p.a);
  ASSERT_TRUE(second.wait_for(10s));
  EXPECT_TRUE(fails_with<std::logic_error>(second));
  EXPECT_FALSE(first.fired());
  p.send_to_a("1");
  ASSERT_TRUE(first.wait_for(10s));
}

TEST(ReactorIo, DescriptorsEpollRefusesFailWithTheirErrno) {
  anydefer::reactor loop;
  loop.start();
  anydefer::deferred<void> bad = loop.wait_readable(12345);
  try {
    bad.get();
    ADD_FAILURE() << "a wait on a closed descriptor fired";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EBADF);
    EXPECT_NE(std::string(e.what()).find("12345"), std::string::npos) << e.what();
  }
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  anydefer::deferred<void> regular = loop.wait_readable(::fileno(file));
  try {
    regular.get();
    ADD_FAILURE() << "a wait on a regular file fired";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EPERM);
  }
  std::fclose(file);
}

TEST(ReactorIo, AddTimeoutOnAWaitFailsWithTimeoutErrorAndRemovesTheWait) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  anydefer::deferred<void> d = on_loop(loop, [&] { return anydefer::succeed(loop.wait_readable(p.a)); });
  anydefer::deferred<void> guarded = anydefer::add_timeout(d, 20ms, loop);
  ASSERT_TRUE(guarded.wait_for(10s));
  EXPECT_TRUE(fails_with<anydefer::timeout_error>(guarded));
  p.send_to_a("late");
  anydefer::deferred<void> next = loop.wait_readable(p.a);
  ASSERT_TRUE(next.wait_for(10s));
  next.get();
}

TEST(ReactorIo, TimersFireOnTimeWhileTheLoopSleepsInEpoll) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  anydefer::deferred<void> never = loop.wait_readable(p.a);
  const auto start = std::chrono::steady_clock::now();
  anydefer::deferred<void> t = anydefer::call_later(loop, 30ms);
  ASSERT_TRUE(t.wait_for(10s));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 30ms);
  EXPECT_LT(took, 2s);
  EXPECT_FALSE(never.fired());
  never.cancel();
  EXPECT_THROW(never.get(), anydefer::cancelled_error);
}

// A report found by the polls an idle loop makes before it sleeps runs its waiter, and the continuation that
// waiter queues on the loop runs then, not at the next wake-up: every byte of a ping-pong whose steps arrive within
// the poll window is answered. A loop that slept with the continuation queued would stall here for good.
TEST(ReactorIo, ReportsFoundWhileTheIdleLoopPollsRunTheirContinuationsAtOnce) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  constexpr int rounds = 2000;
  std::atomic<int> answered{0};
  std::function<void()> arm = [&] {
    // The read runs inline in the report (the socket is drained, so nothing reports again); the answer hops
    // onto the loop's queue.
    loop.wait_readable(p.a)
        .add_callback([&] { return static_cast<int>(p.read_a().size()); })
        .add_callback(loop, [&](int got) {
          answered.fetch_add(got, std::memory_order_release);
          if (answered.load(std::memory_order_relaxed) < rounds) arm();
        });
  };
  on_loop(loop, [&] { arm(); });
  for (int i = 0; i < rounds; ++i) {
    p.send_to_a("x");
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    bool late = false;
    while (answered.load(std::memory_order_acquire) <= i && !late) late = std::chrono::steady_clock::now() > deadline;
    if (late) {
      loop.stop();  // runs what is queued while `arm` and `answered` still live
      FAIL() << "byte " << i << " was not answered within 10 s";
    }
    // Within the loop's poll window (20 us), now and then past it: both ways of finding the next report.
    const auto pause = i % 8 == 0 ? 100us : 2us;
    for (const auto until = std::chrono::steady_clock::now() + pause; std::chrono::steady_clock::now() < until;) {
    }
  }
  EXPECT_EQ(answered.load(), rounds);
}

// The polls before sleeping are bounded: an idle loop with a wait pending still sleeps in epoll.
TEST(ReactorIo, AnIdleLoopWithAWaitPendingUsesAlmostNoCpu) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  anydefer::deferred<void> never = loop.wait_readable(p.a);
  std::this_thread::sleep_for(10ms);
  timespec before{};
  timespec after{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &before);
  std::this_thread::sleep_for(300ms);
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &after);
  const double used =
      static_cast<double>(after.tv_sec - before.tv_sec) + static_cast<double>(after.tv_nsec - before.tv_nsec) * 1e-9;
  EXPECT_LT(used, 0.03) << "an idle reactor with a wait pending used " << used << " s of CPU in 0.3 s";
  EXPECT_FALSE(never.fired());
  never.cancel();
}

TEST(ReactorIo, ForgetFdFailsPendingWaitsAndANewDescriptorWithTheSameNumberReportsAgain) {
  anydefer::reactor loop;
  loop.start();
  auto p = std::make_unique<socket_pair>(&loop);
  anydefer::deferred<void> read_wait = loop.wait_readable(p->a);
  // Registered and reported once, so the descriptor keeps its interest after the wait fired.
  ASSERT_TRUE(loop.wait_writable(p->a).wait_for(10s));
  const int number = p->a;
  on_loop(loop, [&] { loop.forget_fd(number); });
  EXPECT_TRUE(fails_with<anydefer::cancelled_error>(read_wait));
  p.reset();
  socket_pair q(&loop);  // the lowest free numbers again
  ASSERT_EQ(q.a, number);
  anydefer::deferred<void> d = loop.wait_readable(q.a);
  q.send_to_a("new");
  ASSERT_TRUE(d.wait_for(10s));
  d.get();
  EXPECT_THROW(loop.forget_fd(q.a), std::logic_error);  // not on the loop thread
}

TEST(ReactorIo, ClosingAWatchedDescriptorWithoutForgettingItStillLetsANewOneWithItsNumberReport) {
  anydefer::reactor loop;
  loop.start();
  auto p = std::make_unique<socket_pair>();
  p->send_to_a("a");
  ASSERT_TRUE(loop.wait_readable(p->a).wait_for(10s));  // interest stays registered after it fired
  const int number = p->a;
  // Closed on the loop thread (closing a descriptor while another thread may use it is a race of its own): the
  // kernel forgets it, the reactor's table does not.
  on_loop(loop, [&] {
    ::close(p->a);
    p->a = -1;
  });
  p.reset();
  socket_pair q(&loop);
  ASSERT_EQ(q.a, number);
  // The old interest was reported once more (or not at all); either way a wait on the new descriptor must work.
  for (int i = 0; i < 3; ++i) {
    anydefer::deferred<void> d = loop.wait_readable(q.a);
    if (i == 2) q.send_to_a("b");
    if (i < 2) {
      if (d.wait_for(20ms)) continue;  // a spurious report of the closed one: allowed
      d.cancel();
      EXPECT_THROW(d.get(), anydefer::cancelled_error);
      continue;
    }
    ASSERT_TRUE(d.wait_for(10s));
  }
}

TEST(ReactorIo, StopFailsPendingWaitsWithExecutorStoppedAndRefusesNewOnes) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  anydefer::deferred<void> pending = loop.wait_readable(p.a);
  anydefer::deferred<void> writable_pending = loop.wait_readable(p.b);
  std::this_thread::sleep_for(10ms);
  loop.stop();
  EXPECT_TRUE(fails_with<anydefer::executor_stopped_error>(pending));
  EXPECT_TRUE(fails_with<anydefer::executor_stopped_error>(writable_pending));
  EXPECT_TRUE(fails_with<anydefer::executor_stopped_error>(loop.wait_readable(p.a)));
}

TEST(ReactorIo, AWaitRegisteredByATaskDuringTheFinalDrainIsAbandonedNotLost) {
  socket_pair p;  // outlives the reactor
  anydefer::deferred<void> late;
  {
    anydefer::reactor loop;
    loop.start();
    std::atomic<bool> queued{false};
    anydefer::deferred<void> first = anydefer::submit(loop, [&] {
      loop.request_stop();
      // Runs during the drain: still accepted on the loop thread, then abandoned by the drain.
      return anydefer::submit(loop, [&] {
        late = loop.wait_readable(p.a);
        queued = true;
      });
    });
    loop.join();
    ASSERT_TRUE(queued);
  }
  ASSERT_TRUE(late.fired());
  EXPECT_TRUE(fails_with<anydefer::executor_stopped_error>(late));
}

// Re-posts itself until told to stop: a loop that never runs out of ready tasks.
struct flood_task : anydefer::task {
  flood_task(anydefer::reactor& l, std::atomic<bool>& s, std::atomic<long>& r)
      : task(&ops), loop(l), stop(s), runs(r) {}
  static void run(task& t) noexcept {
    auto& self = static_cast<flood_task&>(t);
    self.runs.fetch_add(1, std::memory_order_relaxed);
    if (!self.stop.load(std::memory_order_relaxed)) self.loop.execute(self);
  }
  static void reject(task& /*t*/, std::exception_ptr /*why*/) noexcept {}
  static constexpr operations ops{&run, &reject};
  anydefer::reactor& loop;
  std::atomic<bool>& stop;
  std::atomic<long>& runs;
};

TEST(ReactorIo, AFloodOfSelfRepostingTasksDoesNotStarveASocket) {
  anydefer::reactor loop;
  loop.start();
  socket_pair p(&loop);
  std::atomic<bool> stop_flood{false};
  std::atomic<long> flood_runs{0};
  flood_task flood(loop, stop_flood, flood_runs);
  loop.execute(flood);
  anydefer::deferred<void> d = loop.wait_readable(p.a);
  std::this_thread::sleep_for(10ms);
  p.send_to_a("through");
  const bool fired = d.wait_for(10s);
  stop_flood = true;
  ASSERT_TRUE(fired);
  EXPECT_GT(flood_runs.load(), 0);
}

TEST(ReactorIo, WaitsFromManyThreadsWithCancelsRacingReadinessSettleEachExactlyOnce) {
  anydefer::reactor loop;
  loop.start();
  constexpr int threads = 4;
  constexpr int rounds = 300;
  std::vector<std::thread> workers;
  std::atomic<int> settled{0};
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      socket_pair p(&loop);
      for (int i = 0; i < rounds; ++i) {
        anydefer::deferred<void> d = loop.wait_readable(p.a);
        const bool send = (i + t) % 3 == 0;
        if (send) p.send_to_a("r");
        if (!send || (i + t) % 2 == 0) d.cancel();  // a wait with no data coming is always cancelled
        d.wait();
        try {
          d.get();
        } catch (const anydefer::cancelled_error&) {
        }
        settled.fetch_add(1);
        (void)p.read_a();
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(settled.load(), threads * rounds);
}

}  // namespace
