#include "harvester/image.h"

#include <gtest/gtest.h>

#include "api/names.h"

namespace vmimport::harvester {
namespace {

using nlohmann::json;

api::VirtualMachineImport Import(std::string name = "myimp") {
  api::VirtualMachineImport v;
  v.name = std::move(name);
  v.namespace_ = "default";
  v.uid = "0b1c-uid";
  return v;
}

TEST(ImageDisplayName, KeepsTheReferenceNameWhenItIsAValidLabelValue) {
  EXPECT_EQ(ImageDisplayName("myimp", "myimp-default-disk-0.img"),
            "vm-import-myimp-myimp-default-disk-0.img");
}

TEST(ImageDisplayName, CutsLongNamesTo63WithADistinctHash) {
  const std::string imp = "database-cluster-primary-replica-import";
  const std::string disk0 = ImageDisplayName(imp, imp + "-default-disk-0.img");
  const std::string disk1 = ImageDisplayName(imp, imp + "-default-disk-1.img");
  // The hash is fnv32a of the full reference name (computed independently).
  EXPECT_EQ(disk0, "vm-import-database-cluster-primary-replica-import-data-e912acbc");
  EXPECT_EQ(disk1, "vm-import-database-cluster-primary-replica-import-data-f035c27f");
  EXPECT_EQ(disk0.size(), 63U);
  EXPECT_TRUE(api::IsValidLabelValue(disk0));
}

TEST(ImageDisplayName, ReplacesCharactersALabelCannotHold) {
  const std::string name = ImageDisplayName("web", "Hard disk 1 (copy).img");
  EXPECT_EQ(name, "vm-import-web-Hard-disk-1--copy-.img-94de02e2");
  EXPECT_TRUE(api::IsValidLabelValue(name));
}

TEST(BuildVirtualMachineImage, LonghornV1ClassGivesABackingImageOwnedByTheImport) {
  StorageClassInfo sc{"fast-ssd", "driver.longhorn.io", {{"dataEngine", "v1"}}};
  auto image = BuildVirtualMachineImage(Import(), "myimp-default-disk-0.img",
                                        "http://vmic.harvester-system.svc:8080/disks/t0k", &sc);
  ASSERT_TRUE(image) << image.error().ToString();
  const json expected = json::parse(R"({
    "apiVersion": "harvesterhci.io/v1beta1",
    "kind": "VirtualMachineImage",
    "metadata": {
      "generateName": "image-",
      "namespace": "default",
      "labels": {
        "migration.harvesterhci.io/imported": "true",
        "harvesterhci.io/imageDisplayName": "vm-import-myimp-myimp-default-disk-0.img"
      },
      "annotations": {"harvesterhci.io/storageClassName": "fast-ssd"},
      "ownerReferences": [{"apiVersion": "migration.harvesterhci.io/v1beta1",
                           "kind": "VirtualMachineImport", "name": "myimp", "uid": "0b1c-uid"}]
    },
    "spec": {
      "displayName": "vm-import-myimp-myimp-default-disk-0.img",
      "url": "http://vmic.harvester-system.svc:8080/disks/t0k",
      "sourceType": "download",
      "retry": 3,
      "targetStorageClassName": "fast-ssd",
      "backend": "backingimage"
    }
  })");
  EXPECT_EQ(*image, expected) << image->dump(2);
}

TEST(BuildVirtualMachineImage, WithoutAStorageClassHarvesterChooses) {
  auto image = BuildVirtualMachineImage(Import(), "d0.img", "http://x/d0", nullptr);
  ASSERT_TRUE(image);
  EXPECT_FALSE((*image)["metadata"].contains("annotations"));
  EXPECT_FALSE((*image)["spec"].contains("backend"));
  EXPECT_FALSE((*image)["spec"].contains("targetStorageClassName"));
  EXPECT_EQ((*image)["spec"]["displayName"], "vm-import-myimp-d0.img");
}

TEST(BuildVirtualMachineImage, ASourceSha512BecomesSpecChecksumLowerCase) {
  auto image =
      BuildVirtualMachineImage(Import(), "d0.img", "http://x/d0", nullptr, std::string(128, 'C'));
  ASSERT_TRUE(image) << image.error().ToString();
  EXPECT_EQ((*image)["spec"].value("checksum", ""), std::string(128, 'c'));
  auto none = BuildVirtualMachineImage(Import(), "d0.img", "http://x/d0", nullptr);
  ASSERT_TRUE(none);
  EXPECT_FALSE((*none)["spec"].contains("checksum"));
  // A SHA-256 would make the image fail for ever (harvester#5578): refused here.
  auto sha256 =
      BuildVirtualMachineImage(Import(), "d0.img", "http://x/d0", nullptr, std::string(64, 'c'));
  ASSERT_FALSE(sha256);
  EXPECT_EQ(sha256.error().code, core::ErrorCode::kInvalidArgument);
}

TEST(BuildVirtualMachineImage, RejectsMissingInputs) {
  api::VirtualMachineImport no_uid = Import();
  no_uid.uid.clear();
  auto a = BuildVirtualMachineImage(no_uid, "d0.img", "http://x", nullptr);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_EQ(a.error().message, "virtualmachineimage: import uid is empty");
  auto b = BuildVirtualMachineImage(Import(), "d0.img", "", nullptr);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().message, "virtualmachineimage: url is empty");
}

TEST(ImageBackendFor, LonghornV1IncludingNoDataEngineIsBackingImageElseCdi) {
  EXPECT_EQ(ImageBackendFor({"a", "driver.longhorn.io", {}}), "backingimage");  // B16
  EXPECT_EQ(ImageBackendFor({"a", "driver.longhorn.io", {{"dataEngine", "v1"}}}), "backingimage");
  EXPECT_EQ(ImageBackendFor({"a", "driver.longhorn.io", {{"dataEngine", "v2"}}}), "cdi");
  EXPECT_EQ(ImageBackendFor({"a", "lvm.driver.harvesterhci.io", {}}), "cdi");
}

TEST(ImageNeedsPvc, OnlyForBackingImages) {
  EXPECT_TRUE(ImageNeedsPvc(json{{"spec", {{"backend", "backingimage"}}}}));
  EXPECT_TRUE(ImageNeedsPvc(json{{"spec", {{"displayName", "x"}}}}));  // CRD default
  EXPECT_FALSE(ImageNeedsPvc(json{{"spec", {{"backend", "cdi"}}}}));
  EXPECT_FALSE(ImageNeedsPvc(json::array()));
}

}  // namespace
}  // namespace vmimport::harvester
