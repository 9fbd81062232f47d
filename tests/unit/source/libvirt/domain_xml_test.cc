#include "source/libvirt/domain_xml.h"

#include <gtest/gtest.h>

#include "source/libvirt/connection.h"

namespace vmimport::source::libvirt {
namespace {

using core::ErrorCode;

// What virsh dumpxml prints for an EFI guest with secure boot, a TPM, three disks on three
// buses (one with a boot order) and three NICs (two libvirt networks, one host bridge).
constexpr const char* kEfiDomain = R"(<domain type='kvm' id='3'>
  <name>web-01</name>
  <uuid>5A1E0002-0000-4000-8000-000000000002</uuid>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://ubuntu.com/ubuntu/22.04"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>4</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>
    <nvram>/var/lib/libvirt/qemu/nvram/web-01_VARS.fd</nvram>
  </os>
  <cpu mode='host-passthrough'><topology sockets='2' dies='1' cores='2' threads='1'/></cpu>
  <devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='/iso/ubuntu.iso'/><target dev='sdc' bus='sata'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/images/web-01.raw'/>
      <target dev='sda' bus='scsi'/>
      <boot order='1'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='data' volume='web-01-data.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/images/web-01-old.img'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:B0:00:01'/><source network='prod'/><model type='virtio'/>
    </interface>
    <interface type='network'>
      <mac address='52:54:00:b0:00:02'/><source network='backup'/><model type='e1000e'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:b0:00:03'/><source bridge='br0'/>
    </interface>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
  </devices>
</domain>)";

TEST(LibvirtDomainXml, EfiGuestWithEveryDiskAndNic) {
  auto d = ParseDomainXml(kEfiDomain);
  ASSERT_TRUE(d) << d.error().ToString();
  const model::VmDescription& vm = d->vm;
  EXPECT_EQ(vm.name, "web-01");
  EXPECT_EQ(vm.bios_uuid, "5a1e0002-0000-4000-8000-000000000002");
  EXPECT_EQ(vm.id, vm.bios_uuid);
  EXPECT_EQ(vm.memory_mib, 2048U);  // <memory>, not the balloon's currentMemory
  EXPECT_EQ(vm.cpus, 4);
  EXPECT_EQ(vm.Sockets(), 2);
  EXPECT_EQ(vm.cores_per_socket, 2);
  EXPECT_EQ(vm.firmware, model::Firmware::kEfi);
  EXPECT_TRUE(vm.secure_boot);
  EXPECT_TRUE(vm.tpm);
  EXPECT_EQ(vm.guest_os, "http://ubuntu.com/ubuntu/22.04");

  ASSERT_EQ(vm.disks.size(), 3U);  // the cdrom is media, not a disk
  ASSERT_EQ(d->disks.size(), 3U);
  EXPECT_EQ(vm.disks[0].bus, "scsi");
  EXPECT_EQ(vm.disks[0].boot_order, 1);
  EXPECT_EQ(vm.disks[1].bus, "virtio");
  EXPECT_EQ(vm.disks[1].boot_order, 0);
  EXPECT_EQ(vm.disks[2].bus, "sata");  // KubeVirt has no IDE
  EXPECT_EQ(vm.disks[2].controller, "ide");
  EXPECT_EQ(vm.disks[1].storage, "data");  // its pool (spec.storageMapping)
  EXPECT_EQ(d->disks[0].path, "/var/lib/libvirt/images/web-01.raw");
  EXPECT_EQ(d->disks[1].type, "volume");
  EXPECT_EQ(d->disks[1].pool, "data");
  EXPECT_EQ(d->disks[1].volume, "web-01-data.qcow2");
  EXPECT_EQ(d->disks[1].driver_format, "qcow2");
  for (const DiskSource& s : d->disks) {
    EXPECT_EQ(s.refusal, "") << s.target;
  }
  for (const model::DiskDescription& disk : vm.disks) {
    EXPECT_EQ(disk.format, "raw") << disk.name;  // qcow2 is decoded by the provider
  }

  ASSERT_EQ(vm.nics.size(), 3U);
  EXPECT_EQ(vm.nics[0].mac, "52:54:00:b0:00:01");
  EXPECT_EQ(vm.nics[0].network, "prod");
  EXPECT_EQ(vm.nics[0].model, "virtio");
  EXPECT_EQ(vm.nics[1].network, "backup");
  EXPECT_EQ(vm.nics[1].model, "e1000e");
  EXPECT_EQ(vm.nics[2].network, "br0");
  EXPECT_EQ(vm.nics[2].model, "rtl8139");  // libvirt's default model on x86
}

TEST(LibvirtDomainXml, BiosGuestBootsItsFirstDiskAndOneSocketByDefault) {
  auto d = ParseDomainXml(R"(<domain type='qemu'><name>tiny</name>
    <uuid>5a1e0003-0000-4000-8000-000000000003</uuid>
    <memory unit='MiB'>16</memory><vcpu>3</vcpu>
    <os><type>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>
    <devices>
      <disk type='file' device='disk'><source file='/p/a.raw'/><target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='disk'><source file='/p/b.raw'/><target dev='vdb' bus='virtio'/></disk>
      <interface type='user'><mac address='52:54:00:c0:00:01'/><model type='virtio'/></interface>
    </devices></domain>)");
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->vm.firmware, model::Firmware::kBios);
  EXPECT_FALSE(d->vm.secure_boot);
  EXPECT_FALSE(d->vm.tpm);
  EXPECT_EQ(d->vm.memory_mib, 16U);
  EXPECT_EQ(d->vm.cpus, 3);
  EXPECT_EQ(d->vm.Sockets(), 1);
  ASSERT_EQ(d->vm.disks.size(), 2U);
  EXPECT_EQ(d->vm.disks[0].boot_order, 1);
  EXPECT_EQ(d->vm.disks[1].boot_order, 0);
  ASSERT_EQ(d->vm.nics.size(), 1U);
  EXPECT_EQ(d->vm.nics[0].network, "");  // user-mode: no host network, the pod network
}

TEST(LibvirtDomainXml, AutomaticEfiFirmwareAndItsSecureBootFeature) {
  auto d = ParseDomainXml(R"(<domain><name>f</name><memory>1024</memory><vcpu>1</vcpu>
    <os firmware='efi'><type>hvm</type><firmware><feature enabled='yes' name='secure-boot'/>
    </firmware></os><devices/></domain>)");
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->vm.firmware, model::Firmware::kEfi);
  EXPECT_TRUE(d->vm.secure_boot);
  EXPECT_EQ(d->vm.memory_mib, 1U);  // 1024 KiB, libvirt's default unit
}

TEST(LibvirtDomainXml, MemoryThatIsNoWholeMibIsRoundedUp) {
  auto d = ParseDomainXml(
      "<domain><name>m</name><memory unit='b'>1048577</memory><vcpu>1</vcpu><devices/></domain>");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->vm.memory_mib, 2U);
  d = ParseDomainXml(
      "<domain><name>m</name><memory unit='GB'>1</memory><vcpu>1</vcpu><devices/></domain>");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->vm.memory_mib, 954U);  // 10^9 bytes = 953.67 MiB
}

TEST(LibvirtDomainXml, DisksLibvirtCannotStreamAreKeptWithAReason) {
  auto d = ParseDomainXml(R"(<domain><name>r</name><memory>1024</memory><vcpu>1</vcpu><devices>
    <disk type='block' device='lun'><source dev='/dev/sdx'/><target dev='sdb' bus='scsi'/></disk>
    <disk type='network' device='disk'><source protocol='rbd' name='pool/img'/>
      <target dev='vdc' bus='virtio'/></disk>
    <disk type='file' device='disk'><target dev='vdd' bus='virtio'/></disk>
    <disk type='block' device='disk'><source dev='/dev/vg/lv'/><target dev='vde' bus='virtio'/></disk>
    </devices></domain>)");
  ASSERT_TRUE(d) << d.error().ToString();
  ASSERT_EQ(d->disks.size(), 4U);
  EXPECT_NE(d->disks[0].refusal.find("LUN"), std::string::npos) << d->disks[0].refusal;
  EXPECT_NE(d->disks[1].refusal.find("network disk"), std::string::npos);
  EXPECT_NE(d->disks[2].refusal.find("no source"), std::string::npos);
  EXPECT_EQ(d->disks[3].refusal, "");  // a block device may be a volume (an LVM pool)
  EXPECT_EQ(d->disks[3].path, "/dev/vg/lv");
}

TEST(LibvirtDomainXml, LiveBackingStoreIsSeen) {
  auto d = ParseDomainXml(R"(<domain><name>b</name><memory>1024</memory><vcpu>1</vcpu><devices>
    <disk type='file' device='disk'><driver type='qcow2'/><source file='/p/top.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/p/base.qcow2'/>
      <backingStore/></backingStore><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='/p/x.raw'/><backingStore/>
      <target dev='vdb' bus='virtio'/></disk>
    </devices></domain>)");
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->disks[0].has_backing_store);
  EXPECT_FALSE(d->disks[1].has_backing_store);  // an empty <backingStore/> ends the chain
}

TEST(LibvirtDomainXml, BadXmlAndBadNumbersAreCorruptData) {
  EXPECT_EQ(ParseDomainXml("<domain><name>").error().code, ErrorCode::kCorruptData);
  EXPECT_EQ(ParseDomainXml("<network/>").error().code, ErrorCode::kCorruptData);
  EXPECT_EQ(ParseDomainXml("<domain><memory unit='XB'>1</memory></domain>").error().code,
            ErrorCode::kCorruptData);
  EXPECT_EQ(ParseDomainXml("<domain><memory>-1</memory></domain>").error().code,
            ErrorCode::kCorruptData);
  EXPECT_EQ(ParseDomainXml("<domain><vcpu>two</vcpu></domain>").error().code,
            ErrorCode::kCorruptData);
  EXPECT_EQ(ScaledBytes("18446744073709551615", "KiB", "b").error().code, ErrorCode::kCorruptData);
}

TEST(LibvirtDomainXml, VolumeFormatCapacityAndBacking) {
  auto v = ParseVolumeXml(R"(<volume type='file'><name>top.qcow2</name>
    <capacity unit='bytes'>1073741824</capacity><allocation unit='bytes'>200704</allocation>
    <target><path>/p/top.qcow2</path><format type='qcow2'/></target>
    <backingStore><path>/p/base.qcow2</path><format type='qcow2'/></backingStore></volume>)");
  ASSERT_TRUE(v) << v.error().ToString();
  EXPECT_EQ(v->format, "qcow2");
  EXPECT_EQ(v->capacity_bytes, 1073741824U);
  EXPECT_EQ(v->backing_path, "/p/base.qcow2");
  v = ParseVolumeXml(R"(<volume><capacity unit='M'>3</capacity>
    <target><format type='raw'/></target></volume>)");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->capacity_bytes, 3U << 20);
  EXPECT_EQ(v->backing_path, "");
}

TEST(LibvirtUri, TlsTcpAndSshWithAHostAndNoParameters) {
  auto u = ParseUri("qemu+tls://kvm1.example:16514/system");
  ASSERT_TRUE(u) << u.error().ToString();
  EXPECT_EQ(u->transport, "tls");
  EXPECT_EQ(u->host, "kvm1.example:16514");
  EXPECT_EQ(ParseUri("qemu+tcp://kvm1/system")->transport, "tcp");
  auto ssh = ParseUri("qemu+ssh://admin@kvm1:2222/system");
  ASSERT_TRUE(ssh) << ssh.error().ToString();
  EXPECT_EQ(ssh->transport, "ssh");
  EXPECT_EQ(ssh->host, "kvm1:2222");
  EXPECT_EQ(ssh->user, "admin");
  EXPECT_EQ(ssh->path, "/system");
  EXPECT_EQ(ParseUri("qemu+libssh://kvm1/system")->transport, "ssh");
  EXPECT_EQ(ParseUri("qemu+libssh2://kvm1/system").error().code, ErrorCode::kUnsupported);
  // `command=`/`keyfile=` would let a spec run programs or read the controller's files.
  EXPECT_EQ(ParseUri("qemu+ssh://kvm1/system?command=/bin/sh").error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseUri("qemu+tls://u@kvm1/system").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseUri("qemu+ext:///system?command=/bin/sh").error().code, ErrorCode::kUnsupported);
  EXPECT_EQ(ParseUri("qemu:///system").error().code, ErrorCode::kUnsupported);
  EXPECT_EQ(ParseUri("qemu+tls:///system").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseUri("qemu+tls://h/system?no_verify=1").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseUri("qemu+tls://h/").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseUri("kvm1").error().code, ErrorCode::kInvalidArgument);
}

TEST(LibvirtConnect, MissingSecretKeysAreNamedBeforeAnyConnection) {
  SourceConfig config{.kind = SourceKind::kLibvirt, .endpoint = "qemu+tls://127.0.0.1:1/system"};
  config.secret_key = "ns/lv";
  auto c = Connect({}, config);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(c.error().message.find("secret ns/lv"), std::string::npos) << c.error().message;
  config.secret = {{"username", "u"}, {"password", "p"}};
  c = Connect({}, config);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(c.error().message.find("tls.crt"), std::string::npos) << c.error().message;
  config.endpoint = "qemu+ssh://root@127.0.0.1:1/system";
  config.secret = {{"ssh-privatekey", "k"}};
  c = Connect({}, config);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(c.error().message.find("known_hosts"), std::string::npos) << c.error().message;
}

}  // namespace
}  // namespace vmimport::source::libvirt
