#include "ovf/envelope.h"

#include <gtest/gtest.h>

#include <string>

namespace vmimport::ovf {
namespace {

// What ovftool writes for a 2-disk, 2-NIC EFI VM (trimmed).
const char* kVmwareOvf = R"(<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-1" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
  xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:href="web-disk1.vmdk" ovf:id="file1" ovf:size="1234"/>
    <File ovf:href="web-disk2.vmdk" ovf:id="file2"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="24" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
    <Disk ovf:capacity="50331648" ovf:diskId="vmdisk2" ovf:fileRef="file2"/>
  </DiskSection>
  <NetworkSection><Network ovf:name="DC0_DVPG1"/><Network ovf:name="VM Network"/></NetworkSection>
  <VirtualSystem ovf:id="web-1">
    <Info>A virtual machine</Info>
    <Name>web-1</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="ubuntu64Guest"><Info>os</Info></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType></System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>4 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>4</rasd:VirtualQuantity>
        <vmw:CoresPerSocket ovf:required="false">2</vmw:CoresPerSocket>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>2048MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:Address>00:0C:29:36:32:32</rasd:Address>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>DC0_DVPG1</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>1</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 2</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk2</rasd:HostResource>
        <rasd:InstanceID>7</rasd:InstanceID>
        <rasd:Parent>4</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:ElementName>Network adapter 2</rasd:ElementName>
        <rasd:InstanceID>8</rasd:InstanceID>
        <rasd:ResourceSubType>E1000e</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
      <vmw:Config ovf:required="false" vmw:key="bootOptions.efiSecureBootEnabled" vmw:value="true"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>)";

TEST(Envelope, DescribesAVmwareOvf) {
  auto e = ParseEnvelope(kVmwareOvf, "web.ovf");
  ASSERT_TRUE(e) << e.error().ToString();
  ASSERT_EQ(e->files.size(), 2U);
  EXPECT_EQ(e->files[0].size, 1234U);
  ASSERT_EQ(e->systems.size(), 1U);
  const model::VmDescription& vm = e->systems[0].vm;
  EXPECT_EQ(vm.name, "web-1");
  EXPECT_EQ(vm.cpus, 4);
  EXPECT_EQ(vm.cores_per_socket, 2);
  EXPECT_EQ(vm.memory_mib, 2048U);
  EXPECT_EQ(vm.firmware, model::Firmware::kEfi);
  EXPECT_TRUE(vm.secure_boot);
  EXPECT_EQ(vm.guest_os, "ubuntu64Guest");
  ASSERT_EQ(vm.disks.size(), 2U);
  EXPECT_EQ(vm.disks[0].location, "web-disk1.vmdk");
  EXPECT_EQ(vm.disks[0].storage, "web-disk1.vmdk");  // an OVA's storage: the disk file
  EXPECT_EQ(vm.disks[0].capacity_bytes, 24U << 20);
  EXPECT_EQ(vm.disks[0].controller, "pvscsi");
  EXPECT_EQ(vm.disks[0].bus, "sata");  // like the vSphere path: KubeVirt has no PVSCSI
  EXPECT_EQ(vm.disks[0].boot_order, 1);
  EXPECT_EQ(vm.disks[0].name, "Hard disk 1");
  EXPECT_EQ(vm.disks[0].format, "vmdk");  // from ovf:format: the stream must carry a VMDK magic
  EXPECT_EQ(vm.disks[1].location, "web-disk2.vmdk");
  EXPECT_EQ(vm.disks[1].capacity_bytes, 50331648U);  // no units: bytes
  EXPECT_EQ(vm.disks[1].format, "");                 // no ovf:format: the magic decides
  EXPECT_EQ(vm.disks[1].controller, "lsilogic");
  EXPECT_EQ(vm.disks[1].bus, "scsi");
  EXPECT_EQ(vm.disks[1].boot_order, 2);
  ASSERT_EQ(vm.nics.size(), 2U);
  EXPECT_EQ(vm.nics[0].network, "DC0_DVPG1");
  EXPECT_EQ(vm.nics[0].mac, "00:0c:29:36:32:32");
  EXPECT_EQ(vm.nics[0].adapter_type, "vmxnet3");
  EXPECT_EQ(vm.nics[0].model, "virtio");
  EXPECT_EQ(vm.nics[1].network, "VM Network");
  EXPECT_EQ(vm.nics[1].mac, "");  // none in the OVF
  EXPECT_EQ(vm.nics[1].model, "e1000e");
}

TEST(Envelope, ParsesAllocationUnits) {
  EXPECT_EQ(ParseByteUnits("byte * 2^20"), 1U << 20);
  EXPECT_EQ(ParseByteUnits("byte*2^30"), 1ULL << 30);
  EXPECT_EQ(ParseByteUnits("byte * 10^6"), 1000000U);
  EXPECT_EQ(ParseByteUnits("byte * 1024"), 1024U);
  EXPECT_EQ(ParseByteUnits("MegaBytes"), 1U << 20);
  EXPECT_EQ(ParseByteUnits("GB"), 1ULL << 30);
  EXPECT_EQ(ParseByteUnits("byte"), 1U);
  EXPECT_FALSE(ParseByteUnits("hertz * 10^6"));
  EXPECT_FALSE(ParseByteUnits("byte * 2^70"));
  EXPECT_FALSE(ParseByteUnits("byte * x"));
}

std::string Ovf(const std::string& disk_section, const std::string& items,
                const std::string& files = R"(<File ovf:href="d1.vmdk" ovf:id="f1"/>)") {
  return R"(<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="rasd"><ovf:References>)" +
         files + "</ovf:References><ovf:DiskSection>" + disk_section +
         R"(</ovf:DiskSection><ovf:VirtualSystem ovf:id="vm"><ovf:VirtualHardwareSection>)" +
         items + "</ovf:VirtualHardwareSection></ovf:VirtualSystem></ovf:Envelope>";
}

const std::string kDisk1 =
    R"(<ovf:Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30"/>)";
const std::string kDiskItem =
    R"(<ovf:Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:ResourceType>17</rasd:ResourceType><rasd:Parent>9</rasd:Parent></ovf:Item>)";

TEST(Envelope, PrefixedElementsMemoryWordsAndControllerTypes) {
  auto e = ParseEnvelope(
      Ovf(kDisk1,
          R"(<ovf:Item><rasd:ResourceType>4</rasd:ResourceType><rasd:AllocationUnits>GigaBytes</rasd:AllocationUnits><rasd:VirtualQuantity>3</rasd:VirtualQuantity></ovf:Item>
             <ovf:Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>6</rasd:VirtualQuantity></ovf:Item>
             <ovf:Item><rasd:InstanceID>9</rasd:InstanceID><rasd:ResourceType>20</rasd:ResourceType><rasd:ResourceSubType>vmware.nvme.controller</rasd:ResourceSubType></ovf:Item>)" +
              kDiskItem),
      "x.ovf");
  ASSERT_TRUE(e) << e.error().ToString();
  const auto& vm = e->systems[0].vm;
  EXPECT_EQ(vm.name, "vm");  // no <Name>: the id
  EXPECT_EQ(vm.memory_mib, 3072U);
  EXPECT_EQ(vm.cpus, 6);
  EXPECT_EQ(vm.cores_per_socket, 1);
  EXPECT_EQ(vm.firmware, model::Firmware::kBios);
  ASSERT_EQ(vm.disks.size(), 1U);
  EXPECT_EQ(vm.disks[0].capacity_bytes, 1ULL << 30);
  EXPECT_EQ(vm.disks[0].controller, "nvme");
  EXPECT_EQ(vm.disks[0].bus, "virtio");
}

TEST(Envelope, DeploymentOptionsAndCollections) {
  const std::string xml = R"(<Envelope xmlns:ovf="o" xmlns:rasd="r"><References/>
    <DeploymentOptionSection><Configuration ovf:id="small"/><Configuration ovf:id="large" ovf:default="true"/></DeploymentOptionSection>
    <VirtualSystemCollection ovf:id="app">
      <VirtualSystem ovf:id="a"><VirtualHardwareSection>
        <Item ovf:configuration="small"><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
        <Item ovf:configuration="large"><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>8</rasd:VirtualQuantity></Item>
      </VirtualHardwareSection></VirtualSystem>
      <VirtualSystem ovf:id="b"><Name>bee</Name><VirtualHardwareSection/></VirtualSystem>
    </VirtualSystemCollection></Envelope>)";
  auto e = ParseEnvelope(xml, "x.ovf");
  ASSERT_TRUE(e) << e.error().ToString();
  ASSERT_EQ(e->systems.size(), 2U);
  EXPECT_EQ(e->systems[0].vm.cpus, 8);
  EXPECT_EQ(e->systems[1].vm.name, "bee");
}

TEST(Envelope, RejectsWhatCannotBeImported) {
  auto not_xml = ParseEnvelope("<Envelope><References>", "x.ovf");
  ASSERT_FALSE(not_xml);
  EXPECT_EQ(not_xml.error().code, core::ErrorCode::kCorruptData);
  EXPECT_NE(not_xml.error().message.find("x.ovf"), std::string::npos);
  EXPECT_FALSE(ParseEnvelope("<Other/>", "x.ovf"));
  EXPECT_FALSE(ParseEnvelope("<Envelope/>", "x.ovf"));  // no VirtualSystem
  auto missing_disk = ParseEnvelope(Ovf("", kDiskItem), "x.ovf");
  ASSERT_FALSE(missing_disk);
  EXPECT_NE(missing_disk.error().message.find("d1"), std::string::npos);
  auto gzip = ParseEnvelope(
      Ovf(kDisk1, kDiskItem, R"(<File ovf:href="d1.vmdk" ovf:id="f1" ovf:compression="gzip"/>)"),
      "x.ovf");
  ASSERT_FALSE(gzip);
  EXPECT_EQ(gzip.error().code, core::ErrorCode::kUnsupported);
  auto huge = ParseEnvelope(
      Ovf(R"(<ovf:Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="99999999999" ovf:capacityAllocationUnits="byte * 2^40"/>)",
          kDiskItem),
      "x.ovf");
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code, core::ErrorCode::kCorruptData);
  auto bad_memory = ParseEnvelope(
      Ovf(kDisk1,
          R"(<ovf:Item><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>lots</rasd:VirtualQuantity></ovf:Item>)"),
      "x.ovf");
  EXPECT_FALSE(bad_memory);
}

}  // namespace
}  // namespace vmimport::ovf
