// The allocation budget: one allocation per deferred state, none to fire, none to run a link on an executor. This
// file brings the test binary's counting operator new/delete (support/counting_new.hpp) and counts the calling
// thread's allocations.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

#include "anydefer/coroutine.hpp"
#include "anydefer/deferred.hpp"
#include "support/counting_new.hpp"

namespace {

using anydefer::deferred;

// Counts this thread's allocations from construction until stop(), with anydefer's state cache off.
using allocation_counter = anydefer_testing::thread_scope;

// Queues tasks on their intrusive `next` field; never allocates.
class manual_executor {
 public:
  void execute(anydefer::task& t) noexcept {
    t.next = head_;
    head_ = &t;
  }
  void run_all() noexcept {
    while (head_ != nullptr) {
      anydefer::task* t = head_;
      head_ = t->next;
      t->run();
    }
  }

 private:
  anydefer::task* head_ = nullptr;
};

TEST(DeferredMemoryTest, HandleIsOnePointer) { EXPECT_EQ(sizeof(deferred<int>), sizeof(void*)); }

TEST(DeferredMemoryTest, RootStateFitsInOneCacheLine) { EXPECT_LE(sizeof(anydefer::detail::root_state<int>), 64U); }

TEST(DeferredMemoryTest, CountingAllocatorSeesAllocations) {
  // Guards the tests below: a counter that never counts would make every budget pass.
  allocation_counter counter;

  // Through a volatile pointer: a new-expression and its delete may otherwise be elided as a pair.
  int* volatile p = new int(1);
  delete p;

  EXPECT_EQ(counter.allocations(), 1);
  EXPECT_EQ(counter.deallocations(), 1);
}

// The state cache's fast paths do not read the on/off setting: turning it off must empty the calling thread's
// cache and leave it no room, or a block cached just before would be handed out (and a freed one kept) uncounted.
TEST(DeferredMemoryTest, TurningTheStateCacheOffEmptiesThisThreadsCache) {
  for (int round = 0; round < 2; ++round) {  // the second round after the cache was on again, and refilled
    {
      deferred<int> warm;  // freed at once: with the cache on, its block stays in this thread's cache
      warm.callback(1);
      EXPECT_EQ(warm.get(), 1);
    }
    allocation_counter counter;
    {
      deferred<int> d;
      d.callback(2);
      EXPECT_EQ(d.get(), 2);
    }
    EXPECT_EQ(counter.allocations(), 1);
    EXPECT_EQ(counter.deallocations(), 1);
  }
}

TEST(DeferredMemoryTest, NewDeferredAllocatesOnce) {
  allocation_counter counter;

  {
    deferred<int> d;
    counter.stop();
    EXPECT_EQ(counter.allocations(), 1);
  }
}

TEST(DeferredMemoryTest, CopyingAHandleDoesNotAllocate) {
  deferred<int> d;
  allocation_counter counter;

  deferred<int> copy = d;
  deferred<int> moved = std::move(copy);

  counter.stop();
  EXPECT_EQ(counter.allocations(), 0);
}

TEST(DeferredMemoryTest, AddCallbackAllocatesOnce) {
  deferred<int> d;
  int a = 0;
  int b = 0;
  int c = 0;
  int* pa = &a;
  int* pb = &b;
  int* pc = &c;
  allocation_counter counter;

  auto next = d.add_callback([pa, pb, pc](int v) { return v + *pa + *pb + *pc; });

  counter.stop();
  EXPECT_EQ(counter.allocations(), 1);
}

TEST(DeferredMemoryTest, EachAddCallbackAllocatesOnce) {
  deferred<int> d;
  int a = 0;
  int b = 0;
  int c = 0;
  int* pa = &a;
  int* pb = &b;
  int* pc = &c;
  deferred<int> end = d;
  allocation_counter counter;

  for (int i = 0; i < 10; ++i) end = end.add_callback([pa, pb, pc](int v) { return v + *pa + *pb + *pc; });

  counter.stop();
  EXPECT_EQ(counter.allocations(), 10);
}

TEST(DeferredMemoryTest, AddCallbackOnFiredDeferredAllocatesOnce) {
  deferred<int> d;
  d.callback(1);
  allocation_counter counter;

  auto next = d.add_callback([](int v) { return v + 1; });

  counter.stop();
  EXPECT_EQ(counter.allocations(), 1);
}

TEST(DeferredMemoryTest, FiringAChainDoesNotAllocate) {
  deferred<int> d;
  int sum = 0;
  d.add_callback([](int v) { return v + 1; }).add_callback([](int v) { return v * 2; }).add_callback([&](int v) {
    sum = v;
  });
  allocation_counter counter;

  d.callback(1);

  counter.stop();
  EXPECT_EQ(counter.allocations(), 0);
  EXPECT_EQ(sum, 4);
}

TEST(DeferredMemoryTest, ScheduledAddCallbackAllocatesOnlyTheLink) {
  manual_executor ex;
  deferred<int> d;
  int seen = 0;
  allocation_counter counter;

  auto next = d.add_callback(ex, [&](int v) { seen = v; });
  d.callback(3);
  long after_scheduling = counter.allocations();
  ex.run_all();

  counter.stop();
  EXPECT_EQ(after_scheduling, 1);
  EXPECT_EQ(counter.allocations(), 1);
  EXPECT_EQ(seen, 3);
}

TEST(DeferredMemoryTest, SubmitAllocatesOnce) {
  manual_executor ex;
  allocation_counter counter;

  auto d = anydefer::submit(ex, [] { return 5; });
  ex.run_all();

  counter.stop();
  EXPECT_EQ(counter.allocations(), 1);
  EXPECT_EQ(d.get(), 5);
}

TEST(DeferredMemoryTest, GetDoesNotAllocate) {
  deferred<int> d;
  d.callback(9);
  allocation_counter counter;

  int v = d.get();

  counter.stop();
  EXPECT_EQ(counter.allocations(), 0);
  EXPECT_EQ(v, 9);
}

TEST(DeferredMemoryTest, SucceedAllocatesOnce) {
  allocation_counter counter;

  auto d = anydefer::succeed(1);

  counter.stop();
  EXPECT_EQ(counter.allocations(), 1);
}

TEST(DeferredMemoryTest, DroppingTheChainFreesEveryState) {
  allocation_counter counter;

  {
    deferred<int> d;
    d.add_callback([](int v) { return v; }).add_callback([](int v) { return v; });
    d.callback(1);
  }

  counter.stop();
  EXPECT_EQ(counter.allocations(), 3);
  EXPECT_EQ(counter.deallocations(), 3);
}

TEST(DeferredMemoryTest, LinkReleasesItsCallbackAfterItRuns) {
  // Twisted pops a callback off the list before running it: what the callback captured is released once it ran,
  // not when the whole chain goes.
  auto captured = std::make_shared<int>(1);
  std::weak_ptr<int> watch = captured;
  deferred<int> d;
  auto next = d.add_callback([c = std::move(captured)](int v) { return v + *c; });

  d.callback(1);

  EXPECT_EQ(next.get(), 2);
  EXPECT_TRUE(watch.expired()) << "the link still owns its callback (and its captures) after running it";
}

// The same for a callable that captures nothing but does something when it goes: an empty callable is kept only if
// destroying it does nothing.
TEST(DeferredMemoryTest, LinkDestroysAnEmptyCallableWithADestructorAfterItRuns) {
  static int destroyed = 0;
  struct noisy {
    noisy() = default;
    noisy(const noisy&) = default;
    noisy(noisy&&) = default;
    noisy& operator=(const noisy&) = default;
    noisy& operator=(noisy&&) = default;
    ~noisy() { ++destroyed; }
    int operator()(int v) const { return v + 1; }
  };
  static_assert(std::is_empty_v<noisy>);
  deferred<int> d;
  auto next = d.add_callback(noisy{});
  const int before = destroyed;  // the temporaries are gone; the link's copy lives

  d.callback(1);

  EXPECT_EQ(destroyed, before + 1) << "the link still owns its callable after running it";
  EXPECT_EQ(next.get(), 2);
}

// A link added after the fire has run before add_callback returns: it never reads its upstream again, so it does not
// keep it (and its value) alive. Whether the caller's handle was the upstream's only owner or not.
TEST(DeferredMemoryTest, LinkAddedAfterTheFireLetsGoOfItsUpstreamOnceRun) {
  for (const bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "another handle on the upstream" : "one handle on the upstream");
    auto value = std::make_shared<int>(41);
    std::weak_ptr<int> watch = value;
    auto up = std::make_unique<deferred<std::shared_ptr<int>>>(anydefer::succeed(std::move(value)));
    std::unique_ptr<deferred<std::shared_ptr<int>>> other;
    if (shared) other = std::make_unique<deferred<std::shared_ptr<int>>>(*up);
    // By const reference: the upstream's value stays in its state until the state is freed.
    deferred<int> next = up->add_callback([](const std::shared_ptr<int>& v) { return *v + 1; });
    up.reset();
    other.reset();

    EXPECT_TRUE(watch.expired()) << "the link still holds its fired upstream after running";
    EXPECT_EQ(next.get(), 42);
  }
}

// A callback that runs at once (its deferred had fired) may copy, or drop, the very handle add_callback() was called
// on: the upstream's count is then not what add_callback() saw before the callback ran. Nothing is freed twice or
// kept for ever.
TEST(DeferredMemoryTest, CallbackRunAtOnceMayCopyTheHandleItWasAddedThrough) {
  allocation_counter counter;
  {
    auto d = std::make_unique<deferred<int>>(anydefer::succeed(1));
    std::unique_ptr<deferred<int>> kept;
    deferred<int> next = d->add_callback([&](int v) {
      kept = std::make_unique<deferred<int>>(*d);
      return v + 1;
    });
    d.reset();

    EXPECT_TRUE(kept->fired());
    EXPECT_EQ(next.get(), 2);
  }
  counter.stop();
  EXPECT_EQ(counter.allocations(), counter.deallocations());
}

TEST(DeferredMemoryTest, CallbackRunAtOnceMayDropTheHandleItWasAddedThrough) {
  allocation_counter counter;
  {
    deferred<int> d = anydefer::succeed(1);
    deferred<int> next = d.add_callback([&](int v) {
      d = anydefer::succeed(10);
      return v + 1;
    });

    EXPECT_EQ(next.get(), 2);
    EXPECT_EQ(d.get(), 10);
  }
  counter.stop();
  EXPECT_EQ(counter.allocations(), counter.deallocations());
}

TEST(DeferredMemoryTest, DroppingUnfiredChainFreesEveryState) {
  allocation_counter counter;

  {
    deferred<int> d;
    d.add_callback([](int v) { return v; }).add_errback([](anydefer::failure) { return 0; });
  }

  counter.stop();
  EXPECT_EQ(counter.allocations(), counter.deallocations());
}

TEST(DeferredMemoryTest, LinkLetsGoOfTheChainItsCallbackReturnedOnceItHasItsResult) {
  // A long-lived deferred (a request's, a loop's) whose callback returned a chain must not keep that chain, and
  // everything behind it, alive after taking its result.
  allocation_counter counter;
  deferred<int> io;
  auto inner_io = std::make_unique<deferred<int>>();
  deferred<int> result = io.add_callback([inner = *inner_io](int) {
    deferred<int> tail = inner;
    for (int i = 0; i < 100; ++i) tail = tail.add_callback([](int v) { return v + 1; });
    return tail;
  });
  io.callback(0);
  inner_io->callback(1);
  inner_io.reset();

  EXPECT_EQ(result.get(), 101);
  // Left: io's state and the link behind `result`; the returned chain (101 states) is gone.
  EXPECT_EQ(counter.allocations() - counter.deallocations(), 2);
}

// --- a coroutine's deferred, awaited -------------------------------------------------------------------------------

deferred<int> answers_at_once(int v) { co_return v; }
struct child_failed {};  // carries no message: throwing it allocates nothing through operator new
deferred<int> throws_at_once() {
  throw child_failed{};
  co_return 0;
}

// Awaiting a coroutine's deferred as its only owner frees the child's frame when the co_await ends, value or failure.
TEST(DeferredMemoryTest, AwaitingACoroutinesOwnDeferredFreesItsFrameWhenTheAwaitEnds) {
  allocation_counter counter;
  long freed_after_value = -1;
  long freed_after_failure = -1;
  const auto parent = [&]() -> deferred<int> {
    const int v = co_await answers_at_once(41);
    freed_after_value = counter.deallocations();
    try {
      co_await throws_at_once();
    } catch (const child_failed&) {
      freed_after_failure = counter.deallocations();
    }
    co_return v + 1;
  };
  {
    deferred<int> d = parent();
    EXPECT_EQ(d.get(), 42);
  }
  counter.stop();
  EXPECT_EQ(freed_after_value, 1);    // the first child's frame
  EXPECT_EQ(freed_after_failure, 2);  // the second's, before the handler ran
  EXPECT_EQ(counter.allocations(), 3);
  EXPECT_EQ(counter.deallocations(), 3);
}

// A named deferred keeps the child's frame until the name goes.
TEST(DeferredMemoryTest, AwaitingANamedCoroutineDeferredKeepsItsFrameUntilTheNameGoes) {
  allocation_counter counter;
  long freed_after_await = -1;
  long freed_after_scope = -1;
  const auto parent = [&]() -> deferred<int> {
    int v = 0;
    {
      deferred<int> child = answers_at_once(7);
      v = co_await child;
      freed_after_await = counter.deallocations();
    }
    freed_after_scope = counter.deallocations();
    co_return v;
  };
  {
    deferred<int> d = parent();
    EXPECT_EQ(d.get(), 7);
  }
  counter.stop();
  EXPECT_EQ(freed_after_await, 0);
  EXPECT_EQ(freed_after_scope, 1);
  EXPECT_EQ(counter.deallocations(), counter.allocations());
}

}  // namespace
