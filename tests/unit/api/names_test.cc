#include "api/names.h"

#include <gtest/gtest.h>

#include "core/strings.h"

namespace vmimport::api {
namespace {

VirtualMachineImportSpec ValidSpec() {
  VirtualMachineImportSpec s;
  s.source_cluster = {
      std::string(kMigrationApiVersion), "VmwareSource", "default", "vcsim", "", "", ""};
  s.virtual_machine_name = "alpine-export-test";
  s.network_mapping = {{"dvSwitch 1", "default/vlan1", std::nullopt},
                       {"dvSwitch 2", "vlan2", std::string("e1000e")}};
  return s;
}

TEST(SanitizeTargetName, LowerCasesACamelCasedName) {
  auto name = SanitizeTargetName("testFocalCamelCase");
  ASSERT_TRUE(name) << name.error().ToString();
  EXPECT_EQ(*name, "testfocalcamelcase");
}

TEST(SanitizeTargetName, RejectsANameLowerCasingCannotFixAndSaysWhy) {
  auto name = SanitizeTargetName("SLES 16_sp1");
  ASSERT_FALSE(name);
  EXPECT_EQ(name.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_EQ(name.error().message,
            "the target VM name \"sles 16_sp1\" (from virtualMachineName \"SLES 16_sp1\") is not "
            "RFC 1123 compliant: must consist of lower-case alphanumeric characters or '-' (has "
            "\" \", \"_\")");
}

TEST(SanitizeTargetName, RejectsTooLongAndBadEnds) {
  auto long_name = SanitizeTargetName(std::string(64, 'a'));
  ASSERT_FALSE(long_name);
  EXPECT_NE(long_name.error().message.find("must be no more than 63 characters (has 64)"),
            std::string::npos);
  EXPECT_TRUE(SanitizeTargetName(std::string(63, 'a')));

  auto dash = SanitizeTargetName("-web-");
  ASSERT_FALSE(dash);
  EXPECT_NE(dash.error().message.find("must start and end with a lower-case alphanumeric"),
            std::string::npos);
  EXPECT_FALSE(SanitizeTargetName(""));
  EXPECT_FALSE(SanitizeTargetName("web.example"));  // dots are not rewritten
}

// The issue's `vm-ñandú`: each bad character is quoted whole (not byte by byte), and the name is
// said once (lower-casing changed nothing).
TEST(SanitizeTargetName, NamesMultiByteCharactersWholeAndTheNameOnce) {
  auto name = SanitizeTargetName("vm-ñandú");
  ASSERT_FALSE(name);
  EXPECT_EQ(
      name.error().message,
      "the target VM name \"vm-ñandú\" is not RFC 1123 compliant: must consist of "
      "lower-case alphanumeric characters or '-' (has \"ñ\", \"ú\"); must start and end with a "
      "lower-case alphanumeric character");
  auto mixed = SanitizeTargetName("Vm-Ñandú 2");  // Ñ is not lower-cased: only ASCII is
  ASSERT_FALSE(mixed);
  EXPECT_EQ(mixed.error().message,
            "the target VM name \"vm-Ñandú 2\" (from virtualMachineName \"Vm-Ñandú 2\") is not RFC "
            "1123 compliant: must consist of lower-case alphanumeric characters or '-' (has \" \", "
            "\"Ñ\", \"ú\")");
}

// A name from a source that is not UTF-8 (Latin-1): the message is valid UTF-8, shows the name
// with U+FFFD and names each bad byte in hex.
TEST(SanitizeTargetName, InvalidUtf8IsNamedByByteAndNeverCopiedRaw) {
  auto name = SanitizeTargetName(
      "vm-\xF1"
      "and\xFA");
  ASSERT_FALSE(name);
  EXPECT_TRUE(core::IsValidUtf8(name.error().message)) << name.error().message;
  EXPECT_EQ(
      name.error().message,
      "the target VM name \"vm-\xEF\xBF\xBD"
      "and\xEF\xBF\xBD\" is not RFC 1123 compliant: must "
      "consist of lower-case alphanumeric characters or '-' (has \"\\xf1\", \"\\xfa\"); must start "
      "and end with a lower-case alphanumeric character");
  auto cut = SanitizeTargetName("vm-\xC3");  // 'ñ' cut after its first byte
  ASSERT_FALSE(cut);
  EXPECT_TRUE(core::IsValidUtf8(cut.error().message)) << cut.error().message;
  EXPECT_NE(cut.error().message.find("(has \"\\xc3\")"), std::string::npos);
}

TEST(ValidateImportSpec, ANonAsciiNameIsOneProblemThatSaysTheNameOnce) {
  VirtualMachineImportSpec s = ValidSpec();
  s.virtual_machine_name = "vm-ñandú";
  const auto problems = ValidateImportSpec(s);
  ASSERT_EQ(problems.size(), 1U);
  const std::string& p = problems[0];
  EXPECT_EQ(p.find("vm-ñandú"), p.rfind("vm-ñandú")) << p;
  EXPECT_NE(p.find("(has \"ñ\", \"ú\")"), std::string::npos) << p;
}

TEST(NameRules, LabelValuesAndSubdomains) {
  EXPECT_TRUE(IsValidLabelValue(""));
  EXPECT_TRUE(IsValidLabelValue("vm-import-My_imp-disk-0.img"));
  EXPECT_FALSE(IsValidLabelValue("a b"));
  EXPECT_FALSE(IsValidLabelValue("x.img."));
  EXPECT_FALSE(IsValidLabelValue(std::string(64, 'a')));
  EXPECT_TRUE(IsDns1123Subdomain("vlan1.example"));
  EXPECT_FALSE(IsDns1123Subdomain("vlan1..x"));
  EXPECT_FALSE(IsDns1123Subdomain("VLAN1"));
  EXPECT_TRUE(LooksLikeUuid("0F1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
  EXPECT_FALSE(LooksLikeUuid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg"));
}

TEST(ParseDestinationNetwork, NameOrNamespaceSlashName) {
  auto a = ParseDestinationNetwork("vlan1", "prod");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->namespace_, "prod");
  EXPECT_EQ(a->name, "vlan1");
  auto b = ParseDestinationNetwork("net/vlan2", "prod");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->namespace_, "net");
  EXPECT_EQ(b->name, "vlan2");
  auto c = ParseDestinationNetwork("a/b/c", "prod");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message,
            "invalid destination network 'a/b/c': expected name or namespace/name");
  EXPECT_FALSE(ParseDestinationNetwork("net/", "prod"));
  EXPECT_FALSE(ParseDestinationNetwork("Net/vlan", "prod"));
}

TEST(ValidateImportSpec, TheSeedSpecIsValid) {
  EXPECT_EQ(ValidateImportSpec(ValidSpec()), std::vector<std::string>{});
}

TEST(ValidateImportSpec, DiskTargetIsImageOrVolumeAndAnythingElseSaysSo) {
  VirtualMachineImportSpec s = ValidSpec();
  EXPECT_EQ(s.DiskTargetOrDefault(), DiskTarget::kImage);
  for (const char* ok : {"", "image", "volume"}) {
    s.disk_target = ok;
    EXPECT_TRUE(ValidateImportSpec(s).empty()) << ok;
  }
  EXPECT_EQ(s.DiskTargetOrDefault(), DiskTarget::kVolume);
  s.disk_target = "Volume";
  EXPECT_EQ(ValidateImportSpec(s),
            std::vector<std::string>{"spec.diskTarget: unsupported value \"Volume\" (expected "
                                     "image, the default, or volume)"});
  EXPECT_EQ(s.DiskTargetOrDefault(), DiskTarget::kImage);
}

TEST(ValidateImportSpec, WarmNeedsVolumesAndItsFieldsAreChecked) {
  VirtualMachineImportSpec s = ValidSpec();
  EXPECT_EQ(s.MigrationModeOrDefault(), MigrationMode::kCold);
  EXPECT_EQ(s.PrecopyIntervalSeconds(), kDefaultPrecopyIntervalSeconds);
  s.migration_mode = "warm";
  EXPECT_EQ(ValidateImportSpec(s),
            std::vector<std::string>{
                "spec.migrationMode: warm needs spec.diskTarget: volume (a warm import writes the "
                "target volumes again on every round while the source runs; an image is made "
                "once)"});
  s.disk_target = "volume";
  s.cutover_time = "2026-12-05T02:00:00Z";
  s.downtime_budget_seconds = 60;
  s.precopy_interval_seconds = 30;
  EXPECT_TRUE(ValidateImportSpec(s).empty());
  EXPECT_EQ(s.MigrationModeOrDefault(), MigrationMode::kWarm);
  EXPECT_EQ(s.PrecopyIntervalSeconds(), 30);
  s.cutover_time = "saturday 2am";
  s.downtime_budget_seconds = -1;
  s.precopy_interval_seconds = -5;
  EXPECT_EQ(
      ValidateImportSpec(s),
      (std::vector<std::string>{"spec.cutoverTime: \"saturday 2am\" is not an RFC 3339 time (e.g. "
                                "2026-12-05T02:00:00Z)",
                                "spec.downtimeBudgetSeconds: must not be negative",
                                "spec.precopyIntervalSeconds: must not be negative"}));
  s = ValidSpec();
  s.migration_mode = "hot";
  EXPECT_EQ(ValidateImportSpec(s),
            std::vector<std::string>{
                "spec.migrationMode: unsupported value \"hot\" (expected cold, the default, or "
                "warm)"});
}

TEST(ValidateImportSpec, ReturnsEveryProblemInSpecOrder) {
  VirtualMachineImportSpec s = ValidSpec();
  s.source_cluster.api_version = "migration.harvesterhci.io/v1";
  s.source_cluster.kind = "KVMSource";  // added and reverted upstream
  s.source_cluster.name = "";
  s.virtual_machine_name = "My VM";
  s.network_mapping.push_back({"dvSwitch 1", "a/b/c", std::string("virtio2")});
  s.network_mapping.push_back({"", "", std::nullopt});
  s.default_network_interface_model = "vmxnet3";
  s.default_disk_bus_type = "ide";
  const std::vector<std::string> expected{
      "spec.sourceCluster.apiVersion: expected migration cluster apiversion to be "
      "'migration.harvesterhci.io/v1beta1' but got 'migration.harvesterhci.io/v1'",
      "spec.sourceCluster.kind: unsupported source kind \"KVMSource\" (expected VmwareSource, "
      "OpenstackSource, OvaSource or LibvirtSource)",
      "spec.sourceCluster.name: required",
      "spec.virtualMachineName: the target VM name \"my vm\" (from virtualMachineName \"My VM\") "
      "is not RFC 1123 compliant: must consist of lower-case alphanumeric characters or '-' "
      "(has \" \")",
      "spec.networkMapping[2].sourceNetwork: source network dvSwitch 1 appears multiple times in "
      "VirtualMachineImport spec",
      "spec.networkMapping[2].destinationNetwork: invalid destination network 'a/b/c': expected "
      "name or namespace/name",
      "spec.networkMapping[2].networkInterfaceModel: unsupported network interface model "
      "\"virtio2\" (expected e1000, e1000e, ne2k_pci, pcnet, rtl8139 or virtio)",
      "spec.networkMapping[3].sourceNetwork: required",
      "spec.networkMapping[3].destinationNetwork: required",
      "spec.defaultNetworkInterfaceModel: unsupported network interface model \"vmxnet3\" "
      "(expected e1000, e1000e, ne2k_pci, pcnet, rtl8139 or virtio)",
      "spec.defaultDiskBusType: unsupported disk bus \"ide\" (expected virtio, scsi, sata or usb)",
  };
  EXPECT_EQ(ValidateImportSpec(s), expected);
}

TEST(ValidateImportSpec, KindIsCaseInsensitiveAndAnOpenstackUuidIsNotANameYet) {
  VirtualMachineImportSpec s = ValidSpec();
  s.source_cluster.kind = "openstacksource";
  s.virtual_machine_name = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0";
  EXPECT_EQ(ValidateImportSpec(s), std::vector<std::string>{});
  s.source_cluster.kind = "VmwareSource";  // for vSphere it is the name: upper case is fine too
  EXPECT_EQ(ValidateImportSpec(s), std::vector<std::string>{});
  s.virtual_machine_name = "Web_01";
  ASSERT_EQ(ValidateImportSpec(s).size(), 1U);
}

}  // namespace
}  // namespace vmimport::api
