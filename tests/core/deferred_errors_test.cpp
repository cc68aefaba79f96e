// Misuse is diagnosed with a precise exception and never corrupts the deferred: firing twice, continuing twice,
// firing a link, using a moved-from handle, errback with a null exception.
#include <gtest/gtest.h>

#include <cstddef>
#include <type_traits>

#include <exception>
#include <stdexcept>
#include <string>

#include "anydefer/deferred.hpp"

namespace {

using anydefer::already_called_error;
using anydefer::already_continued_error;
using anydefer::deferred;
using anydefer::failure;

// --- already_called_error: the first result is kept ---------------------------------------------------------

TEST(DeferredErrorsTest, SecondCallbackThrowsAlreadyCalled) {
  deferred<int> d;
  d.callback(1);

  EXPECT_THROW(d.callback(2), already_called_error);
}

TEST(DeferredErrorsTest, SecondCallbackKeepsFirstValue) {
  deferred<int> d;
  d.callback(1);

  EXPECT_THROW(d.callback(2), already_called_error);

  EXPECT_EQ(d.get(), 1);
}

TEST(DeferredErrorsTest, CallbackAfterErrbackThrowsAlreadyCalledAndKeepsFailure) {
  deferred<int> d;
  d.errback(std::runtime_error("first"));

  EXPECT_THROW(d.callback(2), already_called_error);

  EXPECT_THROW(d.get(), std::runtime_error);
}

TEST(DeferredErrorsTest, ErrbackAfterCallbackThrowsAlreadyCalledAndKeepsValue) {
  deferred<int> d;
  d.callback(1);

  EXPECT_THROW(d.errback(std::runtime_error("second")), already_called_error);

  EXPECT_EQ(d.get(), 1);
}

TEST(DeferredErrorsTest, SecondErrbackThrowsAlreadyCalledAndKeepsFirstFailure) {
  deferred<int> d;
  d.errback(std::runtime_error("first"));

  EXPECT_THROW(d.errback(std::logic_error("second")), already_called_error);

  try {
    d.get();
    FAIL() << "get() returned a value";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "first");
  }
}

TEST(DeferredErrorsTest, FiringFromInsideItsOwnCallbackThrowsAlreadyCalled) {
  deferred<int> d;
  bool threw_already_called = false;
  d.add_callback([&](int v) {
    try {
      d.callback(v + 1);
    } catch (const already_called_error&) {
      threw_already_called = true;
    }
  });

  d.callback(1);

  EXPECT_TRUE(threw_already_called);
}

TEST(DeferredErrorsTest, ErrbackFromInsideItsOwnCallbackThrowsAlreadyCalled) {
  deferred<int> d;
  bool threw_already_called = false;
  d.add_callback([&](int) {
    try {
      d.errback(std::runtime_error("reentrant"));
    } catch (const already_called_error&) {
      threw_already_called = true;
    }
  });

  d.callback(1);

  EXPECT_TRUE(threw_already_called);
}

TEST(DeferredErrorsTest, UncaughtAlreadyCalledInCallbackFailsTheLink) {
  deferred<int> d;
  auto next = d.add_callback([&](int v) {
    d.callback(v);
    return v;
  });

  d.callback(1);

  EXPECT_THROW(next.get(), already_called_error);
}

TEST(DeferredErrorsTest, AlreadyCalledIsAnAnydeferError) {
  deferred<int> d;
  d.callback(1);

  EXPECT_THROW(d.callback(2), anydefer::error);
  EXPECT_THROW(d.callback(2), std::logic_error);
}

// --- already_continued_error: one consumer -------------------------------------------------------------------

TEST(DeferredErrorsTest, SecondAddCallbackThrowsAlreadyContinued) {
  deferred<int> d;
  d.add_callback([](int v) { return v; });

  EXPECT_THROW(d.add_callback([](int v) { return v; }), already_continued_error);
}

TEST(DeferredErrorsTest, SecondAddAfterFiringThrowsAlreadyContinued) {
  deferred<int> d;
  d.callback(1);
  d.add_callback([](int v) { return v; });

  EXPECT_THROW(d.add_errback([](failure) { return 0; }), already_continued_error);
}

TEST(DeferredErrorsTest, RejectedSecondAddLeavesFirstConsumerInCharge) {
  deferred<int> d;
  int first = 0;
  int second = 0;
  d.add_callback([&](int v) { first = v; });
  EXPECT_THROW(d.add_callback([&](int v) { second = v; }), already_continued_error);

  d.callback(5);

  EXPECT_EQ(first, 5);
  EXPECT_EQ(second, 0);
}

TEST(DeferredErrorsTest, EveryAddKindCountsAsTheConsumer) {
  deferred<int> a;
  deferred<int> b;
  deferred<int> c;
  a.add_errback([](failure) { return 0; });
  b.add_both([](anydefer::result<int>&&) {});
  c.add_callbacks([](int v) { return v; }, [](failure) { return 0; });

  EXPECT_THROW(a.add_callback([](int) {}), already_continued_error);
  EXPECT_THROW(b.add_callback([](int) {}), already_continued_error);
  EXPECT_THROW(c.add_callback([](int) {}), already_continued_error);
}

TEST(DeferredErrorsTest, GetAfterAddCallbackThrowsAlreadyContinued) {
  deferred<int> d;
  d.add_callback([](int v) { return v; });
  d.callback(1);

  EXPECT_THROW(d.get(), already_continued_error);
}

TEST(DeferredErrorsTest, AddCallbackAfterGetThrowsAlreadyContinued) {
  deferred<int> d;
  d.callback(1);
  EXPECT_EQ(d.get(), 1);

  EXPECT_THROW(d.add_callback([](int v) { return v; }), already_continued_error);
}

TEST(DeferredErrorsTest, SecondGetThrowsAlreadyContinued) {
  deferred<int> d;
  d.callback(1);
  EXPECT_EQ(d.get(), 1);

  EXPECT_THROW(d.get(), already_continued_error);
}

// --- not_fireable_error and empty_deferred_error -------------------------------------------------------------

TEST(DeferredErrorsTest, CallbackOnLinkThrowsNotFireable) {
  deferred<int> d;
  auto link = d.add_callback([](int v) { return v; });

  EXPECT_THROW(link.callback(1), anydefer::not_fireable_error);
}

TEST(DeferredErrorsTest, ErrbackOnLinkThrowsNotFireable) {
  deferred<int> d;
  auto link = d.add_callback([](int v) { return v; });

  EXPECT_THROW(link.errback(std::runtime_error("no")), anydefer::not_fireable_error);
}

TEST(DeferredErrorsTest, NotFireableLeavesLinkUnfired) {
  deferred<int> d;
  auto link = d.add_callback([](int v) { return v * 2; });
  EXPECT_THROW(link.callback(100), anydefer::not_fireable_error);

  d.callback(1);

  EXPECT_EQ(link.get(), 2);
}

TEST(DeferredErrorsTest, MovedFromHandleThrowsEmptyDeferredOnCallback) {
  deferred<int> d;
  deferred<int> other = std::move(d);

  EXPECT_THROW(d.callback(1), anydefer::empty_deferred_error);  // NOLINT(bugprone-use-after-move)
}

TEST(DeferredErrorsTest, MovedFromHandleThrowsEmptyDeferredOnEveryOperation) {
  deferred<int> d;
  deferred<int> other = std::move(d);

  // NOLINTBEGIN(bugprone-use-after-move): the point of the test
  EXPECT_THROW(d.add_callback([](int v) { return v; }), anydefer::empty_deferred_error);
  EXPECT_THROW(d.errback(std::runtime_error("x")), anydefer::empty_deferred_error);
  EXPECT_THROW(d.cancel(), anydefer::empty_deferred_error);
  EXPECT_THROW(d.get(), anydefer::empty_deferred_error);
  EXPECT_THROW(d.wait(), anydefer::empty_deferred_error);
  EXPECT_THROW((void)d.fired(), anydefer::empty_deferred_error);
  // NOLINTEND(bugprone-use-after-move)
}

// --- errback(null) ------------------------------------------------------------------------------------------

TEST(DeferredErrorsTest, ErrbackWithNullExceptionPtrThrowsInvalidArgument) {
  deferred<int> d;

  EXPECT_THROW(d.errback(std::exception_ptr{}), std::invalid_argument);
}

TEST(DeferredErrorsTest, ErrbackWithNullExceptionPtrLeavesDeferredUnfired) {
  deferred<int> d;
  EXPECT_THROW(d.errback(std::exception_ptr{}), std::invalid_argument);

  d.callback(3);

  EXPECT_EQ(d.get(), 3);
}

}  // namespace

namespace {

// A null executor cannot be expressed: executor_ref binds to an executor object, never to a pointer, and has no
// empty state. These are compile-time facts; the test keeps them from regressing.
TEST(DeferredErrorsTest, NullExecutorCannotBeExpressed) {
  static_assert(!std::is_default_constructible_v<anydefer::executor_ref>);
  static_assert(!std::is_constructible_v<anydefer::executor_ref, std::nullptr_t>);
  static_assert(!anydefer::executor<std::nullptr_t>);
  EXPECT_FALSE(std::is_default_constructible_v<anydefer::executor_ref>);
  EXPECT_FALSE((std::is_constructible_v<anydefer::executor_ref, std::nullptr_t>));
}

}  // namespace
