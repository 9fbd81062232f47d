#include "controller/readiness.h"

#include <climits>

#include "core/strings.h"
#include "harvester/virtual_machine.h"

namespace vmimport::controller {

std::string Readiness::Verdict() const {
  return risks.empty() && advice.empty() ? "ready" : "ready with warnings";
}

std::string Readiness::Summary() const {
  std::string s = Verdict() + ": guest " + GuestFamilyName(devices.guest.family);
  if (!devices.guest.evidence.empty()) {
    s += " (" + devices.guest.evidence + ")";
  }
  s += ", firmware " + firmware;
  if (!boot_disk.empty()) {
    s += ", boot " + boot_disk;
  }
  s += "; " + core::Join(device_lines, "; ");
  if (!risks.empty()) {
    s += "; will not carry over: " + core::Join(risks, "; ");
  }
  if (!advice.empty()) {
    s += "; " + advice;
  }
  return s;
}

Readiness AssessReadiness(const model::VmDescription& vm,
                          const api::VirtualMachineImportSpec& spec) {
  Readiness r;
  r.devices = ChooseDevices(vm, spec);
  r.device_lines = DescribeDevicePlan(vm, r.devices);
  r.advice = r.devices.advice;
  r.firmware = vm.firmware == model::Firmware::kEfi
                   ? (vm.secure_boot ? "efi with secure boot" : "efi")
                   : "bios";
  // The boot disk: the lowest source boot order, else the first disk (harvester's BootOrders).
  size_t boot = vm.disks.size();
  int best = INT_MAX;
  for (size_t i = 0; i < vm.disks.size(); ++i) {
    const int order = vm.disks[i].boot_order > 0 ? vm.disks[i].boot_order : INT_MAX - 1;
    if (order < best) {
      best = order;
      boot = i;
    }
  }
  if (boot < vm.disks.size()) {
    r.boot_disk = "disk " + std::to_string(boot) + " (" + vm.disks[boot].name + ") on " +
                  r.devices.disks[boot].value;
  }
  if (vm.tpm && vm.firmware != model::Firmware::kEfi) {
    r.risks.emplace_back("a TPM on BIOS firmware (KubeVirt offers a TPM with EFI only)");
  }
  for (size_t i = 0; i < vm.disks.size(); ++i) {
    const std::string& bus = r.devices.disks[i].value;
    if (bus != "virtio" && bus != "sata" && bus != "scsi" && bus != "usb") {
      r.risks.push_back("disk " + std::to_string(i) + " (" + vm.disks[i].name + "): bus \"" + bus +
                        "\" is not one KubeVirt knows");
    }
  }
  const model::NicDescription* on_pod = nullptr;
  for (const model::NicDescription& nic : vm.nics) {
    if (harvester::FindNetworkMapping(spec, nic.network) != nullptr) {
      continue;
    }
    if (on_pod == nullptr) {
      on_pod = &nic;
      continue;
    }
    r.risks.push_back("nic " + nic.mac + " on \"" + nic.network +
                      "\" has no networkMapping and the pod network takes only one NIC (" +
                      on_pod->mac + "): it is not attached");
  }
  if (vm.cdroms > 0) {
    r.risks.push_back(std::to_string(vm.cdroms) +
                      " CD/DVD drive(s): not imported (attach an ISO as a volume if the guest "
                      "needs one)");
  }
  if (vm.nics.empty()) {
    r.risks.emplace_back(
        "the source VM has no NIC: the VM gets one on the pod network with a new MAC");
  }
  return r;
}

}  // namespace vmimport::controller
