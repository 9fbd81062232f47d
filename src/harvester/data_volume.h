#pragma once

// CDI DataVolume (cdi.kubevirt.io/v1beta1) for one exported disk, the volume mode of an import
// (spec.diskTarget: volume): CDI's importer writes the disk straight into the DataVolume's PVC,
// no VirtualMachineImage. Pure: input in, JSON out.
//
// Why an S3 source and not an HTTP one: CDI v1.64's HTTP source always downloads a disk into a
// scratch PVC first and converts from there (pkg/importer/http-datasource.go, Info: the nbdkit
// path only validates the size, then TransferScratch), a second volume of the disk's size. Its
// S3 source decodes the format readers (gzip, xz) while it streams and writes a raw result
// straight into the target (Info: !Convert -> TransferDataFile), sparse, with no scratch. CDI's
// S3 client does a path-style GetObject, GET /<bucket>/<object>: our disk URL
// http://host:port/disks/<token> is exactly that (bucket "disks", object the token), so the
// image server answers it as any GET. The client refuses empty credentials, so the DataVolume
// names a Secret with placeholder keys (BuildS3PlaceholderSecret); the token in the URL is the
// capability, as for images, and the signature is not checked.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/virtual_machine_import.h"
#include "core/result.h"

namespace vmimport::harvester {

inline constexpr std::string_view kCdiApiVersion = "cdi.kubevirt.io/v1beta1";
inline constexpr std::string_view kDataVolumeKind = "DataVolume";
//! On DataVolumes and the Secret: the uid of the import that made them (cleanup lists by it).
inline constexpr std::string_view kLabelImportUid = "migration.harvesterhci.io/import-uid";
//! CDI: run the importer now even on a WaitForFirstConsumer class (the VM comes after the disks).
inline constexpr std::string_view kAnnotationBindImmediate =
    "cdi.kubevirt.io/storage.bind.immediate.requested";
//! Volume sizes are rounded up to this (every provisioner accepts whole MiB).
inline constexpr uint64_t kVolumeSizeAlignment = uint64_t{1} << 20;

struct DataVolumeRequest {
  std::string name;
  std::string url;  //!< the image server's disk URL (a sparse gzip body)
  std::string secret_name;
  std::string storage_class;  //!< empty: the cluster's default class (CDI picks it)
  uint64_t virtual_size = 0;
  //! "Filesystem" or "Block"; empty: CDI's StorageProfile for the class decides.
  std::string volume_mode;
  //! e.g. "ReadWriteOnce", "ReadWriteMany"; empty: CDI's StorageProfile decides.
  std::string access_mode;
};

//! `size` rounded up to kVolumeSizeAlignment.
uint64_t VolumeSizeFor(uint64_t size);

//! The DataVolume, owned by `vm_import` (name, namespace and uid required) like an image: the
//! garbage collector removes it with a deleted import until the controller drops the reference
//! once the VM runs. spec.storage (not spec.pvc), so that CDI adds the class's filesystem
//! overhead to a Filesystem volume itself (CDIConfig status.filesystemOverhead, 5.5% by
//! default); the requested size is the virtual size rounded up to 1 MiB. Labelled with the
//! import's uid and kLabelImported; annotated kAnnotationBindImmediate.
//! kInvalidArgument when the name, URL, Secret or size is missing.
[[nodiscard]] core::Result<nlohmann::json> BuildDataVolume(
    const api::VirtualMachineImport& vm_import, const DataVolumeRequest& request);

//! The Secret CDI's S3 client needs (accessKeyId, secretKey: placeholders, see above), owned by
//! and labelled with `vm_import`.
nlohmann::json BuildS3PlaceholderSecret(const api::VirtualMachineImport& vm_import,
                                        std::string_view name);

//! DataVolume and Secret names for disk `index` of the import: "<vm>-disk-<i>-<uid[0:8]>" and
//! "<import>-s3-<uid[0:8]>", the first part cut so that the name stays a DNS label (63), so that a
//! recreated import never meets the volumes an earlier one left to the user.
std::string DataVolumeName(std::string_view vm_name, size_t index, std::string_view uid);
std::string S3SecretName(std::string_view import_name, std::string_view uid);

//! What a DataVolume's status says, as the controller needs it.
enum class DataVolumePhase { kPending, kRunning, kSucceeded, kFailed };
struct DataVolumeState {
  DataVolumePhase phase = DataVolumePhase::kPending;
  std::string cdi_phase;  //!< status.phase as CDI wrote it
  std::string progress;   //!< status.progress ("45.20%", "N/A"), empty when absent
  std::string message;    //!< the Running condition's reason and message, when not empty
  int32_t restarts = 0;   //!< status.restartCount: the importer Pod's restarts
};
DataVolumeState InterpretDataVolumeStatus(const nlohmann::json& data_volume);

}  // namespace vmimport::harvester
