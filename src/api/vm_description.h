#pragma once

// The source VM's description as JSON, for status.sourceVirtualMachine: what the controller found
// at preflight (identity, CPUs, memory, firmware, disks, NICs), kept in the import itself so that
// a controller restarted after the disks are in Harvester creates the VirtualMachine even when
// the source object or the source VM is gone. Reading never throws: a wrong type is an error
// naming its path.

#include <nlohmann/json.hpp>

#include "core/result.h"
#include "model/vm.h"

namespace vmimport::api {

nlohmann::json VmDescriptionToJson(const model::VmDescription& vm);
[[nodiscard]] core::Result<model::VmDescription> VmDescriptionFromJson(const nlohmann::json& j);

}  // namespace vmimport::api
