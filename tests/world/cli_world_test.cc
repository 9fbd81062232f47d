// kubectl-vmimport against the real peers: list a vCenter's VMs, plan a good and an ambiguous
// import without touching anything, and watch an import to its end.

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
using testing::WorldVar;
namespace fs = std::filesystem;

class CliWorldTest : public ImportFixture {
 protected:
  CliWorldTest() : ImportFixture("cli") {}

  void SetUp() override {
    ImportFixture::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    CreateSecret("vs");
    CreateSource("vs");
    CreateNad("vlan10", "{}");
    if (!HasFatalFailure()) {
      StartController();
    }
  }

  //! Runs kubectl-vmimport with `args`; its exit code, stdout+stderr in `out`.
  int Cli(const std::string& args, std::string* out) {
    const std::string cmd = std::string("'") + vmimport::build_paths::CliBinary() +
                            "' --kubeconfig '" + kubeconfig_ + "' -n " + ns_ + " " + args + " 2>&1";
    const int rc = testing::RunCommand(cmd, out);
    return rc;
  }

  std::string WriteImport(const std::string& name, const std::string& vm) {
    const fs::path file = dir_ / (name + ".yaml");
    std::ofstream(file) << "apiVersion: migration.harvesterhci.io/v1beta1\n"
                           "kind: VirtualMachineImport\n"
                           "metadata:\n  name: "
                        << name << "\nspec:\n  virtualMachineName: " << vm
                        << "\n  sourceCluster:\n    name: vcsim\n    namespace: " << ns_
                        << "\n    kind: VmwareSource\n"
                           "    apiVersion: migration.harvesterhci.io/v1beta1\n"
                           "  networkMapping:\n  - sourceNetwork: VM Network\n"
                           "    destinationNetwork: vlan10\n";
    return file.string();
  }

  bool SourceReady() {
    for (int i = 0; i < 150; ++i) {
      auto s = client_->Get({}, kVmwareSources, ns_, "vcsim");
      if (s && s->value("status", Json::object()).value("status", "") == "clusterReady") {
        return true;
      }
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }
};

TEST_F(CliWorldTest, ListShowsEverySeededVmWithDisksNicsAndPower) {
  std::string out;
  ASSERT_EQ(Cli("list vmwaresource/vcsim", &out), 0) << out;
  for (const auto& row : testing::ManifestRows("vm")) {
    EXPECT_NE(out.find(row[1]), std::string::npos) << row[1] << "\n" << out;  // inventory path
  }
  EXPECT_NE(out.find("00:0c:29:62:37:37"), std::string::npos);  // a vmi-multi MAC
  EXPECT_NE(out.find("poweredOn"), std::string::npos);
  EXPECT_NE(out.find("efi"), std::string::npos);
  ASSERT_EQ(Cli("list vmwaresource/vcsim --folder team-a", &out), 0) << out;
  EXPECT_NE(out.find("/DC0/vm/team-a/vmi-dup"), std::string::npos);
  EXPECT_EQ(out.find("/DC0/vm/team-b/vmi-dup"), std::string::npos);
}

TEST_F(CliWorldTest, PlanChecksEverythingAndTouchesNothing) {
  ASSERT_TRUE(SourceReady());
  std::string out;
  EXPECT_EQ(Cli("plan -f " + WriteImport("good", "vmi-multi"), &out), 0) << out;
  EXPECT_NE(out.find("exactly one source VM: /DC0/vm/vmi-multi"), std::string::npos) << out;
  EXPECT_NE(out.find("-> " + std::string("vlan10")), std::string::npos);
  EXPECT_NE(out.find("-> pod-network"), std::string::npos);  // the DVPG NIC has no mapping
  EXPECT_NE(out.find("the import would start"), std::string::npos);
  EXPECT_EQ(Cli("plan -f " + WriteImport("dup", "vmi-dup"), &out), 1) << out;
  EXPECT_NE(out.find("/DC0/vm/team-a/vmi-dup"), std::string::npos) << out;
  EXPECT_NE(out.find("/DC0/vm/team-b/vmi-dup"), std::string::npos);
  EXPECT_NE(out.find("the import would not start"), std::string::npos);
  // Nothing was created or changed.
  auto imports = client_->List({}, kImports, ns_);
  ASSERT_TRUE(imports);
  EXPECT_TRUE((*imports)["items"].empty());
  auto images = client_->List({}, kImages, ns_);
  ASSERT_TRUE(images);
  EXPECT_TRUE((*images)["items"].empty());
}

TEST_F(CliWorldTest, WatchFollowsAnImportToItsEnd) {
  StartSim({"--rate", "20000000"});
  std::string out;
  ASSERT_EQ(testing::RunCommand("'" + WorldVar("KUBECTL") + "' --kubeconfig '" + kubeconfig_ +
                                    "' apply -n " + ns_ + " -f " +
                                    WriteImport("w", "vmi-bios-small") + " 2>&1",
                                &out),
            0)
      << out;
  ASSERT_EQ(Cli("watch w", &out), 0) << out;
  EXPECT_NE(out.find("virtualMachineRunning"), std::string::npos) << out;
  EXPECT_NE(out.find("100%"), std::string::npos) << out;
  EXPECT_NE(out.find("w-" + ns_ + "-disk-0.img"), std::string::npos) << out;
}

}  // namespace
}  // namespace vmimport::kube
