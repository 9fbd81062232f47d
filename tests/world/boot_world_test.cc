// Imports that boot (issue 17): real Debian guests (tests/world/guest/guest-world.sh), seeded
// into vcsim as vSphere would hold them (vcsim-world.sh seed-guests: guestId, firmware, the
// disk's controller, the NIC's adapter and MAC), imported by the controller binary and booted by
// the Harvester simulator's boot check from the VirtualMachine the controller made (qemu, TCG).
// The guest prints on its serial console its NICs' MACs and whether its network (configured by
// MAC) came up. Needs the ctest fixtures "world" and "guests" (guests.up seeds them).
// OpenstackBootWorldTest: the same guests seeded into the real OpenStack peer
// (openstack-world.sh seed-guests: image properties, bootable volumes, ports with the guests'
// MACs); ctest runs it as openstack.boot, with the fixtures openstack and openstack_guests.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "build_paths.h"
#include "kube/client.h"
#include "world/import_fixture.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::Eventually;
using testing::PeerVar;
using testing::ReadFile;
using testing::RunCommand;
namespace fs = std::filesystem;

const Resource kVmis{"kubevirt.io", "v1", "virtualmachineinstances", true};
constexpr const char* kBootAnnotation = "harvester-sim.vm-import.test/boot";
// Budget per boot under TCG (2 shared cores, up to 3 guests at once): a single guest took ~5 min
// to its marker on this machine with a load average of 13-19 (other builds).
constexpr auto kBootBudget = 600s;

//! One row of the guests table (guest-world.sh).
struct Guest {
  std::string variant, firmware, drivers, mac, nic_model, disk_bus, guest_id;
  std::string raw_sha256;
  fs::path raw;
  fs::path ova;  //!< next to the raw image
};

std::map<std::string, Guest> Guests() {
  std::string path;
  std::map<std::string, Guest> out;
  if (RunCommand(std::string(vmimport::build_paths::SourceDir()) +
                     "/tests/world/guest/guest-world.sh path",
                 &path) != 0) {
    ADD_FAILURE() << "no guests built: run tests/world/vcsim/vcsim-world.sh seed-guests (the "
                     "ctest fixture guests.up)";
    return out;
  }
  while (!path.empty() && path.back() == '\n') {
    path.pop_back();
  }
  std::istringstream lines(ReadFile(path));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    std::vector<std::string> f;
    std::istringstream cols(line);
    std::string c;
    while (std::getline(cols, c, '\t')) {
      f.push_back(c);
    }
    if (f.size() >= 15) {
      fs::path ova = fs::path(f[11]).replace_extension(".ova");
      out[f[0]] = Guest{f[0], f[1], f[3], f[4], f[5], f[6], f[7], f[13], f[11], ova};
    }
  }
  return out;
}

class BootWorldTest : public ImportFixture {
 protected:
  BootWorldTest() : ImportFixture("boot") {}

  void SetUp() override {
    ImportFixture::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    guests_ = Guests();
    ASSERT_EQ(guests_.size(), 3U);
    boot_dir_ = dir_ / "boot";
    fs::create_directories(boot_dir_);
    CreateSecret("vsphere");
    CreateSource();
  }

  void StartWithBootCheck() {
    StartWorld(
        {"--boot-dir", boot_dir_.string(), "--boot-timeout", std::to_string(kBootBudget.count())});
  }

  std::string VmName(const std::string& variant) { return "vmi-guest-" + variant; }

  //! The boot check's outcome on the VM (annotation), "" until there is one.
  std::string BootOutcome(const std::string& vm) {
    auto got = client_->Get({}, kVms, ns_, vm);
    return got ? (*got)["metadata"].value("annotations", Json::object()).value(kBootAnnotation, "")
               : "";
  }

  std::string WaitBoot(const std::string& vm) {
    std::string outcome;
    Eventually(
        [&] {
          outcome = BootOutcome(vm);
          return !outcome.empty();
        },
        kBootBudget + 300s, 1s);
    return outcome;
  }

  std::string Console(const std::string& vm) {
    return ReadFile(boot_dir_ / (ns_ + "_" + vm + ".serial"));
  }

  //! Events in ns_ with `reason`, their messages joined.
  std::string EventMessages(const std::string& reason) {
    std::string out;
    auto list = client_->List({}, kEvents, ns_);
    if (list) {
      for (const Json& e : (*list)["items"]) {
        if (e.value("reason", "") == reason) {
          out += e.value("message", "") + "\n";
        }
      }
    }
    return out;
  }

  Json TemplateDomain(const std::string& vm) {
    auto got = client_->Get({}, kVms, ns_, vm);
    return got ? (*got)["spec"]["template"]["spec"]["domain"] : Json::object();
  }

  //! What every boot test checks of a guest that booted: the console shows the variant, the
  //! source NIC's MAC and the network up; the VM has the devices the guest can boot with.
  void ExpectBootedWithNetwork(const Guest& g) {
    const std::string vm = VmName(g.variant);
    EXPECT_EQ(BootOutcome(vm), "booted") << Console(vm);
    const std::string console = Console(vm);
    EXPECT_NE(console.find("VMIMPORT-GUEST variant=" + g.variant), std::string::npos) << console;
    EXPECT_NE(console.find("mac=" + g.mac), std::string::npos) << console;
    EXPECT_NE(console.find("VMIMPORT-NET up"), std::string::npos) << console;
    const Json domain = TemplateDomain(vm);
    EXPECT_EQ(domain["devices"]["disks"][0]["disk"].value("bus", ""), g.disk_bus) << domain;
    EXPECT_EQ(domain["devices"]["interfaces"][0].value("model", ""), g.nic_model) << domain;
    EXPECT_EQ(domain["devices"]["interfaces"][0].value("macAddress", ""), g.mac) << domain;
    EXPECT_EQ(domain.contains("firmware") && domain["firmware"]["bootloader"].contains("efi"),
              g.firmware == "efi")
        << domain;
    // The VMI ran only after the guest's marker.
    auto vmi = client_->Get({}, kVmis, ns_, vm);
    ASSERT_TRUE(vmi);
    EXPECT_EQ((*vmi)["status"].value("phase", ""), "Running");
  }

  std::map<std::string, Guest> guests_;
  fs::path boot_dir_;
};

//! The guests as servers of the real OpenStack peer (openstack-world.sh seed-guests), imported
//! from the OpenstackSource "devstack".
class OpenstackBootWorldTest : public BootWorldTest {
 protected:
  void SetUp() override {
    BootWorldTest::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    CreateSecret("openstack", {{"username", PeerVar("openstack", "OS_USERNAME")},
                               {"password", PeerVar("openstack", "OS_PASSWORD")},
                               {"project_name", PeerVar("openstack", "OS_PROJECT_NAME")},
                               {"domain_name", PeerVar("openstack", "OS_USER_DOMAIN_NAME")}});
    auto r = client_->Create({}, kOpenstackSources, ns_,
                             {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                              {"kind", "OpenstackSource"},
                              {"metadata", {{"name", "devstack"}, {"namespace", ns_}}},
                              {"spec",
                               {{"endpoint", PeerVar("openstack", "OS_AUTH_URL")},
                                {"region", PeerVar("openstack", "OS_REGION_NAME")},
                                {"credentials", {{"name", "openstack"}, {"namespace", ns_}}}}}});
    ASSERT_TRUE(r) << r.error().ToString();
  }
};

// Each variant imported from vSphere boots as the VM spec says, with the source NIC's MAC, and
// its network comes up. The SATA-only guest boots because the controller chose SATA for it (its
// source disk is on SATA; its NIC an e1000e), the virtio guests get virtio (a Linux guestId on
// PVSCSI), the EFI guest boots through OVMF.
TEST_F(BootWorldTest, VsphereGuestsBootWithTheirMacAndNetworkUp) {
  StartWithBootCheck();
  const auto t0 = Clock::now();
  for (const auto& [variant, g] : guests_) {
    CreateImport(variant, {{"virtualMachineName", VmName(variant)}, {"folder", "guests"}});
  }
  for (const auto& [variant, g] : guests_) {
    SCOPED_TRACE(variant);
    const std::string vm = VmName(variant);
    ASSERT_EQ(WaitImport(variant, "virtualMachineRunning", kBootBudget + 300s),
              "virtualMachineRunning")
        << ControllerLog() << ReadFile(dir_ / "harvester-sim.log");
    ExpectDisksMatch(variant, "/DC0/vm/guests/" + vm);
    ExpectBootedWithNetwork(g);
  }
  std::cout << "3 guests imported and booted in "
            << std::chrono::duration<double>(Clock::now() - t0).count() << " s\n";
  // The readiness verdict came before the source was touched, and says why SATA.
  const std::string readiness = EventMessages("Readiness");
  EXPECT_NE(readiness.find("bus sata [source-sata:"), std::string::npos) << readiness;
  EXPECT_NE(readiness.find("model e1000e [source-emulated:"), std::string::npos) << readiness;
  EXPECT_NE(readiness.find("bus virtio [linux:"), std::string::npos) << readiness;
  EXPECT_NE(readiness.find("firmware efi"), std::string::npos) << readiness;
  EXPECT_NE(EventMessages("GuestBooted").find("VMIMPORT-BOOT-OK"), std::string::npos);
}

// The boot check can fail: the SATA-only guest forced to virtio by the user (what the user writes
// wins) does not find its root disk; the VMI is Failed with the console's tail in an Event and
// the import never says the VM runs: it stays virtualMachineCreated with a VirtualMachineRunning
// condition False and a VirtualMachineFailed Event, the VM and its disks kept.
TEST_F(BootWorldTest, SataOnlyGuestForcedToVirtioDoesNotBoot) {
  StartWithBootCheck();
  const std::string vm = VmName("bios-sata");
  CreateImport(
      "forced",
      {{"virtualMachineName", vm}, {"folder", "guests"}, {"defaultDiskBusType", "virtio"}});
  ASSERT_EQ(WaitImport("forced", "virtualMachineCreated", 300s), "virtualMachineCreated")
      << ControllerLog();
  EXPECT_EQ(TemplateDomain(vm)["devices"]["disks"][0]["disk"].value("bus", ""), "virtio");
  const std::string outcome = WaitBoot(vm);
  EXPECT_EQ(outcome.rfind("no-boot: ", 0), 0U) << outcome;
  const std::string console = Console(vm);
  // initramfs-tools: "Gave up waiting for root file system device" / "ALERT! UUID=... does not
  // exist", then panic=5 reboots and qemu (-no-reboot) exits.
  EXPECT_NE(console.find("does not exist"), std::string::npos) << console;
  EXPECT_EQ(console.find("VMIMPORT-BOOT-OK"), std::string::npos) << console;
  std::string failed;
  EXPECT_TRUE(Eventually(
      [&] {
        failed = EventMessages("BootFailed");
        return !failed.empty();
      },
      60s));
  EXPECT_NE(failed.find("does not exist"), std::string::npos) << failed;
  EXPECT_NE(ImportStatus("forced"), "virtualMachineRunning");
  // The import says so (a condition and a Warning Event) and keeps the VM and its disks.
  std::string said;
  EXPECT_TRUE(Eventually(
      [&] {
        said = EventMessages("VirtualMachineFailed");
        return !said.empty();
      },
      60s));
  // Seen on the Failed VMI itself, or (KubeVirt replaces it within a second) on the VM's status.
  EXPECT_TRUE(said.find("is Failed (BootFailed)") != std::string::npos ||
              said.find("is CrashLoopBackOff after") != std::string::npos)
      << said;
  bool condition = false;
  for (const Json& c : GetImport("forced")["status"].value("importConditions", Json::array())) {
    condition |= c.value("type", "") == "VirtualMachineRunning" &&
                 c.value("status", "") == "False" &&
                 c.value("reason", "") == "VirtualMachineFailed";
  }
  EXPECT_TRUE(condition) << GetImport("forced")["status"].dump();
  EXPECT_EQ(ImportStatus("forced"), "virtualMachineCreated");
  EXPECT_TRUE(client_->Get({}, kVms, ns_, vm));
  EXPECT_EQ(Items(kImages).size(), 1U);
  const std::string readiness = EventMessages("Readiness");
  EXPECT_NE(readiness.find("bus virtio [user: spec.defaultDiskBusType is virtio]"),
            std::string::npos)
      << readiness;
}

// The same guests as OVAs (OperatingSystemSection vmw:osType, the controller and NIC of each),
// served over HTTP by ova_server.py: each boots with its MAC and its network up.
TEST_F(BootWorldTest, OvaGuestsBootWithTheirMacAndNetworkUp) {
  const fs::path dir = guests_.begin()->second.ova.parent_path();
  const fs::path port_file = dir_ / "ova.port";
  ChildProcess server({"/bin/sh", "-c",
                       "exec python3 '" + std::string(vmimport::build_paths::SourceDir()) +
                           "/tests/world/ova/ova_server.py' --dir '" + dir.string() +
                           "' --port-file '" + port_file.string() + "'"},
                      (dir_ / "ova-server.log").string());
  ASSERT_TRUE(Eventually([&] { return fs::exists(port_file); }, 10s))
      << ReadFile(dir_ / "ova-server.log");
  const std::string base = "http://127.0.0.1:" + ReadFile(port_file) + "/";
  StartWithBootCheck();
  for (const auto& [variant, g] : guests_) {
    CreateOvaSource("ova-" + variant, base + g.ova.filename().string());
    CreateImport(variant, {{"virtualMachineName", VmName(variant)},
                           {"sourceCluster", SourceRef("ova-" + variant, "OvaSource")}});
  }
  for (const auto& [variant, g] : guests_) {
    SCOPED_TRACE(variant);
    ASSERT_EQ(WaitImport(variant, "virtualMachineRunning", kBootBudget + 300s),
              "virtualMachineRunning")
        << ControllerLog() << ReadFile(dir_ / "harvester-sim.log");
    const Json disks = GetImport(variant)["status"].value("diskImportStatus", Json::array());
    ASSERT_EQ(disks.size(), 1U);
    auto image = client_->Get({}, kImages, ns_, disks[0].value("VirtualMachineImage", ""));
    ASSERT_TRUE(image);
    EXPECT_EQ((*image)["metadata"]["annotations"].value(kSha256Annotation, ""), g.raw_sha256);
    ExpectBootedWithNetwork(g);
  }
}

// Each variant imported from OpenStack boots as the VM spec says: the controller read the boot
// volume's image properties (os_distro, hw_disk_bus, hw_vif_model, hw_firmware_type), so the
// SATA-only guest (hw_disk_bus=sata, hw_vif_model=e1000e) gets SATA and e1000e, the others virtio,
// the EFI one OVMF; each comes up with its Neutron port's MAC and its network up. Each disk is the
// whole 1 GiB Cinder volume: the guest's raw image, then zeros.
TEST_F(OpenstackBootWorldTest, GuestsBootWithTheirMacAndNetworkUp) {
  StartWithBootCheck();
  const auto t0 = Clock::now();
  for (const auto& [variant, g] : guests_) {
    CreateImport(variant, {{"virtualMachineName", VmName(variant)},
                           {"sourceCluster", SourceRef("devstack", "OpenstackSource")}});
  }
  for (const auto& [variant, g] : guests_) {
    SCOPED_TRACE(variant);
    ASSERT_EQ(WaitImport(variant, "virtualMachineRunning", kBootBudget + 600s),
              "virtualMachineRunning")
        << ControllerLog() << ReadFile(dir_ / "harvester-sim.log");
    ExpectDisksMatch(variant, {testing::Sha256File(g.raw, uint64_t{1} << 30)},
                     "openstack server " + VmName(variant));
    ExpectBootedWithNetwork(g);
  }
  std::cout << "3 OpenStack guests imported and booted in "
            << std::chrono::duration<double>(Clock::now() - t0).count() << " s\n";
  const std::string readiness = EventMessages("Readiness");
  EXPECT_NE(readiness.find("bus sata [source-sata:"), std::string::npos) << readiness;
  EXPECT_NE(readiness.find("bus virtio [source-virtio:"), std::string::npos) << readiness;
  EXPECT_NE(readiness.find("firmware efi"), std::string::npos) << readiness;
}

}  // namespace
}  // namespace vmimport::kube
