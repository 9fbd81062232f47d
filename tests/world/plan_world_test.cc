// ImportPlan (issue 23) against the real peers: the world's kube-apiserver and vcsim, the
// controller and the Harvester simulator. A folder of 4 small VMs of the test's own (copies of
// the seed's vmi-bios-small: its 8 MiB disk, so every import is checked against the seed's
// digest) is imported by one plan in waves of 2: watched all along, never more than 2 of the
// plan's imports run at once; all 4 end running with the seed's bytes; the plan's status sums
// them up; a VM added to the folder after the selection was resolved is not imported. A plan
// whose selector matches nothing says so (phase Invalid, reason NoVmsSelected, an Event). A plan
// with one import failed (its target VM name is taken) retries it after the fix, from the plan
// (spec.retry), without touching the import that succeeded.

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "core/json.h"
#include "world/import_fixture.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::Eventually;
using testing::ManifestRows;
using testing::RunCommand;
using testing::WorldVar;

const Resource kPlans{"migration.harvesterhci.io", "v1beta1", "importplans", true};
constexpr const char* kSeedVm = "/DC0/vm/vmi-bios-small";

class PlanWorldTest : public ImportFixture {
 protected:
  PlanWorldTest() : ImportFixture("plan") {}

  void TearDown() override {
    for (const std::string& path : made_) {
      (void)RunCommand(Govc("vm.destroy '" + path + "' >/dev/null 2>&1"));
    }
    if (!folder_.empty()) {
      (void)RunCommand(Govc("object.destroy '" + folder_ + "' >/dev/null 2>&1"));
    }
    ImportFixture::TearDown();
  }

  // A VM in folder_ whose disk is the seed VM's (same size, same streamOptimized file).
  void MakeVm(const std::string& name) {
    std::string size;
    std::string file;
    for (const auto& row : ManifestRows("disk")) {
      if (row[1] == kSeedVm) {
        size = row[3];
        file = row[5];
      }
    }
    ASSERT_FALSE(size.empty()) << "no disk of " << kSeedVm << " in the seed manifest";
    std::string out;
    ASSERT_EQ(RunCommand(Govc("vm.create -on=false -folder '" + folder_ +
                              "' -pool /DC0/host/DC0_C0/Resources -ds seedds -c 1 -m 256 "
                              "-g otherLinux64Guest -disk " +
                              size +
                              "B -disk.controller pvscsi -net 'VM Network' "
                              "-net.adapter vmxnet3 '" +
                              name + "' 2>&1"),
                         &out),
              0)
        << out;
    made_.push_back(folder_ + "/" + name);
    ASSERT_EQ(RunCommand(Govc("device.info -json -vm '" + folder_ + "/" + name + "'"), &out), 0);
    auto info = core::ParseJson(out);
    ASSERT_TRUE(info) << out;
    std::string backing;
    for (const Json& dev : core::JsonArray(*info, "devices")) {
      if (core::JsonString(dev, "type") == "VirtualDisk") {
        backing = core::JsonString(core::JsonObject(dev, "backing"), "fileName");
      }
    }
    ASSERT_EQ(backing.rfind("[seedds] ", 0), 0u) << backing;
    const std::string dir = WorldVar("VCSIM_DATASTORE_DIR") + "/";
    ASSERT_EQ(RunCommand("cp -f '" + dir + file.substr(9) + "' '" + dir + backing.substr(9) + "'"),
              0);
  }

  Json GetPlan(const std::string& name) {
    auto p = client_->Get({}, kPlans, ns_, name);
    return p ? *p : Json::object();
  }

  void CreatePlan(const std::string& name, const Json& spec) {
    auto r = client_->Create({}, kPlans, ns_,
                             {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                              {"kind", "ImportPlan"},
                              {"metadata", {{"name", name}}},
                              {"spec", spec}});
    ASSERT_TRUE(r) << r.error().ToString();
  }

  std::string folder_;
  std::vector<std::string> made_;
};

TEST_F(PlanWorldTest, AFolderImportsInWavesOfTwo) {
  const std::string folder_name = "plan-" + suffix_;
  folder_ = "/DC0/vm/" + folder_name;
  std::string out;
  ASSERT_EQ(RunCommand(Govc("folder.create '" + folder_ + "' 2>&1"), &out), 0) << out;
  const std::vector<std::string> names = {"pvm-" + suffix_ + "-1", "pvm-" + suffix_ + "-2",
                                          "PVM-" + suffix_ + "-Three", "pvm-" + suffix_ + "-4"};
  for (const auto& n : names) {
    MakeVm(n);
  }
  CreateSecret("vsphere");
  CreateSource();
  StartWorld();

  // A selector that matches nothing: a clear reason, nothing created.
  CreatePlan("nothing", {{"sourceCluster", SourceRef("vcsim")},
                         {"selector", {{"folder", folder_name}, {"namePattern", "db-*"}}}});
  ASSERT_TRUE(Eventually([&] {
    return core::JsonString(core::JsonObject(GetPlan("nothing"), "status"), "phase") == "Invalid";
  })) << GetPlan("nothing").dump(2);
  const Json nothing = GetPlan("nothing")["status"];
  ASSERT_FALSE(core::JsonArray(nothing, "conditions").empty());
  EXPECT_EQ(nothing["conditions"][0]["reason"], "NoVmsSelected");
  EXPECT_NE(core::JsonString(nothing["conditions"][0], "message").find("matched none of the 4 VMs"),
            std::string::npos)
      << nothing.dump(2);

  // The plan: the folder, waves of 2.
  CreatePlan("wave", {{"sourceCluster", SourceRef("vcsim")},
                      {"selector", {{"folder", folder_name}}},
                      {"template", {{"defaultDiskBusType", "virtio"}}},
                      {"schedule", {{"maxConcurrentImports", 2}}}});
  std::atomic<bool> done{false};
  std::atomic<int> peak{0};
  std::atomic<int> seen_imports{0};
  std::thread watcher([&] {
    while (!done) {
      auto list = client_->List({}, kImports, ns_,
                                {.label_selector = "migration.harvesterhci.io/import-plan=wave"});
      if (list) {
        int active = 0;
        int all = 0;
        for (const Json& item : core::JsonArray(*list, "items")) {
          ++all;
          const std::string s = core::JsonString(core::JsonObject(item, "status"), "importStatus");
          active += (s == "virtualMachineRunning" || s == "virtualMachineImportInvalid" ||
                     s == "VMMigrationFailed")
                        ? 0
                        : 1;
        }
        peak = std::max(peak.load(), active);
        seen_imports = std::max(seen_imports.load(), all);
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  // The selection is resolved once: a VM added afterwards is not imported.
  const bool resolved = Eventually([&] {
    return core::JsonMember(core::JsonObject(GetPlan("wave"), "status"), "selection") != nullptr;
  });
  if (resolved) {
    MakeVm("pvm-" + suffix_ + "-late");
  }
  const bool finished = Eventually(
      [&] {
        const std::string phase =
            core::JsonString(core::JsonObject(GetPlan("wave"), "status"), "phase");
        return phase == "Succeeded" || phase == "Failed";
      },
      420s, 500ms);
  done = true;
  watcher.join();
  ASSERT_TRUE(resolved) << GetPlan("wave").dump(2);
  const Json status = GetPlan("wave")["status"];
  ASSERT_TRUE(finished) << status.dump(2) << ControllerLog();
  EXPECT_EQ(status["phase"], "Succeeded") << status.dump(2);
  EXPECT_LE(peak.load(), 2) << "more than 2 imports of the plan ran at once";
  EXPECT_EQ(peak.load(), 2) << "the waves never ran 2 at once: the test proves little";
  EXPECT_EQ(seen_imports.load(), 4);

  // The selection, recorded: 4 VMs with their paths and predictable import names.
  const Json& vms = status["selection"]["vms"];
  ASSERT_EQ(vms.size(), 4u) << status.dump(2);
  std::set<std::string> import_names;
  for (const Json& vm : vms) {
    EXPECT_EQ(core::JsonString(vm, "inventoryPath").rfind(folder_ + "/", 0), 0u) << vm.dump();
    import_names.insert(core::JsonString(vm, "importName"));
  }
  EXPECT_TRUE(import_names.contains("wave-pvm-" + suffix_ + "-three")) << status.dump(2);
  EXPECT_EQ(status["selection"]["sourceVms"], 4);

  // Totals.
  const Json& summary = status["summary"];
  uint64_t disk_bytes = 0;
  for (const auto& row : ManifestRows("disk")) {
    if (row[1] == kSeedVm) {
      disk_bytes = std::stoull(row[3]);
    }
  }
  EXPECT_EQ(summary["total"], 4);
  EXPECT_EQ(summary["succeeded"], 4);
  EXPECT_EQ(summary["running"], 0);
  EXPECT_EQ(summary["failed"], 0);
  EXPECT_EQ(summary["notStarted"], 0);
  EXPECT_EQ(summary["byPhase"]["virtualMachineRunning"], 4);
  EXPECT_EQ(summary["bytesTotal"], 4 * disk_bytes);
  EXPECT_EQ(summary["bytesDone"], 4 * disk_bytes);
  EXPECT_EQ(summary["progress"], "100%");
  EXPECT_TRUE(core::JsonArray(status, "attention").empty()) << status.dump(2);

  // Every import: owned by the plan, running, with the seed's bytes.
  for (const std::string& name : import_names) {
    const Json imp = GetImport(name);
    EXPECT_EQ(core::JsonString(core::JsonObject(imp, "status"), "importStatus"),
              "virtualMachineRunning")
        << name;
    EXPECT_EQ(imp["metadata"]["ownerReferences"][0]["name"], "wave") << name;
    ExpectDisksMatch(name, kSeedVm);
  }
  auto all = client_->List({}, kImports, ns_);
  ASSERT_TRUE(all);
  EXPECT_EQ(core::JsonArray(*all, "items").size(), 4u) << "the late VM was imported";
  auto events = client_->List({}, kEvents, ns_);
  ASSERT_TRUE(events);
  std::set<std::string> reasons;
  for (const Json& e : core::JsonArray(*events, "items")) {
    reasons.insert(core::JsonString(e, "reason"));
  }
  for (const char* r : {"SelectionResolved", "ImportCreated", "AllVmsRunning", "NoVmsSelected"}) {
    EXPECT_TRUE(reasons.contains(r)) << r;
  }
}

TEST_F(PlanWorldTest, AFailedImportIsRetriedFromThePlan) {
  // vmi-CamelCase imports as vmi-camelcase: a VirtualMachine of that name that is not ours makes
  // its import fail (VirtualMachineExists) before the source is touched.
  Json foreign = {{"apiVersion", "kubevirt.io/v1"},
                  {"kind", "VirtualMachine"},
                  {"metadata", {{"name", "vmi-camelcase"}, {"namespace", ns_}}},
                  {"spec",
                   {{"runStrategy", "Halted"},
                    {"template", {{"spec", {{"domain", {{"devices", Json::object()}}}}}}}}}};
  auto made = client_->Create({}, kVms, ns_, foreign);
  ASSERT_TRUE(made) << made.error().ToString();
  CreateSecret("vsphere");
  CreateSource();
  StartWorld();
  CreatePlan("retry",
             {{"sourceCluster", SourceRef("vcsim")},
              {"selector", {{"names", {"/DC0/vm/vmi-bios-small", "/DC0/vm/vmi-CamelCase"}}}},
              {"schedule", {{"maxConcurrentImports", 2}}}});
  auto phase = [&] {
    return core::JsonString(core::JsonObject(GetPlan("retry"), "status"), "phase");
  };
  ASSERT_TRUE(Eventually([&] { return phase() == "Failed"; }, 240s, 500ms))
      << GetPlan("retry").dump(2) << ControllerLog();
  Json status = GetPlan("retry")["status"];
  ASSERT_EQ(core::JsonArray(status, "attention").size(), 1u) << status.dump(2);
  EXPECT_EQ(status["attention"][0]["vm"], "vmi-CamelCase");
  EXPECT_EQ(status["attention"][0]["reason"], "VirtualMachineExists");
  EXPECT_EQ(status["summary"]["succeeded"], 1);
  const std::string good_uid =
      core::JsonString(GetImport("retry-vmi-bios-small")["metadata"], "uid");
  const std::string failed_uid =
      core::JsonString(GetImport("retry-vmi-camelcase")["metadata"], "uid");
  ASSERT_FALSE(good_uid.empty());
  ASSERT_FALSE(failed_uid.empty());

  // The operator removes the conflict and asks the plan to retry.
  ASSERT_TRUE(client_->Delete({}, kVms, ns_, "vmi-camelcase"));
  ASSERT_TRUE(Eventually([&] { return !client_->Get({}, kVms, ns_, "vmi-camelcase"); }));
  auto patched = client_->MergePatch({}, kPlans, ns_, "retry", {{"spec", {{"retry", "1"}}}});
  ASSERT_TRUE(patched) << patched.error().ToString();
  ASSERT_TRUE(Eventually([&] { return phase() == "Succeeded"; }, 240s, 500ms))
      << GetPlan("retry").dump(2) << ControllerLog();
  status = GetPlan("retry")["status"];
  EXPECT_EQ(status["retriedFor"], "1");
  EXPECT_EQ(status["summary"]["succeeded"], 2);
  EXPECT_TRUE(core::JsonArray(status, "attention").empty()) << status.dump(2);
  EXPECT_EQ(core::JsonString(GetImport("retry-vmi-bios-small")["metadata"], "uid"), good_uid)
      << "the import that had succeeded was touched";
  const Json again = GetImport("retry-vmi-camelcase");
  EXPECT_NE(core::JsonString(again["metadata"], "uid"), failed_uid);
  EXPECT_EQ(core::JsonString(core::JsonObject(again, "status"), "importStatus"),
            "virtualMachineRunning");
  ExpectDisksMatch("retry-vmi-camelcase", "/DC0/vm/vmi-CamelCase");
  auto events = client_->List({}, kEvents, ns_);
  ASSERT_TRUE(events);
  bool retried = false;
  for (const Json& e : core::JsonArray(*events, "items")) {
    retried |= core::JsonString(e, "reason") == "RetryingFailedImports";
  }
  EXPECT_TRUE(retried);
}

}  // namespace
}  // namespace vmimport::kube
