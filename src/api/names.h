#pragma once

// Names and spec validation for VirtualMachineImport: the target VM name (reference §3.3), the
// Kubernetes name rules it must pass, and the spec checks that need no cluster lookup (§3.2 steps
// 1, 2, 6 and 7's syntax). All pure: the checks against the cluster (the source is ready, the
// StorageClass and the NetworkAttachmentDefinitions exist) belong to the controller.

#include <string>
#include <string_view>
#include <vector>

#include "api/virtual_machine_import.h"
#include "core/result.h"

namespace vmimport::api {

//! What is wrong with `s` as an RFC 1123 label (validation.IsDNS1123Label: at most 63 characters
//! of [a-z0-9-], starting and ending with [a-z0-9]); empty when it is a valid label.
std::vector<std::string> Dns1123LabelProblems(std::string_view s);
bool IsDns1123Label(std::string_view s);
//! RFC 1123 subdomain (object names such as a NetworkAttachmentDefinition's): at most 253
//! characters, dot-separated labels of [a-z0-9-] that start and end with [a-z0-9].
bool IsDns1123Subdomain(std::string_view s);
//! A Kubernetes label value: empty, or at most 63 characters of [A-Za-z0-9-_.] that start and end
//! with [A-Za-z0-9].
bool IsValidLabelValue(std::string_view s);

//! status.importedVirtualMachineName from spec.virtualMachineName: lower-cased (as the reference
//! and newer Harvester do), then checked as an RFC 1123 label. Spaces, dots and underscores are not
//! rewritten (a rename would hide the mismatch from the user). The error (kInvalidArgument) names
//! both the source name and the lower-cased one and says what is wrong.
[[nodiscard]] core::Result<std::string> SanitizeTargetName(std::string_view virtual_machine_name);

struct NamespacedName {
  std::string namespace_;
  std::string name;
};
//! networkMapping[].destinationNetwork: "name" (in `import_namespace`) or "namespace/name".
//! kInvalidArgument for three or more parts, an empty part, or a part that is not a valid name.
[[nodiscard]] core::Result<NamespacedName> ParseDestinationNetwork(
    std::string_view destination, std::string_view import_namespace);

//! The CRD's NIC model enum (without the "" that means unset).
bool IsNicModel(std::string_view model);
//! KubeVirt disk buses: virtio, scsi, sata, usb.
bool IsDiskBus(std::string_view bus);
//! 8-4-4-4-12 hex digits, either case (an OpenStack server id).
bool LooksLikeUuid(std::string_view s);

//! Every problem of `spec` that needs no lookup, each as "<json path>: <what is wrong>", in spec
//! order; empty when the spec is valid. An OpenStack virtualMachineName that is a UUID is not
//! checked as a target name (the server's name is looked up later); nor is any virtualMachineName
//! when spec.targetVirtualMachineName is set. Includes CheckOverrides (api/overrides.h).
std::vector<std::string> ValidateImportSpec(const VirtualMachineImportSpec& spec);

}  // namespace vmimport::api
