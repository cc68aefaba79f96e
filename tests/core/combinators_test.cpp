// gather, deferred_list and race: Twisted's gatherResults, DeferredList and race, typed.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "anydefer/anydefer.hpp"

namespace {

using anydefer::deferred;

TEST(GatherTest, FiresWithAllValuesInInputOrder) {
  std::vector<deferred<int>> inputs(3);
  deferred<std::vector<int>> all = anydefer::gather(inputs);
  inputs[2].callback(30);
  inputs[0].callback(10);
  EXPECT_FALSE(all.fired());
  inputs[1].callback(20);
  EXPECT_EQ(all.get(), (std::vector<int>{10, 20, 30}));
}

TEST(GatherTest, EmptyInputFiresAtOnceWithNoValues) {
  EXPECT_TRUE(anydefer::gather(std::vector<deferred<int>>{}).get().empty());
}

TEST(GatherTest, FirstFailureFailsWithFirstErrorNamingTheInput) {
  std::vector<deferred<int>> inputs(3);
  deferred<std::vector<int>> all = anydefer::gather(inputs);
  inputs[1].errback(std::out_of_range("second"));
  inputs[0].errback(std::logic_error("later failure is consumed"));
  try {
    all.get();
    FAIL() << "expected first_error";
  } catch (const anydefer::first_error& e) {
    EXPECT_EQ(e.index(), 1u);
    EXPECT_TRUE(e.sub_failure().check<std::out_of_range>());
  }
  inputs[2].callback(3);
}

TEST(GatherTest, VoidInputsGiveAVoidDeferred) {
  std::vector<deferred<void>> inputs(2);
  deferred<void> all = anydefer::gather(inputs);
  inputs[0].callback();
  EXPECT_FALSE(all.fired());
  inputs[1].callback();
  EXPECT_NO_THROW(all.get());
}

TEST(GatherTest, CancelCancelsEveryInput) {
  int cancelled = 0;
  std::vector<deferred<int>> inputs;
  for (int i = 0; i < 3; ++i) inputs.emplace_back([&cancelled](deferred<int>&) { ++cancelled; });
  deferred<std::vector<int>> all = anydefer::gather(inputs);
  all.cancel();
  EXPECT_EQ(cancelled, 3);
  try {
    all.get();
    FAIL() << "expected first_error";
  } catch (const anydefer::first_error& e) {
    EXPECT_TRUE(e.sub_failure().check<anydefer::cancelled_error>());
  }
}

TEST(GatherTest, CancelAfterFiringDoesNotTouchInputs) {
  int cancelled = 0;
  deferred<int> input([&cancelled](deferred<int>&) { ++cancelled; });
  std::vector<deferred<int>> inputs{input};
  deferred<std::vector<int>> all = anydefer::gather(inputs);
  input.callback(1);
  all.cancel();
  EXPECT_EQ(cancelled, 0);
  EXPECT_EQ(all.get(), std::vector<int>{1});
}

TEST(GatherTest, InputWithAnotherConsumerFailsAtItsIndex) {
  std::vector<deferred<int>> inputs(2);
  (void)inputs[0].add_callback([](int v) { return v; });
  deferred<std::vector<int>> all = anydefer::gather(inputs);
  try {
    all.get();
    FAIL() << "expected first_error";
  } catch (const anydefer::first_error& e) {
    EXPECT_EQ(e.index(), 0u);
    EXPECT_TRUE(e.sub_failure().check<anydefer::already_continued_error>());
  }
  inputs[0].callback(0);
  inputs[1].callback(0);
}

TEST(GatherTest, InputsFiredFromOtherThreadsAreAllCollected) {
  constexpr int n = 64;
  std::vector<deferred<int>> inputs(n);
  deferred<std::vector<int>> all = anydefer::gather(inputs);
  std::thread a([&] {
    for (int i = 0; i < n; i += 2) inputs[i].callback(i);
  });
  std::thread b([&] {
    for (int i = 1; i < n; i += 2) inputs[i].callback(i);
  });
  a.join();
  b.join();
  std::vector<int> values = all.get();
  for (int i = 0; i < n; ++i) EXPECT_EQ(values[i], i);
}

TEST(DeferredListTest, FiresWithEveryResultInInputOrder) {
  std::vector<deferred<int>> inputs(2);
  auto list = anydefer::deferred_list(inputs, {.consume_errors = true});
  inputs[1].errback(std::runtime_error("bad"));
  inputs[0].callback(5);
  std::vector<anydefer::result<int>> results = list.get();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].value(), 5);
  EXPECT_TRUE(results[1].error().check<std::runtime_error>());
}

TEST(DeferredListTest, FireOnOneCallbackFiresAtTheFirstSuccess) {
  std::vector<deferred<int>> inputs(3);
  auto list = anydefer::deferred_list(inputs, {.fire_on_one_callback = true});
  inputs[1].callback(7);
  ASSERT_TRUE(list.fired());
  std::vector<anydefer::result<int>> results = list.get();
  EXPECT_EQ(results[1].value(), 7);
  EXPECT_TRUE(results[0].error().check<anydefer::not_fired_error>());
  inputs[0].callback(1);
  inputs[2].callback(2);
}

TEST(DeferredListTest, FireOnOneErrbackFailsWithFirstError) {
  std::vector<deferred<int>> inputs(2);
  auto list = anydefer::deferred_list(inputs, {.fire_on_one_errback = true, .consume_errors = true});
  inputs[0].callback(1);
  inputs[1].errback(std::domain_error("x"));
  try {
    list.get();
    FAIL() << "expected first_error";
  } catch (const anydefer::first_error& e) {
    EXPECT_EQ(e.index(), 1u);
    EXPECT_TRUE(e.sub_failure().check<std::domain_error>());
  }
}

TEST(DeferredListTest, UnconsumedInputFailuresAreReportedAsUnhandled) {
  int reports = 0;
  auto previous = anydefer::set_unhandled_error_handler(
      [&reports](const anydefer::failure&, const std::source_location&) { ++reports; });
  std::vector<deferred<int>> inputs(2);
  auto list = anydefer::deferred_list(inputs);  // consume_errors = false
  inputs[0].errback(std::runtime_error("logged"));
  inputs[1].callback(1);
  EXPECT_EQ(list.get().size(), 2u);
  anydefer::set_unhandled_error_handler(std::move(previous));
  EXPECT_EQ(reports, 1);
}

TEST(DeferredListTest, EmptyListFiresAtOnce) {
  EXPECT_TRUE(anydefer::deferred_list(std::vector<deferred<int>>{}).get().empty());
}

TEST(RaceTest, FirstSuccessWinsAndTheOthersAreCancelled) {
  int cancelled = 0;
  std::vector<deferred<int>> inputs;
  for (int i = 0; i < 3; ++i) inputs.emplace_back([&cancelled](deferred<int>&) { ++cancelled; });
  auto winner = anydefer::race(inputs);
  inputs[2].callback(42);
  EXPECT_EQ(winner.get(), (std::pair<std::size_t, int>{2, 42}));
  EXPECT_EQ(cancelled, 2);
}

TEST(RaceTest, FailuresBeforeASuccessDoNotFailTheRace) {
  std::vector<deferred<int>> inputs(2);
  auto winner = anydefer::race(inputs);
  inputs[0].errback(std::runtime_error("first fails"));
  EXPECT_FALSE(winner.fired());
  inputs[1].callback(8);
  EXPECT_EQ(winner.get().second, 8);
}

TEST(RaceTest, AllFailingFailsWithEveryFailureInInputOrder) {
  std::vector<deferred<int>> inputs(2);
  auto winner = anydefer::race(inputs);
  inputs[1].errback(std::domain_error("b"));
  inputs[0].errback(std::range_error("a"));
  try {
    winner.get();
    FAIL() << "expected failure_group";
  } catch (const anydefer::failure_group& g) {
    ASSERT_EQ(g.failures().size(), 2u);
    EXPECT_TRUE(g.failures()[0].check<std::range_error>());
    EXPECT_TRUE(g.failures()[1].check<std::domain_error>());
  }
}

TEST(RaceTest, EmptyRaceFailsWithInvalidArgument) {
  EXPECT_THROW(anydefer::race(std::vector<deferred<int>>{}).get(), std::invalid_argument);
}

TEST(RaceTest, CancelCancelsEveryInput) {
  std::vector<deferred<int>> inputs(2);
  auto winner = anydefer::race(inputs);
  winner.cancel();
  try {
    winner.get();
    FAIL() << "expected failure_group";
  } catch (const anydefer::failure_group& g) {
    for (const auto& f : g.failures()) EXPECT_TRUE(f.check<anydefer::cancelled_error>());
  }
}

TEST(RaceTest, VoidInputsGiveTheWinnersIndex) {
  std::vector<deferred<void>> inputs(3);
  auto winner = anydefer::race(inputs);
  inputs[1].callback();
  EXPECT_EQ(winner.get(), 1u);
}

}  // namespace

namespace {

using anydefer::deferred;

TEST(GatherVariadicTest, FiresWithATupleOfEveryValue) {
  deferred<int> number;
  deferred<std::string> text;
  deferred<void> done;
  auto all = anydefer::gather(number, text, done);
  text.callback("two");
  done.callback();
  EXPECT_FALSE(all.fired());
  number.callback(1);
  auto [n, t, v] = all.get();
  EXPECT_EQ(n, 1);
  EXPECT_EQ(t, "two");
  (void)v;
}

TEST(GatherVariadicTest, FirstFailureFailsWithFirstErrorNamingTheArgument) {
  deferred<int> number;
  deferred<std::string> text;
  auto all = anydefer::gather(number, text);
  text.errback(std::out_of_range("second"));
  try {
    all.get();
    FAIL() << "expected first_error";
  } catch (const anydefer::first_error& e) {
    EXPECT_EQ(e.index(), 1u);
    EXPECT_TRUE(e.sub_failure().check<std::out_of_range>());
  }
  number.callback(0);
}

TEST(GatherVariadicTest, CancelCancelsEveryInput) {
  int cancelled = 0;
  deferred<int> a([&cancelled](deferred<int>&) { ++cancelled; });
  deferred<double> b([&cancelled](deferred<double>&) { ++cancelled; });
  auto all = anydefer::gather(a, b);
  all.cancel();
  EXPECT_EQ(cancelled, 2);
  EXPECT_THROW(all.get(), anydefer::first_error);
}

TEST(GatherVariadicTest, AlreadyFiredInputsFireAtOnce) {
  auto all = anydefer::gather(anydefer::succeed(1), anydefer::succeed(std::string("x")));
  EXPECT_TRUE(all.fired());
  EXPECT_EQ(std::get<0>(all.get()), 1);
}

}  // namespace
