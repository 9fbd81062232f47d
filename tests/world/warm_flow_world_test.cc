// Warm migration's precopy and cutover (issue 22) end to end below the reconciler, against the
// real libvirtd and qemu of the test world: LibvirtChangeTracker on a running domain of two
// qcow2 disks that a "guest" keeps writing into (through qemu's block layer) while the precopy
// engine (warm::NextRound) streams rounds to the writer (warm::Writer over TCP on 127.0.0.1, into
// sparse files) with the controller's client. A round cut short (the controller killed mid-way)
// is done again; after four rounds the cutover shuts the domain down, starts it paused and copies
// the last round; the files then equal the source disks as they were at shutdown (qemu-img
// convert -O raw, sha256). The cutover's data time and round 0's (what a cold copy of the same
// disks costs) are printed.

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/log.h"
#include "core/strings.h"
#include "source/libvirt/change_tracker.h"
#include "warm/precopy.h"
#include "warm/writer.h"
#include "warm/writer_client.h"
#include "world/libvirt_world.h"
#include "world/world_env.h"

namespace vmimport::warm {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr const char* kDomain = "vmi-lv-warmflow";
const std::vector<uint64_t> kSizes = {32 * kMiB, 16 * kMiB};
const std::string kToken = "warmflow-world-token-0123456789ab";

// A sink that fails at its n-th extent: the controller killed in the middle of a round.
class CutShort final : public RoundSink {
 public:
  CutShort(RoundSink& inner, int fail_at) : inner_(inner), fail_at_(fail_at) {}
  core::Status Begin(int round) override { return inner_.Begin(round); }
  core::Status Extent(uint32_t disk, uint64_t offset, uint64_t length, bool zero,
                      std::span<const std::byte> data) override {
    if (++extents_ == fail_at_) {
      return core::MakeError(core::ErrorCode::kUnavailable, "controller killed");
    }
    return inner_.Extent(disk, offset, length, zero, data);
  }
  core::Result<uint64_t> Commit(int round) override { return inner_.Commit(round); }

 private:
  RoundSink& inner_;
  int fail_at_;
  int extents_ = 0;
};

std::string Sha256Of(const std::string& path) { return testing::Sha256File(path); }

TEST(WarmFlowWorldTest, PrecopyWhileTheGuestWritesThenCutoverCopiesTheDisksAsAtShutdown) {
  testing::LvDestroyQcow2Domain(kDomain);  // an earlier failed run's
  ASSERT_TRUE(testing::LvStartQcow2Domain(
      kDomain, kSizes, {{{0, 4 * kMiB, 0x11}, {20 * kMiB, 2 * kMiB, 0x22}}, {{kMiB, kMiB, 0x33}}}));
  const std::string uid = "5a1e0022-f10w-4000-8000-" + std::to_string(100000000000 + getpid());
  auto tracker = source::libvirt::MakeLibvirtChangeTracker(testing::LvConfig());
  ASSERT_TRUE(tracker->CheckCapable(kDomain)) << tracker->CheckCapable(kDomain).error().ToString();

  // The writer, as its Pod runs it, into sparse files.
  const fs::path dir = fs::temp_directory_path() / ("warm-flow-" + std::to_string(getpid()));
  fs::create_directories(dir);
  WriterOptions wo;
  wo.token = kToken;
  for (size_t i = 0; i < kSizes.size(); ++i) {
    wo.disks.push_back({(dir / ("target" + std::to_string(i))).string(), kSizes[i]});
  }
  core::Logger quiet(std::make_shared<core::StderrSink>(), core::LogLevel::kWarn,
                     core::LogFormat::kLogfmt);
  auto writer = Writer::Open(wo, quiet);
  ASSERT_TRUE(writer) << writer.error().ToString();
  std::atomic<uint16_t> port{0};
  std::jthread server([&](std::stop_token stop) {
    EXPECT_TRUE(ServeWriter(stop, **writer, "127.0.0.1", 0, port, quiet));
  });
  while (port.load() == 0) {
    std::this_thread::sleep_for(1ms);
  }
  auto connect = [&] {
    auto c = WriterClient::Connect("127.0.0.1", port.load(), kToken, 60s);
    EXPECT_TRUE(c) << c.error().ToString();
    return c ? std::move(*c) : nullptr;
  };

  // The guest: 64 KiB writes at random places of both disks until the cutover.
  std::atomic<int> guest_writes{0};
  std::jthread guest([&](std::stop_token stop) {
    std::mt19937 rng(7);
    while (!stop.stop_requested()) {
      const int disk = static_cast<int>(rng() % 2);
      const uint64_t blocks = kSizes[static_cast<size_t>(disk)] / (64 * 1024);
      const uint64_t offset = (rng() % blocks) * 64 * 1024;
      if (testing::LvGuestWrite(kDomain, disk,
                                {offset, 64 * 1024, static_cast<unsigned>(0x40 + rng() % 0x40)})) {
        ++guest_writes;
      }
      std::this_thread::sleep_for(50ms);
    }
  });

  core::SystemClock clock;
  std::vector<RoundRecord> recorded;
  auto client = connect();
  ASSERT_TRUE(client);
  auto print = [&](const RoundRecord& r) {
    auto estimate = EstimateDowntimeSeconds(recorded, 0);
    std::printf(
        "warm round %d: %llu bytes changed, %llu moved, %.3f s; estimate of the data part of a "
        "cutover now %.3f s; guest writes so far %d\n",
        r.number, static_cast<unsigned long long>(r.bytes_changed),
        static_cast<unsigned long long>(r.bytes_moved), r.seconds, estimate.value_or(-1),
        guest_writes.load());
  };
  for (int n = 0; n < 4; ++n) {
    if (n == 2) {
      // The controller killed in the middle of round 2: nothing recorded, the round is begun
      // again by the next process (a new session supersedes the old one).
      CutShort cut(*client, 3);
      auto r = NextRound({}, *tracker, kDomain, uid, recorded, cut, clock);
      ASSERT_FALSE(r);
      client = connect();
      ASSERT_TRUE(client);
    }
    auto r = NextRound({}, *tracker, kDomain, uid, recorded, *client, clock);
    ASSERT_TRUE(r) << r.error().ToString();
    recorded.push_back(*r);
    print(*r);
    std::this_thread::sleep_for(1s);  // the precopy interval, short
  }
  EXPECT_GT(recorded[1].bytes_changed, 0u) << "the guest wrote during precopy";
  EXPECT_LT(recorded[3].bytes_changed, recorded[0].bytes_changed);

  // Cutover: the guest stops and the domain is shut down (qemu flushes), started paused (its
  // vCPUs never run; a backup needs qemu), the last round, RemoveAll.
  guest.request_stop();
  guest.join();
  const auto off_begins = std::chrono::steady_clock::now();
  std::string out;
  ASSERT_EQ(testing::Virsh(std::string("destroy --graceful ") + kDomain, &out), 0) << out;
  ASSERT_EQ(testing::Virsh(std::string("start --paused ") + kDomain, &out), 0) << out;
  auto last = NextRound({}, *tracker, kDomain, uid, recorded, *client, clock);
  ASSERT_TRUE(last) << last.error().ToString();
  recorded.push_back(*last);
  print(*last);
  ASSERT_TRUE(tracker->RemoveAll(kDomain, uid));
  const double cutover_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - off_begins).count();
  std::string checkpoints;
  testing::Virsh(std::string("checkpoint-list --name ") + kDomain, &checkpoints);
  EXPECT_EQ(std::string(core::TrimSpace(checkpoints)), "");
  std::printf(
      "warm_cutover_data_seconds %.3f (shutdown, paused start, last round of %llu bytes, "
      "RemoveAll)\ncold_copy_seconds %.3f (round 0: the same disks whole)\nratio %.3f\n",
      cutover_s, static_cast<unsigned long long>(last->bytes_changed), recorded[0].seconds,
      recorded[0].seconds > 0 ? cutover_s / recorded[0].seconds : 0.0);

  // The source as it was at shutdown (the paused domain ran no vCPU) equals the targets.
  ASSERT_EQ(testing::Virsh(std::string("destroy --graceful ") + kDomain, &out), 0) << out;
  for (size_t i = 0; i < kSizes.size(); ++i) {
    const std::string raw = (dir / ("source" + std::to_string(i) + ".raw")).string();
    ASSERT_EQ(testing::RunCommand("qemu-img convert -f qcow2 -O raw '" +
                                      testing::LvQcow2DiskPath(kDomain, static_cast<int>(i)) +
                                      "' '" + raw + "' 2>&1",
                                  &out),
              0)
        << out;
    EXPECT_EQ(Sha256Of(raw), Sha256Of(wo.disks[i].path)) << "disk " << i;
  }
  EXPECT_EQ((*writer)->LastCommittedRound(), 4);
  client.reset();
  server.request_stop();
  server.join();
  testing::LvDestroyQcow2Domain(kDomain);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace vmimport::warm
