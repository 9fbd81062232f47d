#pragma once

// What the controllers harvester-sim stands in for write into status, as pure functions over JSON
// (so that they are tested without a cluster):
//  - longhorn-manager v1.8 (controller/backing_image_controller.go, syncBackingImageFileInfo and
//    updateStatusWithFileInfo): a BackingImage's status from what its data source reports;
//  - Harvester v1.6 (pkg/image/backingimage/backing_image_controller.go and
//    pkg/image/common/operator.go): a VirtualMachineImage's status from its BackingImage's.
// Times are passed in (`now`, RFC 3339) so that results are deterministic.

#include <cstdint>
#include <string>
#include <string_view>

#include "core/json.h"
#include "core/result.h"

namespace vmimport::harvester_sim {

using core::Json;

//! GET /v1/file of backing-image-manager's data source (api.DataSourceInfo, which embeds
//! api.FileInfo). States: "" / pending / starting / in-progress / ready-for-transfer / ready /
//! failed (pkg/types).
struct DataSourceFileInfo {
  std::string state;
  int progress = 0;
  int64_t size = 0;          //!< Content-Length of the source (HEAD), then the bytes processed
  int64_t virtual_size = 0;  //!< `qemu-img info` of the file once processed; 0 before
  int64_t real_size = 0;     //!< allocated bytes of the (sparse) file
  int64_t processed_size = 0;
  std::string current_checksum;  //!< SHA-512 of the file, once processed
  std::string message;           //!< why it failed
  std::string file_path;         //!< in the data source's root: /data/tmp/<name>-<uuid>
};

//! Parses the JSON body of GET /v1/file; fails on anything but a JSON object.
core::Result<DataSourceFileInfo> ParseDataSourceFileInfo(std::string_view body);

//! A wrangler condition's status ("True", "False", "Unknown", or "" when absent).
std::string ConditionStatus(const Json& object, const std::string& type);

//! Sets one condition in `status` (wrangler's Cond.True/False/Reason/Message in one call);
//! lastTransitionTime moves only when the status flips.
void SetCondition(Json& status, const std::string& type, const std::string& value,
                  const std::string& reason, const std::string& message, const std::string& now);

// --- Longhorn -----------------------------------------------------------------------------------

//! The data source's report folded into a BackingImage's status, as longhorn-manager does while
//! the data source prepares the first file: size follows the source's, the disk's file entry
//! takes state, progress and message, and status.checksum is set from the first non-empty
//! currentChecksum and never changed afterwards (a different one fails the disk's file).
void ApplyDataSourceInfo(Json& backing_image_status, const std::string& disk_uuid,
                         const DataSourceFileInfo& info, const std::string& now);

//! The backing image manager took the file over from the data source (transfer): the disk's file
//! is ready at 100 %, with the file's virtual and real size.
void ApplyFileTransferred(Json& backing_image_status, const std::string& disk_uuid,
                          const DataSourceFileInfo& info, const std::string& now);

// --- Harvester ----------------------------------------------------------------------------------

//! vmiOperator's "initialized" transition (every attempt starts with it): progress 0,
//! Imported=Unknown (Importing), Initialized=True, appliedURL and the image's storage class name.
void ImageInitialized(Json& image_status, const std::string& url, const std::string& storage_class,
                      const std::string& now);

//! What Harvester's backingImageHandler does to the image on a BackingImage change.
enum class ImageUpdate {
  kNone,       //!< nothing to write (no single disk file yet, or no progress)
  kImporting,  //!< progress moved (100 shows as 99 until the file is ready)
  kImported,   //!< the file is ready: Imported=True with size and virtualSize
  kFailed,     //!< the file failed: failStateTransit with its message
};

//! Applies Harvester's reaction to `backing_image_status` to `image_status` (the image must be
//! Initialized and not yet Imported). `retry` is the image's spec.retry. Returns what changed;
//! for kFailed, `*exhausted` says whether RetryLimitExceeded became True.
ImageUpdate ApplyBackingImageToImage(const Json& backing_image_status, Json& image_status,
                                     int retry, const std::string& now, bool* exhausted);

//! Harvester's failStateTransit on condition `cond` ("Imported" or "Initialized"): counts the
//! failure, writes "failed due to error: <message>" (prefixed "retry attempted N/M" from the
//! second failure on) and, past `retry`, RetryLimitExceeded=True and `cond`=False. Returns true
//! when the retries are used up.
bool ImageFailStateTransit(Json& image_status, const std::string& cond, int retry,
                           const std::string& message, int progress, const std::string& now);

}  // namespace vmimport::harvester_sim
