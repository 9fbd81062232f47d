// An import from libvirt that boots (issues 17 and 18): the real Debian guest bios-virtio of
// tests/world/guest/guest-world.sh, seeded into the world's libvirtd as a shut-off domain with
// its disk as a qcow2 volume (libvirt-world.sh seed-guests, the ctest fixture libvirt-guests),
// imported by the controller binary (the qcow2 decoded over the libvirt connection) and booted by
// the Harvester simulator's boot check (qemu, TCG) from the VirtualMachine the controller made.
// The guest prints on its serial console its NIC's MAC and whether its network (configured by
// MAC) came up. One boot only: it takes about 5 minutes under TCG on this machine.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>

#include "kube/client.h"
#include "world/import_fixture.h"
#include "world/libvirt_world.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::ReadFile;
namespace fs = std::filesystem;

constexpr const char* kBootAnnotation = "harvester-sim.vm-import.test/boot";
constexpr auto kBootBudget = 600s;  // as boot_world_test.cc: one guest took ~5 min under TCG
constexpr const char* kVariant = "bios-virtio";
constexpr const char* kMac = "00:50:56:b0:07:01";  // the guests table's MAC of bios-virtio

class LibvirtBootWorldTest : public ImportFixture {
 protected:
  LibvirtBootWorldTest() : ImportFixture("lvboot") {}
};

TEST_F(LibvirtBootWorldTest, GuestFromAQcow2VolumeBootsWithItsMacAndNetworkUp) {
  const std::string domain = std::string("vmi-lv-guest-") + kVariant;
  const std::vector<std::string> want = testing::LvDiskSha256(domain);
  ASSERT_EQ(want.size(), 1U) << "no " << domain << " in the libvirt manifest: run "
                             << "tools/world.sh libvirt seed-guests (ctest fixture libvirt-guests)";
  CreateSecret("kvm", testing::LvSecretData());
  CreateLibvirtSource("kvm", testing::LvVar("LIBVIRT_URI"), "kvm");
  if (HasFatalFailure()) {
    return;
  }
  const fs::path boot_dir = dir_ / "boot";
  fs::create_directories(boot_dir);
  StartWorld(
      {"--boot-dir", boot_dir.string(), "--boot-timeout", std::to_string(kBootBudget.count())});
  const auto t0 = Clock::now();
  // No network mapping: the NIC goes to the pod network, as in boot_world_test.cc.
  CreateImport("guest", {{"virtualMachineName", domain},
                         {"sourceCluster", SourceRef("kvm", "LibvirtSource")}});
  ASSERT_EQ(WaitImport("guest", "virtualMachineRunning", kBootBudget + 300s),
            "virtualMachineRunning")
      << ControllerLog() << ReadFile(dir_ / "harvester-sim.log");
  std::cout << domain << " imported from libvirt and booted in "
            << std::chrono::duration<double>(Clock::now() - t0).count() << " s\n";
  ExpectDisksMatch("guest", want, domain);
  auto vm = client_->Get({}, kVms, ns_, domain);
  ASSERT_TRUE(vm);
  const std::string console = ReadFile(boot_dir / (ns_ + "_" + domain + ".serial"));
  EXPECT_EQ((*vm)["metadata"].value("annotations", Json::object()).value(kBootAnnotation, ""),
            "booted")
      << console;
  EXPECT_NE(console.find(std::string("VMIMPORT-GUEST variant=") + kVariant), std::string::npos)
      << console;
  EXPECT_NE(console.find(std::string("mac=") + kMac), std::string::npos) << console;
  EXPECT_NE(console.find("VMIMPORT-NET up"), std::string::npos) << console;
  const Json& dom = (*vm)["spec"]["template"]["spec"]["domain"];
  EXPECT_EQ(dom["devices"]["disks"][0]["disk"].value("bus", ""), "virtio") << dom;
  EXPECT_EQ(dom["devices"]["interfaces"][0].value("macAddress", ""), kMac) << dom;
  EXPECT_EQ(testing::DomState(domain), "shut off");
}

}  // namespace
}  // namespace vmimport::kube
