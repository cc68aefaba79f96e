// Races on one deferred, repeated: firing, continuing, cancelling and waiting from different threads released at
// the same instant. Every round checks that the continuation ran exactly once with a coherent outcome; every test
// checks that all it allocated was freed.
//
// ANYDEFER_STRESS_SCALE (a float, default 1) scales the number of rounds; sanitizer lanes use 0.1.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "anydefer/coroutine.hpp"
#include "anydefer/deferred.hpp"
#include "anydefer/unhandled_error.hpp"
#include "support/counting_new.hpp"  // this binary's counting operator new/delete: what a test allocates it must free

namespace {

using anydefer::deferred;
using anydefer::failure;
using anydefer::result;

long scaled_rounds(long base) {
  double scale = 1.0;
  if (const char* env = std::getenv("ANYDEFER_STRESS_SCALE")) scale = std::strtod(env, nullptr);
  long rounds = static_cast<long>(static_cast<double>(base) * scale);
  return rounds > 0 ? rounds : 1;
}

// Counts allocations on every thread from construction to stop(); the test then checks they were all freed.
// anydefer's state cache is off meanwhile: a state parked in a thread's cache would look like a leak.
using leak_check = anydefer_testing::all_threads_scope;

// Releases `n` threads at once, repeatedly. Spins briefly, then yields: the machine may have fewer cores than
// threads.
class spin_barrier {
 public:
  explicit spin_barrier(unsigned n) : n_(n) {}

  void arrive_and_wait() noexcept {
    // acquire: a thread that sees the generation move on sees everything the others did before arriving.
    const unsigned gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      // Reset before releasing the others: none of them can arrive again until it sees the new generation.
      arrived_.store(0, std::memory_order_relaxed);
      generation_.store(gen + 1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == gen; ++spins) {
      if (spins > 64) std::this_thread::yield();
    }
  }

 private:
  const unsigned n_;
  std::atomic<unsigned> arrived_{0};
  std::atomic<unsigned> generation_{0};
};

// Delays a thread by a varying few nanoseconds, so that over many rounds each side of a race gets to go first and
// to land in the middle of the other's operation.
void jitter(long round, std::size_t thread) noexcept {
  std::uint64_t h = static_cast<std::uint64_t>(round) * 0x9E3779B97F4A7C15ULL + thread * 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 29;
  for (std::uint64_t n = h % 200; n > 0; --n) std::atomic_signal_fence(std::memory_order_seq_cst);
}

// Runs `rounds` rounds on one thread per action, the same threads throughout. In each round `prepare(round)` runs
// alone, then every action runs at once on its own thread, then `check(round)` runs alone.
void run_rounds(long rounds, const std::function<void(long)>& prepare,
                const std::vector<std::function<void()>>& actions, const std::function<void(long)>& check) {
  spin_barrier barrier(static_cast<unsigned>(actions.size()));
  std::vector<std::thread> threads;
  threads.reserve(actions.size());
  for (std::size_t i = 0; i < actions.size(); ++i) {
    threads.emplace_back([&, i] {
      for (long r = 0; r < rounds; ++r) {
        if (i == 0) prepare(r);
        barrier.arrive_and_wait();
        jitter(r, i);
        actions[i]();
        barrier.arrive_and_wait();
        if (i == 0) check(r);
      }
    });
  }
  for (auto& t : threads) t.join();
}

TEST(DeferredRaceTest, FireRacingContinueRunsContinuationExactlyOnce) {
  const long rounds = scaled_rounds(1'000'000);
  std::atomic<long> continuations{0};
  std::atomic<long> run_by_consumer{0};
  long incoherent_rounds = 0;
  std::optional<deferred<int>> producer;
  std::optional<deferred<int>> consumer;
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long) {
        deferred<int> d;
        producer = d;
        consumer = std::move(d);
      },
      {[&] {
         producer->callback(1);
         producer.reset();
       },
       [&] {
         const std::thread::id me = std::this_thread::get_id();
         consumer->add_callback([&, me](int v) {
           continuations.fetch_add(v, std::memory_order_relaxed);
           if (std::this_thread::get_id() == me) run_by_consumer.fetch_add(1, std::memory_order_relaxed);
         });
         consumer.reset();
       }},
      [&](long r) {
        // Both sides are done: whichever came second ran the continuation, exactly once.
        if (continuations.load(std::memory_order_relaxed) != r + 1) ++incoherent_rounds;
      });
  leaks.stop();
  std::printf("continuation run by the consumer in %ld of %ld rounds, by the producer in the rest\n",
              run_by_consumer.load(), rounds);

  EXPECT_EQ(continuations.load(), rounds);
  EXPECT_EQ(incoherent_rounds, 0);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

// Two threads, each with its own handle to one fired deferred, both get() it, then drop their handle: exactly one
// takes the value, the other gets already_continued_error. A getter that finds itself the only owner uses a plain
// store, which is right only if it looks at the word after it learnt it was alone (else the other's consumption
// is missed and the value is taken twice, the second time moved-from).
TEST(DeferredRaceTest, TwoGettersOfOneFiredDeferredTakeItExactlyOnce) {
  const long rounds = scaled_rounds(300'000);
  std::atomic<long> values{0};
  std::atomic<long> refused{0};
  long incoherent_rounds = 0;
  std::optional<deferred<std::string>> first;
  std::optional<deferred<std::string>> second;
  const std::string payload(32, 'v');  // beyond the small-string buffer: a moved-from copy is empty

  auto take = [&](std::optional<deferred<std::string>>& mine) {
    try {
      if (mine->get() == payload) values.fetch_add(1, std::memory_order_relaxed);
    } catch (const anydefer::already_continued_error&) {
      refused.fetch_add(1, std::memory_order_relaxed);
    }
    mine.reset();
  };
  run_rounds(
      rounds,
      [&](long) {
        deferred<std::string> d = anydefer::succeed(payload);
        first = d;
        second = std::move(d);
      },
      {[&] { take(first); }, [&] { take(second); }},
      [&](long r) {
        if (values.load(std::memory_order_relaxed) != r + 1 || refused.load(std::memory_order_relaxed) != r + 1) {
          ++incoherent_rounds;
        }
      });
  EXPECT_EQ(values.load(), rounds);
  EXPECT_EQ(refused.load(), rounds);
  EXPECT_EQ(incoherent_rounds, 0);
}

TEST(DeferredRaceTest, FireRacingScheduledContinueRunsContinuationExactlyOnce) {
  struct inline_executor {
    void execute(anydefer::task& t) noexcept { t.run(); }
  } ex;
  const long rounds = scaled_rounds(300'000);
  std::atomic<long> continuations{0};
  long incoherent_rounds = 0;
  std::optional<deferred<int>> producer;
  std::optional<deferred<int>> consumer;
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long) {
        deferred<int> d;
        producer = d;
        consumer = std::move(d);
      },
      {[&] {
         producer->callback(1);
         producer.reset();
       },
       [&] {
         consumer->add_callback(ex, [&](int v) { continuations.fetch_add(v, std::memory_order_relaxed); });
         consumer.reset();
       }},
      [&](long r) {
        if (continuations.load(std::memory_order_relaxed) != r + 1) ++incoherent_rounds;
      });
  leaks.stop();

  EXPECT_EQ(continuations.load(), rounds);
  EXPECT_EQ(incoherent_rounds, 0);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

TEST(DeferredRaceTest, ContinuationSeesWritesMadeBeforeFire) {
  const long rounds = scaled_rounds(300'000);
  long payload = 0;  // plain memory, published by callback()
  long stale_reads = 0;
  std::atomic<long> continuations{0};
  std::optional<deferred<void>> producer;
  std::optional<deferred<void>> consumer;
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long) {
        deferred<void> d;
        producer = d;
        consumer = std::move(d);
      },
      {[&] {
         payload = payload + 1;
         producer->callback();
         producer.reset();
       },
       [&] {
         long expected = continuations.load(std::memory_order_relaxed) + 1;
         consumer->add_callback([&, expected] {
           if (payload != expected) ++stale_reads;
           continuations.fetch_add(1, std::memory_order_relaxed);
         });
         consumer.reset();
       }},
      [](long) {});
  leaks.stop();

  EXPECT_EQ(continuations.load(), rounds);
  EXPECT_EQ(stale_reads, 0);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

TEST(DeferredRaceTest, FireRacingCancelAndContinueGivesOneCoherentOutcome) {
  const long rounds = scaled_rounds(300'000);
  std::atomic<long> values{0};
  std::atomic<long> cancellations{0};
  std::atomic<long> surprises{0};
  long incoherent_rounds = 0;
  long late_fires_not_rejected = 0;
  std::optional<deferred<int>> producer;
  std::optional<deferred<int>> consumer;
  std::optional<deferred<int>> canceller;
  std::optional<deferred<int>> after_round;
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long) {
        deferred<int> d;
        producer = d;
        canceller = d;
        after_round = d;
        consumer = std::move(d);
      },
      {[&] {
         try {
           producer->callback(42);  // never throws: if the cancel won, this first late fire is swallowed
         } catch (...) {
           surprises.fetch_add(1, std::memory_order_relaxed);
         }
         producer.reset();
       },
       [&] {
         consumer->add_both([&](result<int>&& r) {
           if (r.has_value() && r.value() == 42) {
             values.fetch_add(1, std::memory_order_relaxed);
           } else if (r.has_failure() && r.error().check<anydefer::cancelled_error>()) {
             cancellations.fetch_add(1, std::memory_order_relaxed);
           } else {
             surprises.fetch_add(1, std::memory_order_relaxed);
           }
         });
         consumer.reset();
       },
       [&] {
         canceller->cancel();
         canceller.reset();
       }},
      [&](long r) {
        if (values.load(std::memory_order_relaxed) + cancellations.load(std::memory_order_relaxed) != r + 1) {
          ++incoherent_rounds;
        }
        // Whoever won, the one swallowed fire (if any) is used up: another fire is always refused.
        try {
          after_round->callback(0);
          ++late_fires_not_rejected;
        } catch (const anydefer::already_called_error&) {
        }
        after_round.reset();
      });
  leaks.stop();

  std::printf("fire won %ld rounds, cancel won %ld\n", values.load(), cancellations.load());

  EXPECT_EQ(values.load() + cancellations.load(), rounds);
  EXPECT_EQ(surprises.load(), 0);
  EXPECT_EQ(incoherent_rounds, 0);
  EXPECT_EQ(late_fires_not_rejected, 0);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

TEST(DeferredRaceTest, FireRacingCancellerThatFiresKeepsExactlyOneResult) {
  const long rounds = scaled_rounds(300'000);
  long incoherent_rounds = 0;
  std::atomic<long> continuations{0};
  std::atomic<int> seen{0};
  std::atomic<bool> producer_refused{false};
  long canceller_won = 0;
  std::optional<deferred<int>> producer;
  std::optional<deferred<int>> consumer;
  std::optional<deferred<int>> canceller;
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long) {
        deferred<int> d([](deferred<int>& self) {
          try {
            self.callback(-1);
          } catch (const anydefer::already_called_error&) {
            // the producer fired first
          }
        });
        seen.store(0, std::memory_order_relaxed);
        producer_refused.store(false, std::memory_order_relaxed);
        producer = d;
        canceller = d;
        consumer = std::move(d);
      },
      {[&] {
         try {
           producer->callback(42);
         } catch (const anydefer::already_called_error&) {
           producer_refused.store(true, std::memory_order_relaxed);
         }
         producer.reset();
       },
       [&] {
         consumer->add_callback([&](int v) {
           seen.store(v, std::memory_order_relaxed);
           continuations.fetch_add(1, std::memory_order_relaxed);
         });
         consumer.reset();
       },
       [&] {
         canceller->cancel();
         canceller.reset();
       }},
      [&](long r) {
        // The producer's fire is refused exactly when the canceller's value won.
        int v = seen.load(std::memory_order_relaxed);
        bool refused = producer_refused.load(std::memory_order_relaxed);
        if (refused) ++canceller_won;
        bool coherent = continuations.load(std::memory_order_relaxed) == r + 1 && (refused ? v == -1 : v == 42);
        if (!coherent) ++incoherent_rounds;
      });
  leaks.stop();

  std::printf("canceller won %ld of %ld rounds\n", canceller_won, rounds);

  EXPECT_EQ(continuations.load(), rounds);
  EXPECT_EQ(incoherent_rounds, 0);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

// What a fire racing a cancel() down a chain must give, round after round: exactly one outcome at the tail,
// either the value the fire leads to or cancelled_error, and no fire that throws.
class one_outcome_per_round {
 public:
  // Records the outcome of `tail`; `value` is what the fire leads to.
  void watch(const deferred<int>& tail, int value) {
    tail.add_both([this, value](result<int>&& r) {
      const bool expected =
          (r.has_value() && r.value() == value) || (r.has_failure() && r.error().check<anydefer::cancelled_error>());
      if (!expected) surprises_.fetch_add(1, std::memory_order_relaxed);
      outcomes_.fetch_add(1, std::memory_order_relaxed);
    });
  }
  // Fires through `fire`, which never throws: a cancel that reached a root first swallows its fire.
  template <class Fire>
  void fire(Fire&& fire) {
    try {
      fire();
    } catch (...) {
      surprises_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  // After round `r` (0-based): its outcome, and only it, has arrived.
  void check_round(long r) {
    if (outcomes_.load(std::memory_order_relaxed) != r + 1) ++incoherent_rounds_;
  }
  void expect_one_each(long rounds) const {
    EXPECT_EQ(outcomes_.load(), rounds);
    EXPECT_EQ(surprises_.load(), 0);
    EXPECT_EQ(incoherent_rounds_, 0);
  }

 private:
  std::atomic<long> outcomes_{0};
  std::atomic<long> surprises_{0};
  long incoherent_rounds_ = 0;
};

// The deferreds one thread fires, in order, with 1, 2, 3..., in a round of fire_racing_cancel_of_tail().
using fired_in_order = std::array<std::optional<deferred<int>>, 3>;

// Round after round, one thread fires a chain's roots in order (a fire that a cancel reached first is swallowed)
// while another cancels its tail: every round gives the tail one outcome, and all that was allocated is freed.
// make(roots) builds a round's chain: it sets `roots` and returns the tail with the value the fires lead to.
void fire_racing_cancel_of_tail(long rounds,
                                const std::function<std::pair<deferred<int>, int>(fired_in_order&)>& make) {
  one_outcome_per_round outcome;
  fired_in_order roots;
  std::optional<deferred<int>> tail;
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long) {
        auto [t, value] = make(roots);
        outcome.watch(t, value);
        tail = std::move(t);
      },
      {[&] {
         outcome.fire([&] {
           for (std::size_t i = 0; i < roots.size(); ++i) {
             if (roots[i]) roots[i]->callback(static_cast<int>(i) + 1);
           }
         });
         for (auto& root : roots) root.reset();
       },
       [&] {
         tail->cancel();
         tail.reset();
       }},
      [&](long r) { outcome.check_round(r); });
  leaks.stop();

  outcome.expect_one_each(rounds);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

TEST(DeferredRaceTest, FireRacingLinkCancelGivesOneOutcome) {
  fire_racing_cancel_of_tail(scaled_rounds(300'000), [](fired_in_order& roots) {
    deferred<int> d;
    deferred<int> link = d.add_callback([](int v) { return v + 1; });
    roots[0] = std::move(d);
    return std::pair{std::move(link), 2};
  });
}

// A cancel() walking two hops (the tail, a link waiting on the deferred its callback returned, that deferred)
// while another thread fires the chain through: the link lets go of the returned deferred as soon as it has taken
// its result, and the walk must never look at a hop that was freed under it (ASan and TSan lanes run this; a link
// that ignored the walk showed TSan a race between the free and the walk's read).
TEST(DeferredRaceTest, FireRacingCancelWalkingAChainThatLetsGoAsItRunsGivesOneOutcome) {
  fire_racing_cancel_of_tail(scaled_rounds(200'000), [](fired_in_order& roots) {
    deferred<int> d;
    deferred<int> returned;
    deferred<int> waiting = d.add_callback([returned](int) { return returned; });
    deferred<int> tail = waiting.add_callback([](int v) { return v + 1; });
    roots[0] = std::move(d);
    roots[1] = std::move(returned);  // a cancel may reach it through the link waiting on it
    return std::pair{std::move(tail), 3};
  });
}

// A cancel() walking a chain whose links change what they wait on while it walks: each of the two links waits on
// its upstream, then on the deferred its callback returns, which the firing thread fires next. A walk must only
// ever read through hops it marked (cycle detection included: a second pointer re-reading a hop whose pointer has
// changed since could reach a deferred nobody keeps for it), and every round gives the tail one outcome, with
// everything freed (ASan and TSan lanes run this).
TEST(DeferredRaceTest, FireRacingCancelWalkingLinksThatSwitchToReturnedDeferredsGivesOneOutcome) {
  fire_racing_cancel_of_tail(scaled_rounds(200'000), [](fired_in_order& roots) {
    deferred<int> d;
    deferred<int> returned_first;
    deferred<int> returned_second;
    deferred<int> first_link = d.add_callback([returned_first](int) { return returned_first; });
    deferred<int> second_link = first_link.add_callback([returned_second](int) { return returned_second; });
    deferred<int> tail = second_link.add_callback([](int v) { return v + 1; });
    roots[0] = std::move(d);
    roots[1] = std::move(returned_first);
    roots[2] = std::move(returned_second);
    return std::pair{std::move(tail), 4};
  });
}

// One thread fires a root with the round's number while another get()s `watch(root)`, a deferred the fire leads to
// (the root itself, a link on it, a coroutine awaiting it), then drops it: every get() returns the number plus
// `added`, and all that was allocated is freed.
void fire_racing_get(long rounds, const std::function<deferred<long>(const deferred<long>&)>& watch, long added) {
  long wrong_values = 0;
  std::optional<deferred<long>> root;
  std::optional<deferred<long>> watched;
  long round = 0;
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long r) {
        deferred<long> d;
        watched = watch(d);
        root = std::move(d);
        round = r;
      },
      {[&] {
         root->callback(round);
         root.reset();
       },
       [&] {
         // May block in wait(); the getter may drop the last handle as soon as it is awake.
         if (watched->get() != round + added) ++wrong_values;
         watched.reset();
       }},
      [](long) {});
  leaks.stop();

  EXPECT_EQ(wrong_values, 0);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

TEST(DeferredRaceTest, FireRacingGetReturnsTheValue) {
  fire_racing_get(
      scaled_rounds(300'000), [](const deferred<long>& d) { return d; }, 0);
}

TEST(DeferredRaceTest, FireRacingWaitForWakesTheWaiter) {
  const long rounds = scaled_rounds(100'000);
  long timeouts = 0;
  std::optional<deferred<int>> producer;
  std::optional<deferred<int>> waiter;
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long) {
        deferred<int> d;
        producer = d;
        waiter = std::move(d);
      },
      {[&] {
         producer->errback(std::runtime_error("fired"));
         producer.reset();
       },
       [&] {
         if (!waiter->wait_for(std::chrono::seconds(10))) ++timeouts;
         waiter->add_errback([](failure) { return 0; });
         waiter.reset();
       }},
      [](long) {});
  leaks.stop();

  EXPECT_EQ(timeouts, 0);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

TEST(DeferredRaceTest, DroppingLastProducerHandleRacingContinueBreaksTheChainOnce) {
  const long rounds = scaled_rounds(300'000);
  std::atomic<long> broken{0};
  long incoherent_rounds = 0;
  std::optional<deferred<int>> producer;
  std::optional<deferred<int>> consumer;
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long) {
        deferred<int> d;
        producer = d;
        consumer = std::move(d);
      },
      {[&] { producer.reset(); },
       [&] {
         // Attaches before or after the other thread drops its handle; either way this handle is the last one
         // and dropping it breaks the chain exactly once.
         consumer->add_errback([&](failure f) {
           if (f.check<anydefer::broken_deferred_error>()) broken.fetch_add(1, std::memory_order_relaxed);
           return 0;
         });
         consumer.reset();
       }},
      [&](long r) {
        if (broken.load(std::memory_order_relaxed) != r + 1) ++incoherent_rounds;
      });
  leaks.stop();

  EXPECT_EQ(broken.load(), rounds);
  EXPECT_EQ(incoherent_rounds, 0);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

// --- a driver against the owners of its state ------------------------------------------------------------------
// A link or a coroutine keeps itself alive with the `driving` bit of its state word while its driver runs: the
// state is freed by whichever of the driver (publishing or giving up) and the last owner (dropping the last
// handle) comes second. Each test below makes those two race; the leak check and the sanitizer lanes see a state
// freed twice, never, or while the other side still uses it.

// One thread fires a root while another drops the last handle of `watch(root, ran)`, a link or a coroutine that
// counts in `ran` when it runs: before it runs (orphaned: its driver frees it), while it runs, or after. Each
// round it runs exactly once, and all that was allocated is freed.
void fire_racing_drop(long rounds,
                      const std::function<deferred<int>(const deferred<int>&, std::atomic<long>&)>& watch) {
  std::atomic<long> ran{0};
  long incoherent_rounds = 0;
  std::optional<deferred<int>> root;
  std::optional<deferred<int>> watched;
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long) {
        deferred<int> d;
        watched = watch(d, ran);
        root = std::move(d);
      },
      {[&] {
         root->callback(1);
         root.reset();
       },
       [&] { watched.reset(); }},
      [&](long r) {
        if (ran.load(std::memory_order_relaxed) != r + 1) ++incoherent_rounds;
      });
  leaks.stop();

  EXPECT_EQ(ran.load(), rounds);
  EXPECT_EQ(incoherent_rounds, 0);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

TEST(DeferredRaceTest, FireRacingTheDropOfALinksLastHandleRunsItOnceAndFreesItOnce) {
  fire_racing_drop(scaled_rounds(300'000), [](const deferred<int>& d, std::atomic<long>& ran) {
    return d.add_callback([&ran](int v) {
      ran.fetch_add(1, std::memory_order_relaxed);
      return v + 1;
    });
  });
}

TEST(DeferredRaceTest, FireRacingGetOfALinkWakesTheGetterAndFreesTheLinkOnce) {
  // The driver wakes a getter blocked in wait() before it leaves.
  fire_racing_get(
      scaled_rounds(200'000), [](const deferred<long>& d) { return d.add_callback([](long v) { return v + 1; }); }, 1);
}

TEST(DeferredRaceTest, FireRacingCancelAndDropOfALinkGivesOneOutcomeAndFreesItOnce) {
  const long rounds = scaled_rounds(300'000);
  std::atomic<long> ran{0};
  std::atomic<long> cancelled{0};  // links freed holding an unconsumed cancelled_error
  std::atomic<long> other_reports{0};
  long incoherent_rounds = 0;
  long ran_before = 0;
  long cancelled_before = 0;
  std::optional<deferred<int>> root;
  std::optional<deferred<int>> link;
  const auto previous = anydefer::set_unhandled_error_handler([&](const failure& f, const std::source_location&) {
    (f.check<anydefer::cancelled_error>() ? cancelled : other_reports).fetch_add(1, std::memory_order_relaxed);
  });
  leak_check leaks;

  run_rounds(
      rounds,
      [&](long) {
        deferred<int> d;
        link = d.add_callback([&ran](int v) {
          ran.fetch_add(1, std::memory_order_relaxed);
          return v + 1;
        });
        root = std::move(d);
        ran_before = ran.load(std::memory_order_relaxed);
        cancelled_before = cancelled.load(std::memory_order_relaxed);
      },
      {[&] {
         try {
           root->callback(1);  // swallowed if the cancel reached the root first
         } catch (...) {
           other_reports.fetch_add(1, std::memory_order_relaxed);
         }
         root.reset();
       },
       [&] {
         // Cancels the root if it has not fired yet, else the link while its callback runs; then the link's last
         // handle goes, possibly before its driver has finished.
         link->cancel();
         link.reset();
       }},
      [&](long) {
        // The callback ran (and its value won or was dropped for the cancel), or the cancel came first; and the
        // link was freed with a cancellation at most once.
        const long ran_now = ran.load(std::memory_order_relaxed) - ran_before;
        const long cancelled_now = cancelled.load(std::memory_order_relaxed) - cancelled_before;
        if (ran_now > 1 || cancelled_now > 1 || ran_now + cancelled_now == 0) ++incoherent_rounds;
      });
  leaks.stop();
  anydefer::set_unhandled_error_handler(previous);

  EXPECT_EQ(incoherent_rounds, 0);
  EXPECT_EQ(other_reports.load(), 0);
  EXPECT_EQ(leaks.allocations(), leaks.deallocations());
}

deferred<int> add_one_after(deferred<int> d, std::atomic<long>& ran) {
  const int v = co_await d;
  ran.fetch_add(1, std::memory_order_relaxed);
  co_return v + 1;
}

deferred<long> add_one_after(deferred<long> d) { co_return co_await d + 1; }

TEST(DeferredRaceTest, FireRacingTheDropOfASuspendedCoroutinesLastHandleFinishesItAndFreesItOnce) {
  // The fire resumes the coroutine on its thread, to its end.
  fire_racing_drop(scaled_rounds(300'000),
                   [](const deferred<int>& d, std::atomic<long>& ran) { return add_one_after(d, ran); });
}

TEST(DeferredRaceTest, FireRacingGetOfACoroutineWakesTheGetterAndFreesItOnce) {
  fire_racing_get(
      scaled_rounds(200'000), [](const deferred<long>& d) { return add_one_after(d); }, 1);
}

}  // namespace
