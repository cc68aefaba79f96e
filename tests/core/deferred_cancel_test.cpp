// Cancellation, Twisted's model: a canceller runs once and may fire the deferred; otherwise the deferred fails with
// cancelled_error. Cancelling a deferred that waits on another cancels that one instead.
#include <gtest/gtest.h>
#include <memory>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include <stdexcept>
#include <string>
#include <vector>

#include "anydefer/deferred.hpp"

namespace {

using anydefer::already_called_error;
using anydefer::cancelled_error;
using anydefer::deferred;
using anydefer::failure;

// --- a root with a canceller --------------------------------------------------------------------------------

TEST(DeferredCancelTest, CancelCallsCancellerWithTheDeferred) {
  int calls = 0;
  bool got_the_deferred = false;
  deferred<int> d([&](deferred<int>& self) {
    ++calls;
    got_the_deferred = self.valid() && !self.fired();
  });

  d.cancel();

  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(got_the_deferred);
}

TEST(DeferredCancelTest, CancellerThatDropsTheOtherHandleStillFailsWithCancelledNotBroken) {
  // The producer's handle lives in a registry the canceller clears (as a lock's queue does): the deferred is
  // cancelled, not abandoned.
  std::vector<deferred<int>> registry;
  deferred<int> d([&registry](deferred<int>&) { registry.clear(); });
  registry.push_back(d);
  deferred<int> next = d.add_callback([](int v) { return v; });
  d = deferred<int>(anydefer::succeed(0));  // the caller's handle goes; only the registry's is left
  next.cancel();
  EXPECT_THROW(next.get(), cancelled_error);
}

TEST(DeferredCancelTest, CancellerRunsOnlyOnce) {
  int calls = 0;
  deferred<int> d([&](deferred<int>&) { ++calls; });

  d.cancel();
  d.cancel();

  EXPECT_EQ(calls, 1);
}

TEST(DeferredCancelTest, CancellerThatFiresWithValueKeepsThatValue) {
  deferred<int> d([](deferred<int>& self) { self.callback(-1); });

  d.cancel();

  EXPECT_EQ(d.get(), -1);
}

TEST(DeferredCancelTest, CancellerThatFiresWithFailureKeepsThatFailure) {
  deferred<int> d([](deferred<int>& self) { self.errback(std::out_of_range("from canceller")); });

  d.cancel();

  EXPECT_THROW(d.get(), std::out_of_range);
}

TEST(DeferredCancelTest, CancellerThatDoesNotFireFailsWithCancelledError) {
  deferred<int> d([](deferred<int>&) {});

  d.cancel();

  EXPECT_THROW(d.get(), cancelled_error);
}

TEST(DeferredCancelTest, ThrowingCancellerFailsTheDeferredWithWhatItThrew) {
  deferred<int> d([](deferred<int>&) { throw std::out_of_range("canceller threw"); });

  EXPECT_NO_THROW(d.cancel());

  EXPECT_THROW(d.get(), std::out_of_range);
}

TEST(DeferredCancelTest, LateCallbackAfterCancelWithCancellerThrowsAlreadyCalled) {
  deferred<int> d([](deferred<int>&) {});
  d.cancel();

  EXPECT_THROW(d.callback(1), already_called_error);
  EXPECT_THROW(d.callback(2), already_called_error);
}

TEST(DeferredCancelTest, LateErrbackAfterCancelWithCancellerThrowsAlreadyCalled) {
  deferred<int> d([](deferred<int>&) {});
  d.cancel();

  EXPECT_THROW(d.errback(std::runtime_error("late")), already_called_error);
}

TEST(DeferredCancelTest, LateCallbackAfterCancellerFiredThrowsAlreadyCalled) {
  deferred<int> d([](deferred<int>& self) { self.callback(-1); });
  d.cancel();

  EXPECT_THROW(d.callback(1), already_called_error);
  EXPECT_EQ(d.get(), -1);
}

TEST(DeferredCancelTest, CancelAfterFiringDoesNotCallCanceller) {
  int calls = 0;
  deferred<int> d([&](deferred<int>&) { ++calls; });
  d.callback(3);

  d.cancel();

  EXPECT_EQ(calls, 0);
  EXPECT_EQ(d.get(), 3);
}

TEST(DeferredCancelTest, CancelledErrorReachesErrback) {
  deferred<int> d([](deferred<int>&) {});
  bool cancelled = false;
  d.add_errback([&](failure f) {
    cancelled = f.check<cancelled_error>();
    return 0;
  });

  d.cancel();

  EXPECT_TRUE(cancelled);
}

// --- a root without a canceller -----------------------------------------------------------------------------

TEST(DeferredCancelTest, CancelWithoutCancellerFailsWithCancelledError) {
  deferred<int> d;

  d.cancel();

  EXPECT_THROW(d.get(), cancelled_error);
}

TEST(DeferredCancelTest, FirstLateCallbackAfterCancelWithoutCancellerIsSwallowed) {
  deferred<int> d;
  d.cancel();

  EXPECT_NO_THROW(d.callback(1));

  EXPECT_THROW(d.get(), cancelled_error);
}

TEST(DeferredCancelTest, FirstLateErrbackAfterCancelWithoutCancellerIsSwallowed) {
  deferred<int> d;
  d.cancel();

  EXPECT_NO_THROW(d.errback(std::runtime_error("late")));

  EXPECT_THROW(d.get(), cancelled_error);
}

TEST(DeferredCancelTest, SecondLateFireAfterCancelWithoutCancellerThrowsAlreadyCalled) {
  deferred<int> d;
  d.cancel();
  d.callback(1);

  EXPECT_THROW(d.callback(2), already_called_error);
}

TEST(DeferredCancelTest, SecondCancelDoesNotSwallowAnotherLateFire) {
  deferred<int> d;
  d.cancel();
  d.cancel();
  d.callback(1);

  EXPECT_THROW(d.errback(std::runtime_error("second late fire")), already_called_error);
}

TEST(DeferredCancelTest, CancelAfterFiringIsANoOp) {
  deferred<int> d;
  d.callback(4);

  d.cancel();

  EXPECT_EQ(d.get(), 4);
}

TEST(DeferredCancelTest, CancelAfterFiringDoesNotSwallowALaterFire) {
  deferred<int> d;
  d.callback(4);
  d.cancel();

  EXPECT_THROW(d.callback(5), already_called_error);
}

TEST(DeferredCancelTest, CancelOfSucceedIsANoOp) {
  auto d = anydefer::succeed(6);

  d.cancel();

  EXPECT_EQ(d.get(), 6);
}

// --- cancelling links ---------------------------------------------------------------------------------------

TEST(DeferredCancelTest, CancellingLinkCancelsItsUnfiredUpstream) {
  int calls = 0;
  deferred<int> root([&](deferred<int>&) { ++calls; });
  auto link = root.add_callback([](int v) { return v; });

  link.cancel();

  EXPECT_EQ(calls, 1);
  EXPECT_THROW(link.get(), cancelled_error);
}

TEST(DeferredCancelTest, CancellingLinkWithoutCancellerFailsTheRoot) {
  deferred<int> root;
  bool callback_ran = false;
  auto link = root.add_callback([&](int v) {
    callback_ran = true;
    return v;
  });

  link.cancel();

  EXPECT_FALSE(callback_ran);
  EXPECT_THROW(link.get(), cancelled_error);
}

TEST(DeferredCancelTest, CancelledErrorFromUpstreamMayBeRecoveredByLinksErrback) {
  deferred<int> root;
  auto link = root.add_errback([](failure f) {
    f.trap<cancelled_error>();
    return 7;
  });

  link.cancel();

  EXPECT_EQ(link.get(), 7);
}

TEST(DeferredCancelTest, CancellerResultFlowsThroughTheLink) {
  deferred<int> root([](deferred<int>& self) { self.callback(20); });
  auto link = root.add_callback([](int v) { return v + 1; });

  link.cancel();

  EXPECT_EQ(link.get(), 21);
}

TEST(DeferredCancelTest, CancellingLinkWaitingOnInnerCancelsTheInner) {
  int inner_cancels = 0;
  int root_cancels = 0;
  deferred<int> inner([&](deferred<int>&) { ++inner_cancels; });
  deferred<int> root([&](deferred<int>&) { ++root_cancels; });
  auto link = root.add_callback([inner](int) { return inner; });
  root.callback(1);

  link.cancel();

  EXPECT_EQ(inner_cancels, 1);
  EXPECT_EQ(root_cancels, 0);
  EXPECT_THROW(link.get(), cancelled_error);
}

TEST(DeferredCancelTest, CancellingLinkWaitingOnInnerTakesInnersCancellerResult) {
  deferred<int> inner([](deferred<int>& self) { self.callback(55); });
  deferred<int> root;
  auto link = root.add_callback([inner](int) { return inner; });
  root.callback(1);

  link.cancel();

  EXPECT_EQ(link.get(), 55);
}

TEST(DeferredCancelTest, CancellingLinkWaitingOnInnerWithoutCancellerFailsInner) {
  deferred<int> inner;
  deferred<int> root;
  auto link = root.add_callback([inner](int) { return inner; });
  root.callback(1);

  link.cancel();

  EXPECT_THROW(link.get(), cancelled_error);
  EXPECT_NO_THROW(inner.callback(9));  // the producer's first late fire is swallowed
}

TEST(DeferredCancelTest, CancellingFarEndOfChainReachesTheRoot) {
  int calls = 0;
  deferred<int> root([&](deferred<int>&) { ++calls; });
  deferred<int> end = root;
  for (int i = 0; i < 10; ++i) end = end.add_callback([](int v) { return v + 1; });

  end.cancel();

  EXPECT_EQ(calls, 1);
  EXPECT_THROW(end.get(), cancelled_error);
}

TEST(DeferredCancelTest, CancellingFarEndReachesInnerDeferredInTheMiddle) {
  int inner_cancels = 0;
  deferred<int> inner([&](deferred<int>&) { ++inner_cancels; });
  deferred<int> root;
  deferred<int> end = root.add_callback([inner](int) { return inner; });
  for (int i = 0; i < 5; ++i) end = end.add_callback([](int v) { return v + 1; });
  root.callback(1);

  end.cancel();

  EXPECT_EQ(inner_cancels, 1);
  EXPECT_THROW(end.get(), cancelled_error);
}

TEST(DeferredCancelTest, CancellingFiredLinkIsANoOp) {
  int calls = 0;
  deferred<int> root([&](deferred<int>&) { ++calls; });
  auto link = root.add_callback([](int v) { return v * 3; });
  root.callback(2);

  link.cancel();

  EXPECT_EQ(calls, 0);
  EXPECT_EQ(link.get(), 6);
}

}  // namespace

namespace {

// Tells LeakSanitizer (when present) to ignore what this scope allocates.
struct ignore_leaks_in_scope {
#if defined(__SANITIZE_ADDRESS__)
  ignore_leaks_in_scope() { __lsan_disable(); }
  ~ignore_leaks_in_scope() { __lsan_enable(); }
#endif
};

// A callback that returns a deferred further down its own chain: the two wait on each other and can never fire
// (Twisted hangs the same way). Such a cycle is never freed either, so this test tells LeakSanitizer to ignore
// what it builds; what it checks is that cancel() walking the cycle returns.
TEST(DeferredCancelTest, CancelOnAChainWaitingOnItselfReturns) {
  [[maybe_unused]] ignore_leaks_in_scope ignore;
  anydefer::deferred<int> start;
  auto later = std::make_shared<anydefer::deferred<int>>();
  anydefer::deferred<int> loop = start.add_callback([later](int) { return *later; });
  *later = loop.add_callback([](int v) { return v + 1; });
  start.callback(1);  // loop now waits on *later, which is continued from loop
  EXPECT_FALSE(later->fired());
  later->cancel();              // returns: the walk notices the cycle and cancels inside it
  EXPECT_TRUE(later->fired());  // each consumes the other, so fired() is all there is to observe
  EXPECT_TRUE(loop.fired());
}

// The same with a longer cycle (five hops), which the walk's cycle detection meets only after moving its mark.
TEST(DeferredCancelTest, CancelOnALongerChainWaitingOnItselfReturns) {
  [[maybe_unused]] ignore_leaks_in_scope ignore;
  anydefer::deferred<int> start;
  auto later = std::make_shared<anydefer::deferred<int>>();
  anydefer::deferred<int> loop = start.add_callback([later](int) { return *later; });
  anydefer::deferred<int> hop = loop;
  for (int i = 0; i < 3; ++i) hop = hop.add_callback([](int v) { return v + 1; });
  *later = hop.add_callback([](int v) { return v + 1; });
  start.callback(1);
  EXPECT_FALSE(later->fired());
  later->cancel();
  EXPECT_TRUE(later->fired());
  EXPECT_TRUE(loop.fired());
  EXPECT_TRUE(hop.fired());
}

}  // namespace
