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
#include <random>
#include <sstream>
#include <thread>

#include "http/client.h"
#include "kube/client.h"
#include "kube/config.h"
#include "source/vmware/inventory.h"
#include "source/vmware/session.h"
#include "world/process.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::ManifestRows;
using testing::WorldVar;
namespace fs = std::filesystem;

const Resource kNamespaces{"", "v1", "namespaces", false};
const Resource kSecrets{"", "v1", "secrets", true};
const Resource kVmwareSources{"migration.harvesterhci.io", "v1beta1", "vmwaresources", true};
const Resource kImports{"migration.harvesterhci.io", "v1beta1", "virtualmachineimports", true};
const Resource kImages{"harvesterhci.io", "v1beta1", "virtualmachineimages", true};
const Resource kPvcs{"", "v1", "persistentvolumeclaims", true};
const Resource kVms{"kubevirt.io", "v1", "virtualmachines", true};
const Resource kNads{"k8s.cni.cncf.io", "v1", "network-attachment-definitions", true};
const Resource kEvents{"", "v1", "events", true};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Eventually(const std::function<bool()>& pred, std::chrono::seconds limit = 90s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(200ms);
  }
  return pred();
}

//! sha256 of each seeded disk of the VM at `path`, in disk order.
std::vector<std::string> SeededDiskSha256(const std::string& path) {
  std::vector<std::string> out;
  for (const auto& row : ManifestRows("disk")) {
    if (row[1] == path) {
      out.push_back(row[4]);
    }
  }
  return out;
}

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

class ImportWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kubeconfig_ = WorldVar("KUBECONFIG");
    ASSERT_FALSE(kubeconfig_.empty());
    auto config = LoadKubeconfig(kubeconfig_);
    ASSERT_TRUE(config);
    auto c = Client::Create(*config);
    ASSERT_TRUE(c);
    client_ = std::move(*c);
    suffix_ = std::to_string(std::random_device{}() % 1000000);
    ns_ = "imp-" + suffix_;
    ASSERT_TRUE(client_->Create(
        {}, kNamespaces, "",
        {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns_}}}}));
    log_dir_ = fs::temp_directory_path() / ("vmimport-imp-" + suffix_);
    fs::create_directories(log_dir_);
    ASSERT_TRUE(
        client_->Create({}, kNads, ns_,
                        {{"apiVersion", "k8s.cni.cncf.io/v1"},
                         {"kind", "NetworkAttachmentDefinition"},
                         {"metadata", {{"name", "vlan10"}, {"namespace", ns_}}},
                         {"spec", {{"config", R"({"cniVersion":"0.3.1","type":"bridge"})"}}}}));
  }

  void TearDown() override {
    controller_.reset();
    sim_.reset();
    (void)client_->Delete({}, kNamespaces, "", ns_);
    if (!HasFailure()) {
      fs::remove_all(log_dir_);
    } else {
      std::cerr << "logs kept in " << log_dir_ << "\n";
    }
  }

  void StartWorld(const std::vector<std::string>& sim_args = {},
                  const std::vector<std::string>& controller_args = {}) {
    std::vector<std::string> sim = {VMIMPORT_HARVESTER_SIM_BINARY, "--kubeconfig", kubeconfig_};
    sim.insert(sim.end(), sim_args.begin(), sim_args.end());
    sim_ = std::make_unique<ChildProcess>(sim, (log_dir_ / "harvester-sim.log").string());
    StartController(controller_args);
  }

  void StartController(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{VMIMPORT_CONTROLLER_BINARY,
                                  "--kubeconfig",
                                  kubeconfig_,
                                  "--namespace",
                                  ns_,
                                  "--leader-elect=false",
                                  "--image-server-address",
                                  "127.0.0.1:0",
                                  "--health-address",
                                  "127.0.0.1:0",
                                  "--source-retry-interval",
                                  "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    controller_ = std::make_unique<ChildProcess>(argv, (log_dir_ / "controller.log").string());
  }

  void CreateSecret(const std::string& name) {
    Json secret = {{"apiVersion", "v1"},
                   {"kind", "Secret"},
                   {"metadata", {{"name", name}, {"namespace", ns_}}},
                   {"stringData",
                    {{"username", WorldVar("VCSIM_USERNAME")},
                     {"password", WorldVar("VCSIM_PASSWORD")},
                     {"caCert", ReadFile(WorldVar("VCSIM_CA"))}}}};
    auto r = client_->Create({}, kSecrets, ns_, secret);
    ASSERT_TRUE(r) << r.error().ToString();
  }

  void CreateSource(const std::string& secret = "vsphere") {
    auto r = client_->Create({}, kVmwareSources, ns_,
                             {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                              {"kind", "VmwareSource"},
                              {"metadata", {{"name", "vcsim"}, {"namespace", ns_}}},
                              {"spec",
                               {{"endpoint", WorldVar("VCSIM_SDK_URL")},
                                {"dc", WorldVar("VCSIM_DATACENTER")},
                                {"credentials", {{"name", secret}, {"namespace", ns_}}}}}});
    ASSERT_TRUE(r) << r.error().ToString();
  }

  void CreateImport(const std::string& name, Json spec) {
    spec["sourceCluster"] = {{"name", "vcsim"},
                             {"namespace", ns_},
                             {"kind", "VmwareSource"},
                             {"apiVersion", "migration.harvesterhci.io/v1beta1"}};
    auto r = client_->Create({}, kImports, ns_,
                             {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                              {"kind", "VirtualMachineImport"},
                              {"metadata", {{"name", name}, {"namespace", ns_}}},
                              {"spec", spec}});
    ASSERT_TRUE(r) << r.error().ToString();
  }

  std::string ImportStatus(const std::string& name) {
    auto obj = client_->Get({}, kImports, ns_, name);
    if (!obj) {
      return obj.error().code == core::ErrorCode::kNotFound ? "<gone>" : "<error>";
    }
    return obj->value("status", Json::object()).value("importStatus", "");
  }

  //! Waits for `want` (or any terminal state); returns the last status seen.
  std::string WaitImport(const std::string& name, const std::string& want,
                         std::chrono::seconds limit = 90s) {
    std::string last;
    Eventually(
        [&] {
          last = ImportStatus(name);
          return last == want || last == "virtualMachineImportInvalid" ||
                 last == "diskImageFailed" || last == "VMMigrationFailed";
        },
        limit);
    return last;
  }

  Json GetImport(const std::string& name) {
    auto obj = client_->Get({}, kImports, ns_, name);
    EXPECT_TRUE(obj);
    return obj ? *obj : Json::object();
  }

  std::vector<Json> Items(const Resource& r) {
    auto list = client_->List({}, r, ns_);
    EXPECT_TRUE(list);
    std::vector<Json> out;
    if (list) {
      for (const Json& i : (*list)["items"]) {
        if (!i["metadata"].contains("deletionTimestamp")) {
          out.push_back(i);
        }
      }
    }
    return out;
  }

  //! Each disk of the import: the sha256 the simulator received equals the seeded one, and so
  //! does the one our image server computed (in status).
  void ExpectDisksMatch(const std::string& import_name, const std::string& vm_path) {
    const auto want = SeededDiskSha256(vm_path);
    ASSERT_FALSE(want.empty()) << vm_path;
    const Json status = GetImport(import_name)["status"];
    const Json disks = status.value("diskImportStatus", Json::array());
    ASSERT_EQ(disks.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      const std::string image_name = disks[i].value("VirtualMachineImage", "");
      auto image = client_->Get({}, kImages, ns_, image_name);
      ASSERT_TRUE(image) << image_name;
      EXPECT_EQ(
          (*image)["metadata"]["annotations"].value("harvester-sim.vm-import.test/sha256", ""),
          want[i])
          << vm_path << " disk " << i;
      EXPECT_EQ(disks[i].value("sha256", ""), want[i]) << vm_path << " disk " << i;
    }
  }

  //! The source VM's power state, read from vcsim.
  model::PowerState SourcePower(const std::string& path) {
    auto http = http::Client::Create({.ca_file = WorldVar("VCSIM_CA")});
    EXPECT_TRUE(http);
    auto session =
        source::vmware::Session::Login({}, **http, WorldVar("VCSIM_SDK_URL"),
                                       WorldVar("VCSIM_USERNAME"), WorldVar("VCSIM_PASSWORD"));
    EXPECT_TRUE(session);
    auto ref = (*session)->FindByInventoryPath({}, path);
    EXPECT_TRUE(ref);
    source::vmware::Inventory inventory(**session);
    auto d = inventory.Describe({}, {*ref, path.substr(path.rfind('/') + 1), path});
    EXPECT_TRUE(d);
    (void)(*session)->Logout({});
    return d ? d->power_state : model::PowerState::kUnknown;
  }

  //! Powers a source VM on with govc, so that the import has to power it off.
  void PowerOn(const std::string& path) {
    const std::string cmd = "GOVC_URL='" + WorldVar("GOVC_URL") + "' GOVC_USERNAME='" +
                            WorldVar("GOVC_USERNAME") + "' GOVC_PASSWORD='" +
                            WorldVar("GOVC_PASSWORD") + "' GOVC_TLS_CA_CERTS='" +
                            WorldVar("GOVC_TLS_CA_CERTS") + "' '" + WorldVar("GOVC") +
                            "' vm.power -on '" + path + "' >/dev/null 2>&1";
    if (SourcePower(path) != model::PowerState::kOn) {
      ASSERT_EQ(testing::RunCommand(cmd), 0) << cmd;
    }
    ASSERT_EQ(SourcePower(path), model::PowerState::kOn);
  }

  std::string ControllerLog() { return ReadFile((log_dir_ / "controller.log").string()); }

  std::string kubeconfig_;
  std::unique_ptr<Client> client_;
  std::string suffix_;
  std::string ns_;
  fs::path log_dir_;
  std::unique_ptr<ChildProcess> sim_;
  std::unique_ptr<ChildProcess> controller_;
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
  EXPECT_EQ(domain["memory"].value("guest", ""), VmField("/DC0/vm/vmi-multi", 6) + "Mi");
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
