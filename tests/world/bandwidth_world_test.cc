// Shared bandwidth per source (issue 23, item 3) against the real peers: a VmwareSource with
// spec.bandwidthBytesPerSecond, two imports of it running at once (5 disk streams), and the
// controller's /metrics read by the test every 100 ms on its own clock: the bytes read from the
// source (checked at the end against the sizes of the disk files vcsim serves) move no faster
// than the cap (+10%) over the whole transfer, and the streams did overlap.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <thread>

#include "http/client.h"
#include "world/import_fixture.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::ManifestRows;
using testing::WorldVar;
namespace fs = std::filesystem;

class BandwidthWorldTest : public ImportFixture {
 protected:
  BandwidthWorldTest() : ImportFixture("bw") {}

  std::string Metrics() {
    const std::string log = ControllerLog();
    const auto at = log.find("msg=\"health and metrics listening\" port=");
    if (at == std::string::npos) {
      return "";
    }
    const int port = std::atoi(log.c_str() + log.find("port=", at) + 5);
    auto http = http::Client::Create({});
    auto r = (*http)->Do({}, {.url = "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
    return r && r->status == 200 ? r->body : "";
  }

  // The value of `name`{source="VmwareSource/<ns>/vcsim"}; -1 when absent.
  double Metric(const std::string& text, const std::string& name) {
    std::smatch m;
    const std::regex re(name + R"(\{source="VmwareSource/)" + ns_ + R"(/vcsim"\} ([0-9.e+]+))");
    return std::regex_search(text, m, re) ? std::stod(m[1]) : -1;
  }

  // Bytes vcsim serves for the VM's disks: the files of its datastore, as stored.
  uint64_t SourceBytes(const std::string& vm_path) {
    uint64_t total = 0;
    for (const auto& row : ManifestRows("disk")) {
      if (row[1] == vm_path) {
        total += fs::file_size(WorldVar("VCSIM_DATASTORE_DIR") + "/" + row[5].substr(9));
      }
    }
    return total;
  }
};

TEST_F(BandwidthWorldTest, TwoImportsOfOneSourceShareItsCap) {
  constexpr double kCap = 8e6;  // 8 MB/s for the whole source
  const uint64_t want = SourceBytes("/DC0/vm/vmi-multi") + SourceBytes("/DC0/vm/vmi-efi-secure");
  ASSERT_GT(want, 40'000'000u) << "too little data to measure a rate";
  CreateSecret("vsphere");
  CreateSource("vsphere", "vcsim", {{"bandwidthBytesPerSecond", static_cast<int64_t>(kCap)}});
  StartWorld();
  CreateImport("multi", {{"virtualMachineName", "vmi-multi"}});
  CreateImport("efi", {{"virtualMachineName", "vmi-efi-secure"}});

  struct Sample {
    std::chrono::steady_clock::time_point at;
    double bytes;
    double streams;
  };
  std::vector<Sample> samples;
  const auto deadline = std::chrono::steady_clock::now() + 240s;
  double cap_seen = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string text = Metrics();
    const double bytes = Metric(text, "vmimport_source_bandwidth_bytes");
    if (bytes >= 0) {
      samples.push_back({std::chrono::steady_clock::now(), bytes,
                         Metric(text, "vmimport_source_bandwidth_streams")});
      cap_seen = Metric(text, "vmimport_source_bandwidth_cap_bytes_per_second");
    }
    if (bytes >= static_cast<double>(want)) {
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(WaitImport("multi", "virtualMachineRunning"), "virtualMachineRunning");
  EXPECT_EQ(WaitImport("efi", "virtualMachineRunning"), "virtualMachineRunning");
  ExpectDisksMatch("multi", "/DC0/vm/vmi-multi");
  ExpectDisksMatch("efi", "/DC0/vm/vmi-efi-secure");
  ASSERT_GE(samples.size(), 2u) << ControllerLog();
  EXPECT_EQ(cap_seen, kCap);
  EXPECT_EQ(samples.back().bytes, static_cast<double>(want))
      << "the limiter's count is not the bytes vcsim served";

  // The rate over the transfer: from the last sample before any byte to the first with all.
  size_t first = 0;
  while (first + 1 < samples.size() && samples[first + 1].bytes == 0) {
    ++first;
  }
  const double seconds =
      std::chrono::duration<double>(samples.back().at - samples[first].at).count();
  const double rate = (samples.back().bytes - samples[first].bytes) / seconds;
  double peak_streams = 0;
  for (const auto& s : samples) {
    peak_streams = std::max(peak_streams, s.streams);
  }
  std::printf(
      "bandwidth_world: %.0f bytes in %.2f s: %.2f MB/s against a cap of %.2f MB/s, "
      "peak %g streams\n",
      samples.back().bytes, seconds, rate / 1e6, kCap / 1e6, peak_streams);
  EXPECT_LE(rate, kCap * 1.10) << "the two imports together went over the source's cap";
  EXPECT_GE(rate, kCap * 0.5) << "far under the cap: the test proves little";
  EXPECT_GE(peak_streams, 2) << "the imports never streamed at once";
}

}  // namespace
}  // namespace vmimport::kube
