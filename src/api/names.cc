#include "api/names.h"

#include <array>
#include <chrono>
#include <set>

#include "api/overrides.h"
#include "api/warm.h"
#include "core/clock.h"
#include "core/strings.h"

namespace vmimport::api {

namespace {

constexpr size_t kMaxLabelLength = 63;
constexpr size_t kMaxSubdomainLength = 253;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

// Quoted for a message; bytes that are not UTF-8 (a name from a source) become U+FFFD.
std::string Quote(std::string_view s) { return "\"" + core::SanitizeUtf8(s) + "\""; }

// The characters of `s` that are not allowed in a label, quoted once each: `" ", "_", "ñ"`. A
// multi-byte UTF-8 character is quoted whole; a byte that is not UTF-8 is named in hex ("\xff").
std::string BadLabelCharacters(std::string_view s) {
  std::set<std::string> bad;
  for (size_t pos = 0; pos < s.size();) {
    const size_t length = core::Utf8SequenceLength(s, pos);
    if (length == 0) {
      bad.insert("\\x" + core::HexEncode(s.substr(pos, 1)));
      ++pos;
      continue;
    }
    if (length > 1 || (!IsLowerAlnum(s[pos]) && s[pos] != '-')) {
      bad.insert(std::string(s.substr(pos, length)));
    }
    pos += length;
  }
  std::string out;
  for (const std::string& c : bad) {
    if (!out.empty()) {
      out += ", ";
    }
    out += "\"" + c + "\"";
  }
  return out;
}

void CheckSourceCluster(const ObjectReference& ref, std::vector<std::string>& problems) {
  if (ref.api_version != kMigrationApiVersion) {
    problems.push_back(
        "spec.sourceCluster.apiVersion: expected migration cluster apiversion to be '" +
        std::string(kMigrationApiVersion) + "' but got '" + ref.api_version + "'");
  }
  const bool known_kind = core::EqualsIgnoreCase(ref.kind, kVmwareSourceKind) ||
                          core::EqualsIgnoreCase(ref.kind, kOpenstackSourceKind) ||
                          core::EqualsIgnoreCase(ref.kind, kOvaSourceKind) ||
                          core::EqualsIgnoreCase(ref.kind, kLibvirtSourceKind);
  if (!known_kind) {
    problems.push_back("spec.sourceCluster.kind: unsupported source kind " + Quote(ref.kind) +
                       " (expected VmwareSource, OpenstackSource, OvaSource or LibvirtSource)");
  }
  if (ref.name.empty()) {
    problems.emplace_back("spec.sourceCluster.name: required");
  }
  if (ref.namespace_.empty()) {
    problems.emplace_back("spec.sourceCluster.namespace: required");
  }
}

void CheckTargetName(const VirtualMachineImportSpec& spec, std::vector<std::string>& problems) {
  if (spec.virtual_machine_name.empty()) {
    problems.emplace_back("spec.virtualMachineName: required");
    return;
  }
  // A targetVirtualMachineName names the VM (CheckOverrides checks it): virtualMachineName then
  // only finds the source VM and may be any source name.
  if (!spec.target_virtual_machine_name.empty()) {
    return;
  }
  // OpenStack resolves a UUID to the server's name first; that name is checked then.
  if (core::EqualsIgnoreCase(spec.source_cluster.kind, kOpenstackSourceKind) &&
      LooksLikeUuid(spec.virtual_machine_name)) {
    return;
  }
  if (auto name = SanitizeTargetName(spec.virtual_machine_name); !name) {
    problems.push_back("spec.virtualMachineName: " + name.error().message);
  }
}

void CheckNicModel(const std::optional<std::string>& model, const std::string& path,
                   std::vector<std::string>& problems) {
  if (model && !model->empty() && !IsNicModel(*model)) {
    problems.push_back(path + ": unsupported network interface model " + Quote(*model) +
                       " (expected e1000, e1000e, ne2k_pci, pcnet, rtl8139 or virtio)");
  }
}

void CheckNetworkMapping(const VirtualMachineImportSpec& spec, std::vector<std::string>& problems) {
  std::set<std::string, std::less<>> seen;
  for (size_t i = 0; i < spec.network_mapping.size(); ++i) {
    const NetworkMapping& m = spec.network_mapping[i];
    const std::string path = "spec.networkMapping[" + std::to_string(i) + "]";
    if (m.source_network.empty()) {
      problems.push_back(path + ".sourceNetwork: required");
    } else if (!seen.insert(m.source_network).second) {
      problems.push_back(path + ".sourceNetwork: source network " + m.source_network +
                         " appears multiple times in VirtualMachineImport spec");
    }
    if (m.destination_network.empty()) {
      problems.push_back(path + ".destinationNetwork: required");
    } else if (auto d = ParseDestinationNetwork(m.destination_network, "default"); !d) {
      problems.push_back(path + ".destinationNetwork: " + d.error().message);
    }
    CheckNicModel(m.network_interface_model, path + ".networkInterfaceModel", problems);
  }
}

}  // namespace

std::vector<std::string> Dns1123LabelProblems(std::string_view s) {
  std::vector<std::string> problems;
  if (s.empty()) {
    problems.emplace_back("must not be empty");
    return problems;
  }
  if (s.size() > kMaxLabelLength) {
    problems.push_back("must be no more than 63 characters (has " + std::to_string(s.size()) + ")");
  }
  if (std::string bad = BadLabelCharacters(s); !bad.empty()) {
    problems.push_back("must consist of lower-case alphanumeric characters or '-' (has " + bad +
                       ")");
  }
  if (!IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back())) {
    problems.emplace_back("must start and end with a lower-case alphanumeric character");
  }
  return problems;
}

bool IsDns1123Label(std::string_view s) { return Dns1123LabelProblems(s).empty(); }

bool IsDns1123Subdomain(std::string_view s) {
  if (s.empty() || s.size() > kMaxSubdomainLength) {
    return false;
  }
  for (std::string_view label : core::Split(s, '.')) {
    // Labels of a subdomain may be longer than 63 in apimachinery's regex; only the total counts.
    if (label.empty() || !IsLowerAlnum(label.front()) || !IsLowerAlnum(label.back())) {
      return false;
    }
    for (char c : label) {
      if (!IsLowerAlnum(c) && c != '-') {
        return false;
      }
    }
  }
  return true;
}

bool IsValidLabelValue(std::string_view s) {
  if (s.empty()) {
    return true;
  }
  if (s.size() > kMaxLabelLength || !IsAlnum(s.front()) || !IsAlnum(s.back())) {
    return false;
  }
  for (char c : s) {
    if (!IsAlnum(c) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

core::Result<std::string> SanitizeTargetName(std::string_view virtual_machine_name) {
  std::string target = core::ToLower(virtual_machine_name);
  std::vector<std::string> problems = Dns1123LabelProblems(target);
  if (problems.empty()) {
    return target;
  }
  // The source name is named too only when lower-casing changed it: no name said twice.
  std::string message = "the target VM name " + Quote(target);
  if (target != virtual_machine_name) {
    message += " (from virtualMachineName " + Quote(virtual_machine_name) + ")";
  }
  message += " is not RFC 1123 compliant: ";
  for (size_t i = 0; i < problems.size(); ++i) {
    message += (i == 0 ? "" : "; ") + problems[i];
  }
  return core::MakeError(core::ErrorCode::kInvalidArgument, std::move(message));
}

core::Result<NamespacedName> ParseDestinationNetwork(std::string_view destination,
                                                     std::string_view import_namespace) {
  std::vector<std::string_view> parts = core::Split(destination, '/');
  if (parts.size() > 2) {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           "invalid destination network '" + std::string(destination) +
                               "': expected name or namespace/name");
  }
  NamespacedName out;
  out.namespace_ = parts.size() == 2 ? std::string(parts[0]) : std::string(import_namespace);
  out.name = std::string(parts.back());
  if (!IsDns1123Label(out.namespace_) || !IsDns1123Subdomain(out.name)) {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           "invalid destination network '" + std::string(destination) +
                               "': namespace and name must be RFC 1123 names");
  }
  return out;
}

bool IsNicModel(std::string_view model) {
  static constexpr std::array<std::string_view, 6> kModels{"e1000", "e1000e",  "ne2k_pci",
                                                           "pcnet", "rtl8139", "virtio"};
  for (std::string_view m : kModels) {
    if (m == model) {
      return true;
    }
  }
  return false;
}

bool IsDiskBus(std::string_view bus) {
  return bus == "virtio" || bus == "scsi" || bus == "sata" || bus == "usb";
}

bool LooksLikeUuid(std::string_view s) {
  if (s.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    const char c = s[i];
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (dash_position ? c != '-' : !hex) {
      return false;
    }
  }
  return true;
}

// spec.migrationMode and the fields of a warm import (api/warm.h).
void CheckWarm(const VirtualMachineImportSpec& spec, std::vector<std::string>& problems) {
  if (!spec.migration_mode.empty() && !ParseMigrationMode(spec.migration_mode)) {
    problems.push_back("spec.migrationMode: unsupported value " + Quote(spec.migration_mode) +
                       " (expected cold, the default, or warm)");
    return;
  }
  if (!spec.cutover_time.empty()) {
    std::chrono::system_clock::time_point t;
    if (!core::ParseRfc3339(spec.cutover_time, t)) {
      problems.push_back("spec.cutoverTime: " + Quote(spec.cutover_time) +
                         " is not an RFC 3339 time (e.g. 2026-12-05T02:00:00Z)");
    }
  }
  if (spec.downtime_budget_seconds < 0) {
    problems.emplace_back("spec.downtimeBudgetSeconds: must not be negative");
  }
  if (spec.precopy_interval_seconds < 0) {
    problems.emplace_back("spec.precopyIntervalSeconds: must not be negative");
  }
  if (spec.MigrationModeOrDefault() != MigrationMode::kWarm) {
    return;
  }
  if (spec.DiskTargetOrDefault() != DiskTarget::kVolume) {
    problems.emplace_back(
        "spec.migrationMode: warm needs spec.diskTarget: volume (a warm import writes the "
        "target volumes again on every round while the source runs; an image is made once)");
  }
}

std::vector<std::string> ValidateImportSpec(const VirtualMachineImportSpec& spec) {
  std::vector<std::string> problems;
  CheckSourceCluster(spec.source_cluster, problems);
  CheckTargetName(spec, problems);
  CheckNetworkMapping(spec, problems);
  CheckNicModel(spec.default_network_interface_model, "spec.defaultNetworkInterfaceModel",
                problems);
  if (spec.default_disk_bus_type && !spec.default_disk_bus_type->empty() &&
      !IsDiskBus(*spec.default_disk_bus_type)) {
    problems.push_back("spec.defaultDiskBusType: unsupported disk bus " +
                       Quote(*spec.default_disk_bus_type) +
                       " (expected virtio, scsi, sata or usb)");
  }
  if (spec.disk_target && !spec.disk_target->empty() && !ParseDiskTarget(*spec.disk_target)) {
    problems.push_back("spec.diskTarget: unsupported value " + Quote(*spec.disk_target) +
                       " (expected image, the default, or volume)");
  }
  CheckWarm(spec, problems);
  CheckOverrides(spec, problems);
  return problems;
}

}  // namespace vmimport::api
