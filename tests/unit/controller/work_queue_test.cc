#include "controller/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

namespace vmimport::controller {
namespace {

using namespace std::chrono_literals;

TEST(WorkQueue, DeduplicatesQueuedKeys) {
  core::FakeClock clock;
  WorkQueue q(clock);
  q.Add("a");
  q.Add("a");
  q.Add("b");
  EXPECT_EQ(q.Len(), 2U);
  EXPECT_EQ(q.Get({}).value(), "a");
  EXPECT_EQ(q.Get({}).value(), "b");
}

TEST(WorkQueue, KeyAddedWhileProcessingIsQueuedAgainOnDone) {
  core::FakeClock clock;
  WorkQueue q(clock);
  q.Add("a");
  ASSERT_EQ(q.Get({}).value(), "a");
  q.Add("a");              // arrives while a worker holds "a"
  EXPECT_EQ(q.Len(), 0U);  // not handed out twice
  q.Done("a");
  EXPECT_EQ(q.Len(), 1U);
  EXPECT_EQ(q.Get({}).value(), "a");
}

TEST(WorkQueue, NeverHandsOneKeyToTwoWorkers) {
  core::SystemClock clock;
  WorkQueue q(clock);
  std::mutex mu;
  std::set<std::string> in_flight;
  std::atomic<int> overlaps{0};
  std::atomic<int> processed{0};
  std::vector<std::jthread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&](std::stop_token stop) {
      while (auto key = q.Get(stop)) {
        {
          std::lock_guard lock(mu);
          if (!in_flight.insert(*key).second) {
            overlaps++;
          }
        }
        std::this_thread::yield();
        {
          std::lock_guard lock(mu);
          in_flight.erase(*key);
        }
        processed++;
        q.Done(*key);
      }
    });
  }
  for (int i = 0; i < 20000; ++i) {
    q.Add("key-" + std::to_string(i % 7));
  }
  while (q.Len() > 0) {
    std::this_thread::yield();
  }
  q.ShutDown();
  workers.clear();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_GT(processed.load(), 0);
}

TEST(WorkQueue, AddAfterWaitsForTheClockAndEarliestWins) {
  core::FakeClock clock;
  WorkQueue q(clock);
  q.AddAfter("a", 10s);
  q.AddAfter("a", 2s);   // earlier: wins
  q.AddAfter("a", 30s);  // later: ignored
  EXPECT_EQ(q.Len(), 0U);
  EXPECT_EQ(q.DelayedLen(), 1U);
  clock.Advance(1s);
  q.Tick();
  EXPECT_EQ(q.Len(), 0U);
  clock.Advance(1s);
  q.Tick();
  EXPECT_EQ(q.Len(), 1U);
  EXPECT_EQ(q.DelayedLen(), 0U);
}

TEST(WorkQueue, GetWakesForADelayedKeyInRealTime) {
  core::SystemClock clock;
  WorkQueue q(clock);
  const auto start = std::chrono::steady_clock::now();
  q.AddAfter("a", 50ms);
  auto key = q.Get({});
  ASSERT_TRUE(key);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
}

TEST(WorkQueue, PerKeyBackoffDoublesUpToTheCapAndForgetResets) {
  core::FakeClock clock;
  WorkQueue q(clock, RateLimits{.base_delay = 5ms, .max_delay = 1s, .qps = 1e9, .burst = 1000});
  EXPECT_EQ(q.When("a"), 5ms);
  EXPECT_EQ(q.When("a"), 10ms);
  EXPECT_EQ(q.When("a"), 20ms);
  EXPECT_EQ(q.When("b"), 5ms);  // per key
  for (int i = 0; i < 20; ++i) {
    (void)q.When("a");
  }
  EXPECT_EQ(q.When("a"), 1s);
  EXPECT_EQ(q.NumRequeues("a"), 24);
  q.Forget("a");
  EXPECT_EQ(q.NumRequeues("a"), 0);
  EXPECT_EQ(q.When("a"), 5ms);
}

TEST(WorkQueue, GlobalBucketLimitsBurstsAcrossKeys) {
  core::FakeClock clock;
  WorkQueue q(clock, RateLimits{.base_delay = 1ms, .max_delay = 1s, .qps = 10, .burst = 3});
  EXPECT_EQ(q.When("k1"), 1ms);
  EXPECT_EQ(q.When("k2"), 1ms);
  EXPECT_EQ(q.When("k3"), 1ms);
  EXPECT_EQ(q.When("k4"), 100ms);  // bucket empty: one token per 100 ms
  EXPECT_EQ(q.When("k5"), 200ms);
  clock.Advance(1s);  // refills (capped at burst)
  EXPECT_EQ(q.When("k6"), 1ms);
}

TEST(WorkQueue, ShutDownReleasesWaitersAndIgnoresAdds) {
  core::SystemClock clock;
  WorkQueue q(clock);
  std::optional<std::string> got = "sentinel";
  std::jthread waiter([&] { got = q.Get({}); });
  std::this_thread::sleep_for(10ms);
  q.ShutDown();
  waiter.join();
  EXPECT_FALSE(got.has_value());
  q.Add("late");
  EXPECT_EQ(q.Len(), 0U);
}

TEST(WorkQueue, StopTokenReleasesAWaiter) {
  core::SystemClock clock;
  WorkQueue q(clock);
  std::stop_source stop;
  std::optional<std::string> got = "sentinel";
  std::jthread waiter([&] { got = q.Get(stop.get_token()); });
  std::this_thread::sleep_for(10ms);
  stop.request_stop();
  waiter.join();
  EXPECT_FALSE(got.has_value());
}

}  // namespace
}  // namespace vmimport::controller
