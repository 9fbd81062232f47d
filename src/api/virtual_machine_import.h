#pragma once

// VirtualMachineImport (migration.harvesterhci.io/v1beta1): spec and status exactly as the
// reference writes them (docs: ../shared/design/reference-implementation.md §1.6), plus our
// per-disk progress extensions. JSON in both directions:
//  - unknown keys are kept (in `extra`) and written back, so a status update from this version
//    never drops what a newer controller or a user wrote;
//  - null and absent mean the same (wrangler makes every string, array and map nullable);
//  - a known key of the wrong JSON type is an error naming its path.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/conditions.h"
#include "api/warm.h"
#include "core/result.h"

namespace vmimport::api {

inline constexpr std::string_view kMigrationApiVersion = "migration.harvesterhci.io/v1beta1";
inline constexpr std::string_view kVirtualMachineImportKind = "VirtualMachineImport";

//! Source kinds, compared case-insensitively with spec.sourceCluster.kind.
inline constexpr std::string_view kVmwareSourceKind = "VmwareSource";
inline constexpr std::string_view kOpenstackSourceKind = "OpenstackSource";
inline constexpr std::string_view kOvaSourceKind = "OvaSource";
inline constexpr std::string_view kLibvirtSourceKind = "LibvirtSource";

//! Defaults applied when the field is read (the CRD has no schema defaults).
inline constexpr std::string_view kDefaultNicModel = "virtio";
inline constexpr std::string_view kDefaultDiskBus = "virtio";
inline constexpr int32_t kDefaultGracefulShutdownTimeoutSeconds = 60;

//! The values of status.importStatus. The strings are irregular on purpose (they are the
//! reference's): kDiskImagesSubmitted is "diskImageSubmitted", kDiskImagesFailed is
//! "diskImageFailed", kVmMigrationFailed is "VMMigrationFailed". kNew is the empty string.
//! kUnrecognised holds a value this version does not know; its text is kept for the round trip.
enum class ImportStatus {
  kNew,
  kVirtualMachineImportValid,
  kVirtualMachineImportInvalid,
  kSourceReady,
  //! Warm migration (api/warm.h): rounds copied while the source runs, then the cutover (source
  //! off, last round); then diskImagesReady and the usual phases.
  kPrecopy,
  kCutover,
  kDisksExported,
  kDiskImagesSubmitted,
  kDiskImagesReady,
  kDiskImagesFailed,
  kVirtualMachineCreated,
  kVirtualMachineRunning,
  kVmMigrationFailed,
  kUnrecognised,
};

//! The exact string; "" for kNew and kUnrecognised.
std::string_view ImportStatusName(ImportStatus status);
//! nullopt for a string that is not one of the reference's values.
std::optional<ImportStatus> ParseImportStatus(std::string_view text);
//! virtualMachineRunning, virtualMachineImportInvalid and VMMigrationFailed: nothing more happens.
//! An import with spec.runStrategy stopped also ends at virtualMachineCreated: see IsFinished.
bool IsTerminal(ImportStatus status);
//! IsTerminal, or virtualMachineCreated with `starts_stopped` (spec.runStrategy stopped: the VM is
//! created halted, so nothing more happens after it is created).
bool IsFinished(ImportStatus status, bool starts_stopped);

// status.importConditions[].type
inline constexpr std::string_view kConditionVmShutdownGuest = "VMShutdownGuest";
inline constexpr std::string_view kConditionVmPoweringOff = "VMPoweringOff";
inline constexpr std::string_view kConditionVmPoweredOff = "VMPoweredOff";
inline constexpr std::string_view kConditionVmExported = "VMExported";
inline constexpr std::string_view kConditionVmExportFailed = "VMExportFailed";
//! Ours (additive): False while the created VirtualMachine's instance is Failed (e.g. a guest that
//! does not boot), True once it runs after having been False.
inline constexpr std::string_view kConditionVmRunning = "VirtualMachineRunning";

// status.diskImportStatus[].diskConditions[].type: the per-disk status values.
inline constexpr std::string_view kConditionImageSubmitted = "VirtualMachineImageSubmitted";
inline constexpr std::string_view kConditionImageReady = "VirtualMachineImageReady";
inline constexpr std::string_view kConditionImageFailed = "VirtualMachineImageFailed";

//! corev1.ObjectReference as spec.sourceCluster uses it.
struct ObjectReference {
  std::string api_version;
  std::string kind;
  std::string namespace_;
  std::string name;
  std::string uid;
  std::string resource_version;
  std::string field_path;
};

struct NetworkMapping {
  std::string source_network;
  std::string destination_network;  //!< "name" (the import's namespace) or "namespace/name"
  std::optional<std::string> network_interface_model;
  nlohmann::json extra = nlohmann::json::object();
};

//! Where the disks go (spec.diskTarget, our addition; absent means kImage, the reference's way).
enum class DiskTarget {
  kImage,   //!< "image": one VirtualMachineImage per disk, then a PVC from it (Harvester)
  kVolume,  //!< "volume": one CDI DataVolume per disk, imported straight into its PVC
};
inline constexpr std::string_view kDiskTargetImage = "image";
inline constexpr std::string_view kDiskTargetVolume = "volume";
//! "image" or "volume"; nullopt for anything else (the empty string too).
std::optional<DiskTarget> ParseDiskTarget(std::string_view text);
std::string_view DiskTargetName(DiskTarget target);
//! spec.storageMapping[]: the disks on one source storage go to one StorageClass.
struct StorageMapping {
  //! vSphere datastore name, Cinder volume type, OVA disk file (or OVF disk id), libvirt pool;
  //! compared exactly with model::DiskDescription::storage (else its id).
  std::string source;
  std::string storage_class;  //!< "storageClass"
  nlohmann::json extra = nlohmann::json::object();
};

//! spec.diskOverrides[]: what the user sets for one disk; it beats storageMapping,
//! spec.storageClass and every device rule (controller/device_choice.h).
struct DiskOverride {
  int32_t index = -1;         //!< "index", 0-based in the source's disk order; -1: not set
  std::string name;           //!< "name": the source disk's name or id/key ("Hard disk 2", "2001")
  std::string storage_class;  //!< "storageClass"; empty: not overridden
  std::optional<std::string> disk_bus_type;  //!< "diskBusType"
  nlohmann::json extra = nlohmann::json::object();
};

//! spec.nicOverrides[]: the model of one NIC; it beats networkMapping's and the spec's model.
struct NicOverride {
  int32_t index = -1;                   //!< "index", 0-based in the source's NIC order; -1: not set
  std::string mac_address;              //!< "macAddress", compared case-insensitively
  std::string network_interface_model;  //!< "networkInterfaceModel"
  nlohmann::json extra = nlohmann::json::object();
};

//! spec.cpu: the target VM's topology. 0: the source's value (threads: 1).
struct CpuOverride {
  int32_t sockets = 0;
  int32_t cores = 0;
  int32_t threads = 0;
  nlohmann::json extra = nlohmann::json::object();
};

//! spec.runStrategy values. Empty reads as running.
inline constexpr std::string_view kRunStrategyRunning = "running";
inline constexpr std::string_view kRunStrategyStopped = "stopped";

struct VirtualMachineImportSpec {
  ObjectReference source_cluster;
  std::string virtual_machine_name;  //!< OpenStack: also a server UUID
  std::string folder;                //!< VMware only
  std::vector<NetworkMapping> network_mapping;
  std::optional<std::string> default_network_interface_model;
  std::string storage_class;  //!< empty: the cluster's default class
  std::optional<std::string> default_disk_bus_type;
  std::optional<bool> force_power_off;
  int32_t graceful_shutdown_timeout_seconds = 0;  //!< <= 0 reads as 60
  std::optional<bool> skip_preflight_checks;
  //! spec.diskTarget as written; absent or empty means "image". ValidateImportSpec refuses any
  //! other value.
  std::optional<std::string> disk_target;
  // Our additive fields (issue 19); empty/absent: the behaviour without them.
  std::vector<StorageMapping> storage_mapping;  //!< "storageMapping"
  std::vector<DiskOverride> disk_overrides;     //!< "diskOverrides"
  //! "targetVirtualMachineName": the VM's name as written (no lower-casing), an RFC 1123 label.
  std::string target_virtual_machine_name;
  std::optional<CpuOverride> cpu;          //!< "cpu"
  std::string memory;                      //!< "memory": a resource quantity ("4Gi")
  std::vector<NicOverride> nic_overrides;  //!< "nicOverrides"
  std::string run_strategy;                //!< "runStrategy": running (default) or stopped
  // Warm migration (issue 22, api/warm.h); empty/0/absent: unset.
  std::string migration_mode;                 //!< "migrationMode": cold (default) or warm
  std::string cutover_time;                   //!< "cutoverTime": RFC 3339; not before it
  int32_t downtime_budget_seconds = 0;        //!< "downtimeBudgetSeconds"
  int32_t precopy_interval_seconds = 0;       //!< "precopyIntervalSeconds"; 0: 600
  std::optional<bool> warm_fallback_to_cold;  //!< "warmFallbackToCold"
  nlohmann::json extra = nlohmann::json::object();

  //! kWarm only for migrationMode "warm".
  MigrationMode MigrationModeOrDefault() const;
  int32_t PrecopyIntervalSeconds() const;
  bool WarmFallbackToCold() const { return warm_fallback_to_cold.value_or(false); }

  //! kImage unless disk_target is "volume".
  DiskTarget DiskTargetOrDefault() const;
  //! The fields with their defaults applied, as the reference reads them.
  std::string NicModelOrDefault() const;
  std::string DiskBusOrDefault() const;
  bool ForcePowerOff() const { return force_power_off.value_or(false); }
  bool SkipPreflightChecks() const { return skip_preflight_checks.value_or(false); }
  int32_t GracefulShutdownTimeoutSeconds() const;
  //! runStrategy stopped: the VM is created halted and the import ends at virtualMachineCreated.
  bool StartsStopped() const { return run_strategy == kRunStrategyStopped; }
};

//! Our extension of DiskInfo: where the disk stream is. Zero/empty fields are not written.
struct DiskProgress {
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;
  uint64_t bytes_per_second = 0;
  int64_t eta_seconds = -1;  //!< -1: unknown (no rate yet); not written then
  std::string sha256;        //!< lower-case hex of the raw disk, once streamed completely
  std::string sha512;
};

//! Our extension: one check of a disk's bytes against a digest someone else computed
//! (status.diskImportStatus[].verification[]).
struct DiskVerification {
  //! Who computed the digest compared: "vsphere-manifest" (the NFC lease manifest, over the
  //! stream as vSphere sent it), "ova-manifest", "glance" (os_hash_value of the image), "longhorn"
  //! (the BackingImage's SHA-512 of what it stored).
  std::string verifier;
  std::string algorithm;  //!< sha1, sha256, sha512
  std::string digest;     //!< lower-case hex
  std::string result;     //!< "verified", "mismatch" or "unverifiable"
  std::string message;    //!< why, for mismatch and unverifiable
};

//! One entry of status.diskImportStatus (the reference's DiskInfo).
struct DiskInfo {
  std::string disk_name;  //!< "diskName"
  int64_t disk_size = 0;  //!< bytes
  std::string disk_local_path;
  std::string disk_route;
  std::string virtual_machine_image;  //!< JSON key "VirtualMachineImage", capitalised
  //! Volume mode (spec.diskTarget: volume): the CDI DataVolume (and PVC) of the disk, and CDI's
  //! own status.progress of it ("45.20%"). Empty in image mode.
  std::string data_volume;           //!< "dataVolume"
  std::string data_volume_progress;  //!< "dataVolumeProgress"
  std::vector<Condition> disk_conditions;
  std::string bus_type;  //!< always written, like the reference (no omitempty)
  //! Our extension: the StorageClass of this disk's image or volume, as decided before anything
  //! was made (diskOverrides, storageMapping, spec.storageClass; controller/device_choice.h);
  //! empty: the cluster's default class.
  std::string storage_class;
  DiskProgress progress;
  std::vector<DiskVerification> verification;  //!< "verification"; empty: not checked yet
  nlohmann::json extra = nlohmann::json::object();
};

struct VirtualMachineImportStatus {
  ImportStatus import_status = ImportStatus::kNew;
  std::string unrecognised_import_status;  //!< the text when import_status is kUnrecognised
  std::vector<DiskInfo> disk_import_status;
  std::vector<Condition> import_conditions;
  std::string new_virtual_machine;  //!< never written by the reference; kept for the round trip
  std::string imported_virtual_machine_name;
  std::optional<WarmStatus> warm;  //!< "warm": a warm import's rounds and downtime
  nlohmann::json extra = nlohmann::json::object();
};

struct VirtualMachineImport {
  //! The whole metadata object as read (labels, finalizers, ownerReferences, ...). The typed
  //! fields below are copies; ToJson writes them over `metadata` when they are not empty.
  nlohmann::json metadata = nlohmann::json::object();
  std::string name;
  std::string namespace_;
  std::string uid;
  std::string resource_version;
  VirtualMachineImportSpec spec;
  VirtualMachineImportStatus status;
  nlohmann::json extra = nlohmann::json::object();  //!< unknown top-level keys
};

[[nodiscard]] core::Result<VirtualMachineImportSpec> SpecFromJson(const nlohmann::json& j);
nlohmann::json SpecToJson(const VirtualMachineImportSpec& spec);

[[nodiscard]] core::Result<VirtualMachineImportStatus> StatusFromJson(const nlohmann::json& j);
//! Never holds invalid UTF-8: a byte of a string that is not UTF-8 is replaced by U+FFFD.
nlohmann::json StatusToJson(const VirtualMachineImportStatus& status);

//! The whole object. A missing spec or status reads as empty; a non-object is an error.
[[nodiscard]] core::Result<VirtualMachineImport> VirtualMachineImportFromJson(
    const nlohmann::json& j);
//! Includes apiVersion and kind.
nlohmann::json VirtualMachineImportToJson(const VirtualMachineImport& vm_import);

}  // namespace vmimport::api
