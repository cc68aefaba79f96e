// What a user reaches for without thinking: errbacks that return something convertible to the chain's type,
// fail<T>() with an exception object, typed access to a failure's exception, and an already_called_error that
// says where the deferred was created and first fired.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "anydefer/combinators.hpp"
#include "anydefer/deferred.hpp"

namespace {

using anydefer::deferred;
using anydefer::failure;

TEST(ConvenienceTest, AnErrbackMayReturnAValueConvertibleToTheChainsType) {
  deferred<std::string> d;
  deferred<std::string> out = d.add_errback([](failure f) {
    f.trap<std::runtime_error>();
    return "recovered";  // a const char*
  });
  d.errback(std::runtime_error("x"));
  EXPECT_EQ(out.get(), "recovered");
}

TEST(ConvenienceTest, AddCallbacksErrbackMayReturnAValueConvertibleToTheCallbacksType) {
  deferred<int> d;
  deferred<std::string> out =
      d.add_callbacks([](int v) { return std::to_string(v); }, [](const failure&) { return "failed"; });
  d.errback(std::runtime_error("x"));
  EXPECT_EQ(out.get(), "failed");
}

TEST(ConvenienceTest, ARecoveredValueStillPassesThroughUntouched) {
  deferred<std::string> d;
  deferred<std::string> out = d.add_errback([](const failure&) { return "unused"; });
  d.callback("value");
  EXPECT_EQ(out.get(), "value");
}

TEST(ConvenienceTest, FailTakesAnExceptionObjectAsErrbackDoes) {
  deferred<int> failed = anydefer::fail<int>(std::runtime_error("x"));
  EXPECT_TRUE(failed.fired());
  EXPECT_THROW(failed.get(), std::runtime_error);
}

TEST(ConvenienceTest, GetIfGivesTheTypedExceptionOrNull) {
  failure f = failure::of(std::out_of_range("range"));
  const std::out_of_range* exact = f.get_if<std::out_of_range>();
  ASSERT_NE(exact, nullptr);
  EXPECT_STREQ(exact->what(), "range");
  const std::logic_error* base = f.get_if<std::logic_error>();  // a base class matches too
  EXPECT_EQ(static_cast<const void*>(base), static_cast<const void*>(exact));
  EXPECT_EQ(f.get_if<std::runtime_error>(), nullptr);
}

TEST(ConvenienceTest, GetIfReadsFirstErrorsIndexWithoutRethrowing) {
  std::vector<deferred<int>> inputs(3);
  deferred<std::vector<int>> all = anydefer::gather(inputs);
  std::size_t index = 99;
  std::string cause;
  deferred<std::vector<int>> handled = all.add_errback([&](failure f) -> std::vector<int> {
    if (const auto* e = f.get_if<anydefer::first_error>()) {
      index = e->index();
      cause = e->sub_failure().what();
    }
    return {};
  });
  inputs[1].errback(std::runtime_error("second input"));
  handled.get();
  EXPECT_EQ(index, 1U);
  EXPECT_EQ(cause, "second input");
}

TEST(ConvenienceTest, AlreadyCalledErrorNamesWhereTheDeferredWasCreatedAndFirstFired) {
  const unsigned created = __LINE__ + 1;
  deferred<int> d;
  const unsigned fired = __LINE__ + 1;
  d.callback(1);
  try {
    d.callback(2);
    FAIL() << "expected already_called_error";
  } catch (const anydefer::already_called_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("deferred_conveniences_test.cpp:" + std::to_string(created)), std::string::npos) << what;
#ifndef NDEBUG
    EXPECT_NE(what.find("first fired at"), std::string::npos) << what;
    EXPECT_NE(what.find("deferred_conveniences_test.cpp:" + std::to_string(fired)), std::string::npos) << what;
#else
    (void)fired;  // release builds record no fire site
#endif
  }
  EXPECT_EQ(d.get(), 1);
}

}  // namespace
