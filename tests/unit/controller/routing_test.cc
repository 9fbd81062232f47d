// What a watched change wakes (controller/routing.h): the routing the manager wires.

#include "controller/routing.h"

#include <gtest/gtest.h>

namespace vmimport::controller {
namespace {

using kube::Json;

TEST(RoutingTest, ImageWakesTheImportsOwningIt) {
  const Json image = {{"metadata",
                       {{"namespace", "ns"},
                        {"ownerReferences",
                         {{{"kind", "VirtualMachineImport"}, {"name", "imp"}},
                          {{"kind", "VirtualMachine"}, {"name", "vm"}}}}}}};
  EXPECT_EQ(ImportsOwningImage(image), std::vector<std::string>{"ns/imp"});
  EXPECT_TRUE(ImportsOwningImage(Json::object()).empty());
  EXPECT_TRUE(ImportsOwningImage({{"metadata", {{"ownerReferences", "odd"}}}}).empty());
  EXPECT_TRUE(ImportsOwningImage(Json::array()).empty());
}

TEST(RoutingTest, OnlyAReadinessChangeWakesImports) {
  const Json ready = {{"status", {{"status", "clusterReady"}}}};
  const Json not_ready = {{"status", {{"status", "clusterNotReady"}}}};
  EXPECT_TRUE(SourceReadinessChanged(not_ready, ready));
  EXPECT_FALSE(SourceReadinessChanged(ready, ready));
  EXPECT_TRUE(SourceReadinessChanged(Json::object(), ready));
  EXPECT_FALSE(SourceReadinessChanged({{"status", 3}}, Json::object()));
}

TEST(RoutingTest, ImportsNamingASourceDefaultToTheirOwnNamespace) {
  const Json source = {{"metadata", {{"name", "vc"}, {"namespace", "ns"}}}};
  const std::vector<Json> imports = {
      {{"metadata", {{"name", "a"}, {"namespace", "ns"}}},
       {"spec", {{"sourceCluster", {{"name", "vc"}}}}}},
      {{"metadata", {{"name", "b"}, {"namespace", "other"}}},
       {"spec", {{"sourceCluster", {{"name", "vc"}, {"namespace", "ns"}}}}}},
      {{"metadata", {{"name", "c"}, {"namespace", "other"}}},
       {"spec", {{"sourceCluster", {{"name", "vc"}}}}}},
      {{"metadata", {{"name", "d"}, {"namespace", "ns"}}}, {"spec", "broken"}},
  };
  EXPECT_EQ(ImportsNamingSource(imports, source), (std::vector<std::string>{"ns/a", "other/b"}));
}

TEST(RoutingTest, StatusWritesDoNotMoveTheGeneration) {
  EXPECT_FALSE(
      GenerationChanged({{"metadata", {{"generation", 1}}}}, {{"metadata", {{"generation", 1}}}}));
  EXPECT_TRUE(
      GenerationChanged({{"metadata", {{"generation", 1}}}}, {{"metadata", {{"generation", 2}}}}));
}

}  // namespace
}  // namespace vmimport::controller
