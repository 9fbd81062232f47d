// The override rules of issue 19 (api/overrides.h), each rule once, as tables.

#include "api/overrides.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/names.h"

namespace vmimport::api {
namespace {

using nlohmann::json;

model::VmDescription TwoDisksOneNic() {
  model::VmDescription vm;
  vm.name = "web";
  model::DiskDescription d0;
  d0.id = "2000";
  d0.name = "Hard disk 1";
  d0.storage = "ds-fast";
  model::DiskDescription d1;
  d1.id = "vmdisk2";  // an OVF disk id
  d1.name = "Hard disk 2";
  d1.storage = "ds-slow";
  vm.disks = {d0, d1};
  vm.nics = {{.mac = "00:50:56:aa:bb:cc", .network = "VM Network"}};
  return vm;
}

VirtualMachineImportSpec SpecFrom(const json& j) {
  auto spec = SpecFromJson(j);
  EXPECT_TRUE(spec) << spec.error().ToString();
  return spec ? *spec : VirtualMachineImportSpec{};
}

// One row per rule of ChooseStorageClass's table (and each way to name a disk).
TEST(ChooseStorageClass, FirstMatchingRuleWins) {
  struct Row {
    const char* what;
    json spec;
    size_t disk;
    std::string want_class;
    std::string_view want_rule;
  };
  const std::vector<Row> rows = {
      {"override by index beats the mapping",
       {{"diskOverrides", {{{"index", 0}, {"storageClass", "gold"}}}},
        {"storageMapping", {{{"source", "ds-fast"}, {"storageClass", "ssd"}}}}},
       0,
       "gold",
       kStorageRuleUser},
      {"override by name",
       {{"diskOverrides", {{{"name", "Hard disk 2"}, {"storageClass", "gold"}}}}},
       1,
       "gold",
       kStorageRuleUser},
      {"override by key",
       {{"diskOverrides", {{{"name", "2000"}, {"storageClass", "gold"}}}}},
       0,
       "gold",
       kStorageRuleUser},
      {"a bus-only override leaves the class to the mapping",
       {{"diskOverrides", {{{"index", 0}, {"diskBusType", "sata"}}}},
        {"storageMapping", {{{"source", "ds-fast"}, {"storageClass", "ssd"}}}}},
       0,
       "ssd",
       kStorageRuleMapping},
      {"mapping by the disk's storage beats spec.storageClass",
       {{"storageClass", "longhorn"},
        {"storageMapping", {{{"source", "ds-slow"}, {"storageClass", "hdd"}}}}},
       1,
       "hdd",
       kStorageRuleMapping},
      {"mapping by an OVF disk id",
       {{"storageMapping", {{{"source", "vmdisk2"}, {"storageClass", "hdd"}}}}},
       1,
       "hdd",
       kStorageRuleMapping},
      {"no match: spec.storageClass",
       {{"storageClass", "longhorn"},
        {"storageMapping", {{{"source", "ds-slow"}, {"storageClass", "hdd"}}}}},
       0,
       "longhorn",
       kStorageRuleDefault},
      {"nothing: the cluster's default", json::object(), 0, "", kStorageRuleClusterDefault},
  };
  const model::VmDescription vm = TwoDisksOneNic();
  for (const Row& row : rows) {
    const auto spec = SpecFrom(row.spec);
    const StorageChoice c = ChooseStorageClass(spec, row.disk, vm.disks[row.disk]);
    EXPECT_EQ(c.storage_class, row.want_class) << row.what;
    EXPECT_EQ(c.rule, row.want_rule) << row.what;
  }
}

TEST(ParseMemoryQuantity, KubernetesQuantitiesInBytes) {
  struct Row {
    const char* text;
    uint64_t bytes;  // 0: invalid
  };
  const std::vector<Row> rows = {
      {"4Gi", 4ULL << 30},
      {"512Mi", 512ULL << 20},
      {"1G", 1000000000},
      {"1.5Gi", 3ULL << 29},
      {"2147483648", 2147483648},
      {"0.5k", 500},
      {"1.1", 2},
      {"", 0},
      {"Gi", 0},
      {"4GB", 0},
      {"-1Gi", 0},
      {"100m", 0},
      {"1e3", 0},
      {"99999999999Ei", 0},
  };
  for (const Row& row : rows) {
    auto bytes = ParseMemoryQuantity(row.text);
    if (row.bytes == 0) {
      EXPECT_FALSE(bytes) << row.text;
      continue;
    }
    ASSERT_TRUE(bytes) << row.text << ": " << bytes.error().message;
    EXPECT_EQ(*bytes, row.bytes) << row.text;
  }
}

// Each problem CheckOverrides finds, once; a valid spec has none.
TEST(CheckOverrides, NamesEachProblemByItsPath) {
  struct Row {
    json spec;
    std::string problem;  // empty: valid
  };
  const std::vector<Row> rows = {
      {{{"storageMapping", {{{"source", "ds1"}, {"storageClass", "a"}}}},
        {"diskOverrides", {{{"index", 1}, {"diskBusType", "sata"}}}},
        {"nicOverrides",
         {{{"macAddress", "00:50:56:AA:BB:CC"}, {"networkInterfaceModel", "e1000e"}}}},
        {"targetVirtualMachineName", "web-1"},
        {"cpu", {{"sockets", 2}}},
        {"memory", "4Gi"},
        {"runStrategy", "stopped"}},
       ""},
      {{{"storageMapping", {{{"storageClass", "a"}}}}}, "spec.storageMapping[0].source: required"},
      {{{"storageMapping", {{{"source", "ds1"}}}}},
       "spec.storageMapping[0].storageClass: required"},
      {{{"storageMapping",
         {{{"source", "ds1"}, {"storageClass", "a"}}, {{"source", "ds1"}, {"storageClass", "b"}}}}},
       "spec.storageMapping[1].source: ds1 appears more than once"},
      {{{"storageMapping", {{{"source", "ds1"}, {"storageClass", "Fast_SSD"}}}}},
       "spec.storageMapping[0].storageClass: \"Fast_SSD\" is not a StorageClass name"},
      {{{"diskOverrides", {{{"index", 0}, {"name", "Hard disk 1"}, {"diskBusType", "sata"}}}}},
       "spec.diskOverrides[0]: set exactly one of index and name"},
      {{{"diskOverrides", {{{"index", 0}}}}},
       "spec.diskOverrides[0]: set storageClass, diskBusType or both"},
      {{{"diskOverrides", {{{"index", 0}, {"diskBusType", "ide"}}}}},
       "spec.diskOverrides[0].diskBusType: unsupported disk bus \"ide\""},
      {{{"diskOverrides",
         {{{"index", 0}, {"diskBusType", "sata"}}, {{"index", 0}, {"storageClass", "a"}}}}},
       "spec.diskOverrides[1]: disk 0 is overridden more than once"},
      {{{"nicOverrides", {{{"networkInterfaceModel", "e1000"}}}}},
       "spec.nicOverrides[0]: set exactly one of index and macAddress"},
      {{{"nicOverrides", {{{"index", 0}, {"networkInterfaceModel", "vmxnet3"}}}}},
       "spec.nicOverrides[0].networkInterfaceModel: unsupported network interface model"},
      {{{"targetVirtualMachineName", "Web-1"}},
       "spec.targetVirtualMachineName: \"Web-1\" is not RFC 1123 compliant"},
      {{{"cpu", {{"cores", -2}}}}, "spec.cpu.cores: must be at least 1"},
      {{{"memory", "lots"}}, "spec.memory: \"lots\" is not a memory quantity"},
      {{{"memory", "512Ki"}}, "spec.memory: \"512Ki\" is less than 1Mi"},
      {{{"runStrategy", "paused"}}, "spec.runStrategy: \"paused\" is not running or stopped"},
  };
  for (const Row& row : rows) {
    std::vector<std::string> problems;
    CheckOverrides(SpecFrom(row.spec), problems);
    if (row.problem.empty()) {
      EXPECT_TRUE(problems.empty()) << row.spec.dump() << ": " << problems.front();
      continue;
    }
    ASSERT_EQ(problems.size(), 1u) << row.spec.dump();
    EXPECT_EQ(problems[0].rfind(row.problem, 0), 0u) << problems[0];
  }
}

// Preflight's checks against the VM: an override naming what the VM lacks is an error, a mapping
// that matches nothing a warning; every override taken is described once.
TEST(OverridesForAVm, ErrorsWarningsAndTheDescription) {
  const model::VmDescription vm = TwoDisksOneNic();
  const auto bad = SpecFrom({{"diskOverrides",
                              {{{"index", 2}, {"diskBusType", "sata"}},
                               {{"name", "Hard disk 9"}, {"storageClass", "a"}}}},
                             {"nicOverrides", {{{"index", 1}, {"networkInterfaceModel", "e1000"}}}},
                             {"storageMapping", {{{"source", "ds-none"}, {"storageClass", "a"}}}}});
  const auto problems = OverrideProblemsFor(bad, vm);
  ASSERT_EQ(problems.size(), 3u);
  EXPECT_EQ(problems[0], "spec.diskOverrides[0]: source VM web has no disk 2 (it has 2 disks)");
  EXPECT_EQ(problems[1],
            "spec.diskOverrides[1]: source VM web has no disk \"Hard disk 9\" (it has 2 disks)");
  EXPECT_EQ(problems[2], "spec.nicOverrides[0]: source VM web has no NIC 1 (it has 1 NICs)");
  const auto unused = UnusedStorageMappings(bad, vm);
  ASSERT_EQ(unused.size(), 1u);
  EXPECT_EQ(unused[0],
            "storageMapping source ds-none matches no disk of web (its disks are on ds-fast, "
            "ds-slow)");

  const auto good =
      SpecFrom({{"targetVirtualMachineName", "Web-1"},
                {"cpu", {{"sockets", 2}, {"cores", 2}}},
                {"memory", "4Gi"},
                {"runStrategy", "stopped"},
                {"storageMapping", {{{"source", "ds-slow"}, {"storageClass", "hdd"}}}},
                {"diskOverrides", {{{"index", 0}, {"diskBusType", "sata"}}}},
                {"nicOverrides",
                 {{{"macAddress", "00:50:56:AA:BB:CC"}, {"networkInterfaceModel", "e1000e"}}}}});
  EXPECT_TRUE(OverrideProblemsFor(good, vm).empty());
  EXPECT_TRUE(UnusedStorageMappings(good, vm).empty());
  EXPECT_EQ(
      DescribeOverrides(good, vm),
      (std::vector<std::string>{
          "target name Web-1", "cpu 2 sockets x 2 cores x (source) threads", "memory 4Gi",
          "run strategy stopped", "disk 0 (Hard disk 1): bus sata [user: bus set by the user]",
          "disk 1 (Hard disk 2): storage class hdd [storage-mapping: spec.storageMapping "
          "maps ds-slow to hdd]",
          "nic 0 (00:50:56:aa:bb:cc): model e1000e [user: model set by the user]"}));
  EXPECT_EQ(
      NamedStorageClasses(SpecFrom(
          {{"storageClass", "a"},
           {"storageMapping",
            {{{"source", "x"}, {"storageClass", "b"}}, {{"source", "y"}, {"storageClass", "a"}}}},
           {"diskOverrides", {{{"index", 0}, {"storageClass", "c"}}}}})),
      (std::vector<std::string>{"a", "b", "c"}));
}

// The new fields read and write back unchanged (unknown keys in them kept); a wrong type names
// its path.
TEST(SpecJson, OverrideFieldsRoundTripAndWrongTypesNameTheirPath) {
  const json in = {
      {"sourceCluster", json::object()},
      {"virtualMachineName", "Web 1"},
      {"storageMapping", {{{"source", "ds1"}, {"storageClass", "a"}, {"future", 1}}}},
      {"diskOverrides",
       {{{"index", 0}, {"storageClass", "b"}, {"diskBusType", "sata"}},
        {{"name", "2001"}, {"storageClass", "c"}}}},
      {"nicOverrides",
       {{{"macAddress", "00:50:56:aa:bb:cc"}, {"networkInterfaceModel", "e1000e"}}}},
      {"targetVirtualMachineName", "web-1"},
      {"cpu", {{"sockets", 1}, {"cores", 4}, {"threads", 2}}},
      {"memory", "8Gi"},
      {"runStrategy", "stopped"},
      {"skipPreflightChecks", nullptr},
  };
  const auto spec = SpecFrom(in);
  EXPECT_EQ(spec.disk_overrides[0].index, 0);
  EXPECT_EQ(spec.disk_overrides[1].index, -1);
  EXPECT_EQ(spec.cpu->threads, 2);
  EXPECT_TRUE(spec.StartsStopped());
  EXPECT_EQ(SpecToJson(spec), in);
  auto wrong = SpecFromJson({{"diskOverrides", {{{"index", "zero"}}}}});
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("spec.diskOverrides[0].index"), std::string::npos)
      << wrong.error().message;
  EXPECT_FALSE(SpecFromJson({{"storageMapping", {"ds1"}}}));
  EXPECT_FALSE(SpecFromJson({{"cpu", 4}}));
  // A targetVirtualMachineName frees virtualMachineName from the name rules (any source name).
  EXPECT_TRUE(ValidateImportSpec(SpecFrom({{"sourceCluster",
                                            {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                                             {"kind", "VmwareSource"},
                                             {"name", "vc"},
                                             {"namespace", "default"}}},
                                           {"virtualMachineName", "Web Server_1"},
                                           {"targetVirtualMachineName", "web-server-1"}}))
                  .empty());
}

}  // namespace
}  // namespace vmimport::api
