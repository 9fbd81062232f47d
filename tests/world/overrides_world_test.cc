// Issue 19 in image mode, against the real peers: a VM whose disks are on two datastores imported
// with a storageMapping into two StorageClasses, a per-disk bus, the target's name, CPU, memory
// and a stopped run strategy seen in the VirtualMachine KubeVirt admitted; bad mappings refused
// before the source VM is touched; `kubectl vmimport plan` showing every override.
//
// vmi-twods (tests/world/vcsim): disk 0 on datastore seedds, disk 1 on seedds2; two NICs on
// VM Network. The world's StorageClasses: harvester-longhorn (default) and longhorn-single.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "build_paths.h"
#include "kube/client.h"
#include "world/import_fixture.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::Eventually;
using testing::ManifestRows;
namespace fs = std::filesystem;

const Resource kVmis{"kubevirt.io", "v1", "virtualmachineinstances", true};
constexpr const char* kTwoDatastoresVm = "/DC0/vm/vmi-twods";

class OverridesWorldTest : public ImportFixture {
 protected:
  OverridesWorldTest() : ImportFixture("ovr") {}

  void SetUp() override {
    ImportFixture::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    CreateSecret("vsphere");
    CreateSource();
  }

  //! The messages of the Events of `reason` on the import `name`.
  std::vector<std::string> EventMessages(const std::string& name, const std::string& reason) {
    std::vector<std::string> out;
    for (const Json& e : Items(kEvents)) {
      if (e["involvedObject"].value("name", "") == name && e.value("reason", "") == reason) {
        out.push_back(e.value("message", ""));
      }
    }
    return out;
  }

  //! The mapping and overrides both tests start from.
  static Json MappedSpec() {
    return {{"virtualMachineName", "vmi-twods"},
            {"storageMapping",
             {{{"source", "seedds"}, {"storageClass", "harvester-longhorn"}},
              {{"source", "seedds2"}, {"storageClass", "longhorn-single"}}}},
            {"diskOverrides", {{{"index", 1}, {"diskBusType", "sata"}}}},
            {"targetVirtualMachineName", "twods-renamed"},
            {"cpu", {{"sockets", 1}, {"cores", 2}, {"threads", 2}}},
            {"memory", "1536Mi"},
            {"nicOverrides", {{{"index", 0}, {"networkInterfaceModel", "e1000e"}}}},
            {"runStrategy", "stopped"}};
  }
};

TEST_F(OverridesWorldTest, StorageMappingPerDatastoreAndOverridesShapeAStoppedVm) {
  // The seed as the test needs it: one disk on each datastore.
  std::vector<std::string> datastores;
  for (const auto& row : ManifestRows("disk")) {
    if (row[1] == kTwoDatastoresVm) {
      datastores.push_back(row[5].substr(0, row[5].find(']') + 1));
    }
  }
  ASSERT_EQ(datastores, (std::vector<std::string>{"[seedds]", "[seedds2]"}));
  StartWorld();
  CreateImport("map", MappedSpec());
  ASSERT_EQ(WaitImport("map", "virtualMachineCreated"), "virtualMachineCreated") << ControllerLog();
  ExpectDisksMatch("map", kTwoDatastoresVm);

  // Each disk's storage as the vSphere provider describes it: the datastore of its backing file.
  const Json status = GetImport("map")["status"];
  EXPECT_EQ(status["sourceVirtualMachine"]["disks"][0].value("storage", ""), "seedds");
  EXPECT_EQ(status["sourceVirtualMachine"]["disks"][1].value("storage", ""), "seedds2");
  // Each disk's class: decided into status, then given to its image.
  const Json& disks = status["diskImportStatus"];
  ASSERT_EQ(disks.size(), 2u);
  const std::vector<std::string> want_class = {"harvester-longhorn", "longhorn-single"};
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(disks[i].value("storageClass", ""), want_class[i]) << i;
    auto image = client_->Get({}, kImages, ns_, disks[i].value("VirtualMachineImage", ""));
    ASSERT_TRUE(image) << i;
    EXPECT_EQ((*image)["spec"].value("targetStorageClassName", ""), want_class[i]) << i;
    // Released to the VM: deleting the import does not take the disks.
    EXPECT_TRUE((*image)["metadata"].value("ownerReferences", Json::array()).empty()) << i;
  }
  EXPECT_EQ(disks[1].value("busType", ""), "sata");

  // The VirtualMachine as KubeVirt admitted it: the name as written, the user's CPU, memory, bus
  // and model, and Halted.
  auto vm = client_->Get({}, kVms, ns_, "twods-renamed");
  ASSERT_TRUE(vm) << ControllerLog();
  EXPECT_EQ((*vm)["spec"].value("runStrategy", ""), "Halted");
  const Json& domain = (*vm)["spec"]["template"]["spec"]["domain"];
  EXPECT_EQ(domain["cpu"].value("sockets", 0), 1);
  EXPECT_EQ(domain["cpu"].value("cores", 0), 2);
  EXPECT_EQ(domain["cpu"].value("threads", 0), 2);
  EXPECT_EQ(QuantityBytes(domain["memory"].value("guest", "")), 1536LL << 20);
  EXPECT_EQ(domain["devices"]["disks"][1]["disk"].value("bus", ""), "sata");
  EXPECT_EQ(domain["devices"]["interfaces"][0].value("model", ""), "e1000e");

  // Every override in one Event.
  const auto overrides = EventMessages("map", "Overrides");
  ASSERT_EQ(overrides.size(), 1u);
  for (const char* part :
       {"target name twods-renamed", "cpu 1 sockets x 2 cores x 2 threads", "memory 1536Mi",
        "run strategy stopped", "): bus sata [user: bus set by the user]",
        "storage class longhorn-single [storage-mapping: spec.storageMapping maps seedds2",
        "nic 0 (", "model e1000e [user"}) {
    EXPECT_NE(overrides[0].find(part), std::string::npos) << part << "\n" << overrides[0];
  }

  // Stopped is the end: no VMI is started, and the import stays virtualMachineCreated.
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(ImportStatus("map"), "virtualMachineCreated");
  EXPECT_TRUE(Items(kVmis).empty());
  EXPECT_EQ(SourcePower(kTwoDatastoresVm), model::PowerState::kOff);
}

// A class that does not exist and a disk the VM does not have: each import is refused with its
// reason before the source VM is touched (it stays on).
TEST_F(OverridesWorldTest, BadMappingsAreRefusedBeforeTheSourceIsTouched) {
  PowerOn(kTwoDatastoresVm);
  StartController();
  Json no_class = MappedSpec();
  no_class["storageMapping"][1]["storageClass"] = "no-such-class";
  CreateImport("noclass", no_class);
  Json no_disk = MappedSpec();
  no_disk["diskOverrides"] = {{{"name", "Hard disk 9"}, {"diskBusType", "sata"}}};
  CreateImport("nodisk", no_disk);
  EXPECT_EQ(WaitImport("noclass", "virtualMachineImportInvalid", 30s),
            "virtualMachineImportInvalid");
  EXPECT_EQ(WaitImport("nodisk", "virtualMachineImportInvalid", 30s),
            "virtualMachineImportInvalid");
  auto said = [&](const std::string& name, const std::string& text) {
    for (const auto& m : EventMessages(name, "PreflightFailed")) {
      if (m.find(text) != std::string::npos) {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(said("noclass", "storage class no-such-class not found")) << ControllerLog();
  EXPECT_TRUE(
      said("nodisk", "spec.diskOverrides[0]: source VM vmi-twods has no disk \"Hard disk 9\""))
      << ControllerLog();
  const Json failed = GetImport("nodisk")["status"];
  bool condition = false;
  for (const Json& c : failed.value("importConditions", Json::array())) {
    condition |= c.value("type", "") == "Failed" &&
                 c.value("message", "").find("Hard disk 9") != std::string::npos;
  }
  EXPECT_TRUE(condition) << failed.dump();
  EXPECT_EQ(SourcePower(kTwoDatastoresVm), model::PowerState::kOn);
  EXPECT_TRUE(Items(kImages).empty());
  // Back to the seeded state (off): later tests compare vcsim with the seed manifest.
  EXPECT_EQ(testing::RunCommand(Govc("vm.power -off -force '" + std::string(kTwoDatastoresVm) +
                                     "' >/dev/null 2>&1")),
            0);
  EXPECT_EQ(SourcePower(kTwoDatastoresVm), model::PowerState::kOff);
}

// `kubectl vmimport plan` shows each disk's datastore and class, and every override.
TEST_F(OverridesWorldTest, PlanShowsTheOverrides) {
  Json spec = MappedSpec();
  spec["sourceCluster"] = SourceRef("vcsim");
  const fs::path file = dir_ / "plan.json";  // JSON is YAML
  std::ofstream(file) << Json{
      {"apiVersion", "migration.harvesterhci.io/v1beta1"},
      {"kind", "VirtualMachineImport"},
      {"metadata", {{"name", "plan"}, {"namespace", ns_}}},
      {"spec", spec}}.dump();
  StartController();  // the source's status clusterReady comes from the controller
  ASSERT_TRUE(Eventually(
      [&] {
        auto s = client_->Get({}, kVmwareSources, ns_, "vcsim");
        return s && s->value("status", Json::object()).value("status", "") == "clusterReady";
      },
      30s));
  std::string out;
  const int rc = testing::RunCommand(std::string("'") + vmimport::build_paths::CliBinary() +
                                         "' --kubeconfig '" + kubeconfig_ + "' -n " + ns_ +
                                         " plan -f '" + file.string() + "' 2>&1",
                                     &out);
  EXPECT_EQ(rc, 0) << out;
  for (const char* part :
       {"target name twods-renamed", "on seedds2 bus sata (user: bus set by the user",
        "storage class longhorn-single (storage-mapping:", "override: memory 1536Mi",
        "override: run strategy stopped", "override: cpu 1 sockets x 2 cores x 2 threads",
        "override: nic 0 (", "storage class harvester-longhorn exists",
        "storage class longhorn-single exists", "the import would start"}) {
    EXPECT_NE(out.find(part), std::string::npos) << part << "\n" << out;
  }
  EXPECT_TRUE(Items(kImports).empty());  // nothing made
}

}  // namespace
}  // namespace vmimport::kube
