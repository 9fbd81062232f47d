#pragma once

// Device choices by guest OS: which disk bus and NIC model an imported VM gets when the import's
// spec leaves them open, so that the guest can boot and find its network. Pure: the source's
// description and the spec in, the choices and their reasons out; no I/O, thread-safe, repeatable.
//
// The guest is classified from what the source says of it (ClassifyGuest):
//   vSphere  config.guestId ("windows2019srv_64Guest", "debian12_64Guest"), config.guestFullName,
//            guest.guestFamily while VMware Tools run ("windowsGuest", "linuxGuest")
//   OpenStack image properties os_type ("windows", "linux") and os_distro ("windows", "ubuntu")
//   OVA      OperatingSystemSection vmw:osType (a vSphere guestId), else its Description
// Windows: any of these says Windows. Linux: a Linux family whose kernels have carried virtio
// drivers since 2.6.25 (debian 6+, ubuntu, rhel 5+, centos, sles 11+, other3x-6xLinux, ...).
// Anything else (otherGuest, other24xLinux, FreeBSD, nothing at all) is unknown.
//
// The rules, first match wins (kRule* below name them in status, Events and `plan`):
//
// Disks (per disk)
// | rule              | when                                              | bus            |
// |-------------------|---------------------------------------------------|----------------|
// | user              | a spec.diskOverrides entry for the disk sets      | that bus       |
// |                   | diskBusType ("bus set by the user")               |                |
// | user              | spec.defaultDiskBusType is set                    | that bus       |
// | source-virtio     | the source runs the disk on virtio (OpenStack's   | virtio         |
// |                   | default, hw_disk_bus=virtio, an OVF virtio item)  |                |
// | source-sata       | the source runs the disk on SATA or IDE           | sata           |
// | windows           | a Windows guest                                   | sata           |
// | linux             | a Linux guest (on SCSI, NVMe, unknown)            | virtio         |
// | source            | unknown guest: the source controller's mapping    | as detected    |
//
// NICs (per NIC)
// | rule              | when                                              | model          |
// |-------------------|---------------------------------------------------|----------------|
// | user              | a spec.nicOverrides entry for the NIC (by index   | that model     |
// |                   | or MAC) ("model set by the user")                 |                |
// | user              | its networkMapping's networkInterfaceModel, else  | that model     |
// |                   | spec.defaultNetworkInterfaceModel, is set         |                |
// | source-virtio     | the source NIC is virtio                          | virtio         |
// | source-emulated   | the source NIC is an emulated model KubeVirt has  | the same model |
// |                   | (e1000, e1000e, rtl8139, pcnet)                   |                |
// | windows           | a Windows guest (vmxnet3 and others)              | e1000e         |
// | linux             | a Linux guest (vmxnet3 and others)                | virtio         |
// | source            | unknown guest: the adapter's mapping              | as detected    |
//
// Storage (per disk): the StorageClass of each disk's image or volume, by api::ChooseStorageClass
// (diskOverrides, storageMapping, spec.storageClass, the cluster's default). It is chosen here with
// the bus so that every per-disk decision comes from one place: the controller writes both into
// status.diskImportStatus[] (busType, storageClass) before it makes anything.
//
// Why: a guest boots from what its initramfs or its Windows driver store holds. A disk the guest
// ran on virtio proves virtio drivers; one it ran on SATA/IDE proves only AHCI (a guest never
// prepared for KVM has no virtio driver in its initramfs); Windows has no inbox virtio driver
// (virtio-win must be installed first) but has AHCI and e1000e inbox; Linux distributions carry
// virtio drivers. When a rule picks SATA or e1000e for the guest's sake, the advice says how to
// switch to virtio later (install the drivers, then edit the VM's bus/model).

#include <string>
#include <string_view>
#include <vector>

#include "api/overrides.h"
#include "api/virtual_machine_import.h"
#include "api/vm_description.h"  // model::VmDescription

namespace vmimport::controller {

enum class GuestFamily { kUnknown, kLinux, kWindows };

const char* GuestFamilyName(GuestFamily f);

struct GuestClass {
  GuestFamily family = GuestFamily::kUnknown;
  //! What decided it, for messages: "guestId windows2019srv_64Guest", "os_type windows".
  std::string evidence;
};

//! The guest's family from the source's description (see the header comment).
GuestClass ClassifyGuest(const model::VmDescription& vm);

inline constexpr std::string_view kRuleUser = "user";
inline constexpr std::string_view kRuleSourceVirtio = "source-virtio";
inline constexpr std::string_view kRuleSourceSata = "source-sata";
inline constexpr std::string_view kRuleSourceEmulated = "source-emulated";
inline constexpr std::string_view kRuleWindows = "windows";
inline constexpr std::string_view kRuleLinux = "linux";
inline constexpr std::string_view kRuleSource = "source";

struct DeviceChoice {
  std::string value;  //!< a KubeVirt disk bus or interface model
  std::string rule;   //!< one of kRule*
  std::string why;    //!< one lower-case sentence without a trailing period
};

// NOLINTNEXTLINE(bugprone-exception-escape): clang-tidy 14 and std::string members
struct DevicePlan {
  GuestClass guest;
  std::vector<DeviceChoice> disks;          //!< one per vm.disks, same order
  std::vector<DeviceChoice> nics;           //!< one per vm.nics, same order
  std::vector<api::StorageChoice> storage;  //!< one per vm.disks: its StorageClass
  //! Set when a rule chose SATA or e1000e for the guest's sake: how to move to virtio later.
  std::string advice;

  //! True when some disk or NIC is not virtio because of the guest (rules windows, source-sata,
  //! source-emulated): the preflight Event is then a Warning.
  bool NeedsAttention() const { return !advice.empty(); }
};

//! The choices for every disk and NIC of `vm` under `spec`. Never fails: an unknown guest keeps
//! the source's detected devices (the behaviour before these rules).
DevicePlan ChooseDevices(const model::VmDescription& vm, const api::VirtualMachineImportSpec& spec);

//! `vm` with each disk's bus and each NIC's model replaced by the plan's choice (the plan must
//! come from ChooseDevices on the same `vm`; extra or missing entries are left as they are).
model::VmDescription ApplyDevicePlan(model::VmDescription vm, const DevicePlan& plan);

//! One line per device for an Event or `kubectl vmimport plan`:
//! "disk 0 (Hard disk 1): bus sata [source-sata: ...]"; a disk whose class is not the cluster's
//! default also gets ", storage class fast [storage-mapping: ...]".
std::vector<std::string> DescribeDevicePlan(const model::VmDescription& vm, const DevicePlan& plan);

}  // namespace vmimport::controller
