#include "harvester/pvc.h"

#include <gtest/gtest.h>

namespace vmimport::harvester {
namespace {

using nlohmann::json;

json ActiveImage() {
  return json::parse(R"({
    "metadata": {"name": "image-x7k2p", "namespace": "default"},
    "spec": {"backend": "backingimage"},
    "status": {"storageClassName": "longhorn-image-x7k2p", "size": 1073741824,
               "virtualSize": 10737418240, "progress": 100}
  })");
}

TEST(BuildPvc, BlockRwxOnTheImagesClassSizedToTheVirtualSize) {
  auto pvc = BuildPvc(ActiveImage());
  ASSERT_TRUE(pvc) << pvc.error().ToString();
  const json expected = json::parse(R"({
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "image-x7k2p", "namespace": "default",
                 "annotations": {"harvesterhci.io/imageId": "default/image-x7k2p"}},
    "spec": {"accessModes": ["ReadWriteMany"], "volumeMode": "Block",
             "storageClassName": "longhorn-image-x7k2p",
             "resources": {"requests": {"storage": "10737418240"}}}
  })");
  EXPECT_EQ(*pvc, expected) << pvc->dump(2);
}

TEST(BuildPvc, UsesSizeWhenThereIsNoVirtualSize) {
  json image = ActiveImage();
  image["status"].erase("virtualSize");
  auto pvc = BuildPvc(image);
  ASSERT_TRUE(pvc);
  EXPECT_EQ((*pvc)["spec"]["resources"]["requests"]["storage"], "1073741824");
}

TEST(BuildPvc, AnImageHarvesterHasNotSizedYetIsUnavailable) {
  json image = ActiveImage();
  image["status"].erase("storageClassName");
  auto pvc = BuildPvc(image);
  ASSERT_FALSE(pvc);
  EXPECT_EQ(pvc.error().code, core::ErrorCode::kUnavailable);
  EXPECT_EQ(pvc.error().message,
            "pvc: virtualmachineimage default/image-x7k2p has no storage class or size in its "
            "status yet");
  auto unnamed = BuildPvc(json{{"status", ActiveImage()["status"]}});
  ASSERT_FALSE(unnamed);
  EXPECT_EQ(unnamed.error().code, core::ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace vmimport::harvester
