#include "api/vm_description.h"

#include <string>

#include "api/json_reader.h"

namespace vmimport::api {

using nlohmann::json;

json VmDescriptionToJson(const model::VmDescription& vm) {
  json disks = json::array();
  for (const auto& d : vm.disks) {
    disks.push_back({{"id", d.id},
                     {"name", d.name},
                     {"capacityBytes", d.capacity_bytes},
                     {"controller", d.controller},
                     {"bus", d.bus},
                     {"bootOrder", d.boot_order},
                     {"location", d.location},
                     {"storage", d.storage},
                     {"format", d.format}});
  }
  json nics = json::array();
  for (const auto& n : vm.nics) {
    nics.push_back({{"mac", n.mac},
                    {"network", n.network},
                    {"adapterType", n.adapter_type},
                    {"model", n.model}});
  }
  return {{"name", vm.name},
          {"id", vm.id},
          {"inventoryPath", vm.inventory_path},
          {"biosUuid", vm.bios_uuid},
          {"instanceUuid", vm.instance_uuid},
          {"cpus", vm.cpus},
          {"coresPerSocket", vm.cores_per_socket},
          {"memoryMiB", vm.memory_mib},
          {"firmware", model::FirmwareName(vm.firmware)},
          {"secureBoot", vm.secure_boot},
          {"tpm", vm.tpm},
          {"guestOS", vm.guest_os},
          {"guestOSType", vm.guest_os_type},
          {"guestOSFullName", vm.guest_os_full_name},
          {"cdroms", vm.cdroms},
          {"disks", std::move(disks)},
          {"nics", std::move(nics)}};
}

namespace {

void ReadBool(ObjectReader& r, std::string_view key, bool& out) {
  std::optional<bool> v;
  r.OptBool(key, v);
  out = v.value_or(false);
}

void ReadInt(ObjectReader& r, std::string_view key, int& out) {
  int32_t v = out;
  r.Int32(key, v);
  out = v;
}

}  // namespace

core::Result<model::VmDescription> VmDescriptionFromJson(const json& j) {
  if (!j.is_object()) {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           "status.sourceVirtualMachine: not an object");
  }
  model::VmDescription vm;
  ObjectReader r(j, "status.sourceVirtualMachine");
  r.String("name", vm.name);
  r.String("id", vm.id);
  r.String("inventoryPath", vm.inventory_path);
  r.String("biosUuid", vm.bios_uuid);
  r.String("instanceUuid", vm.instance_uuid);
  ReadInt(r, "cpus", vm.cpus);
  ReadInt(r, "coresPerSocket", vm.cores_per_socket);
  r.Uint64("memoryMiB", vm.memory_mib);
  std::string firmware;
  r.String("firmware", firmware);
  vm.firmware = firmware == "efi" ? model::Firmware::kEfi : model::Firmware::kBios;
  ReadBool(r, "secureBoot", vm.secure_boot);
  ReadBool(r, "tpm", vm.tpm);
  r.String("guestOS", vm.guest_os);
  r.String("guestOSType", vm.guest_os_type);
  r.String("guestOSFullName", vm.guest_os_full_name);
  ReadInt(r, "cdroms", vm.cdroms);
  if (const json* disks = r.Child("disks", json::value_t::array)) {
    for (size_t i = 0; i < disks->size(); ++i) {
      const json& d = (*disks)[i];
      if (!d.is_object()) {
        return core::MakeError(core::ErrorCode::kInvalidArgument,
                               r.PathOf("disks") + "[" + std::to_string(i) + "]: not an object");
      }
      model::DiskDescription disk;
      ObjectReader dr(d, r.PathOf("disks") + "[" + std::to_string(i) + "]");
      dr.String("id", disk.id);
      dr.String("name", disk.name);
      dr.Uint64("capacityBytes", disk.capacity_bytes);
      dr.String("controller", disk.controller);
      dr.String("bus", disk.bus);
      ReadInt(dr, "bootOrder", disk.boot_order);
      dr.String("location", disk.location);
      dr.String("storage", disk.storage);
      dr.String("format", disk.format);
      if (auto st = dr.Finish(); !st) {
        return core::MakeError(st.error());
      }
      vm.disks.push_back(std::move(disk));
    }
  }
  if (const json* nics = r.Child("nics", json::value_t::array)) {
    for (size_t i = 0; i < nics->size(); ++i) {
      const json& n = (*nics)[i];
      if (!n.is_object()) {
        return core::MakeError(core::ErrorCode::kInvalidArgument,
                               r.PathOf("nics") + "[" + std::to_string(i) + "]: not an object");
      }
      model::NicDescription nic;
      ObjectReader nr(n, r.PathOf("nics") + "[" + std::to_string(i) + "]");
      nr.String("mac", nic.mac);
      nr.String("network", nic.network);
      nr.String("adapterType", nic.adapter_type);
      nr.String("model", nic.model);
      if (auto st = nr.Finish(); !st) {
        return core::MakeError(st.error());
      }
      vm.nics.push_back(std::move(nic));
    }
  }
  if (auto st = r.Finish(); !st) {
    return core::MakeError(st.error());
  }
  return vm;
}

}  // namespace vmimport::api
