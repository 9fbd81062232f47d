// A stalled libvirtd (SIGSTOP: TCP is still accepted, nothing answers) against the provider:
// readiness ends within its deadline with a reason, libvirt's keepalive breaks an open connection,
// and a disk read blocked on a stalled stream returns at once when cancelled. libvirtd gets
// SIGCONT at the end of each test (LibvirtdStalled), also when it fails.

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "core/strings.h"
#include "source/libvirt/bounded_call.h"
#include "source/libvirt/importer.h"
#include "world/libvirt_world.h"
#include "world/world_env.h"

namespace vmimport::source::libvirt {
namespace {

using core::ErrorCode;
using testing::LibvirtdStalled;
using testing::LvConfig;
using namespace std::chrono_literals;

// Short deadlines and a fast keepalive (a ping a second, dead after two unanswered).
LibvirtOptions Fast() {
  LibvirtOptions o;
  o.connect = {.timeout = 3s, .keepalive_interval = 1, .keepalive_count = 2};
  o.check_timeout = 4s;
  o.download_chunk_bytes = 1 << 20;
  o.download_call_timeout = 20s;
  return o;
}

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Waits until no abandoned call to the world's host is pending (they return once libvirtd runs).
void WaitAbandonedReturned() {
  const std::string host = HostOfUrl(LvConfig().endpoint);
  EXPECT_TRUE(testing::Eventually([&] { return AbandonedCalls(host) == 0; }, 30s))
      << AbandonedCalls(host) << " calls to " << host << " still pending";
  EXPECT_TRUE(WaitForBackgroundReleases(30s));
}

TEST(LibvirtStall, ReadinessOfAStalledLibvirtdTimesOutAsUnreachable) {
  LibvirtConnectionChecker checker(Fast());
  ASSERT_TRUE(checker.CheckConnection({}, LvConfig()));
  {
    LibvirtdStalled stalled;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = checker.CheckConnection({}, LvConfig());
    const double took = SecondsSince(t0);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().ToString();  // Unreachable
    EXPECT_NE(r.error().message.find("timed out"), std::string::npos) << r.error().ToString();
    EXPECT_EQ(r.error().message.find("tls:"), std::string::npos) << r.error().ToString();
    EXPECT_LT(took, 4.5) << r.error().ToString();  // the open's 3 s deadline
    std::printf("stalled readiness: %.1f s: %s\n", took, r.error().message.c_str());
    // A stop ends a check at once, too.
    std::stop_source stop;
    auto pending = std::async(
        std::launch::async, [&] { return checker.CheckConnection(stop.get_token(), LvConfig()); });
    std::this_thread::sleep_for(300ms);
    const auto t1 = std::chrono::steady_clock::now();
    stop.request_stop();
    auto cancelled = pending.get();
    ASSERT_FALSE(cancelled);
    EXPECT_EQ(cancelled.error().code, ErrorCode::kCancelled) << cancelled.error().ToString();
    EXPECT_LT(SecondsSince(t1), 0.5);
  }
  WaitAbandonedReturned();
  auto again = checker.CheckConnection({}, LvConfig());
  EXPECT_TRUE(again) << again.error().ToString();
}

TEST(LibvirtStall, KeepaliveBreaksAnOpenConnectionToAStalledPeer) {
  LibvirtImporter importer(Fast());
  auto vm = importer.Open({}, LvConfig(), {.vm_name = "vmi-lv-efi"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  {
    LibvirtdStalled stalled;
    const auto t0 = std::chrono::steady_clock::now();
    // A call on the open connection: a plain libvirt round trip, no deadline of ours.
    auto r = (*vm)->PowerOff({}, {.force = true}, [](std::string_view, std::string_view) {});
    const double took = SecondsSince(t0);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().ToString();
    EXPECT_LT(took, 6.0) << r.error().ToString();  // 1 s x 2 pings, and a turn of the loop
    std::printf("keepalive closed the stalled connection after %.1f s: %s\n", took,
                r.error().message.c_str());
  }
  WaitAbandonedReturned();
}

TEST(LibvirtStall, CancelledDiskReadOnAStalledStreamReturnsAtOnce) {
  LibvirtImporter importer(Fast());
  auto vm = importer.Open({}, LvConfig(), {.vm_name = "vmi-lv-efi"});
  ASSERT_TRUE(vm) << vm.error().ToString();
  ASSERT_TRUE((*vm)->StartExport({}, [](std::string_view, std::string_view) {}));
  std::vector<std::byte> buf(64 << 10);
  // Without a stop: the keepalive breaks the stalled download.
  {
    auto disk = (*vm)->OpenDisk({}, 0);  // 6 MiB raw, 1 MiB downloads
    ASSERT_TRUE(disk) << disk.error().ToString();
    ASSERT_TRUE((*disk)->Read({}, buf));
    LibvirtdStalled stalled;
    const auto t0 = std::chrono::steady_clock::now();
    core::Result<size_t> n = size_t{1};
    uint64_t after_stall = 0;
    while (n && *n > 0) {
      n = (*disk)->Read({}, buf);
      after_stall += n ? *n : 0;
    }
    const double took = SecondsSince(t0);
    ASSERT_FALSE(n) << "the whole disk came from a stopped libvirtd";
    EXPECT_EQ(n.error().code, ErrorCode::kUnavailable) << n.error().ToString();
    EXPECT_LT(took, 8.0) << n.error().ToString();
    EXPECT_LE(after_stall, 1U << 20);  // at most the chunk libvirt had buffered
    std::printf("stalled download broken after %.1f s (%llu bytes were buffered): %s\n", took,
                static_cast<unsigned long long>(after_stall), n.error().message.c_str());
  }
  WaitAbandonedReturned();
  // With a stop: the read returns at once, the stream is aborted in the background.
  {
    auto disk = (*vm)->OpenDisk({}, 2);
    ASSERT_TRUE(disk) << disk.error().ToString();
    ASSERT_TRUE((*disk)->Read({}, buf));
    LibvirtdStalled stalled;
    std::stop_source stop;
    auto reader = std::async(std::launch::async, [&] {
      core::Result<size_t> n = size_t{1};
      while (n && *n > 0) {
        n = (*disk)->Read(stop.get_token(), buf);
      }
      return n;
    });
    std::this_thread::sleep_for(500ms);
    const auto t0 = std::chrono::steady_clock::now();
    stop.request_stop();
    auto n = reader.get();
    const double took = SecondsSince(t0);
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error().code, ErrorCode::kCancelled) << n.error().ToString();
    EXPECT_LT(took, 0.5);
    disk->reset();  // the abort runs on a thread of its own
    EXPECT_LT(SecondsSince(t0), 0.5);
    std::printf("cancelled stalled read returned after %.3f s\n", took);
  }
  WaitAbandonedReturned();
  ASSERT_TRUE((*vm)->FinishExport({}, false, "test"));
}

}  // namespace
}  // namespace vmimport::source::libvirt
