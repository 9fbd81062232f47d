#include "api/virtual_machine_import.h"

#include <gtest/gtest.h>

#include "core/json.h"
#include "core/strings.h"

namespace vmimport::api {
namespace {

using nlohmann::json;

// The seed test plan's import, with the status a finished run writes, plus keys this version
// does not know (at every level that keeps them).
json SeedImport() {
  return json::parse(R"({
    "apiVersion": "migration.harvesterhci.io/v1beta1",
    "kind": "VirtualMachineImport",
    "metadata": {"name": "alpine-export-test", "namespace": "default", "uid": "u-1",
                 "resourceVersion": "42", "finalizers": ["wrangler.cattle.io/x"]},
    "spec": {
      "virtualMachineName": "alpine-export-test",
      "folder": "a/b",
      "networkMapping": [
        {"sourceNetwork": "dvSwitch 1", "destinationNetwork": "default/vlan1"},
        {"sourceNetwork": "dvSwitch 2", "destinationNetwork": "vlan2",
         "networkInterfaceModel": "e1000", "futureKey": 1}
      ],
      "sourceCluster": {"name": "vcsim", "namespace": "default", "kind": "VmwareSource",
                        "apiVersion": "migration.harvesterhci.io/v1beta1"},
      "storageClass": "harvester-longhorn",
      "defaultDiskBusType": "sata",
      "forcePowerOff": true,
      "gracefulShutdownTimeoutSeconds": 120,
      "skipPreflightChecks": null,
      "specFromTheFuture": {"x": 1}
    },
    "status": {
      "importStatus": "diskImageSubmitted",
      "importedVirtualMachineName": "alpine-export-test",
      "importConditions": [{"type": "VMExported", "status": "True",
                            "lastUpdateTime": "2026-01-01T00:00:00Z",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
      "diskImportStatus": [{
        "diskName": "alpine-export-test-default-disk-0.img",
        "diskSize": 10737418240,
        "diskLocalPath": "/tmp/vm-import-controller",
        "VirtualMachineImage": "image-abcde",
        "busType": "scsi",
        "diskConditions": [{"type": "VirtualMachineImageSubmitted", "status": "True"}],
        "bytesDone": 5368709120, "bytesTotal": 10737418240, "bytesPerSecond": 104857600,
        "etaSeconds": 51, "sha256": "ab12",
        "diskFromTheFuture": true
      }],
      "statusFromTheFuture": "kept"
    }
  })");
}

TEST(ImportStatus, NamesAreTheReferencesExactStrings) {
  const std::vector<std::pair<ImportStatus, std::string>> expected{
      {ImportStatus::kNew, ""},
      {ImportStatus::kVirtualMachineImportValid, "virtualMachineImportValid"},
      {ImportStatus::kVirtualMachineImportInvalid, "virtualMachineImportInvalid"},
      {ImportStatus::kSourceReady, "sourceReady"},
      {ImportStatus::kDisksExported, "disksExported"},
      {ImportStatus::kDiskImagesSubmitted, "diskImageSubmitted"},
      {ImportStatus::kDiskImagesReady, "diskImagesReady"},
      {ImportStatus::kDiskImagesFailed, "diskImageFailed"},
      {ImportStatus::kVirtualMachineCreated, "virtualMachineCreated"},
      {ImportStatus::kVirtualMachineRunning, "virtualMachineRunning"},
      {ImportStatus::kVmMigrationFailed, "VMMigrationFailed"},
  };
  for (const auto& [status, name] : expected) {
    EXPECT_EQ(ImportStatusName(status), name);
    ASSERT_TRUE(ParseImportStatus(name).has_value()) << name;
    EXPECT_EQ(*ParseImportStatus(name), status) << name;
  }
  EXPECT_FALSE(ParseImportStatus("diskImagesSubmitted").has_value());  // the constant, not value
  EXPECT_FALSE(ParseImportStatus("vmMigrationFailed").has_value());    // case matters
  EXPECT_TRUE(IsTerminal(ImportStatus::kVmMigrationFailed));
  EXPECT_FALSE(IsTerminal(ImportStatus::kDiskImagesFailed));
}

TEST(VirtualMachineImportJson, ReadsEveryReferenceField) {
  auto v = VirtualMachineImportFromJson(SeedImport());
  ASSERT_TRUE(v) << v.error().ToString();
  EXPECT_EQ(v->name, "alpine-export-test");
  EXPECT_EQ(v->namespace_, "default");
  EXPECT_EQ(v->uid, "u-1");
  EXPECT_EQ(v->resource_version, "42");
  const VirtualMachineImportSpec& s = v->spec;
  EXPECT_EQ(s.source_cluster.kind, "VmwareSource");
  EXPECT_EQ(s.source_cluster.api_version, "migration.harvesterhci.io/v1beta1");
  EXPECT_EQ(s.folder, "a/b");
  ASSERT_EQ(s.network_mapping.size(), 2U);
  EXPECT_EQ(s.network_mapping[0].source_network, "dvSwitch 1");
  EXPECT_FALSE(s.network_mapping[0].network_interface_model.has_value());
  EXPECT_EQ(s.network_mapping[1].network_interface_model.value_or(""), "e1000");
  EXPECT_EQ(s.DiskBusOrDefault(), "sata");
  EXPECT_EQ(s.NicModelOrDefault(), "virtio");
  EXPECT_TRUE(s.ForcePowerOff());
  EXPECT_EQ(s.GracefulShutdownTimeoutSeconds(), 120);
  EXPECT_FALSE(s.skip_preflight_checks.has_value());

  const VirtualMachineImportStatus& st = v->status;
  EXPECT_EQ(st.import_status, ImportStatus::kDiskImagesSubmitted);
  EXPECT_EQ(st.imported_virtual_machine_name, "alpine-export-test");
  ASSERT_EQ(st.import_conditions.size(), 1U);
  EXPECT_EQ(st.import_conditions[0].type, kConditionVmExported);
  ASSERT_EQ(st.disk_import_status.size(), 1U);
  const DiskInfo& d = st.disk_import_status[0];
  EXPECT_EQ(d.disk_size, 10737418240);
  EXPECT_EQ(d.virtual_machine_image, "image-abcde");
  EXPECT_EQ(d.bus_type, "scsi");
  EXPECT_TRUE(IsConditionTrue(d.disk_conditions, std::string(kConditionImageSubmitted)));
  EXPECT_EQ(d.progress.bytes_done, 5368709120U);
  EXPECT_EQ(d.progress.bytes_per_second, 104857600U);
  EXPECT_EQ(d.progress.eta_seconds, 51);
  EXPECT_EQ(d.progress.sha256, "ab12");
}

TEST(VirtualMachineImportJson, RoundTripKeepsUnknownKeysAndReferenceNames) {
  const json in = SeedImport();
  auto v = VirtualMachineImportFromJson(in);
  ASSERT_TRUE(v) << v.error().ToString();
  const json out = VirtualMachineImportToJson(*v);
  EXPECT_EQ(out["metadata"], in["metadata"]);
  EXPECT_EQ(out["spec"]["specFromTheFuture"], in["spec"]["specFromTheFuture"]);
  EXPECT_EQ(out["spec"]["networkMapping"][1]["futureKey"], 1);
  EXPECT_EQ(out["status"]["statusFromTheFuture"], "kept");
  EXPECT_EQ(out["status"]["importStatus"], "diskImageSubmitted");
  const json& disk = out["status"]["diskImportStatus"][0];
  EXPECT_EQ(disk["diskFromTheFuture"], true);
  EXPECT_EQ(disk["VirtualMachineImage"], "image-abcde");  // capitalised, as the reference
  EXPECT_EQ(disk["bytesTotal"], 10737418240U);
  EXPECT_FALSE(disk.contains("sha512"));  // empty extension fields are not written
  // The whole status survives the round trip unchanged.
  EXPECT_EQ(out["status"], in["status"]);
}

TEST(VirtualMachineImportJson, DiskTargetAndDataVolumesRoundTripAndAreOmittedWhenUnset) {
  auto spec = SpecFromJson(json::parse(R"({"sourceCluster": {}, "virtualMachineName": "a",
                                          "diskTarget": "volume"})"));
  ASSERT_TRUE(spec) << spec.error().ToString();
  EXPECT_EQ(spec->disk_target, "volume");
  EXPECT_EQ(SpecToJson(*spec)["diskTarget"], "volume");
  EXPECT_FALSE(SpecToJson(VirtualMachineImportSpec{}).contains("diskTarget"));
  VirtualMachineImportStatus status;
  status.disk_import_status.push_back(DiskInfo{});
  EXPECT_FALSE(StatusToJson(status)["diskImportStatus"][0].contains("dataVolume"));
  status.disk_import_status[0].data_volume = "web-disk-0-01234567";
  status.disk_import_status[0].data_volume_progress = "45.20%";
  auto back = StatusFromJson(StatusToJson(status));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->disk_import_status[0].data_volume, "web-disk-0-01234567");
  EXPECT_EQ(back->disk_import_status[0].data_volume_progress, "45.20%");
}

TEST(VirtualMachineImportJson, WarmSpecAndStatusRoundTrip) {
  auto spec = SpecFromJson(json::parse(R"({"sourceCluster": {}, "virtualMachineName": "a",
      "migrationMode": "warm", "cutoverTime": "2026-12-05T02:00:00Z",
      "downtimeBudgetSeconds": 120, "precopyIntervalSeconds": 60, "warmFallbackToCold": true})"));
  ASSERT_TRUE(spec) << spec.error().ToString();
  EXPECT_EQ(spec->migration_mode, "warm");
  EXPECT_EQ(spec->downtime_budget_seconds, 120);
  EXPECT_TRUE(spec->WarmFallbackToCold());
  const json out = SpecToJson(*spec);
  EXPECT_EQ(out["cutoverTime"], "2026-12-05T02:00:00Z");
  EXPECT_EQ(out["precopyIntervalSeconds"], 60);
  EXPECT_FALSE(SpecToJson(VirtualMachineImportSpec{}).contains("migrationMode"));

  auto status = StatusFromJson(json::parse(R"({"importStatus": "precopy", "warm": {
      "rounds": [{"round": 0, "started": "2026-12-05T01:00:00Z", "bytesChanged": 1048576,
                  "bytesMoved": 524288, "seconds": 2.5, "future": 1}],
      "lastRound": 0, "estimatedDowntimeSeconds": 31.5, "waitingFor": "spec.cutoverTime",
      "downtimeSeconds": 12.25, "volumes": ["web-disk-0-01234567"], "writerPort": 20001,
      "other": "kept"}})"));
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_EQ(status->import_status, ImportStatus::kPrecopy);
  ASSERT_TRUE(status->warm);
  ASSERT_EQ(status->warm->rounds.size(), 1u);
  EXPECT_EQ(status->warm->rounds[0].bytes_moved, 524288u);
  EXPECT_DOUBLE_EQ(status->warm->rounds[0].seconds, 2.5);
  EXPECT_EQ(status->warm->estimated_downtime_seconds, 31.5);
  const json back = StatusToJson(*status);
  EXPECT_EQ(back["importStatus"], "precopy");
  EXPECT_EQ(back["warm"]["lastRound"], 0);
  EXPECT_EQ(back["warm"]["rounds"][0]["future"], 1);
  EXPECT_EQ(back["warm"]["other"], "kept");
  EXPECT_EQ(back["warm"]["downtimeSeconds"], 12.25);
  EXPECT_EQ(status->warm->writer_port, 20001);
  EXPECT_EQ(back["warm"]["writerPort"], 20001);
  EXPECT_FALSE(StatusFromJson(json::parse(R"({"warm": {"writerPort": 70000}})")));
  EXPECT_EQ(ParseImportStatus("cutover"), ImportStatus::kCutover);
  EXPECT_FALSE(StatusFromJson(json::parse(R"({"warm": {"rounds": [{"seconds": "x"}]}})")));
}

TEST(VirtualMachineImportJson, WritesBusTypeAndSkipPreflightEvenWhenUnset) {
  VirtualMachineImportStatus status;
  status.disk_import_status.push_back(DiskInfo{});
  const json out = StatusToJson(status);
  EXPECT_EQ(out["importStatus"], "");
  EXPECT_EQ(out["diskImportStatus"][0]["busType"], "");
  EXPECT_EQ(out["diskImportStatus"][0]["diskSize"], 0);
  EXPECT_FALSE(out["diskImportStatus"][0].contains("etaSeconds"));  // -1: unknown
  const json spec = SpecToJson(VirtualMachineImportSpec{});
  ASSERT_TRUE(spec.contains("skipPreflightChecks"));
  EXPECT_TRUE(spec["skipPreflightChecks"].is_null());
}

// Condition messages and disk names carry text from a source (a fault, an OVF disk name) that may
// not be UTF-8: the status JSON holds U+FFFD instead, so even a strict dump() cannot throw.
TEST(VirtualMachineImportJson, StatusWithInvalidUtf8SerializesSafely) {
  const std::string bad =
      "vm-\xF1"
      "and\xFA";
  VirtualMachineImportStatus status;
  status.import_status = ImportStatus::kVmMigrationFailed;
  status.imported_virtual_machine_name = bad;
  status.import_conditions.push_back(
      Condition{"Failed", "True", "ExportFailed", "vsphere: " + bad + " \xC3", "", ""});
  DiskInfo disk;
  disk.disk_name = bad + ".vmdk";
  disk.disk_conditions.push_back(Condition{"Exported", "False", "CorruptDisk", bad, "", ""});
  status.disk_import_status.push_back(disk);
  status.extra = json{{"note", bad}};
  const json out = StatusToJson(status);
  std::string text;
  ASSERT_NO_THROW(text = out.dump());
  EXPECT_TRUE(core::IsValidUtf8(text)) << text;
  EXPECT_EQ(core::DumpJson(out), text);
  const std::string replaced =
      "vm-\xEF\xBF\xBD"
      "and\xEF\xBF\xBD";
  EXPECT_EQ(out["importedVirtualMachineName"], replaced);
  EXPECT_EQ(out["importConditions"][0]["message"], "vsphere: " + replaced + " \xEF\xBF\xBD");
  EXPECT_EQ(out["diskImportStatus"][0]["diskName"], replaced + ".vmdk");
  EXPECT_EQ(out["note"], replaced);
  // And it reads back.
  auto back = StatusFromJson(*core::ParseJson(text));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->import_conditions.at(0).message, "vsphere: " + replaced + " \xEF\xBF\xBD");
}

TEST(VirtualMachineImportJson, KeepsAnImportStatusItDoesNotKnow) {
  auto s = StatusFromJson(json{{"importStatus", "virtualMachinePaused"}});
  ASSERT_TRUE(s);
  EXPECT_EQ(s->import_status, ImportStatus::kUnrecognised);
  EXPECT_EQ(StatusToJson(*s)["importStatus"], "virtualMachinePaused");
}

TEST(VirtualMachineImportJson, AWrongTypeIsAnErrorNamingItsPath) {
  json in = SeedImport();
  in["spec"]["networkMapping"][1]["destinationNetwork"] = 7;
  auto v = VirtualMachineImportFromJson(in);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_EQ(v.error().message, "spec.networkMapping[1].destinationNetwork: expected a string");

  in = SeedImport();
  in["status"]["diskImportStatus"][0]["bytesDone"] = -5;
  v = VirtualMachineImportFromJson(in);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message,
            "status.diskImportStatus[0].bytesDone: expected a non-negative integer");

  in = SeedImport();
  in["spec"]["sourceCluster"]["name"] = json::array();
  v = VirtualMachineImportFromJson(in);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message, "spec.sourceCluster.name: expected a string");

  in = SeedImport();
  in["spec"]["gracefulShutdownTimeoutSeconds"] = 5000000000LL;
  v = VirtualMachineImportFromJson(in);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message, "spec.gracefulShutdownTimeoutSeconds: expected a 32-bit integer");

  EXPECT_FALSE(VirtualMachineImportFromJson(json::array()));
}

TEST(VirtualMachineImportJson, ANewObjectWithoutStatusReadsAsNew) {
  json in = SeedImport();
  in.erase("status");
  in["spec"]["gracefulShutdownTimeoutSeconds"] = 0;
  in["spec"]["defaultNetworkInterfaceModel"] = "";  // "" is in the enum and means unset
  auto v = VirtualMachineImportFromJson(in);
  ASSERT_TRUE(v) << v.error().ToString();
  EXPECT_EQ(v->status.import_status, ImportStatus::kNew);
  EXPECT_TRUE(v->status.disk_import_status.empty());
  EXPECT_EQ(v->spec.GracefulShutdownTimeoutSeconds(), 60);
  EXPECT_EQ(v->spec.NicModelOrDefault(), "virtio");
}

}  // namespace
}  // namespace vmimport::api
