// Volume mode (spec.diskTarget: volume, issue 19) on the in-memory Kubernetes: one DataVolume per
// disk instead of an image, the VM on them, the volumes left to the user after success, and
// everything removed on cancel and failure. CDI is played by writing the DataVolumes' status.

#include <gtest/gtest.h>

#include "tests/unit/controller/import_fixture.h"

namespace vmimport::testing {
namespace {

class VolumeReconcilerTest : public ImportFixture {
 protected:
  void CreateVolumeImport(const std::string& name) {
    CreateImport(name, "web", {{"diskTarget", "volume"}});
  }
  //! Plays CDI: every DataVolume ends in `phase`.
  void MarkDataVolumes(const std::string& phase) {
    for (Json dv : api_.All("datavolumes")) {
      dv["status"] = {{"phase", phase},
                      {"progress", phase == "Succeeded" ? "100.0%" : "12.00%"},
                      {"conditions",
                       {{{"type", "Running"},
                         {"status", "False"},
                         {"reason", phase == "Failed" ? "Error" : "Completed"},
                         {"message", phase == "Failed" ? "unexpected EOF" : "Import Complete"}}}}};
      api_.Put("datavolumes", dv);
    }
  }
  size_t PlaceholderSecrets() {
    size_t n = 0;
    for (const Json& s : api_.All("secrets")) {
      n += s["metadata"]
                   .value("labels", Json::object())
                   .contains("migration.harvesterhci.io/import-uid")
               ? 1U
               : 0U;
    }
    return n;
  }
};

TEST_F(VolumeReconcilerTest, OneDataVolumePerDiskOnOurUrlsAndAVmOnThemLeftToTheUser) {
  CreateReadySource();
  CreateVolumeImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  EXPECT_TRUE(api_.All("virtualmachineimages").empty());
  const auto dvs = api_.All("datavolumes");
  ASSERT_EQ(dvs.size(), 2u);
  const std::string uid = ImportOf("imp")["metadata"].value("uid", "");
  for (const Json& dv : dvs) {
    EXPECT_EQ(dv["spec"]["source"]["s3"].value("url", "").rfind(server_->base_url() + "/disks/", 0),
              0u)
        << dv.dump();
    EXPECT_EQ(dv["spec"]["source"]["s3"].value("secretRef", ""), "imp-s3-" + uid.substr(0, 8));
    EXPECT_EQ(dv["metadata"]["ownerReferences"][0].value("uid", ""), uid);
  }
  EXPECT_EQ(PlaceholderSecrets(), 1u);
  const Json status = ImportOf("imp")["status"];
  EXPECT_EQ(status.value("diskTarget", ""), "volume");
  EXPECT_EQ(status["diskImportStatus"][0].value("dataVolume", ""),
            "web-disk-0-" + uid.substr(0, 8));

  MarkDataVolumes("ImportInProgress");
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(ImportOf("imp")["status"]["diskImportStatus"][1].value("dataVolumeProgress", ""),
            "12.00%");
  MarkDataVolumes("Succeeded");
  ASSERT_EQ(RunUntil("imp", "virtualMachineCreated"), "virtualMachineCreated");
  EXPECT_TRUE(api_.All("persistentvolumeclaims").empty());  // CDI's, not ours
  auto vm = api_.Peek("virtualmachines", "ns", "web");
  ASSERT_TRUE(vm);
  const Json volumes = (*vm)["spec"]["template"]["spec"]["volumes"];
  ASSERT_EQ(volumes.size(), 2u);
  EXPECT_EQ(volumes[1]["dataVolume"].value("name", ""), "web-disk-1-" + uid.substr(0, 8));
  EXPECT_EQ(PlaceholderSecrets(), 0u);  // the importers are done with it
  MarkVmiRunning("web");
  ASSERT_EQ(RunUntil("imp", "virtualMachineRunning"), "virtualMachineRunning");
  for (const Json& dv : api_.All("datavolumes")) {
    EXPECT_TRUE(dv["metadata"].value("ownerReferences", Json::array()).empty()) << dv.dump();
  }
  bool said = false;
  const Json running = ImportOf("imp");  // kept: a range-for over a temporary's member dangles
  for (const auto& c : running["status"]["importConditions"]) {
    said |= c.value("type", "") == "DisksVerified" &&
            c.value("message", "").find("not verified after CDI wrote them") != std::string::npos;
  }
  EXPECT_TRUE(said);
}

TEST_F(VolumeReconcilerTest, QuickCancelRemovesTheDataVolumesTheirClaimsAndTheSecret) {
  CreateReadySource();
  CreateVolumeImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  // CDI made the claims, named like the DataVolumes.
  for (const Json& dv : api_.All("datavolumes")) {
    api_.Put("persistentvolumeclaims",
             {{"metadata", {{"name", dv["metadata"]["name"]}, {"namespace", "ns"}}}});
  }
  std::stop_source none;
  ASSERT_TRUE(api_.Delete(none.get_token(), controller::ImportResource(), "ns", "imp"));
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "<gone>");
  EXPECT_TRUE(api_.All("datavolumes").empty());
  EXPECT_TRUE(api_.All("persistentvolumeclaims").empty());
  EXPECT_EQ(PlaceholderSecrets(), 0u);
  EXPECT_EQ(source_->exports_aborted, 1);
}

TEST_F(VolumeReconcilerTest, AFailedDataVolumeFailsTheImportWithCdisWordsAndIsRemoved) {
  CreateReadySource();
  CreateVolumeImport("imp");
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  MarkDataVolumes("Failed");
  ASSERT_EQ(RunUntil("imp", "diskImageFailed"), "diskImageFailed");
  bool said = false;
  const Json imported = ImportOf("imp");  // kept: a range-for over a temporary's member dangles
  for (const auto& c : imported["status"]["importConditions"]) {
    said |= c.value("reason", "") == "DataVolumeFailed" &&
            c.value("message", "").find("Error: unexpected EOF") != std::string::npos;
  }
  EXPECT_TRUE(said) << ImportOf("imp")["status"].dump();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Step("imp"));
  }
  EXPECT_TRUE(api_.All("datavolumes").empty());
  EXPECT_EQ(PlaceholderSecrets(), 0u);
  EXPECT_EQ(events_.WithReason("CleanedUp").size(), 1u);
}

TEST_F(VolumeReconcilerTest, AnUnknownDiskTargetIsInvalid) {
  CreateReadySource();
  CreateImport("imp", "web", {{"diskTarget", "pvc"}});
  ASSERT_EQ(RunUntil("imp", "virtualMachineImportInvalid"), "virtualMachineImportInvalid");
  EXPECT_EQ(events_.WithReason("InvalidSpec").size(), 1u);
  EXPECT_TRUE(api_.All("datavolumes").empty());
}

}  // namespace
}  // namespace vmimport::testing
