#include "harvester/data_volume.h"

#include <gtest/gtest.h>

#include "api/names.h"

namespace vmimport::harvester {
namespace {

using nlohmann::json;

api::VirtualMachineImport Import() {
  api::VirtualMachineImport i;
  i.name = "web-1";
  i.namespace_ = "default";
  i.uid = "0123456789abcdef";
  return i;
}

TEST(BuildDataVolume, S3SourceOnOurUrlSizedToTheVirtualSizeInWholeMiBOwnedByTheImport) {
  auto dv = BuildDataVolume(Import(), {.name = "web-disk-0-01234567",
                                       .url = "http://10.0.0.1:8080/disks/abc",
                                       .secret_name = "web-1-s3-01234567",
                                       .storage_class = "world-node-block",
                                       .virtual_size = (40ULL << 20) + 1,
                                       .volume_mode = "Block",
                                       .access_mode = "ReadWriteOnce"});
  ASSERT_TRUE(dv) << dv.error().ToString();
  const json expected = json::parse(R"({
    "apiVersion": "cdi.kubevirt.io/v1beta1",
    "kind": "DataVolume",
    "metadata": {
      "name": "web-disk-0-01234567", "namespace": "default",
      "labels": {"migration.harvesterhci.io/imported": "true",
                 "migration.harvesterhci.io/import-uid": "0123456789abcdef"},
      "annotations": {"cdi.kubevirt.io/storage.bind.immediate.requested": "true"},
      "ownerReferences": [{"apiVersion": "migration.harvesterhci.io/v1beta1",
                           "kind": "VirtualMachineImport", "name": "web-1",
                           "uid": "0123456789abcdef"}]},
    "spec": {
      "source": {"s3": {"url": "http://10.0.0.1:8080/disks/abc", "secretRef": "web-1-s3-01234567"}},
      "storage": {"storageClassName": "world-node-block", "volumeMode": "Block",
                  "accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": "42991616"}}}}
  })");
  EXPECT_EQ(*dv, expected) << dv->dump(2);
}

TEST(BuildDataVolume, EmptyClassAndModesAreLeftToCdiAndMissingInputsAreRefused) {
  auto dv = BuildDataVolume(
      Import(), {.name = "a", .url = "http://x/disks/t", .secret_name = "s", .virtual_size = 512});
  ASSERT_TRUE(dv);
  EXPECT_EQ((*dv)["spec"]["storage"],
            json::parse(R"({"resources": {"requests": {"storage": "1048576"}}})"));
  EXPECT_FALSE(BuildDataVolume(Import(), {.name = "a", .url = "u", .secret_name = "s"}));
  EXPECT_FALSE(BuildDataVolume(Import(), {.name = "a", .url = "u", .virtual_size = 1}));
  auto no_uid = Import();
  no_uid.uid.clear();
  EXPECT_FALSE(
      BuildDataVolume(no_uid, {.name = "a", .url = "u", .secret_name = "s", .virtual_size = 1}));
}

TEST(DataVolumeName, StaysADnsLabelAndCarriesTheUid) {
  EXPECT_EQ(DataVolumeName("web", 2, "0123456789abcdef"), "web-disk-2-01234567");
  const std::string long_name = DataVolumeName(std::string(80, 'a') + "-b", 12, "ffffffff-1");
  EXPECT_LE(long_name.size(), 63u);
  EXPECT_TRUE(long_name.ends_with("-disk-12-ffffffff"));
  EXPECT_TRUE(api::SanitizeTargetName(long_name)) << long_name;
  EXPECT_EQ(S3SecretName("web-1", "0123456789abcdef"), "web-1-s3-01234567");
}

TEST(BuildS3PlaceholderSecret, HasTheKeysCdisS3ClientWantsAndIsOwned) {
  const json s = BuildS3PlaceholderSecret(Import(), "web-1-s3-01234567");
  EXPECT_EQ(s["metadata"]["name"], "web-1-s3-01234567");
  EXPECT_TRUE(s["stringData"].contains("accessKeyId"));
  EXPECT_TRUE(s["stringData"].contains("secretKey"));
  EXPECT_EQ(s["metadata"]["ownerReferences"][0]["uid"], "0123456789abcdef");
}

TEST(InterpretDataVolumeStatus, PhasesProgressAndTheRunningConditionsWords) {
  EXPECT_EQ(InterpretDataVolumeStatus(json::object()).phase, DataVolumePhase::kPending);
  auto s = InterpretDataVolumeStatus(json::parse(R"({"status": {"phase": "ImportInProgress",
      "progress": "45.20%", "restartCount": 2,
      "conditions": [{"type": "Running", "status": "False", "reason": "Error",
                      "message": "unexpected EOF"}]}})"));
  EXPECT_EQ(s.phase, DataVolumePhase::kRunning);
  EXPECT_EQ(s.progress, "45.20%");
  EXPECT_EQ(s.restarts, 2);
  EXPECT_EQ(s.message, "Error: unexpected EOF");
  EXPECT_EQ(InterpretDataVolumeStatus(json::parse(R"({"status": {"phase": "Succeeded"}})")).phase,
            DataVolumePhase::kSucceeded);
  EXPECT_EQ(InterpretDataVolumeStatus(json::parse(R"({"status": {"phase": "Failed"}})")).phase,
            DataVolumePhase::kFailed);
}

}  // namespace
}  // namespace vmimport::harvester
