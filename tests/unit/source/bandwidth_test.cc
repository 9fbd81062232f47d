#include "source/bandwidth.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace vmimport::source {
namespace {

using namespace std::chrono_literals;

// Streams taking turns on one thread; waits move the fake clock.
TEST(SharedBandwidth, StreamsTogetherStayUnderTheCap) {
  core::FakeClock clock;
  const auto start = clock.Now();
  SharedBandwidth limiter(
      1e6, clock, [&clock](std::stop_token, std::chrono::nanoseconds d) { clock.Advance(d); },
      100ms);
  const uint64_t piece = 50'000;
  for (int i = 0; i < 200; ++i) {  // 4 streams x 50 pieces x 50 kB = 10 MB
    ASSERT_TRUE(limiter.Acquire({}, piece));
  }
  const double seconds = std::chrono::duration<double>(clock.Now() - start).count();
  EXPECT_EQ(limiter.bytes(), 200 * piece);
  // 10 MB at 1 MB/s: 10 s, less the 100 ms burst allowance.
  EXPECT_GE(seconds, 9.9 - 0.001);
  EXPECT_LE(seconds, 10.0);
}

TEST(SharedBandwidth, IdleTimeIsNotBankedBeyondTheBurst) {
  core::FakeClock clock;
  SharedBandwidth limiter(
      1e6, clock, [&clock](std::stop_token, std::chrono::nanoseconds d) { clock.Advance(d); },
      100ms);
  clock.Advance(60s);  // a minute of nothing
  const auto start = clock.Now();
  ASSERT_TRUE(limiter.Acquire({}, 1'000'000));
  EXPECT_GE(clock.Now() - start, 900ms);  // still 1 s for 1 MB, less the burst
}

TEST(SharedBandwidth, NoCapPassesAtOnceAndARateChangeApplies) {
  core::FakeClock clock;
  int sleeps = 0;
  SharedBandwidth limiter(0, clock, [&](std::stop_token, std::chrono::nanoseconds d) {
    ++sleeps;
    clock.Advance(d);
  });
  ASSERT_TRUE(limiter.Acquire({}, 1 << 30));
  EXPECT_EQ(sleeps, 0);
  limiter.SetRate(1e6);
  const auto start = clock.Now();
  ASSERT_TRUE(limiter.Acquire({}, 2'000'000));
  EXPECT_GE(clock.Now() - start, 1900ms);
}

TEST(SharedBandwidth, StopEndsTheWait) {
  core::FakeClock clock;
  SharedBandwidth limiter(1, clock, [](std::stop_token, std::chrono::nanoseconds) {});
  std::stop_source stop;
  stop.request_stop();
  EXPECT_FALSE(limiter.Acquire(stop.get_token(), 1000));
}

// Real threads and real time: four streams through one 4 MB/s limiter move 2 MB in ~0.5 s.
TEST(SharedBandwidth, ConcurrentStreamsShareOneCap) {
  core::SystemClock clock;
  auto limiter = std::make_shared<SharedBandwidth>(4e6, clock, SharedBandwidth::Sleeper{}, 50ms);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::jthread> streams;
  std::atomic<uint64_t> moved{0};
  for (int s = 0; s < 4; ++s) {
    streams.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {  // 25 x 20 kB = 500 kB per stream
        ASSERT_TRUE(limiter->Acquire({}, 20'000));
        moved += 20'000;
      }
    });
  }
  streams.clear();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(moved.load(), 2'000'000u);
  EXPECT_GE(seconds, 0.45);  // 0.5 s less the 50 ms burst
  EXPECT_LE(seconds, 1.5);   // generous: a loaded CI machine
}

TEST(BandwidthRegistry, OneLimiterPerSourceAndNoneWithoutACap) {
  core::FakeClock clock;
  BandwidthRegistry registry(clock);
  auto a = registry.For("vmware/ns/a", 1e6);
  auto a2 = registry.For("vmware/ns/a", 2e6);
  auto b = registry.For("vmware/ns/b", 1e6);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a, a2);
  EXPECT_EQ(a->rate(), 2e6);
  EXPECT_NE(a, b);
  EXPECT_EQ(registry.For("vmware/ns/c", 0), nullptr);
  EXPECT_EQ(registry.For("vmware/ns/a", 0), nullptr);
  EXPECT_EQ(a->rate(), 0);  // the cap was lifted for the streams already open
}

}  // namespace
}  // namespace vmimport::source
