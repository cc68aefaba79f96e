// failure answers an errback's questions (check, trap, what, type_name) without try/catch; result<T> holds a value
// or a failure.
#include <gtest/gtest.h>

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>

#include "anydefer/errors.hpp"
#include "anydefer/failure.hpp"

namespace {

using anydefer::failure;
using anydefer::result;

TEST(FailureTest, NullExceptionPtrThrowsInvalidArgument) {
  EXPECT_THROW(failure(std::exception_ptr{}), std::invalid_argument);
}

TEST(FailureTest, OfWrapsACopyOfTheException) {
  failure f = failure::of(std::out_of_range("copied"));

  EXPECT_THROW(f.rethrow(), std::out_of_range);
  EXPECT_EQ(f.what(), "copied");
}

TEST(FailureTest, CurrentCapturesTheExceptionBeingHandled) {
  std::exception_ptr thrown;
  try {
    throw std::runtime_error("current");
  } catch (...) {
    thrown = std::current_exception();
    failure f = failure::current();

    EXPECT_EQ(f.exception(), thrown);
  }
}

TEST(FailureTest, CurrentOutsideCatchThrowsInvalidArgument) { EXPECT_THROW(failure::current(), std::invalid_argument); }

TEST(FailureTest, CheckMatchesExactType) {
  failure f = failure::of(std::runtime_error("x"));

  EXPECT_TRUE(f.check<std::runtime_error>());
}

TEST(FailureTest, CheckMatchesBaseClass) {
  failure f = failure::of(std::out_of_range("x"));

  EXPECT_TRUE(f.check<std::logic_error>());
  EXPECT_TRUE(f.check<std::exception>());
}

TEST(FailureTest, CheckRejectsUnrelatedType) {
  failure f = failure::of(std::runtime_error("x"));

  EXPECT_FALSE(f.check<std::logic_error>());
}

TEST(FailureTest, CheckMatchesAnyOfSeveralTypes) {
  failure f = failure::of(std::runtime_error("x"));

  EXPECT_TRUE((f.check<std::logic_error, std::runtime_error>()));
  EXPECT_FALSE((f.check<std::logic_error, std::bad_alloc>()));
}

TEST(FailureTest, CheckMatchesAnydeferErrorBase) {
  failure f = failure::of(anydefer::cancelled_error());

  EXPECT_TRUE(f.check<anydefer::error>());
  EXPECT_TRUE(f.check<std::runtime_error>());
}

TEST(FailureTest, TrapOfMatchingTypeReturns) {
  failure f = failure::of(std::runtime_error("x"));

  EXPECT_NO_THROW(f.trap<std::runtime_error>());
}

TEST(FailureTest, TrapOfNonMatchingTypeRethrowsTheOriginal) {
  failure f = failure::of(std::runtime_error("original"));

  try {
    f.trap<std::logic_error>();
    FAIL() << "trap() returned";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "original");
    EXPECT_EQ(std::current_exception(), f.exception());
  }
}

TEST(FailureTest, WhatOfNonStdExceptionNamesItsType) {
  failure f(std::make_exception_ptr(42));

  EXPECT_EQ(f.what(), "non-std::exception of type int");
  EXPECT_FALSE(f.check<std::exception>());
}

TEST(FailureTest, TypeNameIsDemangledDynamicType) {
  std::exception_ptr p;
  try {
    throw anydefer::cancelled_error();
  } catch (const std::exception&) {
    p = std::current_exception();
  }
  failure f(p);

  EXPECT_EQ(f.type_name(), "anydefer::cancelled_error");
}

TEST(FailureTest, CopiesCompareEqual) {
  failure f = failure::of(std::runtime_error("x"));
  failure copy = f;

  EXPECT_TRUE(f == copy);
  EXPECT_FALSE(f == failure::of(std::runtime_error("x")));
}

TEST(ResultTest, HoldsValue) {
  result<int> r(3);

  EXPECT_TRUE(r.has_value());
  EXPECT_FALSE(r.has_failure());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(r.value(), 3);
}

TEST(ResultTest, HoldsFailure) {
  result<int> r(failure::of(std::runtime_error("bad")));

  EXPECT_TRUE(r.has_failure());
  EXPECT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.error().what(), "bad");
}

TEST(ResultTest, ValueOfFailureRethrows) {
  result<int> r(failure::of(std::out_of_range("bad")));

  EXPECT_THROW(r.value(), std::out_of_range);
}

TEST(ResultTest, ErrorOfValueThrowsLogicError) {
  result<int> r(1);

  EXPECT_THROW(r.error(), std::logic_error);
}

TEST(ResultTest, VoidResultHoldsNothingOrFailure) {
  result<void> ok;
  result<void> bad(failure::of(std::runtime_error("bad")));

  EXPECT_TRUE(ok.has_value());
  EXPECT_NO_THROW(ok.value());
  EXPECT_THROW(bad.value(), std::runtime_error);
}

TEST(ResultTest, RvalueValueMovesMoveOnlyValueOut) {
  result<std::unique_ptr<int>> r(std::make_unique<int>(4));

  std::unique_ptr<int> p = std::move(r).value();

  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 4);
}

}  // namespace
