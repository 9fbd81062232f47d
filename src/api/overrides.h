#pragma once

// What the user overrides of an import (issue 19): per-disk storage (spec.storageMapping,
// spec.diskOverrides), per-NIC models (spec.nicOverrides), the target VM's name, CPU, memory and
// run strategy. Pure: the spec (and, for the checks against a VM, the source's description) in,
// matches and problems out; no I/O, thread-safe, repeatable.
//
// Per disk, the StorageClass (ChooseStorageClass), first match wins:
// | rule            | when                                                 | class            |
// |-----------------|------------------------------------------------------|------------------|
// | user            | a diskOverrides entry for the disk sets storageClass | that class       |
// | storage-mapping | a storageMapping entry's source is the disk's storage| its storageClass |
// | default         | spec.storageClass is set                             | that class       |
// | cluster-default | otherwise                                            | "" (the default) |
// A disk's storage is its vSphere datastore, Cinder volume type, OVA disk file or libvirt pool
// (model::DiskDescription::storage); a mapping also matches the disk's id (an OVF disk id).
// A diskOverrides entry names its disk by index, or by the source disk's name or id/key.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "api/virtual_machine_import.h"
#include "core/result.h"
#include "model/vm.h"

namespace vmimport::api {

inline constexpr std::string_view kStorageRuleUser = "user";
inline constexpr std::string_view kStorageRuleMapping = "storage-mapping";
inline constexpr std::string_view kStorageRuleDefault = "default";
inline constexpr std::string_view kStorageRuleClusterDefault = "cluster-default";

//! The diskOverrides entry for disk `index` of the VM (`disk` its description): the first entry
//! whose index is `index`, else the first whose name is the disk's name or id. nullptr: none.
const DiskOverride* FindDiskOverride(const VirtualMachineImportSpec& spec, size_t index,
                                     const model::DiskDescription& disk);
//! The nicOverrides entry for NIC `index`: by index, else by MAC (case-insensitive). nullptr: none.
const NicOverride* FindNicOverride(const VirtualMachineImportSpec& spec, size_t index,
                                   const model::NicDescription& nic);
//! The storageMapping entry whose source is the disk's storage, else its id. nullptr: none.
const StorageMapping* FindStorageMapping(const VirtualMachineImportSpec& spec,
                                         const model::DiskDescription& disk);

struct StorageChoice {
  std::string storage_class;  //!< empty: the cluster's default class
  std::string rule;           //!< one of kStorageRule*
  std::string why;            //!< one lower-case sentence without a trailing period
};
//! The StorageClass of disk `index` (the table above).
StorageChoice ChooseStorageClass(const VirtualMachineImportSpec& spec, size_t index,
                                 const model::DiskDescription& disk);

//! Every StorageClass the spec names (spec.storageClass, storageMapping, diskOverrides), each once,
//! in spec order.
std::vector<std::string> NamedStorageClasses(const VirtualMachineImportSpec& spec);

//! A Kubernetes resource quantity ("4Gi", "512Mi", "1G", "2147483648", "1.5Gi") in bytes,
//! rounded up. kInvalidArgument for anything else (no sign, no exponent, no milli "m").
[[nodiscard]] core::Result<uint64_t> ParseMemoryQuantity(std::string_view quantity);

//! The problems of the override fields that need no source, each "<json path>: <what is wrong>":
//! an index or name missing or both given, a class or target name that is not an RFC 1123 name,
//! an unknown bus or model, CPU values below 1, a memory that does not parse or is below 1 MiB,
//! a runStrategy other than running/stopped, duplicates.
void CheckOverrides(const VirtualMachineImportSpec& spec, std::vector<std::string>& problems);

//! The problems of the overrides against the source VM (preflight): a diskOverrides or
//! nicOverrides entry that names a disk or NIC `vm` does not have.
std::vector<std::string> OverrideProblemsFor(const VirtualMachineImportSpec& spec,
                                             const model::VmDescription& vm);
//! One warning per storageMapping entry that matches no disk of `vm`.
std::vector<std::string> UnusedStorageMappings(const VirtualMachineImportSpec& spec,
                                               const model::VmDescription& vm);

//! The overrides in effect, one line each, for the Event `Overrides` and `kubectl vmimport plan`:
//! "target name Web-1", "cpu 2 sockets x 2 cores x 1 threads", "memory 4Gi", "run strategy
//! stopped", "disk 1 (Hard disk 2): storage class fast [storage-mapping: ...]", "disk 0 (...):
//! bus sata [user: bus set by the user ...]", "nic 0 (00:50:..): model e1000e [user ...]".
//! Empty when nothing is overridden. `vm` gives the disk and NIC names.
std::vector<std::string> DescribeOverrides(const VirtualMachineImportSpec& spec,
                                           const model::VmDescription& vm);

}  // namespace vmimport::api
