#pragma once

// Harvester VirtualMachineImage (harvesterhci.io/v1beta1) for one exported disk: the object the
// controller creates (reference §3.7) and how its status reads (§3.8, with bug B5 fixed). Pure:
// input in, JSON out.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "api/virtual_machine_import.h"
#include "core/result.h"

namespace vmimport::harvester {

inline constexpr std::string_view kHarvesterApiVersion = "harvesterhci.io/v1beta1";
inline constexpr std::string_view kImageKind = "VirtualMachineImage";
inline constexpr std::string_view kLabelImported = "migration.harvesterhci.io/imported";
inline constexpr std::string_view kLabelImageDisplayName = "harvesterhci.io/imageDisplayName";
inline constexpr std::string_view kAnnotationStorageClassName = "harvesterhci.io/storageClassName";
inline constexpr std::string_view kBackendBackingImage = "backingimage";
inline constexpr std::string_view kBackendCdi = "cdi";
inline constexpr std::string_view kLonghornProvisioner = "driver.longhorn.io";
//! spec.retry we send: the CRD's own default. The reference sends 0 (Go int without omitempty),
//! so its first failed download is already final.
inline constexpr int kImageRetry = 3;

//! What the image builder needs of the StorageClass named by spec.storageClass.
struct StorageClassInfo {
  std::string name;
  std::string provisioner;
  std::map<std::string, std::string> parameters;
};

//! "backingimage" for a Longhorn class on the v1 data engine, "cdi" otherwise. A Longhorn class
//! without a dataEngine parameter is v1 (Longhorn's default); the reference picks cdi there (B16).
std::string ImageBackendFor(const StorageClassInfo& storage_class);

//! spec.displayName: "vm-import-<import>-<disk>", the reference's name, when it is a valid label
//! value (at most 63 characters). Otherwise invalid characters become '-', the name is cut and
//! "-<8 hex of fnv32a(full name)>" is appended, so two long names that share a prefix stay
//! distinct (Harvester rejects a second image with the same displayName).
std::string ImageDisplayName(std::string_view import_name, std::string_view disk_name);

//! A new VirtualMachineImage for `disk_name`, downloaded from `url`, owned by `vm_import`
//! (which must have name, namespace and uid). `storage_class` is null when spec.storageClass is
//! empty: Harvester's mutator then picks the default class and the backend.
//! `sha512`: spec.checksum, the SHA-512 of the bytes the URL serves when a source declares it
//! (a raw Glance image's os_hash_value, model::SourceDigest with covers_served_bytes): Longhorn
//! then verifies the stored backing image itself. Written lower-case. Only a SHA-512 goes there:
//! Longhorn refuses anything else and the image fails for ever (harvester#5578), so another
//! value is kInvalidArgument, never sent.
//! kInvalidArgument when a required input is empty.
[[nodiscard]] core::Result<nlohmann::json> BuildVirtualMachineImage(
    const api::VirtualMachineImport& vm_import, std::string_view disk_name, std::string_view url,
    const StorageClassInfo* storage_class, std::optional<std::string_view> sha512 = std::nullopt);

//! True for what Longhorn accepts as a BackingImage spec.checksum: 128 lower-case hex digits
//! (longhorn-manager util.ValidateChecksumSHA512).
bool IsLonghornChecksum(std::string_view checksum);

//! True when the VM needs a PVC we create (backing images); false for CDI, where Harvester creates
//! the PVC named like the image itself. An image without spec.backend is a backing image (the
//! CRD default).
bool ImageNeedsPvc(const nlohmann::json& image);

}  // namespace vmimport::harvester
