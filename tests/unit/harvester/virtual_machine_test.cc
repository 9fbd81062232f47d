#include "harvester/virtual_machine.h"

#include <gtest/gtest.h>

namespace vmimport::harvester {
namespace {

using nlohmann::json;

api::VirtualMachineImport Import(size_t disks) {
  api::VirtualMachineImport v;
  v.name = "win-import";
  v.namespace_ = "default";
  v.uid = "u-1";
  v.status.imported_virtual_machine_name = "win11";
  for (size_t i = 0; i < disks; ++i) {
    api::DiskInfo d;
    d.disk_name = "win-import-default-disk-" + std::to_string(i) + ".img";
    d.virtual_machine_image = "image-" + std::to_string(i);
    v.status.disk_import_status.push_back(d);
  }
  return v;
}

model::VmDescription BiosVm(int cpus, int cores_per_socket, uint64_t memory_mib) {
  model::VmDescription vm;
  vm.name = "Win11";
  vm.cpus = cpus;
  vm.cores_per_socket = cores_per_socket;
  vm.memory_mib = memory_mib;
  vm.disks = {{"2000", "Hard disk 1", 1ULL << 30, "pvscsi", "scsi", 0, ""}};
  vm.nics = {{"00:50:56:aa:bb:01", "VM Network", "vmxnet3", "virtio"}};
  return vm;
}

// 3 disks with an EFI + Secure Boot + TPM source, 2 NICs: one without a mapping, one mapped by
// its portgroup under a distributed switch path ("DSwitch/dvs_10", B4).
TEST(BuildVirtualMachine, EfiSecureBootTpmThreeDisksOneMappedOneUnmappedNic) {
  api::VirtualMachineImport imp = Import(3);
  imp.status.disk_import_status[1].bus_type = "sata";
  imp.spec.network_mapping = {{"DSwitch/dvs_10", "vlan10", std::nullopt}};
  model::VmDescription vm = BiosVm(4, 2, 8192);
  vm.firmware = model::Firmware::kEfi;
  vm.secure_boot = true;
  vm.tpm = true;
  vm.disks = {{"2000", "Hard disk 1", 1ULL << 30, "pvscsi", "scsi", 2, ""},
              {"2001", "Hard disk 2", 1ULL << 30, "sata", "", 1, ""},
              {"2002", "Hard disk 3", 1ULL << 30, "", "", 0, ""}};
  vm.nics = {{"00:50:56:aa:bb:01", "VM Network", "vmxnet3", "virtio"},
             {"00:50:56:aa:bb:02", "dvs_10", "e1000e", "e1000e"}};

  auto built = BuildVirtualMachine(imp, vm);
  ASSERT_TRUE(built) << built.error().ToString();
  EXPECT_EQ(built->warnings, std::vector<std::string>{});
  const json expected = json::parse(R"({
    "apiVersion": "kubevirt.io/v1",
    "kind": "VirtualMachine",
    "metadata": {"name": "win11", "namespace": "default",
                 "labels": {"migration.harvesterhci.io/imported": "true"}},
    "spec": {
      "runStrategy": "RerunOnFailure",
      "template": {
        "metadata": {"labels": {"harvesterhci.io/vmName": "win11"}},
        "spec": {
          "evictionStrategy": "LiveMigrateIfPossible",
          "domain": {
            "cpu": {"sockets": 2, "cores": 2, "threads": 1},
            "memory": {"guest": "8192Mi"},
            "resources": {"limits": {"cpu": "4", "memory": "8192Mi"}},
            "features": {"acpi": {"enabled": true}, "smm": {"enabled": true}},
            "firmware": {"bootloader": {"efi": {"secureBoot": true}}},
            "devices": {
              "tpm": {},
              "disks": [
                {"name": "disk-0", "bootOrder": 2, "disk": {"bus": "scsi"}},
                {"name": "disk-1", "bootOrder": 1, "disk": {"bus": "sata"}},
                {"name": "disk-2", "bootOrder": 3, "disk": {"bus": "virtio"}}
              ],
              "interfaces": [
                {"name": "pod-network", "model": "virtio", "masquerade": {},
                 "macAddress": "00:50:56:aa:bb:01"},
                {"name": "migrated-0", "model": "e1000e", "bridge": {},
                 "macAddress": "00:50:56:aa:bb:02"}
              ]
            }
          },
          "networks": [
            {"name": "pod-network", "pod": {}},
            {"name": "migrated-0", "multus": {"networkName": "default/vlan10"}}
          ],
          "volumes": [
            {"name": "disk-0", "persistentVolumeClaim": {"claimName": "image-0"}},
            {"name": "disk-1", "persistentVolumeClaim": {"claimName": "image-1"}},
            {"name": "disk-2", "persistentVolumeClaim": {"claimName": "image-2"}}
          ]
        }
      }
    }
  })");
  EXPECT_EQ(built->object, expected) << built->object.dump(2);
}

TEST(BuildVirtualMachine, BiosFourCpusTwoCoresPerSocketIsTwoSocketsOfTwoCores) {
  auto built = BuildVirtualMachine(Import(1), BiosVm(4, 2, 4096));
  ASSERT_TRUE(built) << built.error().ToString();
  const json& domain = built->object["spec"]["template"]["spec"]["domain"];
  EXPECT_EQ(domain["cpu"], json::parse(R"({"sockets": 2, "cores": 2, "threads": 1})"));
  EXPECT_EQ(domain["resources"]["limits"]["cpu"], "4");
  EXPECT_FALSE(domain.contains("firmware"));
  EXPECT_FALSE(domain["features"].contains("smm"));
  EXPECT_FALSE(domain["devices"].contains("tpm"));
}

TEST(BuildVirtualMachine, SocketsAreCpusOverCoresPerSocketNotTheReferencesSwap) {
  // The reference (B1) writes cores=8, sockets=4 here: 32 vCPUs.
  auto built = BuildVirtualMachine(Import(1), BiosVm(8, 4, 4096));
  ASSERT_TRUE(built);
  EXPECT_EQ(built->object["spec"]["template"]["spec"]["domain"]["cpu"],
            json::parse(R"({"sockets": 2, "cores": 4, "threads": 1})"));
  auto flat = BuildVirtualMachine(Import(1), BiosVm(8, 1, 4096));
  ASSERT_TRUE(flat);
  EXPECT_EQ(flat->object["spec"]["template"]["spec"]["domain"]["cpu"],
            json::parse(R"({"sockets": 8, "cores": 1, "threads": 1})"));
}

TEST(BuildVirtualMachine, MemoryIsBinaryMebibytes) {
  auto built = BuildVirtualMachine(Import(1), BiosVm(1, 1, 3000));
  ASSERT_TRUE(built);
  const json& domain = built->object["spec"]["template"]["spec"]["domain"];
  EXPECT_EQ(domain["memory"]["guest"], "3000Mi");
  EXPECT_EQ(domain["resources"]["limits"]["memory"], "3000Mi");
}

TEST(BuildVirtualMachine, ATopologyThatDoesNotDivideKeepsTheVcpuCountAndWarns) {
  auto built = BuildVirtualMachine(Import(1), BiosVm(6, 4, 1024));
  ASSERT_TRUE(built);
  EXPECT_EQ(built->object["spec"]["template"]["spec"]["domain"]["cpu"],
            json::parse(R"({"sockets": 6, "cores": 1, "threads": 1})"));
  EXPECT_EQ(built->warnings, std::vector<std::string>{
                                 "4 cores per socket do not divide 6 vCPUs: using 6 sockets of 1 "
                                 "core"});
}

// The seed's "bogus sourceNetwork" test: nothing maps, so one pod-network NIC, masquerade. Its
// model is the NIC's (e1000 here: the model the controller chose for the guest, issue 17), not
// the default the reference always put there.
TEST(BuildVirtualMachine, BogusSourceNetworkGivesOnePodNetworkNic) {
  api::VirtualMachineImport imp = Import(1);
  imp.spec.network_mapping = {{"no-such-network", "default/vlan1", std::nullopt}};
  model::VmDescription vm = BiosVm(2, 1, 2048);
  vm.nics = {{"00:50:56:aa:bb:01", "VM Network", "e1000", "e1000"},
             {"00:50:56:aa:bb:02", "Backup", "e1000", "e1000"}};
  auto built = BuildVirtualMachine(imp, vm);
  ASSERT_TRUE(built);
  const json& tmpl = built->object["spec"]["template"]["spec"];
  EXPECT_EQ(tmpl["domain"]["devices"]["interfaces"], json::parse(R"([
    {"name": "pod-network", "model": "e1000", "masquerade": {}, "macAddress": "00:50:56:aa:bb:01"}
  ])"));
  EXPECT_EQ(tmpl["networks"], json::parse(R"([{"name": "pod-network", "pod": {}}])"));
  EXPECT_EQ(built->warnings,
            std::vector<std::string>{
                "nic 00:50:56:aa:bb:02 on network \"Backup\" has no networkMapping entry and the "
                "pod network is taken by nic 00:50:56:aa:bb:01: not attached"});
}

// What the user writes wins over what was detected or chosen (issue 17): defaultDiskBusType over
// every disk's busType, defaultNetworkInterfaceModel over every NIC's model, a mapping's model
// over both.
TEST(BuildVirtualMachine, TheDefaultsTheUserWroteWinOverDetection) {
  api::VirtualMachineImport imp = Import(2);
  imp.status.disk_import_status[0].bus_type = "sata";
  imp.spec.default_disk_bus_type = "scsi";
  imp.spec.default_network_interface_model = "e1000e";
  imp.spec.network_mapping = {{"Backup", "net/vlan1", std::string("rtl8139")}};
  model::VmDescription vm = BiosVm(1, 1, 512);
  vm.disks.push_back({"2001", "Hard disk 2", 1ULL << 30, "sata", "sata", 0, ""});
  vm.nics.push_back({"00:50:56:aa:bb:02", "Backup", "vmxnet3", "virtio"});
  auto built = BuildVirtualMachine(imp, vm);
  ASSERT_TRUE(built);
  const json& devices = built->object["spec"]["template"]["spec"]["domain"]["devices"];
  EXPECT_EQ(devices["disks"][0]["disk"]["bus"], "scsi");
  EXPECT_EQ(devices["disks"][1]["disk"]["bus"], "scsi");
  EXPECT_EQ(devices["interfaces"][0]["model"], "e1000e");   // pod network: the default
  EXPECT_EQ(devices["interfaces"][1]["model"], "rtl8139");  // its mapping's model
}

// Issue 19: spec.cpu, spec.memory, runStrategy stopped, a per-disk bus and a per-NIC model.
TEST(BuildVirtualMachine, TheUsersOverridesShapeTheVm) {
  api::VirtualMachineImport imp = Import(2);
  imp.status.disk_import_status[0].bus_type = "sata";
  imp.spec.default_disk_bus_type = "scsi";
  imp.spec.disk_overrides = {{.name = "Hard disk 2", .disk_bus_type = "virtio"}};
  imp.spec.nic_overrides = {{.index = 0, .network_interface_model = "e1000"}};
  imp.spec.cpu = api::CpuOverride{.sockets = 2, .cores = 4, .threads = 2};
  imp.spec.memory = "3Gi";
  imp.spec.run_strategy = "stopped";
  model::VmDescription vm = BiosVm(4, 3, 512);  // 3 does not divide 4: no warning when overridden
  vm.disks.push_back({"2001", "Hard disk 2", 1ULL << 30, "sata", "sata", 0, ""});
  auto built = BuildVirtualMachine(imp, vm);
  ASSERT_TRUE(built);
  const json& spec = built->object["spec"];
  EXPECT_EQ(spec["runStrategy"], "Halted");
  const json& domain = spec["template"]["spec"]["domain"];
  EXPECT_EQ(domain["cpu"], json({{"sockets", 2}, {"cores", 4}, {"threads", 2}}));
  EXPECT_EQ(domain["resources"]["limits"]["cpu"], "16");
  EXPECT_EQ(domain["memory"]["guest"], "3Gi");
  EXPECT_EQ(domain["resources"]["limits"]["memory"], "3Gi");
  EXPECT_EQ(domain["devices"]["disks"][0]["disk"]["bus"], "scsi");    // spec-wide default
  EXPECT_EQ(domain["devices"]["disks"][1]["disk"]["bus"], "virtio");  // its own override wins
  EXPECT_EQ(domain["devices"]["interfaces"][0]["model"], "e1000");
  EXPECT_TRUE(built->warnings.empty());
}

TEST(BuildVirtualMachine, NoNicAtAllStillGetsThePodNetworkWithTheDefaultModel) {
  api::VirtualMachineImport imp = Import(1);
  imp.spec.default_network_interface_model = "e1000";
  model::VmDescription vm = BiosVm(1, 1, 512);
  vm.nics.clear();
  auto built = BuildVirtualMachine(imp, vm);
  ASSERT_TRUE(built);
  EXPECT_EQ(built->object["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"],
            json::parse(R"([{"name": "pod-network", "model": "e1000", "masquerade": {}}])"));
}

TEST(BuildVirtualMachine, MappingModelWinsOverTheDetectedOneAndExactMatchWinsOverThePath) {
  api::VirtualMachineImport imp = Import(1);
  imp.spec.network_mapping = {{"DSwitch/VM Network", "other/vlan9", std::nullopt},
                              {"VM Network", "net/vlan1", std::string("rtl8139")}};
  auto built = BuildVirtualMachine(imp, BiosVm(1, 1, 512));
  ASSERT_TRUE(built);
  const json& tmpl = built->object["spec"]["template"]["spec"];
  EXPECT_EQ(tmpl["domain"]["devices"]["interfaces"][0]["model"], "rtl8139");
  EXPECT_EQ(tmpl["networks"][0]["multus"]["networkName"], "net/vlan1");
}

TEST(BuildVirtualMachine, TpmOnBiosIsDroppedWithAWarning) {
  model::VmDescription vm = BiosVm(1, 1, 512);
  vm.tpm = true;
  auto built = BuildVirtualMachine(Import(1), vm);
  ASSERT_TRUE(built);
  EXPECT_FALSE(built->object["spec"]["template"]["spec"]["domain"]["devices"].contains("tpm"));
  ASSERT_EQ(built->warnings.size(), 1U);
  EXPECT_NE(built->warnings[0].find("TPM"), std::string::npos);
}

TEST(BuildVirtualMachine, EfiWithoutSecureBootOrTpmHasNoSmm) {
  model::VmDescription vm = BiosVm(1, 1, 512);
  vm.firmware = model::Firmware::kEfi;
  auto built = BuildVirtualMachine(Import(1), vm);
  ASSERT_TRUE(built);
  const json& domain = built->object["spec"]["template"]["spec"]["domain"];
  EXPECT_EQ(domain["firmware"], json::parse(R"({"bootloader": {"efi": {"secureBoot": false}}})"));
  EXPECT_FALSE(domain["features"].contains("smm"));
}

TEST(BuildVirtualMachine, RejectsInputsItCannotBuildFrom) {
  api::VirtualMachineImport imp = Import(1);
  imp.status.imported_virtual_machine_name.clear();
  auto no_name = BuildVirtualMachine(imp, BiosVm(1, 1, 512));
  ASSERT_FALSE(no_name);
  EXPECT_EQ(no_name.error().message, "virtualmachine: status.importedVirtualMachineName is empty");

  auto mismatch = BuildVirtualMachine(Import(2), BiosVm(1, 1, 512));
  ASSERT_FALSE(mismatch);
  EXPECT_EQ(mismatch.error().message,
            "virtualmachine: status.diskImportStatus has 2 disks, the source VM 1");

  auto no_memory = BuildVirtualMachine(Import(1), BiosVm(1, 1, 0));
  ASSERT_FALSE(no_memory);
  EXPECT_EQ(no_memory.error().code, core::ErrorCode::kInvalidArgument);

  api::VirtualMachineImport no_image = Import(1);
  no_image.status.disk_import_status[0].virtual_machine_image.clear();
  auto unclaimed = BuildVirtualMachine(no_image, BiosVm(1, 1, 512));
  ASSERT_FALSE(unclaimed);
  EXPECT_EQ(
      unclaimed.error().message,
      "virtualmachine: disk 0 (win-import-default-disk-0.img) has no VirtualMachineImage and no "
      "DataVolume");

  api::VirtualMachineImport bad_dest = Import(1);
  bad_dest.spec.network_mapping = {{"VM Network", "a/b/c", std::nullopt}};
  EXPECT_FALSE(BuildVirtualMachine(bad_dest, BiosVm(1, 1, 512)));
}

}  // namespace
}  // namespace vmimport::harvester
