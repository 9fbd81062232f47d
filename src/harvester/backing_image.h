#pragma once

// Longhorn's BackingImage (longhorn.io/v1beta2, namespace longhorn-system): on Harvester's
// backingimage backend, the object Harvester makes for each VirtualMachineImage. Longhorn computes
// the SHA-512 of the file it stored and keeps it in status.checksum (set once, immutable); the
// controller compares it with the SHA-512 of the bytes it served (imageserver::StreamResult
// checksums with the policy "verify"). Pure: names and parsing, no I/O; the reader needs RBAC
// get/list/watch on backingimages.longhorn.io (deploy/).

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmimport::harvester {

inline constexpr std::string_view kLonghornNamespace = "longhorn-system";
inline constexpr std::string_view kBackingImageGroup = "longhorn.io";
inline constexpr std::string_view kBackingImageVersion = "v1beta2";
inline constexpr std::string_view kBackingImagePlural = "backingimages";

//! Longhorn's util.AutoCorrectName: lower-cased; longer than `max_length` (40 for Longhorn
//! objects) cut and suffixed "-<first 8 hex of SHA-512(name)>".
std::string LonghornAutoCorrectName(std::string_view name, size_t max_length = 40);

//! The names under which Harvester looks for the BackingImage of a VirtualMachineImage (its
//! util.GetBackingImage, v1.5+), in its order: "<namespace>-<name>" (legacy), that
//! auto-corrected, then "vmi-<uid>" auto-corrected (what Harvester creates today). The image
//! must have metadata.namespace, name and uid; empty when it has not.
std::vector<std::string> BackingImageNames(const nlohmann::json& virtual_machine_image);

//! What a BackingImage says about the file Longhorn stored.
struct BackingImageChecksum {
  //! status.checksum, lower-case: Longhorn's SHA-512 of the stored file; empty until computed.
  std::string sha512;
  //! Some disk file of the image is in state "ready" (status.diskFileStatusMap).
  bool ready = false;
  //! A disk file in state "failed": its message (e.g. Longhorn's checksum mismatch).
  std::string failed_message;
};
BackingImageChecksum ReadBackingImageChecksum(const nlohmann::json& backing_image);

//! The comparison the controller makes once the image is ready.
enum class StoredVerdict {
  kVerified,      //!< Longhorn's SHA-512 equals the served one
  kMismatch,      //!< it differs: DiskChecksumMismatch
  kUnverifiable,  //!< nothing to compare yet or at all (no served SHA-512, no status.checksum)
};
//! `served_sha512`: the image server's digest of what it served (empty: not computed).
StoredVerdict CompareStoredChecksum(std::string_view served_sha512,
                                    const BackingImageChecksum& stored);

}  // namespace vmimport::harvester
