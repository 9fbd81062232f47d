#include "api/overrides.h"

#include <algorithm>
#include <array>
#include <limits>
#include <set>

#include "api/names.h"
#include "core/strings.h"

namespace vmimport::api {

namespace {

std::string DiskLabel(size_t index, const model::DiskDescription& disk) {
  return "disk " + std::to_string(index) + " (" + disk.name + ")";
}

std::string OverridePath(std::string_view list, size_t i) {
  return "spec." + std::string(list) + "[" + std::to_string(i) + "]";
}

void CheckStorageClassName(const std::string& name, const std::string& path,
                           std::vector<std::string>& problems) {
  if (!IsDns1123Subdomain(name)) {
    problems.push_back(path + ": \"" + core::SanitizeUtf8(name) +
                       "\" is not a StorageClass name (an RFC 1123 subdomain)");
  }
}

void CheckStorageMapping(const VirtualMachineImportSpec& spec, std::vector<std::string>& problems) {
  std::set<std::string, std::less<>> seen;
  for (size_t i = 0; i < spec.storage_mapping.size(); ++i) {
    const StorageMapping& m = spec.storage_mapping[i];
    const std::string path = OverridePath("storageMapping", i);
    if (m.source.empty()) {
      problems.push_back(path + ".source: required");
    } else if (!seen.insert(m.source).second) {
      problems.push_back(path + ".source: " + core::SanitizeUtf8(m.source) +
                         " appears more than once");
    }
    if (m.storage_class.empty()) {
      problems.push_back(path + ".storageClass: required");
    } else {
      CheckStorageClassName(m.storage_class, path + ".storageClass", problems);
    }
  }
}

void CheckDiskOverrides(const VirtualMachineImportSpec& spec, std::vector<std::string>& problems) {
  std::set<std::string, std::less<>> seen;
  for (size_t i = 0; i < spec.disk_overrides.size(); ++i) {
    const DiskOverride& d = spec.disk_overrides[i];
    const std::string path = OverridePath("diskOverrides", i);
    if ((d.index >= 0) == !d.name.empty()) {
      problems.push_back(path + ": set exactly one of index and name");
    } else if (!seen.insert(d.index >= 0 ? "#" + std::to_string(d.index) : d.name).second) {
      problems.push_back(path + ": disk " +
                         (d.index >= 0 ? std::to_string(d.index) : core::SanitizeUtf8(d.name)) +
                         " is overridden more than once");
    }
    const bool bus = d.disk_bus_type && !d.disk_bus_type->empty();
    if (d.storage_class.empty() && !bus) {
      problems.push_back(path + ": set storageClass, diskBusType or both");
    }
    if (!d.storage_class.empty()) {
      CheckStorageClassName(d.storage_class, path + ".storageClass", problems);
    }
    if (bus && !IsDiskBus(*d.disk_bus_type)) {
      problems.push_back(path + ".diskBusType: unsupported disk bus \"" +
                         core::SanitizeUtf8(*d.disk_bus_type) +
                         "\" (expected virtio, scsi, sata or usb)");
    }
  }
}

void CheckNicOverrides(const VirtualMachineImportSpec& spec, std::vector<std::string>& problems) {
  std::set<std::string, std::less<>> seen;
  for (size_t i = 0; i < spec.nic_overrides.size(); ++i) {
    const NicOverride& n = spec.nic_overrides[i];
    const std::string path = OverridePath("nicOverrides", i);
    if ((n.index >= 0) == !n.mac_address.empty()) {
      problems.push_back(path + ": set exactly one of index and macAddress");
    } else if (!seen.insert(n.index >= 0 ? "#" + std::to_string(n.index)
                                         : core::ToLower(n.mac_address))
                    .second) {
      problems.push_back(path + ": the NIC is overridden more than once");
    }
    if (!IsNicModel(n.network_interface_model)) {
      problems.push_back(path + ".networkInterfaceModel: unsupported network interface model \"" +
                         core::SanitizeUtf8(n.network_interface_model) +
                         "\" (expected e1000, e1000e, ne2k_pci, pcnet, rtl8139 or virtio)");
    }
  }
}

void CheckVmOverrides(const VirtualMachineImportSpec& spec, std::vector<std::string>& problems) {
  if (!spec.target_virtual_machine_name.empty()) {
    // As written: the lower-casing of virtualMachineName is not applied to a name the user chose.
    if (auto p = Dns1123LabelProblems(spec.target_virtual_machine_name); !p.empty()) {
      problems.push_back("spec.targetVirtualMachineName: \"" +
                         core::SanitizeUtf8(spec.target_virtual_machine_name) +
                         "\" is not RFC 1123 compliant: " + core::Join(p, "; "));
    }
  }
  if (spec.cpu) {
    for (const auto& [key, value] :
         {std::pair{"sockets", spec.cpu->sockets}, std::pair{"cores", spec.cpu->cores},
          std::pair{"threads", spec.cpu->threads}}) {
      if (value < 0) {
        problems.push_back(std::string("spec.cpu.") + key + ": must be at least 1 (has " +
                           std::to_string(value) + ")");
      }
    }
  }
  if (!spec.memory.empty()) {
    auto bytes = ParseMemoryQuantity(spec.memory);
    if (!bytes) {
      problems.push_back("spec.memory: " + bytes.error().message);
    } else if (*bytes < (uint64_t{1} << 20)) {
      problems.push_back("spec.memory: \"" + spec.memory + "\" is less than 1Mi");
    }
  }
  if (!spec.run_strategy.empty() && spec.run_strategy != kRunStrategyRunning &&
      spec.run_strategy != kRunStrategyStopped) {
    problems.push_back("spec.runStrategy: \"" + core::SanitizeUtf8(spec.run_strategy) +
                       "\" is not running or stopped");
  }
}

}  // namespace

const DiskOverride* FindDiskOverride(const VirtualMachineImportSpec& spec, size_t index,
                                     const model::DiskDescription& disk) {
  for (const DiskOverride& d : spec.disk_overrides) {
    if (d.index >= 0 && static_cast<size_t>(d.index) == index) {
      return &d;
    }
  }
  for (const DiskOverride& d : spec.disk_overrides) {
    if (!d.name.empty() && (d.name == disk.name || d.name == disk.id)) {
      return &d;
    }
  }
  return nullptr;
}

const NicOverride* FindNicOverride(const VirtualMachineImportSpec& spec, size_t index,
                                   const model::NicDescription& nic) {
  for (const NicOverride& n : spec.nic_overrides) {
    if (n.index >= 0 && static_cast<size_t>(n.index) == index) {
      return &n;
    }
  }
  for (const NicOverride& n : spec.nic_overrides) {
    if (!n.mac_address.empty() && !nic.mac.empty() &&
        core::EqualsIgnoreCase(n.mac_address, nic.mac)) {
      return &n;
    }
  }
  return nullptr;
}

const StorageMapping* FindStorageMapping(const VirtualMachineImportSpec& spec,
                                         const model::DiskDescription& disk) {
  for (const StorageMapping& m : spec.storage_mapping) {
    if (!disk.storage.empty() && m.source == disk.storage) {
      return &m;
    }
  }
  for (const StorageMapping& m : spec.storage_mapping) {
    if (!disk.id.empty() && m.source == disk.id) {
      return &m;
    }
  }
  return nullptr;
}

StorageChoice ChooseStorageClass(const VirtualMachineImportSpec& spec, size_t index,
                                 const model::DiskDescription& disk) {
  if (const DiskOverride* d = FindDiskOverride(spec, index, disk);
      d != nullptr && !d->storage_class.empty()) {
    return {d->storage_class, std::string(kStorageRuleUser),
            "storage class set by the user (spec.diskOverrides)"};
  }
  if (const StorageMapping* m = FindStorageMapping(spec, disk); m != nullptr) {
    return {m->storage_class, std::string(kStorageRuleMapping),
            "spec.storageMapping maps " + m->source + " to " + m->storage_class};
  }
  if (!spec.storage_class.empty()) {
    return {spec.storage_class, std::string(kStorageRuleDefault), "spec.storageClass"};
  }
  return {"", std::string(kStorageRuleClusterDefault), "the cluster's default class"};
}

std::vector<std::string> NamedStorageClasses(const VirtualMachineImportSpec& spec) {
  std::vector<std::string> names;
  auto add = [&names](const std::string& name) {
    if (!name.empty() && std::find(names.begin(), names.end(), name) == names.end()) {
      names.push_back(name);
    }
  };
  add(spec.storage_class);
  for (const StorageMapping& m : spec.storage_mapping) {
    add(m.storage_class);
  }
  for (const DiskOverride& d : spec.disk_overrides) {
    add(d.storage_class);
  }
  return names;
}

core::Result<uint64_t> ParseMemoryQuantity(std::string_view quantity) {
  auto invalid = [&quantity]() {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           "\"" + core::SanitizeUtf8(quantity) +
                               "\" is not a memory quantity (expected e.g. 4Gi, 512Mi, 2G)");
  };
  size_t pos = 0;
  uint64_t whole = 0;
  size_t digits = 0;
  for (; pos < quantity.size() && quantity[pos] >= '0' && quantity[pos] <= '9'; ++pos, ++digits) {
    if (whole > std::numeric_limits<uint64_t>::max() / 10 - 1) {
      return invalid();
    }
    whole = whole * 10 + static_cast<uint64_t>(quantity[pos] - '0');
  }
  // A fraction: at most 9 digits, kept as numerator / 10^n.
  uint64_t fraction = 0;
  uint64_t scale = 1;
  if (pos < quantity.size() && quantity[pos] == '.') {
    for (++pos; pos < quantity.size() && quantity[pos] >= '0' && quantity[pos] <= '9'; ++pos) {
      if (scale >= 1000000000) {
        return invalid();
      }
      fraction = fraction * 10 + static_cast<uint64_t>(quantity[pos] - '0');
      scale *= 10;
      ++digits;
    }
  }
  if (digits == 0) {
    return invalid();
  }
  struct Suffix {
    std::string_view text;
    uint64_t factor;
  };
  static constexpr std::array<Suffix, 13> kSuffixes{{{"", 1},
                                                     {"k", 1000},
                                                     {"M", 1000000},
                                                     {"G", 1000000000},
                                                     {"T", 1000000000000},
                                                     {"P", 1000000000000000},
                                                     {"E", 1000000000000000000},
                                                     {"Ki", uint64_t{1} << 10},
                                                     {"Mi", uint64_t{1} << 20},
                                                     {"Gi", uint64_t{1} << 30},
                                                     {"Ti", uint64_t{1} << 40},
                                                     {"Pi", uint64_t{1} << 50},
                                                     {"Ei", uint64_t{1} << 60}}};
  const std::string_view suffix = quantity.substr(pos);
  for (const Suffix& s : kSuffixes) {
    if (s.text != suffix) {
      continue;
    }
    if (whole > std::numeric_limits<uint64_t>::max() / s.factor) {
      return invalid();
    }
    // fraction / scale of factor, rounded up, without overflow: fraction < scale <= 10^9.
    const uint64_t q = s.factor / scale;
    const uint64_t r = s.factor % scale;
    const uint64_t frac_bytes = fraction * q + (fraction * r + scale - 1) / scale;
    if (whole * s.factor > std::numeric_limits<uint64_t>::max() - frac_bytes) {
      return invalid();
    }
    return whole * s.factor + frac_bytes;
  }
  return invalid();
}

void CheckOverrides(const VirtualMachineImportSpec& spec, std::vector<std::string>& problems) {
  CheckStorageMapping(spec, problems);
  CheckDiskOverrides(spec, problems);
  CheckNicOverrides(spec, problems);
  CheckVmOverrides(spec, problems);
}

std::vector<std::string> OverrideProblemsFor(const VirtualMachineImportSpec& spec,
                                             const model::VmDescription& vm) {
  std::vector<std::string> problems;
  for (size_t i = 0; i < spec.disk_overrides.size(); ++i) {
    const DiskOverride& d = spec.disk_overrides[i];
    bool found = false;
    for (size_t k = 0; k < vm.disks.size() && !found; ++k) {
      found = FindDiskOverride(spec, k, vm.disks[k]) == &d;
    }
    if (!found) {
      problems.push_back(OverridePath("diskOverrides", i) + ": source VM " + vm.name +
                         " has no disk " +
                         (d.index >= 0 ? std::to_string(d.index) : "\"" + d.name + "\"") +
                         " (it has " + std::to_string(vm.disks.size()) + " disks)");
    }
  }
  for (size_t i = 0; i < spec.nic_overrides.size(); ++i) {
    const NicOverride& n = spec.nic_overrides[i];
    bool found = false;
    for (size_t k = 0; k < vm.nics.size() && !found; ++k) {
      found = FindNicOverride(spec, k, vm.nics[k]) == &n;
    }
    if (!found) {
      problems.push_back(OverridePath("nicOverrides", i) + ": source VM " + vm.name +
                         " has no NIC " + (n.index >= 0 ? std::to_string(n.index) : n.mac_address) +
                         " (it has " + std::to_string(vm.nics.size()) + " NICs)");
    }
  }
  return problems;
}

std::vector<std::string> UnusedStorageMappings(const VirtualMachineImportSpec& spec,
                                               const model::VmDescription& vm) {
  std::vector<std::string> warnings;
  for (const StorageMapping& m : spec.storage_mapping) {
    const bool used = std::any_of(vm.disks.begin(), vm.disks.end(), [&](const auto& disk) {
      return FindStorageMapping(spec, disk) == &m;
    });
    if (!used) {
      std::set<std::string> storages;
      for (const auto& disk : vm.disks) {
        storages.insert(disk.storage.empty() ? "(unknown)" : disk.storage);
      }
      warnings.push_back(
          "storageMapping source " + m.source + " matches no disk of " + vm.name +
          " (its disks are on " +
          core::Join(std::vector<std::string>(storages.begin(), storages.end()), ", ") + ")");
    }
  }
  return warnings;
}

std::vector<std::string> DescribeOverrides(const VirtualMachineImportSpec& spec,
                                           const model::VmDescription& vm) {
  std::vector<std::string> lines;
  if (!spec.target_virtual_machine_name.empty()) {
    lines.push_back("target name " + spec.target_virtual_machine_name);
  }
  if (spec.cpu) {
    auto or_source = [](int32_t v) { return v > 0 ? std::to_string(v) : "(source)"; };
    lines.push_back("cpu " + or_source(spec.cpu->sockets) + " sockets x " +
                    or_source(spec.cpu->cores) + " cores x " + or_source(spec.cpu->threads) +
                    " threads");
  }
  if (!spec.memory.empty()) {
    lines.push_back("memory " + spec.memory);
  }
  if (!spec.run_strategy.empty()) {
    lines.push_back("run strategy " + spec.run_strategy);
  }
  for (size_t i = 0; i < vm.disks.size(); ++i) {
    const StorageChoice c = ChooseStorageClass(spec, i, vm.disks[i]);
    if (c.rule == kStorageRuleUser || c.rule == kStorageRuleMapping) {
      lines.push_back(DiskLabel(i, vm.disks[i]) + ": storage class " + c.storage_class + " [" +
                      c.rule + ": " + c.why + "]");
    }
    const DiskOverride* d = FindDiskOverride(spec, i, vm.disks[i]);
    if (d != nullptr && d->disk_bus_type && !d->disk_bus_type->empty()) {
      lines.push_back(DiskLabel(i, vm.disks[i]) + ": bus " + *d->disk_bus_type +
                      " [user: bus set by the user]");
    }
  }
  for (size_t i = 0; i < vm.nics.size(); ++i) {
    if (const NicOverride* n = FindNicOverride(spec, i, vm.nics[i]); n != nullptr) {
      lines.push_back("nic " + std::to_string(i) + " (" + vm.nics[i].mac + "): model " +
                      n->network_interface_model + " [user: model set by the user]");
    }
  }
  return lines;
}

}  // namespace vmimport::api
