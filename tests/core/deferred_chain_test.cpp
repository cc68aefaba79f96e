// How values and failures travel down a chain: Twisted's test_defer.py behaviours that make sense for a typed
// deferred (routing, ordering, pausing on a returned deferred, recovery, add_callbacks/add_both, split, and the
// succeed/fail/maybe_deferred helpers).
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "anydefer/deferred.hpp"

namespace {

using anydefer::deferred;
using anydefer::failure;
using anydefer::result;

// --- routing ------------------------------------------------------------------------------------------------

TEST(DeferredTest, CallbackDeliversValueToCallback) {
  deferred<int> d;
  int seen = 0;
  d.add_callback([&](int v) { seen = v; });

  d.callback(42);

  EXPECT_EQ(seen, 42);
}

TEST(DeferredTest, CallbackSkipsErrback) {
  deferred<int> d;
  bool errback_ran = false;
  int seen = 0;
  d.add_errback([&](failure) {
     errback_ran = true;
     return 0;
   }).add_callback([&](int v) { seen = v; });

  d.callback(5);

  EXPECT_FALSE(errback_ran);
  EXPECT_EQ(seen, 5);
}

TEST(DeferredTest, ErrbackSkipsCallbacksUntilAnErrback) {
  deferred<int> d;
  bool callback_ran = false;
  std::string seen;
  d.add_callback([&](int v) {
     callback_ran = true;
     return v;
   }).add_errback([&](failure f) {
    seen = f.what();
    return 0;
  });

  d.errback(std::runtime_error("boom"));

  EXPECT_FALSE(callback_ran);
  EXPECT_EQ(seen, "boom");
}

TEST(DeferredTest, CallbacksRunInTheOrderTheyWereAdded) {
  deferred<int> d;
  std::vector<int> order;
  d.add_callback([&](int v) {
     order.push_back(1);
     return v;
   })
      .add_callback([&](int v) {
        order.push_back(2);
        return v;
      })
      .add_callback([&](int) { order.push_back(3); });

  d.callback(0);

  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(DeferredTest, EachCallbackGetsThePreviousResult) {
  deferred<int> d;
  std::string seen;
  d.add_callback([](int v) { return v * 2; })
      .add_callback([](int v) { return std::to_string(v); })
      .add_callback([&](const std::string& s) { seen = s; });

  d.callback(21);

  EXPECT_EQ(seen, "42");
}

TEST(DeferredTest, CallbacksRunOnlyWhenFired) {
  deferred<int> d;
  bool ran = false;
  d.add_callback([&](int) { ran = true; });

  EXPECT_FALSE(ran);
  EXPECT_FALSE(d.fired());
}

TEST(DeferredTest, LinkAddedAfterFiringRunsAtOnce) {
  deferred<int> d;
  d.callback(7);
  int seen = 0;

  d.add_callback([&](int v) { seen = v; });

  EXPECT_EQ(seen, 7);
}

TEST(DeferredTest, LinkAddedAfterFailureRunsErrbackAtOnce) {
  deferred<int> d;
  d.errback(std::runtime_error("late"));
  std::string seen;

  d.add_errback([&](failure f) {
    seen = f.what();
    return 0;
  });

  EXPECT_EQ(seen, "late");
}

// A link added after the fire holds no reference on its upstream (it reads it at once): the value it hands the
// callback must outlive the upstream, which the callback may free by dropping its last handle. The string is long
// enough to live on the heap, where ASan sees a read after the free.
TEST(DeferredTest, ALateCallbackMayDropTheLastHandleOnItsUpstreamWhileItRuns) {
  auto up = std::make_unique<deferred<std::string>>(anydefer::succeed(std::string(100, 'x')));
  auto next = up->add_callback([&](const std::string& s) {
    up.reset();  // the upstream's only handle: the upstream is freed here
    return s.size() + static_cast<std::size_t>(s.back() == 'x');
  });
  EXPECT_EQ(up, nullptr);
  EXPECT_EQ(next.get(), 101U);
}

// The same late link on a deferred with other handles (consumed with a CAS rather than a plain store): exactly one
// consumer, and the other handles see it consumed.
TEST(DeferredTest, ALateCallbackOnASharedDeferredConsumesItOnce) {
  deferred<int> d;
  deferred<int> copy = d;
  d.callback(7);
  auto next = d.add_callback([](int v) { return v * 2; });
  EXPECT_EQ(next.get(), 14);
  EXPECT_THROW(copy.add_callback([](int v) { return v; }), anydefer::already_continued_error);
  EXPECT_THROW(copy.get(), anydefer::already_continued_error);
  EXPECT_TRUE(copy.fired());
}

// A late errback passes a value through unchanged, and a late callback passes a failure on without running.
TEST(DeferredTest, LateLinksRouteValuesAndFailuresAsEarlyOnes) {
  auto value = anydefer::succeed(std::string(64, 'v')).add_errback([](const failure&) { return std::string("no"); });
  EXPECT_EQ(value.get(), std::string(64, 'v'));
  bool ran = false;
  auto failed = anydefer::fail<std::string>(std::runtime_error("late")).add_callback([&](const std::string& s) {
    ran = true;
    return s.size();
  });
  EXPECT_THROW(failed.get(), std::runtime_error);
  EXPECT_FALSE(ran);
}

TEST(DeferredTest, LinkIsFiredAfterItsCallbackRan) {
  deferred<int> d;
  auto next = d.add_callback([](int v) { return v + 1; });

  d.callback(1);

  EXPECT_TRUE(next.fired());
  EXPECT_EQ(next.get(), 2);
}

// --- the error path -----------------------------------------------------------------------------------------

TEST(DeferredTest, ThrowingCallbackSwitchesToErrorPath) {
  deferred<int> d;
  bool next_callback_ran = false;
  std::string seen;
  d.add_callback([](int) -> int { throw std::out_of_range("too big"); })
      .add_callback([&](int v) {
        next_callback_ran = true;
        return v;
      })
      .add_errback([&](failure f) {
        seen = f.type_name();
        return 0;
      });

  d.callback(1);

  EXPECT_FALSE(next_callback_ran);
  EXPECT_EQ(seen, "std::out_of_range");
}

TEST(DeferredTest, ErrbackReturningValueRecovers) {
  deferred<int> d;
  int seen = 0;
  d.add_errback([](failure) { return 99; }).add_callback([&](int v) { seen = v; });

  d.errback(std::runtime_error("boom"));

  EXPECT_EQ(seen, 99);
}

TEST(DeferredTest, ErrbackThatRethrowsKeepsErrorPath) {
  deferred<int> d;
  bool callback_ran = false;
  std::string seen;
  d.add_errback([](failure f) -> int { f.rethrow(); })
      .add_callback([&](int v) {
        callback_ran = true;
        return v;
      })
      .add_errback([&](failure f) {
        seen = f.what();
        return 0;
      });

  d.errback(std::runtime_error("still broken"));

  EXPECT_FALSE(callback_ran);
  EXPECT_EQ(seen, "still broken");
}

TEST(DeferredTest, ErrbackThrowingNewErrorReplacesFailure) {
  deferred<int> d;
  std::string seen;
  d.add_errback([](failure) -> int { throw std::logic_error("second"); }).add_errback([&](failure f) {
    seen = f.what();
    return 0;
  });

  d.errback(std::runtime_error("first"));

  EXPECT_EQ(seen, "second");
}

TEST(DeferredTest, TrapOfNonMatchingTypeKeepsErrorPath) {
  deferred<int> d;
  bool trapped = false;
  bool is_runtime_error = false;
  d.add_errback([&](failure f) {
     f.trap<std::out_of_range>();
     trapped = true;
     return 0;
   }).add_errback([&](failure f) {
    is_runtime_error = f.check<std::runtime_error>();
    return 0;
  });

  d.errback(std::runtime_error("not out of range"));

  EXPECT_FALSE(trapped);
  EXPECT_TRUE(is_runtime_error);
}

TEST(DeferredTest, TrapOfMatchingTypeRecovers) {
  deferred<int> d;
  int seen = 0;
  d.add_errback([](failure f) {
     f.trap<std::logic_error>();
     return 3;
   }).add_callback([&](int v) { seen = v; });

  d.errback(std::out_of_range("derived from logic_error"));

  EXPECT_EQ(seen, 3);
}

TEST(DeferredTest, ValuePassesThroughErrbackUnchanged) {
  deferred<std::string> d;
  std::string seen;
  d.add_errback([](failure) { return std::string("recovered"); }).add_callback([&](std::string s) { seen = s; });

  d.callback("value");

  EXPECT_EQ(seen, "value");
}

TEST(DeferredTest, ErrbackSeesTheSameExceptionObject) {
  deferred<int> d;
  std::exception_ptr sent = std::make_exception_ptr(std::runtime_error("same"));
  std::exception_ptr seen;
  d.add_callback([](int v) { return v; }).add_errback([&](failure f) {
    seen = f.exception();
    return 0;
  });

  d.errback(failure(sent));

  EXPECT_EQ(seen, sent);
}

// --- add_callbacks and add_both -----------------------------------------------------------------------------

TEST(DeferredTest, AddCallbacksRunsOnlyCallbackOnValue) {
  deferred<int> d;
  int callbacks = 0;
  int errbacks = 0;
  d.add_callbacks(
      [&](int v) {
        ++callbacks;
        return v;
      },
      [&](failure) {
        ++errbacks;
        return 0;
      });

  d.callback(1);

  EXPECT_EQ(callbacks, 1);
  EXPECT_EQ(errbacks, 0);
}

TEST(DeferredTest, AddCallbacksRunsOnlyErrbackOnFailure) {
  deferred<int> d;
  int callbacks = 0;
  int errbacks = 0;
  d.add_callbacks(
      [&](int v) {
        ++callbacks;
        return v;
      },
      [&](failure) {
        ++errbacks;
        return 0;
      });

  d.errback(std::runtime_error("boom"));

  EXPECT_EQ(callbacks, 0);
  EXPECT_EQ(errbacks, 1);
}

TEST(DeferredTest, AddCallbacksErrbackDoesNotSeeItsOwnCallbacksThrow) {
  // Twisted: the errback of an addCallbacks pair is not called for an error raised by its own callback.
  deferred<int> d;
  int errbacks = 0;
  std::string downstream;
  d.add_callbacks([](int) -> int { throw std::runtime_error("from callback"); },
                  [&](failure) {
                    ++errbacks;
                    return 0;
                  })
      .add_errback([&](failure f) {
        downstream = f.what();
        return 0;
      });

  d.callback(1);

  EXPECT_EQ(errbacks, 0);
  EXPECT_EQ(downstream, "from callback");
}

TEST(DeferredTest, AddBothSeesValue) {
  deferred<int> d;
  bool had_value = false;
  int seen = 0;
  d.add_both([&](result<int>&& r) {
    had_value = r.has_value();
    if (r) seen = r.value();
  });

  d.callback(8);

  EXPECT_TRUE(had_value);
  EXPECT_EQ(seen, 8);
}

TEST(DeferredTest, AddBothSeesFailure) {
  deferred<int> d;
  bool had_failure = false;
  std::string seen;
  d.add_both([&](result<int>&& r) {
    had_failure = r.has_failure();
    if (had_failure) seen = r.error().what();
  });

  d.errback(std::runtime_error("boom"));

  EXPECT_TRUE(had_failure);
  EXPECT_EQ(seen, "boom");
}

TEST(DeferredTest, AddBothReturningValueRecoversFromFailure) {
  deferred<int> d;
  auto next = d.add_both([](result<int>&& r) { return r.has_failure() ? -1 : r.value(); });

  d.errback(std::runtime_error("boom"));

  EXPECT_EQ(next.get(), -1);
}

// --- a callback returning a deferred pauses the chain -------------------------------------------------------

TEST(DeferredTest, CallbackReturningDeferredPausesChain) {
  deferred<int> outer;
  deferred<int> inner;
  int seen = 0;
  // By reference: a callback holding a handle to an inner deferred that never fires would keep the chain alive.
  outer.add_callback([&inner](int) { return inner; }).add_callback([&](int v) { seen = v; });

  outer.callback(1);

  EXPECT_EQ(seen, 0);
}

TEST(DeferredTest, PausedChainResumesWithInnerValue) {
  deferred<int> outer;
  deferred<int> inner;
  int seen = 0;
  outer.add_callback([inner](int) { return inner; }).add_callback([&](int v) { seen = v; });
  outer.callback(1);

  inner.callback(2);

  EXPECT_EQ(seen, 2);
}

TEST(DeferredTest, PausedChainResumesWithInnerFailure) {
  deferred<int> outer;
  deferred<int> inner;
  std::string seen;
  outer.add_callback([inner](int) { return inner; }).add_errback([&](failure f) {
    seen = f.what();
    return 0;
  });
  outer.callback(1);

  inner.errback(std::runtime_error("inner failed"));

  EXPECT_EQ(seen, "inner failed");
}

TEST(DeferredTest, CallbackReturningFiredDeferredContinuesAtOnce) {
  deferred<int> outer;
  deferred<int> inner;
  inner.callback(5);
  int seen = 0;
  outer.add_callback([inner](int v) { return inner.add_callback([v](int w) { return v + w; }); })
      .add_callback([&](int v) { seen = v; });

  outer.callback(1);

  EXPECT_EQ(seen, 6);
}

TEST(DeferredTest, InnerCallbacksAddedBeforeReturningRunFirst) {
  deferred<int> outer;
  deferred<int> inner;
  std::vector<std::string> order;
  outer
      .add_callback([&](int) {
        return inner.add_callback([&](int v) {
          order.push_back("inner");
          return v * 10;
        });
      })
      .add_callback([&](int v) { order.push_back("outer:" + std::to_string(v)); });
  outer.callback(0);

  inner.callback(4);

  EXPECT_EQ(order, (std::vector<std::string>{"inner", "outer:40"}));
}

TEST(DeferredTest, CallbackReturningDeferredTypeChangesChain) {
  deferred<int> outer;
  deferred<std::string> inner;
  std::string seen;
  outer.add_callback([inner](int) { return inner; }).add_callback([&](std::string s) { seen = s; });
  outer.callback(0);

  inner.callback("typed");

  EXPECT_EQ(seen, "typed");
}

TEST(DeferredTest, ErrbackReturningDeferredRecoversWhenItFires) {
  deferred<int> outer;
  deferred<int> rescue;
  int seen = 0;
  outer.add_errback([rescue](failure) { return rescue; }).add_callback([&](int v) { seen = v; });
  outer.errback(std::runtime_error("boom"));
  EXPECT_EQ(seen, 0);

  rescue.callback(11);

  EXPECT_EQ(seen, 11);
}

TEST(DeferredTest, CallbackReturningItsOwnDeferredFailsTheLink) {
  // Twisted diagnoses a callback that returns the deferred it is part of; here the link's own handle is the only
  // way to reach it, so hand it over through a holder.
  deferred<int> d;
  auto holder = std::make_shared<deferred<int>>(anydefer::succeed(0));
  *holder = d.add_callback([holder](int) mutable {
    deferred<int> self = std::move(*holder);
    holder.reset();  // no cycle through the callback once it ran
    return self;
  });
  deferred<int> link = *holder;
  holder.reset();

  d.callback(1);

  EXPECT_THROW(link.get(), std::logic_error);
}

TEST(DeferredTest, CallbackReturningEmptyDeferredFailsWithEmptyDeferredError) {
  deferred<int> d;
  auto next = d.add_callback([](int) {
    deferred<int> gone;
    deferred<int> taken = std::move(gone);
    return gone;  // NOLINT(bugprone-use-after-move): the point of the test
  });

  d.callback(1);

  EXPECT_THROW(next.get(), anydefer::empty_deferred_error);
}

TEST(DeferredTest, CallbackThatThrowsInsteadOfReturningADeferredFailsTheLink) {
  deferred<int> d;
  auto next = d.add_callback([](int v) -> deferred<int> {
    if (v > 0) throw std::runtime_error("no deferred for you");
    return anydefer::succeed(v);
  });

  d.callback(1);

  EXPECT_THROW(next.get(), std::runtime_error);
}

TEST(DeferredTest, FailurePassesACallbackReturningADeferredWithoutRunningIt) {
  deferred<int> d;
  bool ran = false;
  auto next = d.add_callback([&ran](int v) {
    ran = true;
    return anydefer::succeed(v);
  });

  d.errback(std::runtime_error("upstream"));

  EXPECT_THROW(next.get(), std::runtime_error);
  EXPECT_FALSE(ran);
}

TEST(DeferredTest, CallbackReturningADeferredThatAlreadyHasAConsumerFailsTheLink) {
  deferred<int> d;
  deferred<int> inner;
  auto inner_tail = inner.add_callback([](int v) { return v; });
  auto next = d.add_callback([inner](int) { return inner; });

  d.callback(1);

  EXPECT_THROW(next.get(), anydefer::already_continued_error);
  inner.callback(2);
  EXPECT_EQ(inner_tail.get(), 2);  // the consumer it had is untouched
}

// --- value types --------------------------------------------------------------------------------------------

TEST(DeferredTest, VoidDeferredRunsCallbackWithoutArgument) {
  deferred<void> d;
  bool ran = false;
  d.add_callback([&] { ran = true; });

  d.callback();

  EXPECT_TRUE(ran);
}

TEST(DeferredTest, VoidDeferredRoutesFailure) {
  deferred<void> d;
  std::string seen;
  d.add_callback([] {}).add_errback([&](failure f) { seen = f.what(); });

  d.errback(std::runtime_error("void failure"));

  EXPECT_EQ(seen, "void failure");
}

TEST(DeferredTest, VoidCallbackCanProduceValue) {
  deferred<void> d;
  auto next = d.add_callback([] { return 12; });

  d.callback();

  EXPECT_EQ(next.get(), 12);
}

TEST(DeferredTest, MoveOnlyValueIsMovedDownChain) {
  deferred<std::unique_ptr<int>> d;
  int seen = 0;
  d.add_callback([](std::unique_ptr<int> p) {
     *p += 1;
     return p;
   }).add_callback([&](std::unique_ptr<int> p) { seen = *p; });

  d.callback(std::make_unique<int>(41));

  EXPECT_EQ(seen, 42);
}

TEST(DeferredTest, GetMovesMoveOnlyValueOut) {
  deferred<std::unique_ptr<int>> d;
  d.callback(std::make_unique<int>(3));

  std::unique_ptr<int> p = d.get();

  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 3);
}

// --- split --------------------------------------------------------------------------------------------------

TEST(DeferredTest, SplitGivesEveryBranchTheValue) {
  deferred<int> d;
  std::vector<deferred<int>> branches = d.split(3);
  ASSERT_EQ(branches.size(), 3U);

  d.callback(9);

  for (const auto& b : branches) EXPECT_EQ(b.get(), 9);
}

TEST(DeferredTest, SplitGivesEveryBranchTheFailure) {
  deferred<int> d;
  std::vector<deferred<int>> branches = d.split(2);

  d.errback(std::runtime_error("shared"));

  for (const auto& b : branches) EXPECT_THROW(b.get(), std::runtime_error);
}

TEST(DeferredTest, SplitConsumesTheSource) {
  deferred<int> d;
  auto branches = d.split(2);

  EXPECT_THROW(d.add_callback([](int v) { return v; }), anydefer::already_continued_error);
}

TEST(DeferredTest, SplitOfVoidFiresEveryBranch) {
  deferred<void> d;
  auto branches = d.split(2);

  d.callback();

  for (const auto& b : branches) EXPECT_TRUE(b.fired());
}

TEST(DeferredTest, CancellingOneSplitBranchFailsOnlyThatBranch) {
  deferred<int> d;
  auto branches = d.split(2);

  branches[0].cancel();
  d.callback(4);

  EXPECT_THROW(branches[0].get(), anydefer::cancelled_error);
  EXPECT_EQ(branches[1].get(), 4);
}

// --- succeed / fail / maybe_deferred ------------------------------------------------------------------------

TEST(DeferredTest, SucceedIsAlreadyFired) {
  auto d = anydefer::succeed(5);

  EXPECT_TRUE(d.fired());
  EXPECT_EQ(d.get(), 5);
}

TEST(DeferredTest, SucceedCannotBeFiredAgain) {
  auto d = anydefer::succeed(5);

  EXPECT_THROW(d.callback(6), anydefer::already_called_error);
  EXPECT_EQ(d.get(), 5);
}

TEST(DeferredTest, SucceedVoidIsAlreadyFired) {
  deferred<void> d = anydefer::succeed();

  EXPECT_TRUE(d.fired());
  EXPECT_NO_THROW(d.get());
}

TEST(DeferredTest, FailIsAlreadyFailed) {
  auto d = anydefer::fail<int>(failure::of(std::runtime_error("failed")));

  EXPECT_TRUE(d.fired());
  EXPECT_THROW(d.get(), std::runtime_error);
}

TEST(DeferredTest, MaybeDeferredWrapsValue) {
  auto d = anydefer::maybe_deferred([](int a, int b) { return a + b; }, 2, 3);

  EXPECT_EQ(d.get(), 5);
}

TEST(DeferredTest, MaybeDeferredTurnsThrowIntoFailure) {
  auto d = anydefer::maybe_deferred([]() -> int { throw std::runtime_error("thrown"); });

  EXPECT_TRUE(d.fired());
  EXPECT_THROW(d.get(), std::runtime_error);
}

TEST(DeferredTest, MaybeDeferredReturnsTheSameDeferred) {
  deferred<int> original;

  auto returned = anydefer::maybe_deferred([&] { return original; });
  returned.callback(8);

  EXPECT_TRUE(original.fired());
  EXPECT_EQ(original.get(), 8);
}

TEST(DeferredTest, MaybeDeferredOfVoidFunctionSucceeds) {
  bool ran = false;

  deferred<void> d = anydefer::maybe_deferred([&] { ran = true; });

  EXPECT_TRUE(ran);
  EXPECT_TRUE(d.fired());
}

// --- handles ------------------------------------------------------------------------------------------------

TEST(DeferredTest, CopiesShareOneState) {
  deferred<int> d;
  deferred<int> copy = d;

  d.callback(1);

  EXPECT_TRUE(copy.fired());
}

TEST(DeferredTest, MovedFromHandleIsInvalid) {
  deferred<int> d;

  deferred<int> moved = std::move(d);

  EXPECT_FALSE(d.valid());  // NOLINT(bugprone-use-after-move): the point of the test
  EXPECT_TRUE(moved.valid());
}

TEST(DeferredTest, ChainRunsAfterEveryHandleIsDropped) {
  deferred<int> d;
  int seen = 0;
  {
    d.add_callback([](int v) { return v + 1; }).add_callback([&](int v) { seen = v; });
  }

  d.callback(1);

  EXPECT_EQ(seen, 2);
}

}  // namespace
