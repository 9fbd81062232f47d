#pragma once

// The readiness verdict of one source VM before anything is touched: what the imported VM will
// boot with and what will not carry over. The preflight Event `Readiness` and `kubectl vmimport
// plan` both show it, so an operator sees the risk before the source is powered off. Pure; no
// I/O; thread-safe.

#include <string>
#include <vector>

#include "api/virtual_machine_import.h"
#include "api/vm_description.h"  // model::VmDescription
#include "controller/device_choice.h"

namespace vmimport::controller {

// NOLINTNEXTLINE(bugprone-exception-escape): clang-tidy 14 and std::string members
struct Readiness {
  DevicePlan devices;
  std::string firmware;   //!< "bios", "efi", "efi with secure boot"
  std::string boot_disk;  //!< "disk 0 (Hard disk 1) on sata"; empty when the VM has no disk
  //! One line per device: DescribeDevicePlan.
  std::vector<std::string> device_lines;
  //! What will not carry over or may keep the guest from booting, one sentence each: a TPM on
  //! BIOS, NICs beyond the one the pod network takes, no NIC, a disk KubeVirt has no bus for.
  std::vector<std::string> risks;
  //! DevicePlan::advice, when set.
  std::string advice;

  //! "ready" when there is no risk and no device chosen for the guest's sake, else
  //! "ready with warnings".
  std::string Verdict() const;
  //! The whole verdict on one line for an Event (ends with the risks and the advice).
  std::string Summary() const;
};

//! The verdict for `vm` imported under `spec`.
Readiness AssessReadiness(const model::VmDescription& vm,
                          const api::VirtualMachineImportSpec& spec);

}  // namespace vmimport::controller
