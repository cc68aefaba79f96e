// Chains of any length run, cancel and free in constant stack. Each test runs on a thread with a 256 KiB stack
// and a million links: one stack frame per link would need tens of megabytes and crash.
#include <gtest/gtest.h>

#include <pthread.h>

#include <cstddef>
#include <functional>
#include <stdexcept>
#include <vector>

#include "anydefer/deferred.hpp"

namespace {

using anydefer::deferred;
using anydefer::failure;

constexpr int kLinks = 1'000'000;
constexpr std::size_t kSmallStack = 256 * 1024;

// Runs `body` to completion on a new thread whose stack is only `stack_size` bytes.
void run_with_small_stack(const std::function<void()>& body, std::size_t stack_size = kSmallStack) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, stack_size), 0);
  pthread_t thread;
  auto trampoline = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&thread, &attr, trampoline, const_cast<std::function<void()>*>(&body)), 0);
  pthread_attr_destroy(&attr);
  ASSERT_EQ(pthread_join(thread, nullptr), 0);
}

TEST(DeferredStackTest, MillionLinksOnFiredDeferredRunInConstantStack) {
  int result = 0;

  run_with_small_stack([&] {
    deferred<int> end = anydefer::succeed(0);
    for (int i = 0; i < kLinks; ++i) end = end.add_callback([](int v) { return v + 1; });
    result = end.get();
  });

  EXPECT_EQ(result, kLinks);
}

TEST(DeferredStackTest, MillionLinksRunInConstantStackWhenRootFires) {
  int result = 0;

  run_with_small_stack([&] {
    deferred<int> root;
    deferred<int> end = root;
    for (int i = 0; i < kLinks; ++i) end = end.add_callback([](int v) { return v + 1; });
    root.callback(0);
    result = end.get();
  });

  EXPECT_EQ(result, kLinks);
}

TEST(DeferredStackTest, MillionCallbacksReturningFiredDeferredsRunInConstantStack) {
  int result = 0;

  run_with_small_stack([&] {
    deferred<int> root;
    deferred<int> end = root;
    for (int i = 0; i < kLinks; ++i) end = end.add_callback([](int v) { return anydefer::succeed(v + 1); });
    root.callback(0);
    result = end.get();
  });

  EXPECT_EQ(result, kLinks);
}

TEST(DeferredStackTest, MillionFailuresPassThroughCallbacksInConstantStack) {
  bool reached_end = false;

  run_with_small_stack([&] {
    deferred<int> root;
    deferred<int> end = root;
    for (int i = 0; i < kLinks; ++i) end = end.add_callback([](int v) { return v + 1; });
    end.add_errback([&](failure) {
      reached_end = true;
      return 0;
    });
    root.errback(std::runtime_error("travels a million links"));
  });

  EXPECT_TRUE(reached_end);
}

TEST(DeferredStackTest, MillionNestedDeferredsEachWaitingOnTheNextCompleteInConstantStack) {
  int result = -1;

  run_with_small_stack([&] {
    // waiting[i] waits on waiting[i + 1]; the last one is a root fired at the end.
    std::vector<deferred<int>> waiting(kLinks + 1);
    deferred<int> last = waiting[kLinks];
    for (int i = kLinks - 1; i >= 0; --i) {
      waiting[i] = anydefer::succeed(i).add_callback([next = waiting[i + 1]](int) { return next; });
    }
    deferred<int> first = waiting[0];
    waiting.clear();
    last.callback(7);
    result = first.get();
  });

  EXPECT_EQ(result, 7);
}

TEST(DeferredStackTest, CancellingFarEndOfMillionNestedDeferredsReachesTheInnermost) {
  bool cancelled = false;

  run_with_small_stack([&] {
    std::vector<deferred<int>> waiting(kLinks + 1);
    // The producer keeps its handle (it would fire the innermost deferred when its work completed).
    deferred<int> innermost([&](deferred<int>&) { cancelled = true; });
    waiting[kLinks] = innermost;
    for (int i = kLinks - 1; i >= 0; --i) {
      waiting[i] = anydefer::succeed(i).add_callback([next = waiting[i + 1]](int) { return next; });
    }
    deferred<int> first = waiting[0];
    waiting.clear();
    first.cancel();
    EXPECT_THROW(first.get(), anydefer::cancelled_error);
  });

  EXPECT_TRUE(cancelled);
}

TEST(DeferredStackTest, CancellingFarEndOfMillionLinksReachesTheRoot) {
  bool cancelled = false;

  run_with_small_stack([&] {
    deferred<int> root([&](deferred<int>&) { cancelled = true; });
    deferred<int> end = root;
    for (int i = 0; i < kLinks; ++i) end = end.add_callback([](int v) { return v + 1; });
    end.cancel();
    EXPECT_THROW(end.get(), anydefer::cancelled_error);
  });

  EXPECT_TRUE(cancelled);
}

TEST(DeferredStackTest, DroppingEndOfMillionLinkFiredChainFreesItInConstantStack) {
  bool finished = false;

  run_with_small_stack([&] {
    {
      deferred<int> root;
      deferred<int> end = root;
      for (int i = 0; i < kLinks; ++i) end = end.add_callback([](int v) { return v + 1; });
      root.callback(0);
    }  // the last handles go here; freeing a million states must not recurse
    finished = true;
  });

  EXPECT_TRUE(finished);
}

TEST(DeferredStackTest, DroppingEndOfMillionLinkUnfiredChainFreesItInConstantStack) {
  bool finished = false;

  run_with_small_stack([&] {
    {
      deferred<int> root;
      deferred<int> end = root;
      for (int i = 0; i < kLinks; ++i) end = end.add_callback([](int v) { return v + 1; });
    }
    finished = true;
  });

  EXPECT_TRUE(finished);
}

TEST(DeferredStackTest, DroppedUnfiredRootBreaksMillionLinkChainInConstantStack) {
  bool broken = false;

  run_with_small_stack([&] {
    deferred<int> end;
    {
      deferred<int> root;
      end = root;
      for (int i = 0; i < kLinks; ++i) end = end.add_callback([](int v) { return v + 1; });
    }
    end.add_errback([&](failure f) {
      broken = f.check<anydefer::broken_deferred_error>();
      return 0;
    });
  });

  EXPECT_TRUE(broken);
}

}  // namespace
