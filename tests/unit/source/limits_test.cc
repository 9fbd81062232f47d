// Stream limits: per-host slots and the per-stream bandwidth cap.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "disk/byte_source.h"
#include "source/importer.h"

namespace vmimport::source {
namespace {

using namespace std::chrono_literals;

TEST(StreamSlots, AStreamBeyondTheLimitWaitsForASlotOfItsHostOnly) {
  StreamSlots slots(2);
  ASSERT_TRUE(slots.Acquire({}, "vcenter-a"));
  ASSERT_TRUE(slots.Acquire({}, "vcenter-a"));
  ASSERT_TRUE(slots.Acquire({}, "vcenter-b"));  // another host has its own slots
  std::atomic<bool> third{false};
  std::jthread waiter([&] { third = slots.Acquire({}, "vcenter-a"); });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(third.load());
  slots.Release("vcenter-a");
  waiter.join();
  EXPECT_TRUE(third.load());
  EXPECT_EQ(slots.InUseForTest("vcenter-a"), 2U);
}

TEST(StreamSlots, AWaitEndsWhenStopIsRequested) {
  StreamSlots slots(1);
  ASSERT_TRUE(slots.Acquire({}, "h"));
  std::stop_source stop;
  std::atomic<int> result{-1};
  std::jthread waiter([&] { result = slots.Acquire(stop.get_token(), "h") ? 1 : 0; });
  std::this_thread::sleep_for(50ms);
  stop.request_stop();
  waiter.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_EQ(slots.InUseForTest("h"), 1U);
}

TEST(StreamSlots, ZeroMeansNoLimit) {
  StreamSlots slots(0);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(slots.Acquire({}, "h"));
  }
}

TEST(HostOfUrl, TakesHostAndPortWithoutCredentialsOrPath) {
  EXPECT_EQ(HostOfUrl("https://vcenter.example:443/sdk"), "vcenter.example:443");
  EXPECT_EQ(HostOfUrl("http://user:pw@files.example/a/b.ova"), "files.example");
  EXPECT_EQ(HostOfUrl("keystone"), "keystone");
}

TEST(RateLimitedSource, KeepsTheAverageRateAtTheCapAndPassesEveryByte) {
  std::vector<std::byte> data(1 << 20);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = std::byte(i * 7);
  }
  disk::RateLimitedSource limited(std::make_unique<disk::MemoryByteSource>(data), 4e6);
  std::vector<std::byte> got;
  std::vector<std::byte> buf(256 << 10);
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    auto n = limited.Read({}, buf);
    ASSERT_TRUE(n);
    if (*n == 0) break;
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(got, data);
  EXPECT_GE(seconds, 0.9 * (1 << 20) / 4e6);  // a lower bound: holds on any machine
}

TEST(RateLimitedSource, StopEndsTheWait) {
  std::vector<std::byte> data(1 << 20);
  disk::RateLimitedSource limited(std::make_unique<disk::MemoryByteSource>(data), 1000);
  std::stop_source stop;
  stop.request_stop();
  std::vector<std::byte> buf(4096);
  auto n = limited.Read(stop.get_token(), buf);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, core::ErrorCode::kCancelled);
}

}  // namespace
}  // namespace vmimport::source
