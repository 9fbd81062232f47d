// The seed's base tests for a LibvirtSource (tools/e2e.sh lists them as libvirt/NAME): the
// controller and the Harvester simulator as child processes against the world's kube-apiserver
// and the real libvirtd of tests/world/libvirt/libvirt-world.sh. In every successful import each
// disk's sha256, as the simulator received it, equals the seeded raw data of the source volume
// (qcow2 volumes included: the controller decodes them).

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "build_paths.h"
#include "world/import_fixture.h"
#include "world/libvirt_world.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::DomState;
using testing::EnsureRunning;
using testing::Eventually;
using testing::LvDiskSha256;
using testing::LvUuid;

class LibvirtImportWorldTest : public ImportFixture {
 protected:
  LibvirtImportWorldTest() : ImportFixture("lvimport") {}

  //! The Secret `name` with the world's libvirt credentials, `overrides` on top.
  void CreateLvSecret(const std::string& name, const Json& overrides = Json::object()) {
    CreateSecret(name, testing::LvSecretData(overrides));
  }
  void CreateLvSource(const std::string& name, const std::string& secret) {
    CreateLibvirtSource(name, testing::LvVar("LIBVIRT_URI"), secret);
  }
  std::pair<std::string, std::string> SourceStatus(const std::string& name) {
    std::pair<std::string, std::string> out;
    Eventually(
        [&] {
          auto obj = client_->Get({}, kLibvirtSources, ns_, name);
          if (!obj) {
            return false;
          }
          const Json status = (*obj).value("status", Json::object());
          out.first = status.value("status", "");
          out.second.clear();
          for (const Json& c : status.value("conditions", Json::array())) {
            if (c.value("type", "") == "ClusterError" && c.value("status", "") == "True") {
              out.second = c.value("reason", "");
            }
          }
          return !out.first.empty();
        },
        60s);
    return out;
  }
  void CreateLvImport(const std::string& name, Json spec, const std::string& source = "kvm") {
    spec["sourceCluster"] = SourceRef(source, "LibvirtSource");
    CreateImport(name, spec);
  }
  //! Good source "kvm", the simulator and the controller.
  void StartWithSource(const std::vector<std::string>& sim_args = {},
                       const std::vector<std::string>& controller_args = {}) {
    CreateLvSecret("kvm");
    CreateLvSource("kvm", "kvm");
    CreateNad("vlan10");
    StartWorld(sim_args, controller_args);
  }
};

// Seed: "Multiple VMs Import With Identical Disks" (one by name, running: powered off by the
// import; one by UUID, shut off, EFI, three disks of both formats and an odd size, three NICs
// on two libvirt networks and a bridge), with the readiness reasons of a bad Secret.
TEST_F(LibvirtImportWorldTest, MultipleVmsImportWithIdenticalDisks) {
  EnsureRunning("vmi-lv-multi");
  CreateLvSecret("wrong", {{"password", "not-the-password"}});
  CreateLvSource("wrong", "wrong");
  StartWithSource();
  EXPECT_EQ(SourceStatus("kvm"), (std::pair<std::string, std::string>{"clusterReady", ""}));
  EXPECT_EQ(SourceStatus("wrong"),
            (std::pair<std::string, std::string>{"clusterNotReady", "InvalidCredentials"}));

  CreateLvImport("multi", {{"virtualMachineName", "vmi-lv-multi"}, {"forcePowerOff", true}});
  CreateLvImport("efi", {{"virtualMachineName", LvUuid("vmi-lv-efi")},
                         {"networkMapping",
                          {{{"sourceNetwork", "lv-prod"}, {"destinationNetwork", "vlan10"}},
                           {{"sourceNetwork", "lv-backup"}, {"destinationNetwork", "vlan10"}},
                           {{"sourceNetwork", "br-lv0"}, {"destinationNetwork", "vlan10"}}}}});
  for (const char* name : {"multi", "efi"}) {
    ASSERT_EQ(WaitImport(name, "virtualMachineRunning", 180s), "virtualMachineRunning")
        << name << "\n"
        << GetImport(name).dump() << "\n"
        << ControllerLog();
  }
  ExpectDisksMatch("multi", LvDiskSha256("vmi-lv-multi"), "vmi-lv-multi");
  ExpectDisksMatch("efi", LvDiskSha256("vmi-lv-efi"), "vmi-lv-efi");
  EXPECT_EQ(Items(kImages).size(), 5U);
  EXPECT_EQ(DomState("vmi-lv-multi"), "shut off");
  EXPECT_EQ(GetImport("efi")["status"].value("importedVirtualMachineName", ""), "vmi-lv-efi");

  auto vm = client_->Get({}, kVms, ns_, "vmi-lv-efi");
  ASSERT_TRUE(vm);
  const Json& spec = (*vm)["spec"]["template"]["spec"];
  const Json& domain = spec["domain"];
  EXPECT_TRUE(domain["firmware"]["bootloader"].contains("efi")) << domain.dump();
  std::set<std::string> macs;
  for (const Json& nic : domain["devices"]["interfaces"]) {
    macs.insert(nic.value("macAddress", ""));
  }
  EXPECT_EQ(macs,
            (std::set<std::string>{"52:54:00:b0:00:01", "52:54:00:b0:00:02", "52:54:00:b0:00:03"}));
  for (const Json& net : spec["networks"]) {
    EXPECT_EQ(net["multus"].value("networkName", ""), ns_ + "/vlan10") << net.dump();
  }
  // libvirt declares no digest: each disk says so, and Longhorn's check still verifies it.
  for (const Json& d : GetImport("efi")["status"].value("diskImportStatus", Json::array())) {
    std::map<std::string, std::string> result_by;
    for (const Json& v : d.value("verification", Json::array())) {
      result_by[v.value("verifier", "")] = v.value("result", "");
    }
    EXPECT_EQ(result_by["libvirt"], "unverifiable") << d.dump();
    EXPECT_EQ(result_by["longhorn"], "verified") << d.dump();
  }
  EnsureRunning("vmi-lv-multi");
}

// Seed: "Bogus SourceNetwork" (the NIC goes on the pod network) and a requested storage class;
// a domain whose disk cannot be streamed (a qcow2 backing chain, a LUN) is refused before it is
// touched; an unknown domain likewise.
TEST_F(LibvirtImportWorldTest, BogusNetworkStorageClassAndRefusedDomains) {
  EnsureRunning("vmi-lv-one");
  StartWithSource();
  CreateLvImport(
      "bogus",
      {{"virtualMachineName", "vmi-lv-one"},
       {"forcePowerOff", true},
       {"storageClass", "longhorn-single"},
       {"networkMapping", {{{"sourceNetwork", "no-such-net"}, {"destinationNetwork", "vlan10"}}}}});
  CreateLvImport("chain", {{"virtualMachineName", "vmi-lv-chain"}});
  CreateLvImport("lun", {{"virtualMachineName", "vmi-lv-lun"}});
  CreateLvImport("unknown", {{"virtualMachineName", "vmi-lv-no-such"}});
  CreateLvImport("nosc", {{"virtualMachineName", "vmi-lv-efi"}, {"storageClass", "no-such-sc"}});
  for (const char* name : {"chain", "lun", "unknown", "nosc"}) {
    EXPECT_EQ(WaitImport(name, "virtualMachineImportInvalid", 60s), "virtualMachineImportInvalid")
        << name;
  }
  const std::string chain = GetImport("chain").dump();
  EXPECT_NE(chain.find("backing chain"), std::string::npos) << chain;
  const std::string lun = GetImport("lun").dump();
  EXPECT_NE(lun.find("LUN"), std::string::npos) << lun;
  ASSERT_EQ(WaitImport("bogus", "virtualMachineRunning", 180s), "virtualMachineRunning")
      << GetImport("bogus").dump() << "\n"
      << ControllerLog();
  ExpectDisksMatch("bogus", LvDiskSha256("vmi-lv-one"), "vmi-lv-one");
  for (const Json& image : Items(kImages)) {
    EXPECT_EQ(image["spec"].value("targetStorageClassName", ""), "longhorn-single") << image.dump();
  }
  EXPECT_EQ(DomState("vmi-lv-efi"), "shut off");  // "nosc" touched nothing
  auto vm = client_->Get({}, kVms, ns_, "vmi-lv-one");
  ASSERT_TRUE(vm);
  const Json& networks = (*vm)["spec"]["template"]["spec"]["networks"];
  ASSERT_EQ(networks.size(), 1U) << networks.dump();
  EXPECT_TRUE(networks[0].contains("pod")) << networks.dump();
  EnsureRunning("vmi-lv-one");
}

// Seed: "Quick Cancel": the import is deleted while its disk streams; the images and PVCs it made
// go, and nothing is left.
TEST_F(LibvirtImportWorldTest, QuickCancelRemovesWhatTheImportMade) {
  StartWithSource({"--rate", "2000000"});
  CreateLvImport("cancel", {{"virtualMachineName", "vmi-lv-efi"}});
  ASSERT_EQ(WaitImport("cancel", "diskImageSubmitted", 60s), "diskImageSubmitted");
  ASSERT_TRUE(client_->Delete({}, kImports, ns_, "cancel"));
  EXPECT_TRUE(Eventually([&] { return ImportStatus("cancel") == "<gone>"; }, 60s))
      << ControllerLog();
  EXPECT_TRUE(Eventually([&] { return Items(kImages).empty() && Items(kPvcs).empty(); }, 60s));
  EXPECT_TRUE(Items(kVms).empty());
}

// Seed: "Delete the VM but not the images, and recreate the import": works again.
TEST_F(LibvirtImportWorldTest, DeleteTheVmAndRecreateTheImport) {
  StartWithSource();
  CreateLvImport("again", {{"virtualMachineName", "vmi-lv-efi"}});
  ASSERT_EQ(WaitImport("again", "virtualMachineRunning", 180s), "virtualMachineRunning")
      << ControllerLog();
  ASSERT_TRUE(client_->Delete({}, kImports, ns_, "again"));
  ASSERT_TRUE(Eventually([&] { return ImportStatus("again") == "<gone>"; }, 60s));
  ASSERT_TRUE(client_->Delete({}, kVms, ns_, "vmi-lv-efi"));
  ASSERT_TRUE(Eventually([&] { return Items(kVms).empty(); }, 90s));
  CreateLvImport("again", {{"virtualMachineName", "vmi-lv-efi"}});
  ASSERT_EQ(WaitImport("again", "virtualMachineRunning", 180s), "virtualMachineRunning")
      << GetImport("again").dump() << "\n"
      << ControllerLog();
  ExpectDisksMatch("again", LvDiskSha256("vmi-lv-efi"), "vmi-lv-efi");
}

// Seed: the controller killed mid-stream resumes: the disks end identical, nothing duplicated.
TEST_F(LibvirtImportWorldTest, ControllerKilledMidStreamResumes) {
  StartWithSource({"--rate", "4000000"});
  CreateLvImport("resume", {{"virtualMachineName", "vmi-lv-efi"}});
  ASSERT_EQ(WaitImport("resume", "diskImageSubmitted", 60s), "diskImageSubmitted");
  std::this_thread::sleep_for(1s);
  controller_->Signal(SIGKILL);
  controller_->Wait(10s);
  StartController();
  ASSERT_EQ(WaitImport("resume", "virtualMachineRunning", 180s), "virtualMachineRunning")
      << ControllerLog();
  ExpectDisksMatch("resume", LvDiskSha256("vmi-lv-efi"), "vmi-lv-efi");
  EXPECT_EQ(Items(kImages).size(), 3U);
  EXPECT_EQ(Items(kVms).size(), 1U);
}

// A libvirtd that stalls (SIGSTOP: TCP still accepted, nothing answers): the source turns
// clusterNotReady / Unreachable within the readiness deadline, an import whose disk was streaming
// is deleted and cleaned up within seconds, and once libvirtd runs again the source is ready.
TEST_F(LibvirtImportWorldTest, StalledLibvirtdIsUnreachableAndAStalledImportIsCancelled) {
  StartWithSource({"--rate", "1000000"},
                  {"--libvirt-timeout", "3", "--source-recheck-interval", "5"});
  ASSERT_EQ(SourceStatus("kvm").first, "clusterReady");
  CreateLvImport("stall", {{"virtualMachineName", "vmi-lv-efi"}});
  ASSERT_EQ(WaitImport("stall", "diskImageSubmitted", 60s), "diskImageSubmitted");
  std::this_thread::sleep_for(1s);  // the disks stream at 1 MB/s
  {
    testing::LibvirtdStalled stalled;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(client_->Delete({}, kImports, ns_, "stall"));
    EXPECT_TRUE(Eventually([&] { return ImportStatus("stall") == "<gone>"; }, 20s))
        << ControllerLog();
    EXPECT_TRUE(Eventually([&] { return Items(kImages).empty() && Items(kPvcs).empty(); }, 20s));
    std::printf("stalled import deleted and cleaned up in %.1f s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    // The next re-check (every 5 s) times out after 3 s: Unreachable, saying so.
    std::string reason;
    std::string message;
    EXPECT_TRUE(Eventually(
        [&] {
          auto obj = client_->Get({}, kLibvirtSources, ns_, "kvm");
          if (!obj) {
            return false;
          }
          for (const Json& c : (*obj)["status"].value("conditions", Json::array())) {
            if (c.value("type", "") == "ClusterError" && c.value("status", "") == "True") {
              reason = c.value("reason", "");
              message = c.value("message", "");
            }
          }
          return (*obj)["status"].value("status", "") == "clusterNotReady";
        },
        20s))
        << ControllerLog();
    EXPECT_EQ(reason, "Unreachable");
    EXPECT_NE(message.find("timed out"), std::string::npos) << message;
    std::printf("stalled source not ready after %.1f s: %s: %s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                reason.c_str(), message.c_str());
  }
  EXPECT_TRUE(Eventually([&] { return SourceStatus("kvm").first == "clusterReady"; }, 60s))
      << ControllerLog();
}

// kubectl vmimport against a LibvirtSource: `list` shows every domain (a disk that cannot be
// streamed says so), `plan` checks a good import and refuses one whose disk cannot be streamed,
// and nothing is created.
TEST_F(LibvirtImportWorldTest, KubectlVmimportListAndPlan) {
  CreateLvSecret("kvm");
  CreateLvSource("kvm", "kvm");
  CreateNad("vlan10");
  StartController();
  ASSERT_EQ(SourceStatus("kvm").first, "clusterReady");
  const auto cli = [&](const std::string& args, std::string* out) {
    return testing::RunCommand(std::string("'") + vmimport::build_paths::CliBinary() +
                                   "' --kubeconfig '" + kubeconfig_ + "' -n " + ns_ + " " + args +
                                   " 2>&1",
                               out);
  };
  std::string out;
  ASSERT_EQ(cli("list libvirtsource/kvm", &out), 0) << out;
  for (const char* domain :
       {"vmi-lv-multi", "vmi-lv-efi", "vmi-lv-one", "vmi-lv-chain", "vmi-lv-lun"}) {
    EXPECT_NE(out.find(domain), std::string::npos) << domain << "\n" << out;
  }
  EXPECT_NE(out.find("br-lv0=52:54:00:b0:00:03"), std::string::npos) << out;
  EXPECT_NE(out.find("efi"), std::string::npos) << out;
  EXPECT_NE(out.find("poweredOff"), std::string::npos) << out;

  const auto write_import = [&](const std::string& name, const std::string& vm) {
    const std::string file = dir_.string() + "/" + name + ".yaml";
    std::ofstream(file) << "apiVersion: migration.harvesterhci.io/v1beta1\n"
                           "kind: VirtualMachineImport\n"
                           "metadata:\n  name: "
                        << name << "\nspec:\n  virtualMachineName: " << vm
                        << "\n  sourceCluster:\n    name: kvm\n    namespace: " << ns_
                        << "\n    kind: LibvirtSource\n"
                           "    apiVersion: migration.harvesterhci.io/v1beta1\n"
                           "  networkMapping:\n  - sourceNetwork: lv-prod\n"
                           "    destinationNetwork: vlan10\n";
    return file;
  };
  EXPECT_EQ(cli("plan -f " + write_import("good", "vmi-lv-efi"), &out), 0) << out;
  EXPECT_NE(out.find("exactly one source VM: vmi-lv-efi"), std::string::npos) << out;
  EXPECT_NE(out.find("3 disks to import"), std::string::npos) << out;
  EXPECT_NE(out.find("52:54:00:b0:00:01 on lv-prod -> vlan10"), std::string::npos) << out;
  EXPECT_NE(out.find("-> pod-network"), std::string::npos) << out;  // lv-backup: unmapped
  EXPECT_NE(out.find("the import would start"), std::string::npos) << out;
  EXPECT_EQ(cli("plan -f " + write_import("chain", "vmi-lv-chain"), &out), 1) << out;
  EXPECT_NE(out.find("backing chain"), std::string::npos) << out;
  EXPECT_NE(out.find("the import would not start"), std::string::npos) << out;
  EXPECT_TRUE(Items(kImports).empty());
  EXPECT_TRUE(Items(kImages).empty());
  EXPECT_EQ(DomState("vmi-lv-efi"), "shut off");
}

// A LibvirtSource over ssh (the world's sshd): ready with the Secret's key and known_hosts;
// a key sshd refuses is InvalidCredentials, a host key not in known_hosts HostKeyMismatch.
TEST_F(LibvirtImportWorldTest, SshSourceReadinessAndItsReasons) {
  const std::string key = testing::ReadFile(testing::LvVar("LIBVIRT_SSH_KEY"));
  const std::string other = testing::ReadFile(testing::LvVar("LIBVIRT_SSH_OTHER_KEY"));
  const std::string known = testing::ReadFile(testing::LvVar("LIBVIRT_SSH_KNOWN_HOSTS"));
  const std::string other_pub = testing::ReadFile(testing::LvVar("LIBVIRT_SSH_OTHER_KEY") + ".pub");
  const auto ssh_source = [&](const std::string& name, const Json& data) {
    CreateSecret(name, data);
    auto r = client_->Create({}, kLibvirtSources, ns_,
                             {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                              {"kind", "LibvirtSource"},
                              {"metadata", {{"name", name}, {"namespace", ns_}}},
                              {"spec",
                               {{"uri", testing::LvVar("LIBVIRT_SSH_URI")},
                                {"credentials", {{"name", name}, {"namespace", ns_}}}}}});
    ASSERT_TRUE(r) << r.error().ToString();
  };
  ssh_source("ssh", {{"ssh-privatekey", key}, {"known_hosts", known}});
  ssh_source("sshkey", {{"ssh-privatekey", other}, {"known_hosts", known}});
  ssh_source("sshhost", {{"ssh-privatekey", key},
                         {"known_hosts", known.substr(0, known.find(' ')) + " " +
                                             other_pub.substr(0, other_pub.rfind(' '))}});
  StartController();
  EXPECT_EQ(SourceStatus("ssh"), (std::pair<std::string, std::string>{"clusterReady", ""}))
      << ControllerLog();
  EXPECT_EQ(SourceStatus("sshkey"),
            (std::pair<std::string, std::string>{"clusterNotReady", "InvalidCredentials"}));
  EXPECT_EQ(SourceStatus("sshhost"),
            (std::pair<std::string, std::string>{"clusterNotReady", "HostKeyMismatch"}));
}

}  // namespace
}  // namespace vmimport::kube
