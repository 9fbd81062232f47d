#pragma once

// How far a Harvester VirtualMachineImage is, read from the object's status. The reference looks
// only for Imported=False with reason "ImportFailed", which only Harvester v1.1 wrote, so a failed
// image leaves its import waiting forever (B5). This reads every form current Harvester uses, in
// this order:
//   metadata.deletionTimestamp set                  -> failed (someone deletes the image)
//   BackingImageMissing=True                        -> failed (the Longhorn backing image is gone)
//   Imported=True                                   -> active
//   RetryLimitExceeded=True (any reason)            -> failed, final
//   Imported=False (ImportFailed, UploadFailed, ...) -> failed
//   Initialized=False                               -> failed
//   status.failed > spec.retry (retry absent: 3)    -> failed, even before the condition is written
//   otherwise, once Initialized=True or progress>0  -> progress (with the retry count and the
//                                                      last error while Harvester retries)
//   otherwise                                       -> pending

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace vmimport::harvester {

enum class ImagePhase { kPending, kProgress, kActive, kFailed };

const char* ImagePhaseName(ImagePhase phase);

struct ImageState {
  ImagePhase phase = ImagePhase::kPending;
  int percent = 0;              //!< status.progress clamped to 0..100; 100 when active
  std::string reason;           //!< kFailed: the condition's reason or ours (see above)
  std::string message;          //!< kFailed: why; kProgress: the last error while Harvester retries
  int64_t failed_attempts = 0;  //!< status.failed
};

//! Never fails: an object that is not an image, or has no status yet, is kPending.
ImageState InterpretImageStatus(const nlohmann::json& image);

}  // namespace vmimport::harvester
