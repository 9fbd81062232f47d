#pragma once

// The PVC a backing-image VirtualMachineImage needs before a VM can use it (reference §3.9). For
// CDI images Harvester creates the PVC itself (named like the image); see ImageNeedsPvc.

#include <nlohmann/json.hpp>
#include <string_view>

#include "core/result.h"

namespace vmimport::harvester {

inline constexpr std::string_view kAnnotationImageId = "harvesterhci.io/imageId";

//! A PVC named like `image` in its namespace: annotation harvesterhci.io/imageId
//! "<namespace>/<image name>", ReadWriteMany, volumeMode Block, the image's per-image storage
//! class (status.storageClassName) and a size of max(status.virtualSize, status.size) bytes (the
//! reference takes status.size, the downloaded size, which is too small for a sparse or
//! compressed download). kInvalidArgument when the image has no name or namespace; kUnavailable
//! when its status has no storage class or size yet (Harvester has not got that far: retry).
[[nodiscard]] core::Result<nlohmann::json> BuildPvc(const nlohmann::json& image);

}  // namespace vmimport::harvester
