// A failure nobody consumed is reported once, when the last reference goes, with where its deferred was created;
// a consumed one never is. An unfired deferred that nothing can fire any more fails what waits on it.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <source_location>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "anydefer/deferred.hpp"

namespace {

using anydefer::deferred;
using anydefer::failure;

struct report {
  std::string what;
  std::string file;
  unsigned line;
};

// Installs a handler that records every report, and restores the previous handler afterwards.
class UnhandledErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = anydefer::set_unhandled_error_handler([this](const failure& f, const std::source_location& where) {
      std::lock_guard<std::mutex> lock(mutex_);
      reports_.push_back({f.what(), where.file_name(), static_cast<unsigned>(where.line())});
    });
  }
  void TearDown() override { anydefer::set_unhandled_error_handler(std::move(previous_)); }

  std::vector<report> reports() {
    std::lock_guard<std::mutex> lock(mutex_);
    return reports_;
  }

  static bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
  }

 private:
  anydefer::unhandled_error_handler previous_;
  std::mutex mutex_;
  std::vector<report> reports_;
};

TEST_F(UnhandledErrorTest, FailedRootDroppedIsReportedOnceWithCreationSite) {
  unsigned line = 0;

  {
    line = __LINE__ + 1;
    deferred<int> d;
    d.errback(std::runtime_error("nobody listened"));
  }

  auto r = reports();
  ASSERT_EQ(r.size(), 1U);
  EXPECT_EQ(r[0].what, "nobody listened");
  EXPECT_TRUE(ends_with(r[0].file, "deferred_unhandled_test.cpp")) << r[0].file;
  EXPECT_EQ(r[0].line, line);
}

TEST_F(UnhandledErrorTest, FailureAtEndOfChainIsReportedOnceWithTheLastLinksCreationSite) {
  unsigned line = 0;

  {
    deferred<int> d;
    line = __LINE__ + 1;
    d.add_callback([](int) -> int { throw std::runtime_error("end of chain"); });
    d.callback(1);
  }

  auto r = reports();
  ASSERT_EQ(r.size(), 1U);
  EXPECT_EQ(r[0].what, "end of chain");
  EXPECT_TRUE(ends_with(r[0].file, "deferred_unhandled_test.cpp")) << r[0].file;
  EXPECT_EQ(r[0].line, line);
}

TEST_F(UnhandledErrorTest, FailurePassedThroughLinksIsReportedOnlyAtTheEnd) {
  unsigned line = 0;

  {
    deferred<int> d;
    auto a = d.add_callback([](int v) { return v; });
    line = __LINE__ + 1;
    auto b = a.add_callback([](int v) { return v; });
    d.errback(std::runtime_error("travelled"));
  }

  auto r = reports();
  ASSERT_EQ(r.size(), 1U);
  EXPECT_EQ(r[0].line, line);
}

TEST_F(UnhandledErrorTest, FailureIsNotReportedWhileAHandleRemains) {
  deferred<int> keep;
  {
    deferred<int> d = keep;
    d.errback(std::runtime_error("still held"));
  }

  EXPECT_TRUE(reports().empty());
}

TEST_F(UnhandledErrorTest, FailureConsumedByErrbackIsNotReported) {
  {
    deferred<int> d;
    d.add_errback([](failure) { return 0; });
    d.errback(std::runtime_error("handled"));
  }

  EXPECT_TRUE(reports().empty());
}

TEST_F(UnhandledErrorTest, FailureConsumedByGetIsNotReported) {
  {
    deferred<int> d;
    d.errback(std::runtime_error("handled by get"));
    EXPECT_THROW(d.get(), std::runtime_error);
  }

  EXPECT_TRUE(reports().empty());
}

TEST_F(UnhandledErrorTest, FailurePassedToWaitingLinkIsNotReportedByTheInner) {
  {
    deferred<int> outer;
    deferred<int> inner;
    outer.add_callback([inner](int) { return inner; }).add_errback([](failure) { return 0; });
    outer.callback(1);
    inner.errback(std::runtime_error("consumed by the outer chain"));
  }

  EXPECT_TRUE(reports().empty());
}

TEST_F(UnhandledErrorTest, RecoveredFailureIsNotReported) {
  {
    deferred<int> d;
    d.add_callback([](int) -> int { throw std::runtime_error("recovered"); }).add_errback([](failure) { return 0; });
    d.callback(1);
  }

  EXPECT_TRUE(reports().empty());
}

TEST_F(UnhandledErrorTest, UnfiredRootDroppedWithNothingAttachedReportsNothing) {
  { deferred<int> d; }

  EXPECT_TRUE(reports().empty());
}

TEST_F(UnhandledErrorTest, ValueAtEndOfChainIsNotReported) {
  {
    deferred<int> d;
    d.add_callback([](int v) { return v; });
    d.callback(1);
  }

  EXPECT_TRUE(reports().empty());
}

TEST_F(UnhandledErrorTest, DroppedUnfiredRootWithConsumerFailsWithBrokenDeferred) {
  bool broken = false;

  {
    deferred<int> d;
    d.add_callback([](int v) { return v; }).add_errback([&](failure f) {
      broken = f.check<anydefer::broken_deferred_error>();
      return 0;
    });
  }

  EXPECT_TRUE(broken);
  EXPECT_TRUE(reports().empty());
}

TEST_F(UnhandledErrorTest, DroppedUnfiredRootWithUnhandledConsumerReportsBrokenDeferredOnce) {
  {
    deferred<int> d;
    d.add_callback([](int v) { return v; });
  }

  auto r = reports();
  ASSERT_EQ(r.size(), 1U);
  EXPECT_EQ(r[0].what, anydefer::broken_deferred_error().what());
}

TEST_F(UnhandledErrorTest, DroppedInnerDeferredBreaksTheWaitingChain) {
  bool broken = false;
  deferred<int> outer;
  outer.add_callback([](int) { return deferred<int>(); }).add_errback([&](failure f) {
    broken = f.check<anydefer::broken_deferred_error>();
    return 0;
  });

  outer.callback(1);

  EXPECT_TRUE(broken);
}

TEST_F(UnhandledErrorTest, AbandonedInnerCapturedByTheCallbackThatReturnedItBreaksTheChain) {
  // The idiomatic `[inner](int) { return inner; }`: once the callback ran, its copy of the handle must not keep
  // the inner alive, or an abandoned inner leaves the chain waiting forever (and leaks it).
  bool broken = false;

  {
    deferred<int> outer;
    deferred<int> inner;
    outer.add_callback([inner](int) { return inner; }).add_errback([&](failure f) {
      broken = f.check<anydefer::broken_deferred_error>();
      return 0;
    });
    outer.callback(1);
  }

  EXPECT_TRUE(broken);
}

TEST_F(UnhandledErrorTest, CancellerThatFiresThenThrowsKeepsTheValueAndReportsTheException) {
  unsigned line = 0;
  int got = 0;
  {
    auto fire_then_throw = [](deferred<int>& self) {
      self.callback(7);
      throw std::runtime_error("canceller threw after firing");
    };
    line = __LINE__ + 1;
    deferred<int> d(fire_then_throw);
    d.add_callback([&got](int v) { got = v; });
    EXPECT_NO_THROW(d.cancel());
  }

  EXPECT_EQ(got, 7);  // the fired value stands
  auto r = reports();
  ASSERT_EQ(r.size(), 1U);
  EXPECT_EQ(r[0].what, "canceller threw after firing");
  EXPECT_TRUE(ends_with(r[0].file, "deferred_unhandled_test.cpp")) << r[0].file;
  EXPECT_EQ(r[0].line, line);
}

TEST_F(UnhandledErrorTest, CancellerThatThrowsWithoutFiringFailsTheDeferredAndReportsNothingExtra) {
  deferred<int> d([](deferred<int>&) { throw std::runtime_error("canceller refused"); });
  deferred<int> out = d.add_errback([](failure f) -> int {
    EXPECT_EQ(f.what(), "canceller refused");
    return -1;
  });
  d.cancel();
  EXPECT_EQ(out.get(), -1);
  EXPECT_TRUE(reports().empty());
}

TEST_F(UnhandledErrorTest, ThrowingHandlerDoesNotEscape) {
  anydefer::unhandled_error_handler mine = anydefer::set_unhandled_error_handler(
      [](const failure&, const std::source_location&) { throw std::runtime_error("handler threw"); });

  EXPECT_NO_THROW({
    deferred<int> d;
    d.errback(std::runtime_error("reported"));
  });

  anydefer::set_unhandled_error_handler(std::move(mine));
}

}  // namespace
