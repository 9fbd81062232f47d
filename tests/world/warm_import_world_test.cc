// Warm migration end to end (issue 22) on the world's real node and the real libvirtd/qemu of
// tests/world/libvirt, and the warm/cold downtime benchmark. The fixture is VolumeWorldTest
// (volume_fixture.h) with a running libvirt domain and a LibvirtSource.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "build_paths.h"
#include "core/clock.h"
#include "kube/client.h"
#include "world/import_fixture.h"
#include "world/libvirt_world.h"
#include "world/process.h"
#include "world/volume_fixture.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace testing_volume;  // NOLINT(google-build-using-namespace): the fixture's own
                                 // (its usings: Eventually, RunCommand, WorldVar, fs, ...)

// Warm migration end to end (issue 22): a running libvirt domain with two qcow2 disks that the
// "guest" keeps writing into, imported with spec.migrationMode: warm into filesystem PVCs of the
// node that the controller's writer Pod (the controller's image, on the node's kubelet) writes;
// precopy rounds until the operator sets a downtime budget, then the cutover (graceful shutdown,
// the last round with the domain started paused, no checkpoint left), the VM on the volumes.
// The volumes equal the source disks as at shutdown; the downtime is printed.
class WarmImportWorldTest : public VolumeWorldTest {
 protected:
  static constexpr const char* kDomain = "vmi-warm-e2e";
  void SetUp() override {
    VolumeWorldTest::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    ASSERT_FALSE(testing::LvVar("LIBVIRT_URI").empty()) << "tools/world.sh libvirt up first";
    testing::LvDestroyQcow2Domain(kDomain);
    MakeDomain();
    if (HasFatalFailure()) {
      return;
    }
    CreateSecret("kvm", testing::LvSecretData());
    CreateLibvirtSource("kvm", testing::LvVar("LIBVIRT_URI"), "kvm");
  }
  void TearDown() override {
    VolumeWorldTest::TearDown();
    testing::LvDestroyQcow2Domain(kDomain);
  }
  //! The running domain kDomain with two qcow2 disks (32 and 16 MiB, some of it written).
  virtual void MakeDomain() {
    ASSERT_TRUE(testing::LvStartQcow2Domain(
        kDomain, {32 << 20, 16 << 20},
        {{{0, 4 << 20, 1}, {20 << 20, 1 << 20, 2}}, {{1 << 20, 2 << 20, 3}}}));
  }
  Json Warm(const std::string& name) {
    return GetImport(name).value("status", Json::object()).value("warm", Json::object());
  }
  size_t RoundsOf(const std::string& name) {
    return Warm(name).value("rounds", Json::array()).size();
  }
  void StartWarmImport(const std::string& name, int graceful_seconds = 5) {
    StartSim();
    StartVolumeController({"--writer-image", "world.local/vm-import-controller:world"});
    CreateVolumeImport(name, {{"virtualMachineName", kDomain},
                              {"sourceCluster", SourceRef("kvm", "LibvirtSource")},
                              {"storageClass", fs_class_},
                              {"migrationMode", "warm"},
                              {"precopyIntervalSeconds", 1},
                              {"gracefulShutdownTimeoutSeconds", graceful_seconds}});
  }
  //! The guest writes `count` times 64 KiB (the n-th write's pattern and place derive from n).
  static void GuestWrites(unsigned first, unsigned count) {
    for (unsigned n = first; n < first + count; ++n) {
      (void)testing::LvGuestWrite(kDomain, static_cast<int>(n % 2),
                                  {.offset = (uint64_t{n} * 3 % 200) * 65536 + 512,
                                   .length = 65536,
                                   .pattern = 10 + n % 200});
    }
  }
  //! No checkpoint and no backup job of ours is left on the source.
  static void ExpectNothingOfOursOnTheSource() {
    std::string out;
    testing::Virsh(std::string("checkpoint-list ") + kDomain + " --name", &out);
    EXPECT_EQ(out.find("vmimport-"), std::string::npos) << out;
    testing::Virsh(std::string("domjobinfo ") + kDomain, &out);
    EXPECT_EQ(out.find("Backup"), std::string::npos) << out;
  }
  //! The reasons of the namespace's Events.
  std::set<std::string> EventReasons() {
    std::set<std::string> out;
    if (auto events = client_->List({}, kEvents, ns_)) {
      for (const Json& e : (*events)["items"]) {
        out.insert(e.value("reason", ""));
      }
    }
    return out;
  }
  //! Rounds 0..n-1 in order: none lost, none recorded twice.
  void ExpectRoundsInOrder(const std::string& name) {
    const Json rounds = Warm(name).value("rounds", Json::array());
    for (size_t i = 0; i < rounds.size(); ++i) {
      EXPECT_EQ(rounds[i].value("round", -1), static_cast<int>(i)) << rounds.dump();
    }
  }
  //! Every volume of the import equals its source disk (as at shutdown: the domain is off).
  void ExpectVolumesEqualTheSourceDisks(const std::string& name) {
    const Json warm = Warm(name);
    const Json disks = GetImport(name)["status"]["diskImportStatus"];
    ASSERT_FALSE(disks.empty());
    for (size_t i = 0; i < disks.size(); ++i) {
      std::string out;
      const std::string raw = (dir_ / ("src-" + std::to_string(i) + ".raw")).string();
      ASSERT_EQ(RunCommand("qemu-img convert -f qcow2 -O raw " +
                               Quote(testing::LvQcow2DiskPath(kDomain, static_cast<int>(i))) + " " +
                               Quote(raw),
                           &out),
                0)
          << out;
      auto pvc = client_->Get({}, kPvcs, ns_, warm["volumes"][i].get<std::string>());
      ASSERT_TRUE(pvc);
      auto pv = client_->Get({}, kPvs, "", (*pvc)["spec"].value("volumeName", ""));
      ASSERT_TRUE(pv);
      const std::string file = (*pv)["spec"]["local"].value("path", "") + "/disk.img";
      const uint64_t size = disks[i].value("diskSize", uint64_t{0});
      EXPECT_EQ(HeadSha256(file, size), HeadSha256(raw, size)) << "disk " << i;
    }
  }
};

// A controller killed (SIGKILL) in precopy and again in the cutover resumes without losing a
// round and without corrupting the target: the rounds stay 0..n-1, the volumes equal the source.
TEST_F(WarmImportWorldTest, ControllerKilledInPrecopyAndInCutoverResumes) {
  StartWarmImport("killed");
  ASSERT_EQ(WaitImport("killed", "precopy", 90s), "precopy") << GetImport("killed").dump();
  ASSERT_TRUE(Eventually([&] { return RoundsOf("killed") >= 1; }, 120s))
      << GetImport("killed").dump() << ControllerLog();
  GuestWrites(0, 8);
  // Round 1 starts a second after round 0: the kill lands in it or just before it.
  std::this_thread::sleep_for(1200ms);
  const size_t before = RoundsOf("killed");
  controller_->Signal(SIGKILL);
  controller_->Wait(10s);
  GuestWrites(8, 8);
  StartVolumeController({"--writer-image", "world.local/vm-import-controller:world"});
  ASSERT_TRUE(Eventually([&] { return RoundsOf("killed") >= before + 2; }, 120s))
      << GetImport("killed").dump() << ControllerLog();
  ExpectRoundsInOrder("killed");
  // Somebody deletes our checkpoints on the source (`virsh checkpoint-delete`): the next round
  // finds its base gone and precopy begins again at round 0 (a round in flight holds its
  // checkpoint, so the deletion is tried until the restart is seen).
  ASSERT_TRUE(Eventually(
      [&] {
        std::string names;
        testing::Virsh(std::string("checkpoint-list ") + kDomain + " --name", &names);
        std::istringstream lines(names);
        for (std::string name; std::getline(lines, name);) {
          if (name.rfind("vmimport-", 0) == 0) {
            std::string ignored;
            testing::Virsh(std::string("checkpoint-delete ") + kDomain + " " + name, &ignored);
          }
        }
        return EventReasons().count("PrecopyRestarted") != 0;
      },
      60s))
      << GetImport("killed").dump() << ControllerLog();
  ASSERT_TRUE(Eventually([&] { return RoundsOf("killed") >= 2; }, 120s))
      << GetImport("killed").dump() << ControllerLog();
  GuestWrites(16, 8);
  ASSERT_TRUE(client_->MergePatch({}, kImports, ns_, "killed",
                                  {{"spec", {{"downtimeBudgetSeconds", 600}}}}));
  ASSERT_EQ(WaitImport("killed", "cutover", 60s), "cutover") << GetImport("killed").dump();
  // Killed in the cutover: during the graceful shutdown, or the last round.
  std::this_thread::sleep_for(1500ms);
  const Json at_kill = Warm("killed");
  controller_->Signal(SIGKILL);
  controller_->Wait(10s);
  StartVolumeController({"--writer-image", "world.local/vm-import-controller:world"});
  ASSERT_EQ(WaitImport("killed", "virtualMachineRunning", 240s), "virtualMachineRunning")
      << GetImport("killed").dump() << ControllerLog();
  ExpectRoundsInOrder("killed");
  ExpectNothingOfOursOnTheSource();
  ExpectVolumesEqualTheSourceDisks("killed");
  const Json warm = Warm("killed");
  EXPECT_EQ(warm.value("finalRound", -1), static_cast<int>(warm["rounds"].size()) - 1);
  std::cerr << "killed in precopy after " << before << " rounds and in the cutover at "
            << at_kill.dump() << "; " << warm["rounds"].size() << " rounds, downtime "
            << warm.value("downtimeSeconds", 0.0) << " s\n";
}

// Cancel in precopy: the source keeps running with nothing of ours on it, and the writer Pod,
// its Secret and the volumes are gone.
TEST_F(WarmImportWorldTest, CancelInPrecopyLeavesTheSourceRunningAndNothingOfOurs) {
  StartWarmImport("cancel");
  ASSERT_TRUE(Eventually([&] { return RoundsOf("cancel") >= 1; }, 120s))
      << GetImport("cancel").dump() << ControllerLog();
  GuestWrites(0, 4);
  const Json warm = Warm("cancel");
  ASSERT_TRUE(client_->Delete({}, kImports, ns_, "cancel"));
  ASSERT_TRUE(Eventually([&] { return !client_->Get({}, kImports, ns_, "cancel"); }, 60s))
      << GetImport("cancel").dump() << ControllerLog();
  EXPECT_EQ(testing::DomState(kDomain), "running");
  ExpectNothingOfOursOnTheSource();
  EXPECT_TRUE(Eventually(
      [&] {
        return !client_->Get({}, kPods, ns_, warm.value("writerPod", "")) &&
               !client_->Get({}, kSecrets, ns_, warm.value("writerPod", "")) &&
               !client_->Get({}, kPvcs, ns_, warm["volumes"][0].get<std::string>()) &&
               !client_->Get({}, kPvcs, ns_, warm["volumes"][1].get<std::string>());
      },
      60s))
      << "the writer Pod, its Secret or a volume is left";
  // The guest still runs and writes.
  EXPECT_TRUE(testing::LvGuestWrite(kDomain, 0, {.offset = 0, .length = 4096, .pattern = 7}));
}

// A VM that cannot be migrated warm is refused in preflight with the reason, before anything
// touches it: vmi-lv-multi of the libvirt world runs with a raw SATA disk (no dirty bitmaps).
TEST_F(WarmImportWorldTest, ARawDiskIsRefusedInPreflightWithTheReason) {
  StartSim();
  StartVolumeController({"--writer-image", "world.local/vm-import-controller:world"});
  ASSERT_EQ(testing::DomState("vmi-lv-multi"), "running");
  CreateVolumeImport("raw", {{"virtualMachineName", "vmi-lv-multi"},
                             {"sourceCluster", SourceRef("kvm", "LibvirtSource")},
                             {"storageClass", fs_class_},
                             {"migrationMode", "warm"}});
  ASSERT_EQ(WaitImport("raw", "virtualMachineImportInvalid", 60s), "virtualMachineImportInvalid")
      << GetImport("raw").dump();
  const std::string status = GetImport("raw")["status"].dump();
  EXPECT_NE(status.find("WarmNotPossible"), std::string::npos) << status;
  EXPECT_NE(status.find("disk sda"), std::string::npos) << status;
  EXPECT_NE(status.find("libvirt tracks changes only in qcow2 images"), std::string::npos)
      << status;
  EXPECT_NE(status.find("spec.warmFallbackToCold"), std::string::npos) << status;
  EXPECT_EQ(testing::DomState("vmi-lv-multi"), "running");  // never powered off
  std::string out;
  testing::Virsh("checkpoint-list vmi-lv-multi --name", &out);
  EXPECT_EQ(out.find("vmimport-"), std::string::npos) << out;
  EXPECT_TRUE(Items(kPvcs).empty());
}

// A real guest OS writing while it is copied: the Debian guest bios-virtio of
// tests/world/guest (seeded by the libvirt-guests fixture), its disk copied into a new qcow2
// domain whose boot loader's command line gains a systemd.run= unit: a shell loop in the guest
// that rewrites a 512 KiB file of random bytes with fsync every 200 ms. The guest boots under
// TCG and starts writing (it says so on its serial console); precopy rounds run while it writes;
// the budget is set, the cutover shuts the guest down (the image does not handle ACPI's power
// button, so after gracefulShutdownTimeoutSeconds the domain is powered off hard, as a cold
// import does), and the volume equals the guest's disk as it was when it went off.
class WarmGuestWorldTest : public WarmImportWorldTest {
 protected:
  static constexpr const char* kWriter =
      "/bin/sh -c 'echo VMIMPORT-WRITER-STARTED >/dev/ttyS0; while :; do dd if=/dev/urandom "
      "of=/var/tmp/vmimport-writes bs=64k count=8 conv=fsync 2>/dev/null; sleep 0.2; done'";
  std::string Console() const { return testing::LvVar("LIBVIRT_POOL_DIR") + "/../warm-guest.log"; }
  void MakeDomain() override {
    const std::string seeded = testing::LvVar("LIBVIRT_POOL_DIR") + "/guest-bios-virtio.qcow2";
    ASSERT_TRUE(fs::exists(seeded)) << seeded << ": run the libvirt-guests fixture first";
    const std::string raw = (dir_ / "guest.raw").string();
    const std::string cfg = (dir_ / "syslinux.cfg").string();
    const std::string fat = Quote(raw) + "@@1048576";  // the boot partition starts at 1 MiB
    std::string out;
    ASSERT_EQ(RunCommand("qemu-img convert -q -f qcow2 -O raw " + Quote(seeded) + " " + Quote(raw) +
                             " && mcopy -n -i " + fat + " ::/syslinux.cfg " + Quote(cfg) + " 2>&1",
                         &out),
              0)
        << out;
    std::string text = ReadFile(cfg);
    const size_t append = text.find("APPEND ");
    ASSERT_NE(append, std::string::npos) << text;
    const size_t eol = text.find('\n', append);
    text.insert(eol == std::string::npos ? text.size() : eol,
                std::string(" systemd.run=\"") + kWriter +
                    "\" systemd.run_success_action=none systemd.run_failure_action=none");
    std::ofstream(cfg, std::ios::trunc) << text;
    fs::remove(Console());
    ASSERT_EQ(RunCommand("mcopy -o -i " + fat + " " + Quote(cfg) + " ::/syslinux.cfg && " +
                             "qemu-img convert -q -f raw -O qcow2 " + Quote(raw) + " " +
                             Quote(testing::LvQcow2DiskPath(kDomain, 0)) + " && rm -f " +
                             Quote(raw) + " 2>&1",
                         &out),
              0)
        << out;
    ASSERT_EQ(testing::Virsh("pool-refresh " + testing::LvVar("LIBVIRT_POOL"), &out), 0) << out;
    const std::string xml_path = testing::LvVar("LIBVIRT_POOL_DIR") + "/../warm-guest.xml";
    std::ofstream(xml_path, std::ios::trunc)
        << "<domain type='qemu'><name>" << kDomain
        << "</name><memory unit='MiB'>512</memory><vcpu>1</vcpu><os><type arch='x86_64' "
           "machine='pc'>hvm</type></os><features><acpi/></features><devices><disk type='file' "
           "device='disk'><driver name='qemu' type='qcow2'/><source file='"
        << testing::LvQcow2DiskPath(kDomain, 0)
        << "'/><target dev='vda' bus='virtio'/></disk><serial type='file'><source path='"
        << Console()
        << "'/><target port='0'/></serial><video><model type='none'/></video>"
           "<memballoon model='none'/></devices></domain>";
    ASSERT_EQ(testing::Virsh("define " + Quote(xml_path), &out), 0) << out;
    fs::remove(xml_path);
    ASSERT_EQ(testing::Virsh(std::string("start ") + kDomain, &out), 0) << out;
  }
};

TEST_F(WarmGuestWorldTest, ARealGuestWritingAFileIsCopiedAsAtShutdown) {
  const auto t0 = std::chrono::steady_clock::now();
  // (The image has no ACPI power-button handling: the shutdown ends in a hard power-off.)
  StartWarmImport("guest", 10);
  ASSERT_TRUE(Eventually(
      [&] { return ReadFile(Console()).find("VMIMPORT-WRITER-STARTED") != std::string::npos; },
      600s))
      << "the guest's writer never started; its console:\n"
      << ReadFile(Console());
  const double booted =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(Eventually([&] { return RoundsOf("guest") >= 1; }, 300s))
      << GetImport("guest").dump() << ControllerLog();
  // At least three rounds find the guest's writes (under TCG its loop is slow: some rounds of a
  // second find nothing).
  const size_t writing_from = RoundsOf("guest");
  auto rounds_with_writes = [&] {
    const Json rounds = Warm("guest").value("rounds", Json::array());
    size_t n = 0;
    for (size_t i = writing_from; i < rounds.size(); ++i) {
      n += rounds[i].value("bytesChanged", uint64_t{0}) >= (uint64_t{512} << 10) ? 1U : 0U;
    }
    return n;
  };
  ASSERT_TRUE(Eventually([&] { return rounds_with_writes() >= 3; }, 300s))
      << GetImport("guest").dump() << ControllerLog();
  EXPECT_EQ(ImportStatus("guest"), "precopy");  // no budget, no cutoverTime: precopy goes on
  // What an operator sees: `kubectl vmimport watch` and the printer columns (the real kubectl).
  std::string out;
  ASSERT_EQ(RunCommand(Quote(vmimport::build_paths::CliBinary()) + " --kubeconfig " +
                           Quote(kubeconfig_) + " -n " + ns_ + " watch --once guest 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("precopy"), std::string::npos) << out;
  EXPECT_NE(out.find("round 2"), std::string::npos) << out;
  EXPECT_NE(out.find("no cutover yet: no spec.cutoverTime and no spec.downtimeBudgetSeconds"),
            std::string::npos)
      << out;
  ASSERT_EQ(RunCommand(Quote(WorldVar("KUBECTL")) + " --kubeconfig " + Quote(kubeconfig_) + " -n " +
                           ns_ + " get virtualmachineimports guest -o wide 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("ROUND"), std::string::npos) << out;
  EXPECT_NE(out.find("warm "), std::string::npos) << out;  // the Mode column
  ASSERT_TRUE(client_->MergePatch({}, kImports, ns_, "guest",
                                  {{"spec", {{"downtimeBudgetSeconds", 600}}}}));
  ASSERT_EQ(WaitImport("guest", "virtualMachineRunning", 300s), "virtualMachineRunning")
      << GetImport("guest").dump() << ControllerLog();
  const Json warm = Warm("guest");
  ExpectRoundsInOrder("guest");
  ExpectNothingOfOursOnTheSource();
  ExpectVolumesEqualTheSourceDisks("guest");
  EXPECT_EQ(warm.value("finalRound", -1), static_cast<int>(warm["rounds"].size()) - 1);
  EXPECT_FALSE(warm.value("cutoverReason", "").empty());
  ASSERT_TRUE(warm.contains("downtimeSeconds")) << warm.dump();
  ASSERT_EQ(RunCommand(Quote(vmimport::build_paths::CliBinary()) + " --kubeconfig " +
                           Quote(kubeconfig_) + " -n " + ns_ + " watch --once guest 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("downtime (source off to target running)"), std::string::npos) << out;
  std::cerr << "real guest: writing after " << booted << " s; " << warm["rounds"].size()
            << " rounds (" << writing_from << " before the writer started), downtime "
            << warm.value("downtimeSeconds", 0.0) << " s; last rounds "
            << Json(std::vector<Json>(warm["rounds"].end() - 4, warm["rounds"].end())).dump()
            << "; test "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s\n";
}

// The warm/cold downtime benchmark (issue 22), not part of CI (minutes of copying). The same
// domain (two qcow2 disks of random bytes, VMIMPORT_WARM_BENCH_MIB in all, default 512, split
// 3:1), the same guest writes (64 KiB every 100 ms while the source runs), imported warm and
// then cold (the domain started again), both into filesystem volumes on the node. Downtime is
// measured the same way for both, from outside: the first `virsh domstate` (polled every
// 100 ms) that is not "running" to the import's virtualMachineRunning transition. Prints
// "name value unit" lines. Run with the fixtures up:
//   ctest --test-dir build/ci -R '^warm\.bench$' -V
class WarmDowntimeBench : public WarmImportWorldTest {
 protected:
  static uint64_t TotalBytes() {
    const char* mib = std::getenv("VMIMPORT_WARM_BENCH_MIB");
    return (mib != nullptr ? std::stoull(mib) : 512) << 20;
  }
  void MakeDomain() override {
    const uint64_t total = TotalBytes();
    sizes_ = {total / 4 * 3, total / 4};
    ASSERT_TRUE(testing::LvStartQcow2Domain(kDomain, sizes_, {}));
    std::string out;
    ASSERT_EQ(testing::Virsh(std::string("destroy ") + kDomain, &out), 0) << out;
    for (size_t i = 0; i < sizes_.size(); ++i) {
      const std::string raw = (dir_ / "random.raw").string();
      ASSERT_EQ(
          RunCommand("head -c " + std::to_string(sizes_[i]) + " /dev/urandom > " + Quote(raw) +
                         " && qemu-img convert -q -f raw -O qcow2 " + Quote(raw) + " " +
                         Quote(testing::LvQcow2DiskPath(kDomain, static_cast<int>(i))) +
                         " && rm -f " + Quote(raw),
                     &out),
          0)
          << out;
    }
    ASSERT_EQ(testing::Virsh(std::string("start ") + kDomain, &out), 0) << out;
  }
  //! Polls the domain's state every 100 ms until it is not running: that moment.
  std::jthread WatchSourceOff(std::chrono::system_clock::time_point& off) {
    return std::jthread([&off](std::stop_token stop) {
      while (!stop.stop_requested()) {
        if (testing::DomState(kDomain) != "running") {
          off = std::chrono::system_clock::now();
          return;
        }
        std::this_thread::sleep_for(100ms);
      }
    });
  }
  std::chrono::system_clock::time_point RunningAt(const std::string& name) {
    std::chrono::system_clock::time_point t{};
    for (const Json& p : GetImport(name)["status"].value("phaseTransitions", Json::array())) {
      if (p.value("phase", "") == "virtualMachineRunning") {
        core::ParseRfc3339(p.value("time", ""), t);
      }
    }
    return t;
  }
  std::vector<uint64_t> sizes_;
};

TEST_F(WarmDowntimeBench, WarmAndColdDowntimeOfTheSameVm) {
  StartWarmImport("warm");
  std::chrono::system_clock::time_point warm_off{};
  std::jthread guest([&](std::stop_token writing) {
    for (unsigned n = 0; !writing.stop_requested(); ++n) {
      GuestWrites(n, 1);
      std::this_thread::sleep_for(100ms);
    }
  });
  ASSERT_TRUE(Eventually([&] { return RoundsOf("warm") >= 3; }, 600s))
      << GetImport("warm").dump() << ControllerLog();
  guest.request_stop();
  guest.join();
  std::jthread watch_warm = WatchSourceOff(warm_off);
  ASSERT_TRUE(
      client_->MergePatch({}, kImports, ns_, "warm", {{"spec", {{"downtimeBudgetSeconds", 600}}}}));
  ASSERT_EQ(WaitImport("warm", "virtualMachineRunning", 600s), "virtualMachineRunning")
      << GetImport("warm").dump() << ControllerLog();
  watch_warm.join();
  const Json warm = Warm("warm");
  ExpectVolumesEqualTheSourceDisks("warm");

  // Cold: the same domain running again, the same writes before the import, a VM of another name.
  std::string out;
  ASSERT_EQ(testing::Virsh(std::string("start ") + kDomain, &out), 0) << out;
  GuestWrites(0, static_cast<unsigned>(warm["rounds"].size()) * 10);
  std::chrono::system_clock::time_point cold_off{};
  std::jthread watch_cold = WatchSourceOff(cold_off);
  CreateVolumeImport("cold", {{"virtualMachineName", kDomain},
                              {"sourceCluster", SourceRef("kvm", "LibvirtSource")},
                              {"storageClass", fs_class_},
                              {"targetVirtualMachineName", "cold-copy"},
                              {"gracefulShutdownTimeoutSeconds", 5}});
  ASSERT_EQ(WaitImport("cold", "virtualMachineRunning", 900s), "virtualMachineRunning")
      << GetImport("cold").dump() << ControllerLog();
  watch_cold.join();

  const double warm_s = std::chrono::duration<double>(RunningAt("warm") - warm_off).count();
  const double cold_s = std::chrono::duration<double>(RunningAt("cold") - cold_off).count();
  const double mib = static_cast<double>(sizes_[0] + sizes_[1]) / (1 << 20);
  std::cout << "warm_bench_disk_MiB " << mib << " MiB\n"
            << "warm_bench_guest_write_KiBps 640 KiB/s\n"
            << "warm_precopy_rounds " << warm["rounds"].size() << " rounds\n"
            << "warm_downtime_seconds " << warm_s << " s\n"
            << "warm_downtime_status_seconds " << warm.value("downtimeSeconds", 0.0)
            << " s (status.warm.downtimeSeconds: source off to target running)\n"
            << "cold_downtime_seconds " << cold_s << " s\n"
            << "cold_vs_warm_downtime_ratio " << cold_s / warm_s << " x\n";
  EXPECT_GT(warm_s, 0);
  EXPECT_GT(cold_s, 0);
}

}  // namespace
}  // namespace vmimport::kube
