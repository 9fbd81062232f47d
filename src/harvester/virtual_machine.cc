#include "harvester/virtual_machine.h"

#include <algorithm>
#include <climits>
#include <numeric>
#include <utility>

#include "api/names.h"
#include "api/overrides.h"
#include "harvester/image.h"

namespace vmimport::harvester {

using nlohmann::json;

namespace {

core::Error Invalid(std::string message) {
  return core::Error{core::ErrorCode::kInvalidArgument, "virtualmachine: " + std::move(message)};
}

std::string FirstNonEmpty(std::initializer_list<std::string_view> values) {
  for (std::string_view v : values) {
    if (!v.empty()) {
      return std::string(v);
    }
  }
  return {};
}

// B1: the reference writes cores=cpus and sockets=cores_per_socket. spec.cpu's non-zero values
// replace the source's.
// `vcpus` gets sockets x cores x threads (limits.cpu).
json Cpu(const model::VmDescription& vm, const std::optional<api::CpuOverride>& user, int& vcpus,
         std::vector<std::string>& warnings) {
  int sockets = vm.cpus;
  int cores = 1;
  int threads = 1;
  const bool all_set = user && user->sockets > 0 && user->cores > 0;
  if (vm.cores_per_socket > 0 && vm.cpus % vm.cores_per_socket == 0) {
    sockets = vm.cpus / vm.cores_per_socket;
    cores = vm.cores_per_socket;
  } else if (!all_set) {
    warnings.push_back(std::to_string(vm.cores_per_socket) + " cores per socket do not divide " +
                       std::to_string(vm.cpus) + " vCPUs: using " + std::to_string(vm.cpus) +
                       " sockets of 1 core");
  }
  if (user) {
    sockets = user->sockets > 0 ? user->sockets : sockets;
    cores = user->cores > 0 ? user->cores : cores;
    threads = user->threads > 0 ? user->threads : threads;
  }
  vcpus = user ? sockets * cores * threads : vm.cpus;
  return {{"sockets", sockets}, {"cores", cores}, {"threads", threads}};
}

// Only for EFI, like the reference's ApplyFirmwareSettings. KubeVirt needs SMM for secure boot;
// the reference also turns it on for a TPM (#71), which Windows 11 expects.
void ApplyFirmware(const model::VmDescription& vm, json& domain,
                   std::vector<std::string>& warnings) {
  if (vm.firmware != model::Firmware::kEfi) {
    if (vm.tpm) {
      warnings.emplace_back("the source has a TPM but BIOS firmware: the TPM is not carried over");
    }
    return;
  }
  domain["firmware"] = {{"bootloader", {{"efi", {{"secureBoot", vm.secure_boot}}}}}};
  if (vm.tpm) {
    domain["devices"]["tpm"] = json::object();
  }
  if (vm.secure_boot || vm.tpm) {
    domain["features"]["smm"] = {{"enabled", true}};
  }
}

// 1-based boot orders: disks with a source boot order first (by it, ties by index), then the
// others in index order. With no source boot order at all this is the reference's i+1.
std::vector<int> BootOrders(const std::vector<model::DiskDescription>& disks) {
  std::vector<size_t> order(disks.size());
  std::iota(order.begin(), order.end(), size_t{0});
  auto key = [&](size_t i) { return disks[i].boot_order > 0 ? disks[i].boot_order : INT_MAX; };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  std::vector<int> boot(disks.size());
  for (size_t rank = 0; rank < order.size(); ++rank) {
    boot[order[rank]] = static_cast<int>(rank) + 1;
  }
  return boot;
}

core::Status AddDisks(const api::VirtualMachineImport& vm_import, const model::VmDescription& vm,
                      json& devices, json& volumes) {
  const auto& infos = vm_import.status.disk_import_status;
  if (infos.size() != vm.disks.size()) {
    return core::MakeError(Invalid("status.diskImportStatus has " + std::to_string(infos.size()) +
                                   " disks, the source VM " + std::to_string(vm.disks.size())));
  }
  const std::vector<int> boot = BootOrders(vm.disks);
  for (size_t i = 0; i < infos.size(); ++i) {
    const std::string name = "disk-" + std::to_string(i);
    if (infos[i].virtual_machine_image.empty() && infos[i].data_volume.empty()) {
      return core::MakeError(Invalid("disk " + std::to_string(i) + " (" + infos[i].disk_name +
                                     ") has no VirtualMachineImage and no DataVolume"));
    }
    // What the user wrote wins (for this disk, then for all); then the bus the controller chose
    // (controller/device_choice.h).
    const api::DiskOverride* user = api::FindDiskOverride(vm_import.spec, i, vm.disks[i]);
    const std::string bus =
        FirstNonEmpty({user != nullptr ? user->disk_bus_type.value_or("") : "",
                       vm_import.spec.default_disk_bus_type.value_or(""), infos[i].bus_type,
                       vm.disks[i].bus, vm_import.spec.DiskBusOrDefault()});
    devices["disks"].push_back({{"name", name}, {"bootOrder", boot[i]}, {"disk", {{"bus", bus}}}});
    // Volume mode: the DataVolume itself (KubeVirt waits for its import and reads its PVC);
    // image mode: the PVC named like the image.
    volumes.push_back(
        infos[i].data_volume.empty()
            ? json{{"name", name},
                   {"persistentVolumeClaim", {{"claimName", infos[i].virtual_machine_image}}}}
            : json{{"name", name}, {"dataVolume", {{"name", infos[i].data_volume}}}});
  }
  return core::Ok();
}

// The model of a NIC: what the user wrote (its nicOverrides entry, its mapping's model, then the
// spec's default), then the model the controller chose for the guest
// (controller/device_choice.h), then virtio.
std::string NicModel(const api::VirtualMachineImport& vm_import, const api::NicOverride* user,
                     const api::NetworkMapping* m, std::string_view chosen) {
  return FirstNonEmpty({user != nullptr ? std::string_view(user->network_interface_model) : "",
                        m != nullptr ? m->network_interface_model.value_or("") : "",
                        vm_import.spec.default_network_interface_model.value_or(""), chosen,
                        vm_import.spec.NicModelOrDefault()});
}

json PodInterface(const api::VirtualMachineImport& vm_import, const api::NicOverride* user,
                  std::string_view mac, std::string_view chosen_model) {
  json iface = {{"name", std::string(kPodNetworkName)},
                {"model", NicModel(vm_import, user, nullptr, chosen_model)},
                {"masquerade", json::object()}};
  if (!mac.empty()) {
    iface["macAddress"] = std::string(mac);
  }
  return iface;
}

json PodNetwork() { return {{"name", std::string(kPodNetworkName)}, {"pod", json::object()}}; }

core::Status AddNics(const api::VirtualMachineImport& vm_import, const model::VmDescription& vm,
                     json& devices, json& networks, std::vector<std::string>& warnings) {
  int mapped = 0;
  const model::NicDescription* on_pod = nullptr;
  for (size_t index = 0; index < vm.nics.size(); ++index) {
    const model::NicDescription& nic = vm.nics[index];
    const api::NicOverride* user = api::FindNicOverride(vm_import.spec, index, nic);
    const api::NetworkMapping* m = FindNetworkMapping(vm_import.spec, nic.network);
    if (m == nullptr && on_pod != nullptr) {
      warnings.push_back("nic " + nic.mac + " on network \"" + nic.network +
                         "\" has no networkMapping entry and the pod network is taken by nic " +
                         on_pod->mac + ": not attached");
      continue;
    }
    if (m == nullptr) {
      on_pod = &nic;
      devices["interfaces"].push_back(PodInterface(vm_import, user, nic.mac, nic.model));
      networks.push_back(PodNetwork());
      continue;
    }
    auto dest = api::ParseDestinationNetwork(m->destination_network, vm_import.namespace_);
    if (!dest) {
      return core::MakeError(Invalid(dest.error().message));
    }
    const std::string name = "migrated-" + std::to_string(mapped++);
    json iface = {{"name", name},
                  {"model", NicModel(vm_import, user, m, nic.model)},
                  {"bridge", json::object()}};
    if (!nic.mac.empty()) {
      iface["macAddress"] = nic.mac;
    }
    devices["interfaces"].push_back(std::move(iface));
    networks.push_back(
        {{"name", name}, {"multus", {{"networkName", dest->namespace_ + "/" + dest->name}}}});
  }
  if (vm.nics.empty()) {
    devices["interfaces"].push_back(PodInterface(vm_import, nullptr, "", ""));
    networks.push_back(PodNetwork());
  }
  return core::Ok();
}

core::Status CheckInputs(const api::VirtualMachineImport& vm_import,
                         const model::VmDescription& vm) {
  if (vm_import.status.imported_virtual_machine_name.empty()) {
    return core::MakeError(Invalid("status.importedVirtualMachineName is empty"));
  }
  if (vm_import.namespace_.empty()) {
    return core::MakeError(Invalid("the import has no namespace"));
  }
  if (vm.cpus < 1) {
    return core::MakeError(Invalid("the source VM has " + std::to_string(vm.cpus) + " vCPUs"));
  }
  if (vm.memory_mib == 0) {
    return core::MakeError(Invalid("the source VM has no memory size"));
  }
  return core::Ok();
}

}  // namespace

const api::NetworkMapping* FindNetworkMapping(const api::VirtualMachineImportSpec& spec,
                                              std::string_view nic_network) {
  if (nic_network.empty()) {
    return nullptr;
  }
  for (const api::NetworkMapping& m : spec.network_mapping) {
    if (m.source_network == nic_network) {
      return &m;
    }
  }
  for (const api::NetworkMapping& m : spec.network_mapping) {
    const std::string_view source = m.source_network;
    const size_t slash = source.rfind('/');
    if (slash != std::string_view::npos && source.substr(slash + 1) == nic_network) {
      return &m;
    }
  }
  return nullptr;
}

core::Result<BuiltVirtualMachine> BuildVirtualMachine(const api::VirtualMachineImport& vm_import,
                                                      const model::VmDescription& vm) {
  if (auto ok = CheckInputs(vm_import, vm); !ok) {
    return core::MakeError(ok.error());
  }
  BuiltVirtualMachine out;
  const std::string& name = vm_import.status.imported_virtual_machine_name;
  // B2: binary, not SI "M". spec.memory is a quantity KubeVirt reads as written.
  const std::string memory =
      vm_import.spec.memory.empty() ? std::to_string(vm.memory_mib) + "Mi" : vm_import.spec.memory;
  int vcpus = vm.cpus;
  json cpu = Cpu(vm, vm_import.spec.cpu, vcpus, out.warnings);
  json domain = {
      {"cpu", std::move(cpu)},
      {"memory", {{"guest", memory}}},
      {"resources", {{"limits", {{"cpu", std::to_string(vcpus)}, {"memory", memory}}}}},
      {"features", {{"acpi", {{"enabled", true}}}}},
      {"devices", {{"disks", json::array()}, {"interfaces", json::array()}}},
  };
  ApplyFirmware(vm, domain, out.warnings);
  json volumes = json::array();
  json networks = json::array();
  if (auto ok = AddDisks(vm_import, vm, domain["devices"], volumes); !ok) {
    return core::MakeError(ok.error());
  }
  if (auto ok = AddNics(vm_import, vm, domain["devices"], networks, out.warnings); !ok) {
    return core::MakeError(ok.error());
  }

  out.object = {
      {"apiVersion", std::string(kKubevirtApiVersion)},
      {"kind", "VirtualMachine"},
      {"metadata",
       {{"name", name},
        {"namespace", vm_import.namespace_},
        {"labels", {{std::string(kLabelImported), "true"}}}}},
      {"spec",
       // runStrategy stopped: created Halted, started by the user (virtctl start).
       {{"runStrategy", vm_import.spec.StartsStopped() ? "Halted" : "RerunOnFailure"},
        {"template",
         {{"metadata", {{"labels", {{std::string(kLabelVmName), name}}}}},
          {"spec",
           {{"evictionStrategy", "LiveMigrateIfPossible"},
            {"domain", std::move(domain)},
            {"networks", std::move(networks)},
            {"volumes", std::move(volumes)}}}}}}},
  };
  return out;
}

}  // namespace vmimport::harvester
