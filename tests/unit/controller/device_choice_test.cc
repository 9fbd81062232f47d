#include "controller/device_choice.h"

#include <gtest/gtest.h>

#include <string>

#include "controller/readiness.h"

namespace vmimport::controller {
namespace {

model::DiskDescription Disk(const std::string& controller, const std::string& detected_bus) {
  model::DiskDescription d;
  d.name = "disk";
  d.controller = controller;
  d.bus = detected_bus;
  d.capacity_bytes = 1 << 20;
  return d;
}

model::NicDescription Nic(const std::string& adapter, const std::string& detected_model,
                          const std::string& network = "VM Network") {
  model::NicDescription n;
  n.mac = "00:50:56:aa:00:01";
  n.network = network;
  n.adapter_type = adapter;
  n.model = detected_model;
  return n;
}

// A vSphere VM as the provider describes it: guestId, one disk on `controller`, one NIC.
model::VmDescription Vsphere(const std::string& guest_id, const std::string& controller,
                             const std::string& bus, const std::string& adapter,
                             const std::string& nic_model) {
  model::VmDescription vm;
  vm.name = "vm";
  vm.guest_os = guest_id;
  vm.disks.push_back(Disk(controller, bus));
  vm.nics.push_back(Nic(adapter, nic_model));
  return vm;
}

// An OpenStack server as describe.cc makes it: os_distro in guest_os, os_type in guest_os_type,
// hw_disk_bus (default virtio) as the controller, hw_vif_model (default virtio) as the adapter.
model::VmDescription OpenStack(const std::string& os_distro, const std::string& os_type,
                               const std::string& hw_disk_bus, const std::string& hw_vif_model) {
  model::VmDescription vm;
  vm.name = "server";
  vm.guest_os = os_distro;
  vm.guest_os_type = os_type;
  const std::string controller = hw_disk_bus.empty() ? "virtio" : hw_disk_bus;
  vm.disks.push_back(Disk(controller, controller == "ide" ? "sata" : controller));
  const std::string adapter = hw_vif_model.empty() ? "virtio" : hw_vif_model;
  vm.nics.push_back(Nic(adapter, adapter));
  return vm;
}

TEST(ClassifyGuest, RealVsphereGuestIds) {
  struct Case {
    const char* id;
    GuestFamily family;
  };
  // Values of vim.vm.GuestOsDescriptor.GuestOsIdentifier.
  for (const Case& c : {Case{"windows2019srv_64Guest", GuestFamily::kWindows},
                        Case{"windows2019srvNext_64Guest", GuestFamily::kWindows},
                        Case{"windows9_64Guest", GuestFamily::kWindows},
                        Case{"windows11_64Guest", GuestFamily::kWindows},
                        Case{"windows7Server64Guest", GuestFamily::kWindows},
                        Case{"winNetStandardGuest", GuestFamily::kWindows},
                        Case{"winXPProGuest", GuestFamily::kWindows},
                        Case{"debian12_64Guest", GuestFamily::kLinux},
                        Case{"debian6_64Guest", GuestFamily::kLinux},
                        Case{"debian5_64Guest", GuestFamily::kUnknown},
                        Case{"rhel9_64Guest", GuestFamily::kLinux},
                        Case{"rhel4_64Guest", GuestFamily::kUnknown},
                        Case{"centos7_64Guest", GuestFamily::kLinux},
                        Case{"centos64Guest", GuestFamily::kUnknown},  // "CentOS 4/5"
                        Case{"ubuntu64Guest", GuestFamily::kLinux},
                        Case{"sles15_64Guest", GuestFamily::kLinux},
                        Case{"sles10_64Guest", GuestFamily::kUnknown},
                        Case{"sles64Guest", GuestFamily::kUnknown},
                        Case{"other5xLinux64Guest", GuestFamily::kLinux},
                        Case{"other26xLinux64Guest", GuestFamily::kUnknown},
                        Case{"otherLinux64Guest", GuestFamily::kUnknown},
                        Case{"otherGuest64", GuestFamily::kUnknown},
                        Case{"freebsd13_64Guest", GuestFamily::kUnknown},
                        Case{"", GuestFamily::kUnknown}}) {
    model::VmDescription vm;
    vm.guest_os = c.id;
    EXPECT_EQ(ClassifyGuest(vm).family, c.family) << c.id;
  }
}

TEST(ClassifyGuest, OpenStackPropertiesToolsFamilyAndOvfDescription) {
  model::VmDescription vm;
  vm.guest_os_type = "windows";  // os_type
  EXPECT_EQ(ClassifyGuest(vm).family, GuestFamily::kWindows);
  vm = {};
  vm.guest_os = "windows";  // os_distro
  EXPECT_EQ(ClassifyGuest(vm).family, GuestFamily::kWindows);
  vm = {};
  vm.guest_os = "ubuntu";
  EXPECT_EQ(ClassifyGuest(vm).family, GuestFamily::kLinux);
  vm = {};
  vm.guest_os_type = "linux";
  EXPECT_EQ(ClassifyGuest(vm).family, GuestFamily::kLinux);
  vm = {};
  vm.guest_os = "otherGuest64";
  vm.guest_os_type = "windowsGuest";  // VMware Tools' guest.guestFamily wins over a vague guestId
  EXPECT_EQ(ClassifyGuest(vm).family, GuestFamily::kWindows);
  vm = {};
  vm.guest_os_full_name = "Microsoft Windows Server 2022 (64-bit)";
  EXPECT_EQ(ClassifyGuest(vm).family, GuestFamily::kWindows);
  EXPECT_NE(ClassifyGuest(vm).evidence.find("Windows Server 2022"), std::string::npos);
}

TEST(ChooseDevices, WindowsOnVsphereGetsSataAndE1000eWithAdvice) {
  // lsilogic would map to scsi (virtio-scsi) and vmxnet3 to virtio: Windows has neither driver.
  const auto vm = Vsphere("windows2019srv_64Guest", "lsilogicsas", "scsi", "vmxnet3", "virtio");
  const DevicePlan plan = ChooseDevices(vm, {});
  EXPECT_EQ(plan.guest.family, GuestFamily::kWindows);
  ASSERT_EQ(plan.disks.size(), 1U);
  EXPECT_EQ(plan.disks[0].value, "sata");
  EXPECT_EQ(plan.disks[0].rule, kRuleWindows);
  EXPECT_NE(plan.disks[0].why.find("windows2019srv_64Guest"), std::string::npos);
  EXPECT_EQ(plan.nics[0].value, "e1000e");
  EXPECT_EQ(plan.nics[0].rule, kRuleWindows);
  EXPECT_TRUE(plan.NeedsAttention());
  EXPECT_NE(plan.advice.find("virtio-win"), std::string::npos);
}

TEST(ChooseDevices, WindowsWithPvscsiStillSata) {
  const auto vm = Vsphere("windows9_64Guest", "pvscsi", "sata", "e1000", "e1000");
  const DevicePlan plan = ChooseDevices(vm, {});
  EXPECT_EQ(plan.disks[0].value, "sata");
  EXPECT_EQ(plan.nics[0].value, "e1000");  // its own emulated model: it has the driver
  EXPECT_EQ(plan.nics[0].rule, kRuleSourceEmulated);
}

TEST(ChooseDevices, WindowsThatRanOnVirtioInOpenStackKeepsVirtio) {
  // Nova's default bus for KVM is virtio: a Windows server running there has the drivers.
  const DevicePlan plan = ChooseDevices(OpenStack("windows", "windows", "", ""), {});
  EXPECT_EQ(plan.guest.family, GuestFamily::kWindows);
  EXPECT_EQ(plan.disks[0].value, "virtio");
  EXPECT_EQ(plan.disks[0].rule, kRuleSourceVirtio);
  EXPECT_EQ(plan.nics[0].value, "virtio");
  EXPECT_FALSE(plan.NeedsAttention());
}

TEST(ChooseDevices, OpenStackImageOnSataAndE1000StaysThere) {
  // hw_disk_bus=sata, hw_vif_model=e1000: the guest was never given virtio.
  const DevicePlan plan = ChooseDevices(OpenStack("ubuntu", "linux", "sata", "e1000"), {});
  EXPECT_EQ(plan.disks[0].value, "sata");
  EXPECT_EQ(plan.disks[0].rule, kRuleSourceSata);
  EXPECT_EQ(plan.nics[0].value, "e1000");
  EXPECT_TRUE(plan.NeedsAttention());
  const DevicePlan ide = ChooseDevices(OpenStack("windows", "windows", "ide", "e1000e"), {});
  EXPECT_EQ(ide.disks[0].value, "sata");
  EXPECT_EQ(ide.nics[0].value, "e1000e");
}

TEST(ChooseDevices, LinuxOnScsiGetsVirtio) {
  const auto vm = Vsphere("debian12_64Guest", "pvscsi", "sata", "vmxnet3", "virtio");
  const DevicePlan plan = ChooseDevices(vm, {});
  EXPECT_EQ(plan.disks[0].value, "virtio");
  EXPECT_EQ(plan.disks[0].rule, kRuleLinux);
  EXPECT_EQ(plan.nics[0].value, "virtio");
  EXPECT_FALSE(plan.NeedsAttention());
}

TEST(ChooseDevices, LinuxGuestOnSataIsNotMovedToVirtio) {
  // The SATA-only guest of the test world: Debian, but its initramfs has only ahci.
  const auto vm = Vsphere("debian12_64Guest", "sata", "sata", "e1000e", "e1000e");
  const DevicePlan plan = ChooseDevices(vm, {});
  EXPECT_EQ(plan.disks[0].value, "sata");
  EXPECT_EQ(plan.disks[0].rule, kRuleSourceSata);
  EXPECT_EQ(plan.nics[0].value, "e1000e");
  EXPECT_TRUE(plan.NeedsAttention());
}

TEST(ChooseDevices, UnknownGuestKeepsTheDetectedDevices) {
  const auto vm = Vsphere("otherLinux64Guest", "lsilogic", "scsi", "vmxnet3", "virtio");
  const DevicePlan plan = ChooseDevices(vm, {});
  EXPECT_EQ(plan.disks[0].value, "scsi");
  EXPECT_EQ(plan.disks[0].rule, kRuleSource);
  EXPECT_EQ(plan.nics[0].value, "virtio");
  EXPECT_FALSE(plan.NeedsAttention());
  // Nothing detected at all: the defaults.
  model::VmDescription bare;
  bare.disks.push_back(Disk("", ""));
  bare.nics.push_back(Nic("", ""));
  const DevicePlan defaults = ChooseDevices(bare, {});
  EXPECT_EQ(defaults.disks[0].value, "virtio");
  EXPECT_EQ(defaults.nics[0].value, "virtio");
}

TEST(ChooseDevices, WhatTheUserWritesAlwaysWins) {
  const auto vm = Vsphere("windows2019srv_64Guest", "sata", "sata", "e1000e", "e1000e");
  api::VirtualMachineImportSpec spec;
  spec.default_disk_bus_type = "virtio";
  spec.default_network_interface_model = "virtio";
  DevicePlan plan = ChooseDevices(vm, spec);
  EXPECT_EQ(plan.disks[0].value, "virtio");
  EXPECT_EQ(plan.disks[0].rule, kRuleUser);
  EXPECT_EQ(plan.nics[0].value, "virtio");
  EXPECT_EQ(plan.nics[0].rule, kRuleUser);
  EXPECT_FALSE(plan.NeedsAttention());
  // A mapping's own model wins over the default.
  spec.network_mapping.push_back({"VM Network", "vlan1", std::string("rtl8139")});
  plan = ChooseDevices(vm, spec);
  EXPECT_EQ(plan.nics[0].value, "rtl8139");
  EXPECT_NE(plan.nics[0].why.find("networkMapping"), std::string::npos);
  // An empty string is "not set" (the CRD enum has "").
  spec = {};
  spec.default_disk_bus_type = "";
  EXPECT_EQ(ChooseDevices(vm, spec).disks[0].rule, kRuleSourceSata);
}

// Issue 19: a per-disk bus and a per-NIC model the user writes beat every rule, the guest's and
// the spec-wide defaults; the plan says "bus set by the user" and carries each disk's class.
TEST(ChooseDevices, PerDeviceOverridesBeatTheGuestRulesAndTheDefaults) {
  auto vm = Vsphere("windows2019srv_64Guest", "lsilogicsas", "scsi", "vmxnet3", "virtio");
  vm.disks.push_back(Disk("lsilogicsas", "scsi"));
  vm.disks[1].storage = "ds2";
  api::VirtualMachineImportSpec spec;
  spec.default_disk_bus_type = "scsi";
  spec.storage_class = "longhorn";
  spec.disk_overrides.push_back({.index = 0, .disk_bus_type = "virtio"});
  spec.storage_mapping.push_back({.source = "ds2", .storage_class = "slow"});
  spec.nic_overrides.push_back(
      {.mac_address = "00:50:56:AA:00:01", .network_interface_model = "virtio"});
  spec.network_mapping.push_back({"VM Network", "vlan1", std::string("rtl8139")});
  const DevicePlan plan = ChooseDevices(vm, spec);
  EXPECT_EQ(plan.disks[0].value, "virtio");  // not the Windows rule's sata, not scsi
  EXPECT_EQ(plan.disks[0].rule, kRuleUser);
  EXPECT_NE(plan.disks[0].why.find("bus set by the user"), std::string::npos);
  EXPECT_EQ(plan.disks[1].value, "scsi");   // spec.defaultDiskBusType for the other disk
  EXPECT_EQ(plan.nics[0].value, "virtio");  // not the mapping's rtl8139
  EXPECT_EQ(plan.storage[0].storage_class, "longhorn");
  EXPECT_EQ(plan.storage[1].storage_class, "slow");
  const auto lines = DescribeDevicePlan(vm, plan);
  EXPECT_NE(lines[0].find("bus virtio [user: bus set by the user"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("storage class slow [storage-mapping:"), std::string::npos) << lines[1];
}

TEST(ApplyDevicePlan, WritesEachChoiceIntoTheDescription) {
  auto vm = Vsphere("windows2019srv_64Guest", "lsilogic", "scsi", "vmxnet3", "virtio");
  vm.disks.push_back(Disk("pvscsi", "sata"));
  const DevicePlan plan = ChooseDevices(vm, {});
  const auto applied = ApplyDevicePlan(vm, plan);
  EXPECT_EQ(applied.disks[0].bus, "sata");
  EXPECT_EQ(applied.disks[1].bus, "sata");
  EXPECT_EQ(applied.nics[0].model, "e1000e");
  EXPECT_EQ(applied.disks[0].controller, "lsilogic");  // the source's facts stay
  const auto lines = DescribeDevicePlan(vm, plan);
  ASSERT_EQ(lines.size(), 3U);
  EXPECT_NE(lines[0].find("bus sata [windows:"), std::string::npos) << lines[0];
  EXPECT_NE(lines[2].find("model e1000e"), std::string::npos) << lines[2];
}

TEST(AssessReadiness, SaysFirmwareBootDiskAndWhatDoesNotCarryOver) {
  auto vm = Vsphere("windows11_64Guest", "sata", "sata", "vmxnet3", "virtio");
  vm.disks[0].name = "Hard disk 1";
  vm.disks.push_back(Disk("pvscsi", "sata"));
  vm.disks[1].name = "Hard disk 2";
  vm.disks[1].boot_order = 1;  // the source boots from the second disk
  vm.firmware = model::Firmware::kBios;
  vm.tpm = true;
  vm.cdroms = 1;
  vm.nics.push_back(Nic("e1000e", "e1000e", "Backup Network"));
  const Readiness r = AssessReadiness(vm, {});
  EXPECT_EQ(r.firmware, "bios");
  EXPECT_EQ(r.boot_disk, "disk 1 (Hard disk 2) on sata");
  EXPECT_EQ(r.Verdict(), "ready with warnings");
  ASSERT_EQ(r.risks.size(), 3U);
  EXPECT_NE(r.risks[0].find("TPM on BIOS"), std::string::npos);
  EXPECT_NE(r.risks[1].find("pod network takes only one NIC"), std::string::npos);
  EXPECT_NE(r.risks[2].find("CD/DVD"), std::string::npos);
  const std::string summary = r.Summary();
  EXPECT_NE(summary.find("guest windows (guest OS windows11_64Guest)"), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("virtio-win"), std::string::npos) << summary;
}

TEST(AssessReadiness, ALinuxGuestOnVirtioIsReady) {
  auto vm = Vsphere("ubuntu64Guest", "pvscsi", "sata", "vmxnet3", "virtio");
  vm.firmware = model::Firmware::kEfi;
  vm.secure_boot = true;
  api::VirtualMachineImportSpec spec;
  spec.network_mapping.push_back({"VM Network", "vlan1", std::nullopt});
  const Readiness r = AssessReadiness(vm, spec);
  EXPECT_EQ(r.Verdict(), "ready");
  EXPECT_EQ(r.firmware, "efi with secure boot");
  EXPECT_EQ(r.boot_disk, "disk 0 (disk) on virtio");
  EXPECT_TRUE(r.risks.empty());
}

}  // namespace
}  // namespace vmimport::controller
