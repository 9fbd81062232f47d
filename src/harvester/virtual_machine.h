#pragma once

// The KubeVirt VirtualMachine (kubevirt.io/v1) for an import (reference §3.10), with the
// reference's bugs B1 (sockets and cores swapped), B2 (memory in SI M), B3 (NICs without a mapping
// dropped) and B4 (a "switch/portgroup" sourceNetwork never matching) fixed. Pure: input in, JSON
// out. docs/reference-differences.md lists every difference.

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "api/virtual_machine_import.h"
#include "core/result.h"
#include "model/vm.h"

namespace vmimport::harvester {

inline constexpr std::string_view kKubevirtApiVersion = "kubevirt.io/v1";
inline constexpr std::string_view kLabelVmName = "harvesterhci.io/vmName";
inline constexpr std::string_view kPodNetworkName = "pod-network";

// clang-tidy 14 takes nlohmann::json's implicit members for throwing ones.
// NOLINTNEXTLINE(bugprone-exception-escape)
struct BuiltVirtualMachine {
  nlohmann::json object;
  //! What the VM could not carry over, one line each (for an Event): a second NIC without a
  //! mapping (KubeVirt allows one pod network), a TPM on BIOS, an odd CPU topology.
  std::vector<std::string> warnings;
};

//! The mapping for a NIC on `nic_network`: the entry whose sourceNetwork equals it; else the one
//! whose last '/'-separated element equals it ("DSwitch/dvs_10" for a NIC on "dvs_10", the form
//! the reference's VMware preflight accepts). nullptr when none matches.
const api::NetworkMapping* FindNetworkMapping(const api::VirtualMachineImportSpec& spec,
                                              std::string_view nic_network);

//! The VM for `vm_import` (name from status.importedVirtualMachineName, disks from
//! status.diskImportStatus, each claiming the PVC named like its VirtualMachineImage, or, in
//! volume mode, a `dataVolume` volume naming its DataVolume) and the
//! source description `vm`, whose disks line up with diskImportStatus by index.
//!  - CPU: sockets = cpus / cores_per_socket, cores = cores_per_socket, threads 1; when
//!    cores_per_socket does not divide cpus: sockets = cpus, cores 1 (and a warning). Each
//!    non-zero value of spec.cpu replaces its source value (limits.cpu is then their product).
//!  - memory: spec.memory as written, else "<memory_mib>Mi", for guest and limit; limits.cpu
//!    "<cpus>".
//!  - runStrategy: RerunOnFailure; Halted with spec.runStrategy stopped.
//!  - EFI: bootloader.efi.secureBoot as the source; TPM -> devices.tpm {}; SMM when secure boot or
//!    TPM. BIOS: nothing (a TPM is dropped with a warning, as the reference does).
//!  - disks: disk-<i> with bus: its spec.diskOverrides diskBusType || spec.defaultDiskBusType
//!    (what the user writes wins) || busType ||
//!    the description's bus (the controller's choice, controller/device_choice.h) || virtio, and
//!    boot order following the source's boot_order (disks without one after those with one, in
//!    index order).
//!  - NICs, in source order: a mapped NIC -> migrated-<k> on Multus "<namespace>/<name>", bridge,
//!    its source MAC, model: its spec.nicOverrides entry's || mapping's ||
//!    spec.defaultNetworkInterfaceModel || the description's
//!    model || virtio. The first NIC without a mapping -> "pod-network" (masquerade, the same
//!    model rule without a mapping, its MAC): the management network the docs promise. Further
//!    unmapped NICs are dropped with a warning. No NIC at all -> one pod-network NIC without a MAC
//!    (as the reference).
//! kInvalidArgument when the target name, a claim or the memory is missing, the disk lists differ
//! in length, cpus < 1, or a destination network does not parse.
[[nodiscard]] core::Result<BuiltVirtualMachine> BuildVirtualMachine(
    const api::VirtualMachineImport& vm_import, const model::VmDescription& vm);

}  // namespace vmimport::harvester
