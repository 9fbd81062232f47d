#include "controller/device_choice.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

#include "core/strings.h"
#include "harvester/virtual_machine.h"

namespace vmimport::controller {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool Contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// The version right after `prefix` in a lower-cased guestId ("rhel7_64guest" after "rhel" -> 7);
// -1 when none.
int VersionAfter(std::string_view id, std::string_view prefix) {
  if (!StartsWith(id, prefix)) {
    return -1;
  }
  int v = -1;
  size_t i = prefix.size();
  for (; i < id.size() && std::isdigit(static_cast<unsigned char>(id[i])); ++i) {
    v = (v < 0 ? 0 : v * 10) + (id[i] - '0');
  }
  // "centos64Guest", "sles64Guest": 64 is the architecture of an unversioned id, not a version.
  if (v == 64 && id.substr(i) == "guest") {
    return -1;
  }
  return v;
}

// vSphere guestIds (lower-cased) of Linux families whose kernels carry virtio drivers (Linux >=
// 2.6.25; RHEL backported them to 5.3). Families whose every release does are matched by prefix;
// the others need a minimum version: centosGuest and oracleLinuxGuest are "4/5", debian4/5,
// rhel2-4 and sles9/10 predate virtio, and other24x/other26xLinux and otherLinux say nothing of
// the kernel, so they stay unknown.
bool VirtioLinuxGuestId(std::string_view id) {
  static constexpr std::array<std::string_view, 13> kFamilies = {
      "ubuntu",       "rockylinux",   "almalinux",   "fedora",       "opensuse",
      "amazonlinux",  "vmwarephoton", "coreos",      "other3xlinux", "other4xlinux",
      "other5xlinux", "other6xlinux", "miraclelinux"};
  for (std::string_view f : kFamilies) {
    if (StartsWith(id, f)) {
      return true;
    }
  }
  struct Versioned {
    std::string_view prefix;
    int min;
  };
  static constexpr std::array<Versioned, 6> kVersioned = {{{"debian", 6},
                                                           {"rhel", 5},
                                                           {"centos", 6},
                                                           {"oraclelinux", 6},
                                                           {"sles", 11},
                                                           {"asianux", 4}}};
  return std::any_of(kVersioned.begin(), kVersioned.end(),
                     [&](const Versioned& v) { return VersionAfter(id, v.prefix) >= v.min; });
}

// OpenStack os_distro values (Glance's image properties, libosinfo's short ids) of Linux
// distributions; exact values, so a vSphere guestId ("centos64Guest") never matches here.
bool LinuxDistro(std::string_view distro) {
  static constexpr std::array<std::string_view, 12> kDistros = {
      "arch", "centos", "debian", "fedora", "gentoo", "opensuse",
      "rhel", "sled",   "sles",   "ubuntu", "rocky",  "almalinux"};
  return std::any_of(kDistros.begin(), kDistros.end(),
                     [&](std::string_view d) { return distro == d; });
}

bool IsEmulatedNic(std::string_view model) {
  return model == "e1000" || model == "e1000e" || model == "rtl8139" || model == "pcnet";
}

constexpr const char* kVirtioAdvice =
    "the guest has no virtio drivers it is known to boot with: once it runs, install them "
    "(virtio-win for Windows; for Linux an initramfs with virtio_blk, virtio_scsi and "
    "virtio_net), shut it down and set each disk's bus and each interface's model to virtio in "
    "the VirtualMachine for better performance";

DeviceChoice ChooseDisk(size_t index, const model::DiskDescription& disk, const GuestClass& guest,
                        const api::VirtualMachineImportSpec& spec) {
  if (const api::DiskOverride* o = api::FindDiskOverride(spec, index, disk);
      o != nullptr && o->disk_bus_type && !o->disk_bus_type->empty()) {
    return {*o->disk_bus_type, std::string(kRuleUser),
            "bus set by the user (spec.diskOverrides); the guest OS rules do not apply"};
  }
  if (spec.default_disk_bus_type && !spec.default_disk_bus_type->empty()) {
    return {*spec.default_disk_bus_type, std::string(kRuleUser),
            "spec.defaultDiskBusType is " + *spec.default_disk_bus_type};
  }
  const std::string controller = core::ToLower(disk.controller);
  if (controller == "virtio") {
    return {"virtio", std::string(kRuleSourceVirtio),
            "the guest runs this disk on virtio in the source: it has the driver"};
  }
  if (controller == "sata" || controller == "ide") {
    return {"sata", std::string(kRuleSourceSata),
            "the guest runs this disk on " + controller +
                " in the source: its initramfs or driver store may hold no virtio driver"};
  }
  if (guest.family == GuestFamily::kWindows) {
    return {"sata", std::string(kRuleWindows),
            "a Windows guest (" + guest.evidence +
                ") has no inbox virtio driver, but boots from SATA (AHCI)"};
  }
  if (guest.family == GuestFamily::kLinux) {
    return {"virtio", std::string(kRuleLinux),
            "a Linux guest (" + guest.evidence + ") carries virtio drivers"};
  }
  std::string detected = disk.bus.empty() ? spec.DiskBusOrDefault() : disk.bus;
  return {detected, std::string(kRuleSource),
          "the guest OS is unknown (" + (guest.evidence.empty() ? "none given" : guest.evidence) +
              "): the bus that matches the source controller" +
              (controller.empty() ? "" : " " + controller)};
}

DeviceChoice ChooseNic(size_t index, const model::NicDescription& nic, const GuestClass& guest,
                       const api::VirtualMachineImportSpec& spec) {
  if (const api::NicOverride* o = api::FindNicOverride(spec, index, nic); o != nullptr) {
    return {o->network_interface_model, std::string(kRuleUser),
            "model set by the user (spec.nicOverrides)"};
  }
  if (const api::NetworkMapping* m = harvester::FindNetworkMapping(spec, nic.network);
      m != nullptr && m->network_interface_model && !m->network_interface_model->empty()) {
    return {*m->network_interface_model, std::string(kRuleUser),
            "networkMapping for " + m->source_network + " sets networkInterfaceModel " +
                *m->network_interface_model};
  }
  if (spec.default_network_interface_model && !spec.default_network_interface_model->empty()) {
    return {*spec.default_network_interface_model, std::string(kRuleUser),
            "spec.defaultNetworkInterfaceModel is " + *spec.default_network_interface_model};
  }
  const std::string adapter = core::ToLower(nic.adapter_type);
  if (adapter == "virtio") {
    return {"virtio", std::string(kRuleSourceVirtio),
            "the source NIC is virtio: the guest has the driver"};
  }
  if (IsEmulatedNic(nic.model)) {
    return {nic.model, std::string(kRuleSourceEmulated),
            "the source NIC is " + nic.model + ", a model the guest has a driver for"};
  }
  if (guest.family == GuestFamily::kWindows) {
    return {"e1000e", std::string(kRuleWindows),
            "a Windows guest (" + guest.evidence + ") has an inbox e1000e driver, no virtio one"};
  }
  if (guest.family == GuestFamily::kLinux) {
    return {"virtio", std::string(kRuleLinux),
            "a Linux guest (" + guest.evidence + ") carries virtio_net"};
  }
  std::string detected = nic.model.empty() ? spec.NicModelOrDefault() : nic.model;
  return {detected, std::string(kRuleSource),
          "the guest OS is unknown: the model that matches the source adapter" +
              (adapter.empty() ? "" : " " + adapter)};
}

bool ForTheGuest(const DeviceChoice& c) {
  return c.rule == kRuleWindows || c.rule == kRuleSourceSata || c.rule == kRuleSourceEmulated;
}

}  // namespace

const char* GuestFamilyName(GuestFamily f) {
  switch (f) {
    case GuestFamily::kUnknown: return "unknown";
    case GuestFamily::kLinux: return "linux";
    case GuestFamily::kWindows: return "windows";
  }
  return "unknown";
}

GuestClass ClassifyGuest(const model::VmDescription& vm) {
  const std::string id = core::ToLower(core::TrimSpace(vm.guest_os));
  const std::string type = core::ToLower(core::TrimSpace(vm.guest_os_type));
  const std::string full = core::ToLower(core::TrimSpace(vm.guest_os_full_name));
  // Windows: vSphere guestIds all start with "win" (windows9_64Guest, winNetStandardGuest,
  // win2000ProGuest); os_type/os_distro "windows"; guestFamily "windowsGuest".
  if (StartsWith(id, "win")) {
    return {GuestFamily::kWindows, "guest OS " + vm.guest_os};
  }
  if (StartsWith(type, "windows")) {
    return {GuestFamily::kWindows, "guest OS type " + vm.guest_os_type};
  }
  if (Contains(full, "windows")) {
    return {GuestFamily::kWindows, "guest OS " + vm.guest_os_full_name};
  }
  if (VirtioLinuxGuestId(id) || LinuxDistro(id)) {
    return {GuestFamily::kLinux, "guest OS " + vm.guest_os};
  }
  if (StartsWith(type, "linux")) {
    return {GuestFamily::kLinux, "guest OS type " + vm.guest_os_type};
  }
  std::string evidence;
  if (!vm.guest_os.empty()) {
    evidence = "guest OS " + vm.guest_os;
  } else if (!vm.guest_os_full_name.empty()) {
    evidence = "guest OS " + vm.guest_os_full_name;
  }
  return {GuestFamily::kUnknown, std::move(evidence)};
}

DevicePlan ChooseDevices(const model::VmDescription& vm,
                         const api::VirtualMachineImportSpec& spec) {
  DevicePlan plan;
  plan.guest = ClassifyGuest(vm);
  for (size_t i = 0; i < vm.disks.size(); ++i) {
    plan.disks.push_back(ChooseDisk(i, vm.disks[i], plan.guest, spec));
    plan.storage.push_back(api::ChooseStorageClass(spec, i, vm.disks[i]));
  }
  for (size_t i = 0; i < vm.nics.size(); ++i) {
    plan.nics.push_back(ChooseNic(i, vm.nics[i], plan.guest, spec));
  }
  const bool for_guest = std::any_of(plan.disks.begin(), plan.disks.end(), ForTheGuest) ||
                         std::any_of(plan.nics.begin(), plan.nics.end(), ForTheGuest);
  if (for_guest) {
    plan.advice = kVirtioAdvice;
  }
  return plan;
}

model::VmDescription ApplyDevicePlan(model::VmDescription vm, const DevicePlan& plan) {
  for (size_t i = 0; i < vm.disks.size() && i < plan.disks.size(); ++i) {
    vm.disks[i].bus = plan.disks[i].value;
  }
  for (size_t i = 0; i < vm.nics.size() && i < plan.nics.size(); ++i) {
    vm.nics[i].model = plan.nics[i].value;
  }
  return vm;
}

std::vector<std::string> DescribeDevicePlan(const model::VmDescription& vm,
                                            const DevicePlan& plan) {
  std::vector<std::string> lines;
  for (size_t i = 0; i < vm.disks.size() && i < plan.disks.size(); ++i) {
    const auto& c = plan.disks[i];
    std::string line = "disk " + std::to_string(i) + " (" + vm.disks[i].name + "): bus " + c.value +
                       " [" + c.rule + ": " + c.why + "]";
    if (i < plan.storage.size() && !plan.storage[i].storage_class.empty()) {
      const auto& s = plan.storage[i];
      line += ", storage class " + s.storage_class + " [" + s.rule + ": " + s.why + "]";
    }
    lines.push_back(std::move(line));
  }
  for (size_t i = 0; i < vm.nics.size() && i < plan.nics.size(); ++i) {
    const auto& c = plan.nics[i];
    lines.push_back("nic " + std::to_string(i) + " (" + vm.nics[i].mac + "): model " + c.value +
                    " [" + c.rule + ": " + c.why + "]");
  }
  return lines;
}

}  // namespace vmimport::controller
