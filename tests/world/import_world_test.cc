// VirtualMachineImport end to end, the seed's "Proposed Base tests" for vSphere: the controller
// binary and the Harvester simulator as child processes, against the world's real kube-apiserver
// and vcsim. In every successful import each disk's sha256, as the simulator received it from our
// image server, equals the seeded source disk's, and the source VM ends powered off.
//
// Each test runs in a namespace of its own with its own controller and simulator.

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "harvester/backing_image.h"
#include "http/client.h"
#include "kube/client.h"
#include "world/import_fixture.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::Eventually;
using testing::ManifestRows;
using testing::ReadFile;
using testing::WorldVar;
namespace fs = std::filesystem;

const Resource kVmis{"kubevirt.io", "v1", "virtualmachineinstances", true};
const Resource kResourceQuotas{"", "v1", "resourcequotas", true};

//! A field of the manifest's vm row of `path` (4 cpus, 5 cores/socket, 6 memory MiB, 7 firmware,
//! 9 BIOS UUID).
std::string VmField(const std::string& path, size_t index) {
  for (const auto& row : ManifestRows("vm")) {
    if (row[1] == path) {
      return row[index];
    }
  }
  return "";
}

class ImportWorldTest : public ImportFixture {
 protected:
  ImportWorldTest() : ImportFixture("imp") {}

  void SetUp() override {
    ImportFixture::SetUp();
    if (!HasFatalFailure()) {
      CreateNad();
    }
  }

  //! https://127.0.0.1:PORT of vcsim.
  std::string VcsimBase() {
    const std::string sdk = WorldVar("VCSIM_SDK_URL");
    return sdk.substr(0, sdk.rfind("/sdk"));
  }

  //! A request to vcsim-ext's test endpoints (over the world's TLS).
  http::Response VcsimExt(const std::string& method, const std::string& path) {
    auto http = http::Client::Create({.ca_file = WorldVar("VCSIM_CA")});
    EXPECT_TRUE(http);
    if (!http) {
      return {};
    }
    auto r = (*http)->Do({}, {.method = method, .url = VcsimBase() + path});
    EXPECT_TRUE(r) << method << " " << path;
    return r ? *r : http::Response{};
  }

  //! vcsim-ext's GET /vmimport/debug: every export lease made and the live sessions.
  Json VcsimDebug() {
    const http::Response r = VcsimExt("GET", "/vmimport/debug");
    EXPECT_EQ(r.status, 200) << r.body;
    Json out = Json::parse(r.body, nullptr, false);
    return out.is_object() ? out : Json{{"leases", Json::array()}, {"sessions", Json::array()}};
  }

  std::set<std::string> VcsimSessions() {
    std::set<std::string> keys;
    const Json debug = VcsimDebug();
    for (const Json& s : debug["sessions"]) {
      keys.insert(s.value("key", ""));
    }
    return keys;
  }

  //! `kubectl create --dry-run=server` of a minimal valid object of `kind` (KubeVirt's schema
  //! and admitter, Harvester's validator accept it): whether admission (the ResourceQuota holds
  //! below) would let the controller create one now.
  bool Admitted(const std::string& kind) {
    const Json vm_template = {
        {"spec", {{"domain", {{"devices", Json::object()}, {"memory", {{"guest", "64Mi"}}}}}}}};
    const Json obj =
        kind == "VirtualMachine"
            ? Json{{"apiVersion", "kubevirt.io/v1"},
                   {"kind", "VirtualMachine"},
                   {"metadata", {{"name", "probe"}, {"namespace", ns_}}},
                   {"spec", {{"runStrategy", "Halted"}, {"template", vm_template}}}}
            : Json{{"apiVersion", "harvesterhci.io/v1beta1"},
                   {"kind", "VirtualMachineImage"},
                   {"metadata", {{"name", "probe"}, {"namespace", ns_}}},
                   {"spec",
                    {{"displayName", "probe"}, {"sourceType", "download"}, {"url", "http://x"}}}};
    const fs::path file = dir_ / "probe.json";
    std::ofstream(file) << obj.dump();
    const std::string cmd = "KUBECONFIG='" + kubeconfig_ + "' '" + WorldVar("KUBECTL") +
                            "' create --dry-run=server -f '" + file.string() + "' >/dev/null 2>&1";
    return testing::RunCommand(cmd) == 0;
  }

  //! Holds the controller before it creates a `kind` (VirtualMachineImage or VirtualMachine):
  //! a ResourceQuota of 0 for it. The world runs no quota controller, so its status is written
  //! here; the quota admission then refuses every create (403) until Unhold.
  void Hold(const std::string& kind) {
    const std::string count = kind == "VirtualMachine"
                                  ? "count/virtualmachines.kubevirt.io"
                                  : "count/virtualmachineimages.harvesterhci.io";
    const Json hard = {{count, "0"}};
    ASSERT_TRUE(client_->Create({}, kResourceQuotas, ns_,
                                {{"apiVersion", "v1"},
                                 {"kind", "ResourceQuota"},
                                 {"metadata", {{"name", "hold"}, {"namespace", ns_}}},
                                 {"spec", {{"hard", hard}}}}));
    ASSERT_TRUE(client_->MergePatch({}, kResourceQuotas, ns_, "hold",
                                    {{"status", {{"hard", hard}, {"used", {{count, "0"}}}}}},
                                    "status"));
    ASSERT_TRUE(Eventually([&] { return !Admitted(kind); }, 20s)) << kind;
  }

  void Unhold(const std::string& kind) {
    ASSERT_TRUE(client_->Delete({}, kResourceQuotas, ns_, "hold"));
    ASSERT_TRUE(Eventually([&] { return Admitted(kind); }, 40s)) << kind;
  }
};

// Seed: "Test Multiple VM Import From VMWare" (multi-disk, multi-NIC, by name and by UUID, one
// of them running) and "Powered Off VM Causes No VMWare Side-Effects".
TEST_F(ImportWorldTest, MultipleVmsImportWithIdenticalDisks) {
  PowerOn("/DC0/vm/team-b/vmi-dup");
  CreateSecret("vsphere");
  CreateSource();
  StartWorld();
  CreateImport("multi", {{"virtualMachineName", "vmi-multi"},
                         {"networkMapping",
                          {{{"sourceNetwork", "VM Network"}, {"destinationNetwork", "vlan10"}}}}});
  CreateImport("efi", {{"virtualMachineName", VmField("/DC0/vm/vmi-efi-secure", 9)}});
  CreateImport("running",
               {{"virtualMachineName", "vmi-dup"}, {"folder", "team-b"}, {"forcePowerOff", true}});
  EXPECT_EQ(WaitImport("multi", "virtualMachineRunning"), "virtualMachineRunning");
  EXPECT_EQ(WaitImport("efi", "virtualMachineRunning"), "virtualMachineRunning");
  EXPECT_EQ(WaitImport("running", "virtualMachineRunning"), "virtualMachineRunning");
  ExpectDisksMatch("multi", "/DC0/vm/vmi-multi");
  ExpectDisksMatch("efi", "/DC0/vm/vmi-efi-secure");
  ExpectDisksMatch("running", "/DC0/vm/team-b/vmi-dup");
  EXPECT_EQ(SourcePower("/DC0/vm/team-b/vmi-dup"), model::PowerState::kOff);
  EXPECT_EQ(SourcePower("/DC0/vm/vmi-multi"), model::PowerState::kOff);

  // The VMs: CPU topology, memory, firmware, NICs with the source MACs on the mapped network.
  auto multi = client_->Get({}, kVms, ns_, "vmi-multi");
  ASSERT_TRUE(multi);
  const Json& domain = (*multi)["spec"]["template"]["spec"]["domain"];
  EXPECT_EQ(domain["cpu"].value("cores", 0), std::stoi(VmField("/DC0/vm/vmi-multi", 5)));
  EXPECT_EQ(domain["cpu"].value("sockets", 0), std::stoi(VmField("/DC0/vm/vmi-multi", 4)) /
                                                   std::stoi(VmField("/DC0/vm/vmi-multi", 5)));
  EXPECT_EQ(QuantityBytes(domain["memory"].value("guest", "")),
            QuantityBytes(VmField("/DC0/vm/vmi-multi", 6) + "Mi"))
      << domain["memory"];
  std::set<std::string> macs;
  for (const Json& nic : domain["devices"]["interfaces"]) {
    macs.insert(nic.value("macAddress", ""));
  }
  EXPECT_TRUE(macs.contains("00:0c:29:62:37:37"));  // VM Network -> vlan10
  EXPECT_TRUE(macs.contains("00:0c:29:64:37:37"));
  bool on_vlan10 = false;
  for (const Json& net : (*multi)["spec"]["template"]["spec"]["networks"]) {
    on_vlan10 |=
        net.contains("multus") && net["multus"].value("networkName", "") == ns_ + "/vlan10";
  }
  EXPECT_TRUE(on_vlan10);
  auto efi = client_->Get({}, kVms, ns_, "vmi-efi-secure");
  ASSERT_TRUE(efi);
  const Json& efi_domain = (*efi)["spec"]["template"]["spec"]["domain"];
  EXPECT_TRUE(efi_domain["firmware"]["bootloader"].contains("efi")) << efi_domain.dump();
  // Events tell the story.
  auto events = client_->List({}, kEvents, ns_);
  ASSERT_TRUE(events);
  std::set<std::string> reasons;
  for (const Json& e : (*events)["items"]) {
    reasons.insert(e.value("reason", ""));
  }
  for (const char* r : {"SourceReady", "DisksExported", "DiskImagesReady", "VirtualMachineRunning",
                        "AlreadyPoweredOff", "ExportStarted"}) {
    EXPECT_TRUE(reasons.contains(r)) << r;
  }
  EXPECT_TRUE(reasons.contains("PowerOff") || reasons.contains("ShutdownGuest"));
  PowerOn("/DC0/vm/team-b/vmi-dup");  // the seeded state, for the tests that follow
}

// Seed: "(Negative) Test VM With CamelCased Name": the seed's log lines, and nothing touched.
TEST_F(ImportWorldTest, TargetNameThatCannotBeValidIsRejectedWithTheSeedLogLines) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld();
  CreateImport("focal-bad-name", {{"virtualMachineName", "test Focal_CamelCase"}});
  EXPECT_EQ(WaitImport("focal-bad-name", "virtualMachineImportInvalid", 30s),
            "virtualMachineImportInvalid");
  const std::string log = ControllerLog();
  EXPECT_NE(log.find("level=error msg=\"vm migration target test Focal_CamelCase in VM "
                     "focal-bad-name in namespace " +
                     ns_ + " is not RFC 1123 compliant\""),
            std::string::npos)
      << log;
  EXPECT_NE(
      log.find("level=info msg=\"vm focal-bad-name in namespace " + ns_ + " has an invalid spec\""),
      std::string::npos);
  EXPECT_TRUE(Items(kImages).empty());
}

// Issue #7, the seed's "Test VM With CamelCased Name": a source VM named with upper-case letters
// that is a valid RFC 1123 name once lower-cased is imported under that name.
TEST_F(ImportWorldTest, CamelCaseVmImportsUnderItsLowerCasedName) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld();
  CreateImport("camel", {{"virtualMachineName", "vmi-CamelCase"}});
  ASSERT_EQ(WaitImport("camel", "virtualMachineRunning"), "virtualMachineRunning");
  ExpectDisksMatch("camel", "/DC0/vm/vmi-CamelCase");
  EXPECT_EQ(GetImport("camel")["status"].value("importedVirtualMachineName", ""), "vmi-camelcase");
  const auto vms = Items(kVms);
  ASSERT_EQ(vms.size(), 1U);
  EXPECT_EQ(vms[0]["metadata"].value("name", ""), "vmi-camelcase");
  EXPECT_EQ(SourcePower("/DC0/vm/vmi-CamelCase"), model::PowerState::kOff);
}

// The imported disk boots: the simulator keeps the bytes it downloaded and, once KubeVirt would
// run the VM, boots its boot disk with qemu (BIOS); the seeded boot sector prints a marker on the
// serial port. A disk that arrived short or wrong would not print it.
TEST_F(ImportWorldTest, ImportedDiskBootsInQemu) {
  CreateSecret("vsphere");
  CreateSource();
  const fs::path boot_dir = dir_ / "boot";
  fs::create_directories(boot_dir);
  StartWorld({"--boot-dir", boot_dir.string()});
  CreateImport("boot", {{"virtualMachineName", "vmi-bootable"}});
  ASSERT_EQ(WaitImport("boot", "virtualMachineRunning"), "virtualMachineRunning");
  ExpectDisksMatch("boot", "/DC0/vm/vmi-bootable");
  std::string outcome;
  EXPECT_TRUE(Eventually(
      [&] {
        auto vm = client_->Get({}, kVms, ns_, "vmi-bootable");
        outcome = vm ? (*vm)["metadata"]
                           .value("annotations", Json::object())
                           .value("harvester-sim.vm-import.test/boot", "")
                     : "";
        return !outcome.empty();
      },
      90s));
  EXPECT_EQ(outcome, "booted") << ReadFile((dir_ / "harvester-sim.log").string());
}

// The wrong VM must never be powered off: an ambiguous name is refused with every candidate.
TEST_F(ImportWorldTest, AmbiguousOrUnknownVmIsInvalidAndTouchesNothing) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld();
  CreateImport("dup", {{"virtualMachineName", "vmi-dup"}});
  CreateImport("nosuch", {{"virtualMachineName", "no-such-vm"}});
  EXPECT_EQ(WaitImport("dup", "virtualMachineImportInvalid", 30s), "virtualMachineImportInvalid");
  EXPECT_EQ(WaitImport("nosuch", "virtualMachineImportInvalid", 30s),
            "virtualMachineImportInvalid");
  const std::string dup = GetImport("dup").dump();
  EXPECT_NE(dup.find("/DC0/vm/team-a/vmi-dup"), std::string::npos) << dup;
  EXPECT_NE(dup.find("/DC0/vm/team-b/vmi-dup"), std::string::npos) << dup;
  EXPECT_TRUE(Items(kImages).empty());
  EXPECT_TRUE(Items(kVms).empty());
}

// Seed: "Test Import of VM With Bogus SourceNetwork": one pod-network NIC, virtio, masquerade.
TEST_F(ImportWorldTest, BogusSourceNetworkPutsTheVmOnThePodNetwork) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld();
  CreateImport("bogus",
               {{"virtualMachineName", "vmi-bios-small"},
                {"networkMapping",
                 {{{"sourceNetwork", "no-such-network"}, {"destinationNetwork", "vlan10"}}}}});
  ASSERT_EQ(WaitImport("bogus", "virtualMachineRunning"), "virtualMachineRunning");
  ExpectDisksMatch("bogus", "/DC0/vm/vmi-bios-small");
  auto vm = client_->Get({}, kVms, ns_, "vmi-bios-small");
  ASSERT_TRUE(vm);
  const Json& spec = (*vm)["spec"]["template"]["spec"];
  ASSERT_EQ(spec["networks"].size(), 1U) << spec.dump();
  EXPECT_EQ(spec["networks"][0].value("name", ""), "pod-network");
  EXPECT_TRUE(spec["networks"][0].contains("pod"));
  const Json& nic = spec["domain"]["devices"]["interfaces"][0];
  EXPECT_EQ(nic.value("model", ""), "virtio");
  EXPECT_TRUE(nic.contains("masquerade"));
}

// Issue 16: vcsim serves the disk with bytes its NFC manifest does not declare (extraConfig
// vmimport-ext.nfcTamper). The controller checks the manifest over the stream it received and
// fails the disk as CorruptDisk; Harvester never gets a whole disk, no PVC and no VM are made.
TEST_F(ImportWorldTest, TamperedVsphereStreamFailsWithCorruptDisk) {
  const std::string path = "/DC0/vm/vmi-bios-small";
  ASSERT_EQ(testing::RunCommand(Govc("vm.change -vm '" + path +
                                     "' -e vmimport-ext.nfcTamper=append >/dev/null 2>&1")),
            0);
  const std::shared_ptr<void> untamper(nullptr, [&](void*) {
    EXPECT_EQ(testing::RunCommand(
                  Govc("vm.change -vm '" + path + "' -e vmimport-ext.nfcTamper= >/dev/null 2>&1")),
              0);
  });
  CreateSecret("vsphere");
  CreateSource();
  StartWorld();
  CreateImport("tampered", {{"virtualMachineName", "vmi-bios-small"}});
  EXPECT_EQ(WaitImport("tampered", "diskImageFailed", 120s), "diskImageFailed");
  const std::string status = GetImport("tampered").dump();
  EXPECT_NE(status.find("CorruptDisk"), std::string::npos) << status;
  EXPECT_NE(status.find("vsphere-manifest declares"), std::string::npos) << status;
  EXPECT_TRUE(Items(kPvcs).empty());
  EXPECT_TRUE(Items(kVms).empty());
}

// The simulator plays Longhorn's webhook: a spec.checksum that is not a SHA-512 (here a SHA-256)
// is refused, so the image fails every attempt and ends RetryLimitExceeded (harvester#5578).
TEST_F(ImportWorldTest, HarvesterSimFailsANonSha512ChecksumForEverLikeLonghorn) {
  StartSim();
  const Json image = {{"apiVersion", "harvesterhci.io/v1beta1"},
                      {"kind", "VirtualMachineImage"},
                      {"metadata", {{"name", "sha256-checksum"}, {"namespace", ns_}}},
                      {"spec",
                       {{"displayName", "sha256-checksum"},
                        {"sourceType", "download"},
                        {"url", "http://127.0.0.1:9/never-fetched"},
                        {"checksum", std::string(64, 'a')},
                        {"retry", 1}}}};
  ASSERT_TRUE(client_->Create({}, kImages, ns_, image));
  std::string last;
  EXPECT_TRUE(Eventually(
      [&] {
        auto got = client_->Get({}, kImages, ns_, "sha256-checksum");
        last = got ? got->dump() : "";
        if (!got) return false;
        const Json status = got->value("status", Json::object());
        if (!status.is_object()) return false;
        for (const Json& c : status.value("conditions", Json::array())) {
          if (c.is_object() && c.value("type", "") == "RetryLimitExceeded" &&
              c.value("status", "") == "True" &&
              c.value("message", "").find("invalid checksum") != std::string::npos) {
            return true;
          }
        }
        return false;
      },
      60s))
      << last;
}

// The simulator's knob for a store that changed a file (--tamper-backingimage-checksum): the
// BackingImage's status.checksum then differs from the SHA-512 the image server computed of what it
// served, and harvester::CompareStoredChecksum (the reconciler's hook for DiskChecksumMismatch)
// says so. Until the reconciler compares, the import itself still succeeds.
TEST_F(ImportWorldTest, TamperedBackingImageChecksumFailsWithDiskChecksumMismatch) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld({"--tamper-backingimage-checksum"});
  CreateImport("stored", {{"virtualMachineName", "vmi-bios-small"}});
  ASSERT_EQ(WaitImport("stored", "virtualMachineRunning"), "diskImageFailed") << ControllerLog();
  const Json status = GetImport("stored")["status"];
  std::string reason;
  for (const Json& c : status.value("importConditions", Json::array())) {
    if (c.value("type", "") == "Failed") reason = c.value("reason", "");
  }
  EXPECT_EQ(reason, "DiskChecksumMismatch") << status.dump();
  const Json disks = status.value("diskImportStatus", Json::array());
  ASSERT_EQ(disks.size(), 1U);
  const std::string served = disks[0].value("sha512", "");
  ASSERT_EQ(served.size(), 128U);
  const Json checks = disks[0].value("verification", Json::array());
  ASSERT_FALSE(checks.empty()) << disks[0].dump();
  EXPECT_EQ(checks.back().value("verifier", ""), "longhorn");
  EXPECT_EQ(checks.back().value("result", ""), "mismatch");
  EXPECT_NE(checks.back().value("digest", ""), served);
  // Never silently passed: no VM, and the failed import's images are removed.
  EXPECT_TRUE(Items(kVms).empty());
  EXPECT_TRUE(Eventually([&] { return Items(kImages).empty(); }, 30s)) << ControllerLog();
}

// One manifest holding Secret + source + import: the import waits for the source, then goes on.
TEST_F(ImportWorldTest, ImportWaitsForTheSourceToBeReady) {
  CreateSource("late-secret");
  StartWorld();
  CreateImport("late", {{"virtualMachineName", "vmi-bios-small"}});
  EXPECT_EQ(WaitImport("late", "sourceReady", 8s), "virtualMachineImportValid");
  CreateSecret("late-secret");
  EXPECT_EQ(WaitImport("late", "virtualMachineRunning"), "virtualMachineRunning");
  ExpectDisksMatch("late", "/DC0/vm/vmi-bios-small");
}

// Seed: "Test VM Import Quick Cancel (Prior to Image Download Finishing)": what the import made
// goes, nothing more is created.
TEST_F(ImportWorldTest, QuickCancelRemovesWhatTheImportMade) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld({"--rate", "2000000"});  // 2 MB/s: the 64 MiB disk takes half a minute
  CreateImport("cancel", {{"virtualMachineName", "vmi-multi"}});
  ASSERT_EQ(WaitImport("cancel", "diskImageSubmitted", 60s), "diskImageSubmitted");
  ASSERT_TRUE(Eventually([&] { return Items(kImages).size() == 3; }, 30s));
  ASSERT_TRUE(client_->Delete({}, kImports, ns_, "cancel"));
  EXPECT_TRUE(Eventually([&] { return ImportStatus("cancel") == "<gone>"; }, 30s));
  EXPECT_TRUE(Items(kImages).empty());
  EXPECT_TRUE(Items(kPvcs).empty());
  std::this_thread::sleep_for(2s);
  EXPECT_TRUE(Items(kVms).empty());
  EXPECT_TRUE(Items(kImages).empty());
}

// Seed: "Test Deleting VM but Not Image(s) And Recreate Works".
TEST_F(ImportWorldTest, DeleteTheVmAndRecreateTheImport) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld();
  CreateImport("again", {{"virtualMachineName", "vmi-bios-small"}});
  ASSERT_EQ(WaitImport("again", "virtualMachineRunning"), "virtualMachineRunning");
  ASSERT_TRUE(client_->Delete({}, kImports, ns_, "again"));
  ASSERT_TRUE(Eventually([&] { return ImportStatus("again") == "<gone>"; }, 30s));
  EXPECT_EQ(Items(kImages).size(), 1U);  // after success, the images stay
  ASSERT_TRUE(client_->Delete({}, kVms, ns_, "vmi-bios-small"));
  ASSERT_TRUE(Eventually([&] { return Items(kVms).empty(); }, 30s));
  CreateImport("again", {{"virtualMachineName", "vmi-bios-small"}});
  EXPECT_EQ(WaitImport("again", "virtualMachineRunning"), "virtualMachineRunning");
  ExpectDisksMatch("again", "/DC0/vm/vmi-bios-small");
}

// Seed: "Respects Default StorageClass" / a requested one; a missing class is refused.
TEST_F(ImportWorldTest, RequestedAndMissingStorageClass) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld();
  CreateImport("sc",
               {{"virtualMachineName", "vmi-bios-small"}, {"storageClass", "longhorn-single"}});
  CreateImport("nosc", {{"virtualMachineName", "vmi-bios-small"}, {"storageClass", "no-such-sc"}});
  EXPECT_EQ(WaitImport("nosc", "virtualMachineImportInvalid", 30s), "virtualMachineImportInvalid");
  ASSERT_EQ(WaitImport("sc", "virtualMachineRunning"), "virtualMachineRunning");
  auto images = Items(kImages);
  ASSERT_EQ(images.size(), 1U);
  EXPECT_EQ(images[0]["spec"].value("targetStorageClassName", ""), "longhorn-single");
  EXPECT_EQ(images[0]["spec"].value("backend", ""), "backingimage");
}

// The VmwareSource deleted while Harvester downloads: the import already holds its source VM
// and export, so it finishes rather than leave the source VM off and nothing in Harvester; its
// session and lease end with it. (A controller started after the deletion would wait in
// sourceReady, as for any missing source.)
TEST_F(ImportWorldTest, SourceDeletedMidDownloadStillFinishesAndLeavesNothingOnVsphere) {
  std::set<std::string> leases_before;
  for (const Json& l : VcsimDebug()["leases"]) {
    leases_before.insert(l.value("lease", ""));
  }
  const std::set<std::string> sessions_before = VcsimSessions();
  CreateSecret("vsphere");
  CreateSource();
  StartWorld({"--rate", "4000000"});  // 4 MB/s: vmi-multi's 113 MiB take half a minute
  CreateImport("orphan", {{"virtualMachineName", "vmi-multi"}});
  ASSERT_EQ(WaitImport("orphan", "diskImageSubmitted", 60s), "diskImageSubmitted");
  ASSERT_TRUE(Eventually([&] { return Items(kImages).size() == 3; }, 30s));
  ASSERT_TRUE(client_->Delete({}, kVmwareSources, ns_, "vcsim"));
  ASSERT_TRUE(Eventually([&] { return Items(kVmwareSources).empty(); }, 30s));
  EXPECT_EQ(WaitImport("orphan", "virtualMachineRunning", 180s), "virtualMachineRunning")
      << GetImport("orphan").dump() << "\n"
      << ControllerLog();
  ExpectDisksMatch("orphan", "/DC0/vm/vmi-multi");
  EXPECT_EQ(Items(kImages).size(), 3U);
  EXPECT_EQ(Items(kVms).size(), 1U);
  std::string left;
  const bool clean = Eventually(
      [&] {
        left.clear();
        const Json debug = VcsimDebug();
        for (const Json& l : debug["leases"]) {
          if (!leases_before.contains(l.value("lease", "")) && l.value("state", "") == "open") {
            left += " lease " + l.value("lease", "");
          }
        }
        for (const Json& session : debug["sessions"]) {
          if (!sessions_before.contains(session.value("key", ""))) {
            left += " session " + session.value("key", "");
          }
        }
        return left.empty();
      },
      30s);
  EXPECT_TRUE(clean) << "left on vSphere:" << left << "\n" << ControllerLog();
}

// The same after a restart (issue 15, point 8): what the VM needs from the source was kept in
// the import itself (status.sourceVirtualMachine), so the restarted controller creates the VM
// although the source object is gone, and never asks vSphere for it.
TEST_F(ImportWorldTest, SourceDeletedAndControllerRestartedStillCreatesTheVm) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld({"--rate", "8000000"});
  Hold("VirtualMachine");  // keeps the import at diskImagesReady
  CreateImport("orphan", {{"virtualMachineName", "vmi-multi"}});
  ASSERT_EQ(WaitImport("orphan", "diskImageSubmitted", 60s), "diskImageSubmitted");
  ASSERT_TRUE(client_->Delete({}, kVmwareSources, ns_, "vcsim"));
  ASSERT_EQ(WaitImport("orphan", "diskImagesReady", 120s), "diskImagesReady") << ControllerLog();
  const Json kept = GetImport("orphan")["status"].value("sourceVirtualMachine", Json::object());
  EXPECT_EQ(kept.value("name", ""), "vmi-multi");
  EXPECT_EQ(kept.value("disks", Json::array()).size(), 3U);
  EXPECT_EQ(kept.value("nics", Json::array()).size(), 3U);
  controller_->Signal(SIGKILL);
  controller_->Wait(10s);
  const std::set<std::string> sessions_before = VcsimSessions();
  StartController();
  Unhold("VirtualMachine");
  EXPECT_EQ(WaitImport("orphan", "virtualMachineRunning", 120s), "virtualMachineRunning")
      << ControllerLog();
  EXPECT_TRUE(Items(kVmwareSources).empty());
  ExpectDisksMatch("orphan", "/DC0/vm/vmi-multi");
  EXPECT_EQ(Items(kImages).size(), 3U);
  ASSERT_EQ(Items(kVms).size(), 1U);
  const Json vm = Items(kVms)[0];
  const Json domain = vm["spec"]["template"]["spec"]["domain"];
  EXPECT_EQ(domain["devices"].value("interfaces", Json::array()).size(), 1U)  // one unmapped NIC
      << vm.dump();
  EXPECT_EQ(domain["devices"].value("disks", Json::array()).size(), 3U);
  for (const Json& e : Items(kEvents)) {
    EXPECT_NE(e.value("reason", ""), "SourceNotFound") << e.dump();
  }
  EXPECT_EQ(VcsimSessions(), sessions_before);  // vSphere was not asked
}

// Killed while Harvester downloads, the controller resumes: finished disks stay, the others are
// exported again, and the import still ends with identical disks and no duplicates.
TEST_F(ImportWorldTest, ControllerKilledMidDownloadResumes) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld({"--rate", "8000000"});
  CreateImport("resume", {{"virtualMachineName", "vmi-multi"}});
  ASSERT_EQ(WaitImport("resume", "diskImageSubmitted", 60s), "diskImageSubmitted");
  std::this_thread::sleep_for(1s);
  controller_->Signal(SIGKILL);
  controller_->Wait(10s);
  StartController();
  EXPECT_EQ(WaitImport("resume", "virtualMachineRunning", 120s), "virtualMachineRunning");
  ExpectDisksMatch("resume", "/DC0/vm/vmi-multi");
  EXPECT_EQ(Items(kImages).size(), 3U);
  EXPECT_EQ(Items(kVms).size(), 1U);
}

// Where ControllerKilledAtEveryPointResumes SIGKILLs the controller: just after each importStatus
// is reached, and in the middle of a disk stream. Each point is held there by the world (see the
// test) so that the kill lands at that point, not one step later.
enum class KillPoint {
  kValid,            // virtualMachineImportValid: the source is not ready (its Secret is missing)
  kSourceReady,      // sourceReady: ExportVm fails (vcsim-ext fault switch); session open
  kDisksExported,    // disksExported: creating images is refused (quota); lease open
  kImagesSubmitted,  // diskImageSubmitted: no Harvester yet, nothing downloaded; lease open
  kMidStream,        // diskImageSubmitted with a disk half downloaded (slow Harvester)
  kImagesReady,      // diskImagesReady: creating the VM is refused (quota); export completed
  kVmCreated,        // virtualMachineCreated: no Harvester to run the VM
};

const char* KillPointName(KillPoint p) {
  switch (p) {
    case KillPoint::kValid: return "virtualMachineImportValid";
    case KillPoint::kSourceReady: return "sourceReady";
    case KillPoint::kDisksExported: return "disksExported";
    case KillPoint::kImagesSubmitted: return "diskImageSubmitted";
    case KillPoint::kMidStream: return "diskImageSubmitted";
    case KillPoint::kImagesReady: return "diskImagesReady";
    case KillPoint::kVmCreated: return "virtualMachineCreated";
  }
  return "";
}

// Issue #10: SIGKILLed at any point of an import and started again, the controller finishes it:
// the VM runs, every disk is the source's, nothing is duplicated (one image per disk, one PVC
// per image, one VM), and nothing of ours is left on vSphere (no open export lease, no session).
// One VM with two small disks; the kill points run one after the other in one namespace.
TEST_F(ImportWorldTest, ControllerKilledAtEveryPointResumes) {
  const std::string vm_path = "/DC0/vm/vmi-resume";
  const size_t disk_count = SeededDiskSha256(vm_path).size();
  ASSERT_EQ(disk_count, 2U);
  CreateSecret("vsphere");
  CreateSource();
  int n = 0;
  for (KillPoint point : {KillPoint::kValid, KillPoint::kSourceReady, KillPoint::kDisksExported,
                          KillPoint::kImagesSubmitted, KillPoint::kMidStream,
                          KillPoint::kImagesReady, KillPoint::kVmCreated}) {
    const std::string tag = std::to_string(n++);
    const std::string want = KillPointName(point);
    SCOPED_TRACE(tag + " " + want + (point == KillPoint::kMidStream ? " (mid-stream)" : ""));
    const auto started = std::chrono::steady_clock::now();
    const std::string name = "kill-" + tag;
    const std::set<std::string> sessions_before = VcsimSessions();
    std::set<std::string> leases_before;
    const Json debug_before = VcsimDebug();
    for (const Json& l : debug_before["leases"]) {
      leases_before.insert(l.value("lease", ""));
    }

    // Hold the import at the point, with the world's means.
    std::string source = "vcsim";
    std::vector<std::string> sim_args;
    switch (point) {
      case KillPoint::kValid:
        source = "late-" + tag;
        CreateSource("late-secret-" + tag, source);
        break;
      case KillPoint::kSourceReady: {
        const auto armed =
            VcsimExt("POST", "/vmimport-ext/faults?target=method:ExportVm&count=100000");
        ASSERT_EQ(armed.status / 100, 2) << armed.body;
        break;
      }
      case KillPoint::kDisksExported: Hold("VirtualMachineImage"); break;
      case KillPoint::kMidStream: sim_args = {"--rate", "1000000"}; break;
      case KillPoint::kImagesReady:
      case KillPoint::kVmCreated: Hold("VirtualMachine"); break;
      case KillPoint::kImagesSubmitted: break;
    }
    if (HasFatalFailure()) {
      return;
    }
    if (point != KillPoint::kImagesSubmitted) {  // else no Harvester yet
      StartSim(sim_args, "harvester-sim-" + tag + ".log");
    }
    StartController({}, "controller-" + tag + "-killed.log");
    CreateImport(name, {{"virtualMachineName", "vmi-resume"}}, source);

    switch (point) {
      case KillPoint::kValid:
      case KillPoint::kDisksExported:
      case KillPoint::kImagesSubmitted:
      case KillPoint::kImagesReady:
        ASSERT_EQ(WaitImport(name, want, 60s), want);
        std::this_thread::sleep_for(1s);  // the held step has run (and been refused) by now
        break;
      case KillPoint::kSourceReady:
        ASSERT_EQ(WaitImport(name, want, 60s), want);
        ASSERT_TRUE(Eventually([&] {  // ExportVm was tried (and refused) at least once
          const Json f = Json::parse(VcsimExt("GET", "/vmimport-ext/faults").body, nullptr, false);
          return f.is_object() &&
                 f.value("injected", Json::object()).value("method:ExportVm", 0) > 0;
        }));
        break;
      case KillPoint::kMidStream:
        ASSERT_EQ(WaitImport(name, want, 60s), want);
        ASSERT_TRUE(Eventually([&] {  // disk 0 is partly in Harvester
          const Json d = GetImport(name)["status"].value("diskImportStatus", Json::array());
          return !d.empty() && d[0].value("bytesDone", 0) > 0;
        }));
        break;
      case KillPoint::kVmCreated:
        // Held before the VM; Harvester goes away, then the hold: the VM is created, never runs.
        ASSERT_EQ(WaitImport(name, "diskImagesReady", 60s), "diskImagesReady");
        sim_.reset();
        Unhold("VirtualMachine");
        ASSERT_TRUE(client_->MergePatch({}, kImports, ns_, name,
                                        {{"metadata", {{"annotations", {{"test/poke", "1"}}}}}}));
        ASSERT_EQ(WaitImport(name, want, 60s), want);
        std::this_thread::sleep_for(1s);
        break;
    }
    controller_->Signal(SIGKILL);
    controller_->Wait(10s);
    ASSERT_EQ(ImportStatus(name), want) << "the kill landed after the point";
    if (point == KillPoint::kMidStream) {
      const Json d = GetImport(name)["status"]["diskImportStatus"];
      EXPECT_LT(d[0].value("bytesDone", 0), d[0].value("bytesTotal", 1)) << "disk 0 was done";
    }
    std::set<std::string> killed_sessions;  // sessions the killed process left open
    for (const auto& s : VcsimSessions()) {
      if (!sessions_before.contains(s)) {
        killed_sessions.insert(s);
      }
    }

    // Release the hold and start again.
    switch (point) {
      case KillPoint::kValid: CreateSecret("late-secret-" + tag); break;
      case KillPoint::kSourceReady:
        EXPECT_EQ(VcsimExt("DELETE", "/vmimport-ext/faults").status / 100, 2);
        break;
      case KillPoint::kDisksExported: Unhold("VirtualMachineImage"); break;
      case KillPoint::kImagesReady: Unhold("VirtualMachine"); break;
      case KillPoint::kImagesSubmitted:
      case KillPoint::kVmCreated:  // Harvester comes (back)
        StartSim({}, "harvester-sim-" + tag + "-b.log");
        break;
      case KillPoint::kMidStream: break;
    }
    StartController({}, "controller-" + tag + "-resumed.log");
    ASSERT_EQ(WaitImport(name, "virtualMachineRunning", 120s), "virtualMachineRunning");
    ExpectDisksMatch(name, vm_path);

    // Nothing duplicated: one image per disk, one PVC per image, one VM.
    const Json disks = GetImport(name)["status"]["diskImportStatus"];
    std::set<std::string> status_images;
    for (const Json& d : disks) {
      status_images.insert(d.value("VirtualMachineImage", ""));
    }
    std::set<std::string> images;
    for (const Json& i : Items(kImages)) {
      images.insert(i["metadata"].value("name", ""));
    }
    EXPECT_EQ(images.size(), disk_count);
    EXPECT_EQ(images, status_images);
    std::multiset<std::string> pvcs;
    for (const Json& p : Items(kPvcs)) {
      pvcs.insert(p["metadata"].value("name", ""));
    }
    EXPECT_EQ(std::set<std::string>(pvcs.begin(), pvcs.end()), images);
    EXPECT_EQ(pvcs.size(), images.size());
    const auto vms = Items(kVms);
    ASSERT_EQ(vms.size(), 1U);
    EXPECT_EQ(vms[0]["metadata"].value("name", ""), "vmi-resume");
    EXPECT_EQ(SourcePower(vm_path), model::PowerState::kOff);

    // Nothing of ours left on vSphere: every export lease of this round ended and no session
    // of ours is open, not even those of the killed process (it could not log out; the resumed
    // controller ends the sessions whose userAgent names this import, and vSphere ends their
    // leases with them).
    std::string left;
    const bool clean = Eventually(
        [&] {
          left.clear();
          const Json debug = VcsimDebug();
          for (const Json& l : debug["leases"]) {
            const std::string id = l.value("lease", "");
            if (leases_before.contains(id) || l.value("state", "") != "open") {
              continue;
            }
            left += " lease " + id +
                    (killed_sessions.contains(l.value("session", "")) ? " (killed)" : "");
          }
          for (const Json& session : debug["sessions"]) {
            const std::string key = session.value("key", "");
            if (!sessions_before.contains(key)) {
              left += " session " + key + (killed_sessions.contains(key) ? " (killed)" : "");
            }
          }
          return left.empty();
        },
        20s);
    EXPECT_TRUE(clean) << "left on vSphere:" << left;

    // Clean up for the next point: the import, then what it made.
    controller_.reset();
    ASSERT_TRUE(client_->Delete({}, kImports, ns_, name));
    ASSERT_TRUE(client_->MergePatch({}, kImports, ns_, name,
                                    {{"metadata", {{"finalizers", Json::array()}}}}) ||
                ImportStatus(name) == "<gone>");
    ASSERT_TRUE(Eventually([&] { return ImportStatus(name) == "<gone>"; }, 30s));
    // virt-controller stops the VMI and removes the VM; the simulator, still running, plays the
    // node that confirms the launcher Pod is gone.
    ASSERT_TRUE(client_->Delete({}, kVms, ns_, "vmi-resume"));
    for (const auto& image : images) {
      (void)client_->Delete({}, kPvcs, ns_, image);
      // No kube-controller-manager here: play its pvc-protection controller (no pod uses it).
      (void)client_->MergePatch({}, kPvcs, ns_, image,
                                {{"metadata", {{"finalizers", Json::array()}}}});
    }
    // Harvester's validator refuses to delete an image while a volume of its storage class
    // exists, and its PVC cache may not have seen the delete yet: try until it has.
    ASSERT_TRUE(Eventually(
        [&] {
          for (const auto& image : images) {
            (void)client_->Delete({}, kImages, ns_, image);
          }
          return Items(kVms).empty() && Items(kVmis).empty() && Items(kImages).empty() &&
                 Items(kPvcs).empty();
        },
        30s));
    sim_.reset();
    std::cerr << "[ kill point " << tag << " " << want << " ] "
              << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                  started)
                     .count()
              << " s; the killed process left " << killed_sessions.size()
              << " sessions, all ended\n";
  }
}

// Operator limits: one import at a time (the other waits, untouched, and says so), and each disk
// stream capped at 4 MB/s of source bytes.
TEST_F(ImportWorldTest, ConcurrencyAndBandwidthLimitsHold) {
  CreateSecret("vsphere");
  CreateSource();
  StartWorld({}, {"--max-concurrent-imports", "1", "--stream-rate-limit", "4000000"});
  ASSERT_TRUE(Eventually([&] {  // both imports then reach preflight together
    auto src = client_->Get({}, kVmwareSources, ns_, "vcsim");
    return src && src->value("status", Json::object()).value("status", "") == "clusterReady";
  }));
  CreateImport("one", {{"virtualMachineName", "vmi-bios-small"}});
  CreateImport("two", {{"virtualMachineName", "vmi-dup"}, {"folder", "team-a"}});
  EXPECT_EQ(WaitImport("one", "virtualMachineRunning", 120s), "virtualMachineRunning");
  EXPECT_EQ(WaitImport("two", "virtualMachineRunning", 120s), "virtualMachineRunning");
  ExpectDisksMatch("one", "/DC0/vm/vmi-bios-small");
  ExpectDisksMatch("two", "/DC0/vm/team-a/vmi-dup");
  auto events = client_->List({}, kEvents, ns_);
  ASSERT_TRUE(events);
  bool waited = false;
  for (const Json& e : (*events)["items"]) {
    waited |= e.value("reason", "") == "WaitingForImportSlot";
  }
  EXPECT_TRUE(waited);
  for (const char* name : {"one", "two"}) {
    const Json disks = GetImport(name)["status"]["diskImportStatus"];
    ASSERT_EQ(disks.size(), 1U);
    const double rate = disks[0].value("bytesPerSecond", 0.0);
    EXPECT_GT(rate, 0);
    EXPECT_LE(rate, 4000000 * 1.15) << name;  // random data: raw bytes ≈ source bytes
  }
  // What an operator scrapes: /metrics on the health port the controller logged.
  const std::string log = ControllerLog();
  const auto at = log.find("msg=\"health and metrics listening\" port=");
  ASSERT_NE(at, std::string::npos) << log;
  const int port = std::atoi(log.c_str() + log.find("port=", at) + 5);
  auto http = http::Client::Create({});
  ASSERT_TRUE(http);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto ready = (*http)->Do({}, {.url = base + "/readyz"});
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  auto metrics = (*http)->Do({}, {.url = base + "/metrics"});
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  const std::string& text = metrics->body;
  EXPECT_NE(text.find("vmimport_imports{status=\"virtualMachineRunning\"} 2"), std::string::npos)
      << text;
  const std::string sdk = WorldVar("VCSIM_SDK_URL");  // https://127.0.0.1:PORT/sdk
  const std::string host = sdk.substr(8, sdk.find('/', 8) - 8);
  EXPECT_NE(text.find("vmimport_stream_bytes_total{disk=\"disk-0\",import=\"one\",namespace=\"" +
                      ns_ + "\",source=\"" + host + "\"} 8388608"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("vmimport_import_duration_seconds_count 2"), std::string::npos);
  EXPECT_NE(text.find("vmimport_streams_total{outcome=\"completed\"}"), std::string::npos);
  EXPECT_NE(text.find("vmimport_workqueue_depth{queue=\"import\"}"), std::string::npos);
}

}  // namespace
}  // namespace vmimport::kube
