#include "source/openstack/describe.h"

#include <algorithm>

#include "core/strings.h"
#include "disk/digest.h"
#include "source/openstack/json_util.h"

namespace vmimport::source::openstack {

using core::ErrorCode;
using core::MakeError;
using nlohmann::json;

// GET /servers/{id} (compute API; flavor embedded from microversion 2.47):
//   {"server": {"id": "...", "name": "web-1", "status": "ACTIVE",
//               "flavor": {"vcpus": 2, "ram": 2048, "disk": 1, "original_name": "m1.small"}
//                         | {"id": "...", "links": [...]}            (before 2.47)
//               "image": "" | {"id": "...", "links": [...]},       ("" when booted from volume)
//               "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",    (admin only)
//               "os-extended-volumes:volumes_attached": [{"id": "...",
//                                                       "delete_on_termination": false}],
//               "addresses": {"private": [{"addr": "192.0.2.5", "version": 4,
//                                          "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:..",
//                                          "OS-EXT-IPS:type": "fixed"}]}}}
core::Result<Server> ParseServer(const json& doc) { return ParseServerObject(Obj(doc, "server")); }

core::Result<Server> ParseServerObject(const json& s) {
  Server server;
  server.id = Str(s, "id");
  if (server.id.empty()) {
    return MakeError(ErrorCode::kInternal, "nova: the answer is not a server");
  }
  server.name = Str(s, "name");
  server.status = Str(s, "status");
  const json& flavor = Obj(s, "flavor");
  if (auto v = Int(flavor, "vcpus")) {
    server.vcpus = static_cast<int>(*v);
  }
  if (auto r = Int(flavor, "ram"); r && *r >= 0) {
    server.ram_mib = static_cast<uint64_t>(*r);
  }
  server.flavor_id = Str(flavor, "id");
  server.image_id = Str(Obj(s, "image"), "id");
  server.root_device_name = Str(s, "OS-EXT-SRV-ATTR:root_device_name");
  server.host = Str(s, "OS-EXT-SRV-ATTR:host");
  const json& metadata = Obj(s, "metadata");
  for (auto it = metadata.begin(); it != metadata.end(); ++it) {
    if (it.value().is_string()) {
      server.metadata[it.key()] = it.value().get<std::string>();
    }
  }
  for (const json& v : Arr(s, "os-extended-volumes:volumes_attached")) {
    if (std::string id = Str(v, "id"); !id.empty()) {
      server.volume_ids.push_back(std::move(id));
    }
  }
  const json& addresses = Obj(s, "addresses");
  for (auto it = addresses.begin(); it != addresses.end(); ++it) {
    if (!it.value().is_array()) {
      continue;
    }
    for (const json& a : it.value()) {
      const std::string mac = core::ToLower(Str(a, "OS-EXT-IPS-MAC:mac_addr"));
      if (mac.empty()) {
        continue;
      }
      const auto seen = std::find(server.address_macs.begin(), server.address_macs.end(),
                                  std::pair<std::string, std::string>(it.key(), mac));
      if (seen == server.address_macs.end()) {  // one port may carry an IPv4 and an IPv6
        server.address_macs.emplace_back(it.key(), mac);
      }
    }
  }
  return server;
}

// GET /flavors/{id}: {"flavor": {"id": "...", "name": "m1.small", "vcpus": 2, "ram": 2048, ...}}
core::Status ApplyFlavor(const json& doc, Server& server) {
  const json& f = Obj(doc, "flavor");
  auto vcpus = Int(f, "vcpus");
  auto ram = Int(f, "ram");
  if (!vcpus || !ram || *ram < 0) {
    return MakeError(ErrorCode::kInternal,
                     "nova: flavor " + server.flavor_id + " has no vcpus or ram");
  }
  server.vcpus = static_cast<int>(*vcpus);
  server.ram_mib = static_cast<uint64_t>(*ram);
  return {};
}

// GET /servers?name=...: {"servers": [{"id": "...", "name": "...", "links": [...]}]}
std::vector<ServerRef> ParseServerList(const json& doc) {
  std::vector<ServerRef> out;
  for (const json& s : Arr(doc, "servers")) {
    ServerRef ref{Str(s, "id"), Str(s, "name")};
    if (!ref.id.empty()) {
      out.push_back(std::move(ref));
    }
  }
  return out;
}

// GET /volumes/{id} (block storage v3):
//   {"volume": {"id": "...", "name": "boot", "status": "in-use", "size": 1, "bootable": "true",
//               "attachments": [{"server_id": "...", "device": "/dev/vda", ...}],
//               "volume_image_metadata": {"hw_firmware_type": "uefi", "image_id": "...", ...}}}
core::Result<Volume> ParseVolume(const json& doc, std::string_view server_id) {
  return ParseVolumeObject(Obj(doc, "volume"), server_id);
}

core::Result<Volume> ParseVolumeObject(const json& v, std::string_view server_id) {
  Volume volume;
  volume.id = Str(v, "id");
  if (volume.id.empty()) {
    return MakeError(ErrorCode::kInternal, "cinder: the answer is not a volume");
  }
  volume.name = Str(v, "name");
  volume.status = Str(v, "status");
  volume.volume_type = Str(v, "volume_type");
  if (auto size = Int(v, "size"); size && *size > 0) {
    volume.size_gib = static_cast<uint64_t>(*size);
  }
  const json* bootable = Member(v, "bootable");
  volume.bootable =
      bootable != nullptr &&
      ((bootable->is_boolean() && bootable->get<bool>()) ||
       (bootable->is_string() && core::EqualsIgnoreCase(bootable->get<std::string>(), "true")));
  for (const json& a : Arr(v, "attachments")) {
    if (Str(a, "server_id") == server_id) {
      volume.device = Str(a, "device");
    }
  }
  const json& meta = Obj(v, "volume_image_metadata");
  for (auto it = meta.begin(); it != meta.end(); ++it) {
    if (it.value().is_string()) {
      volume.image_metadata[it.key()] = it.value().get<std::string>();
    }
  }
  return volume;
}

// GET /servers/{id}/os-interface:
//   {"interfaceAttachments": [{"port_id": "...", "net_id": "...", "mac_addr": "fa:16:3e:..",
//                              "port_state": "ACTIVE", "fixed_ips": [...]}]}
std::vector<Interface> ParseInterfaces(const json& doc) {
  std::vector<Interface> out;
  for (const json& p : Arr(doc, "interfaceAttachments")) {
    Interface i{core::ToLower(Str(p, "mac_addr")), Str(p, "net_id"), Str(p, "port_id")};
    if (!i.mac.empty()) {
      out.push_back(std::move(i));
    }
  }
  return out;
}

// GET /v2/images/{id}: {"id": "...", "name": "...", "status": "active", "disk_format": "raw",
//                       "hw_firmware_type": "uefi", "hw_disk_bus": "scsi", ...}: properties are
// top-level keys next to the image's own fields.
std::map<std::string, std::string> ParseImageProperties(const json& doc) {
  std::map<std::string, std::string> out;
  if (!doc.is_object()) {
    return out;
  }
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (it.value().is_string()) {
      out[it.key()] = it.value().get<std::string>();
    }
  }
  return out;
}

std::string DiskBusFor(std::string_view hw_disk_bus) {
  std::string bus = core::ToLower(core::TrimSpace(hw_disk_bus));
  if (bus == "scsi" || bus == "sata" || bus == "usb") {
    return bus;
  }
  if (bus == "ide") {
    return "sata";  // KubeVirt has no IDE
  }
  return "virtio";  // virtio, xen, uml, lxc, fdc, "" (Nova's own default for KVM is virtio)
}

std::string NicModelFor(std::string_view hw_vif_model) {
  std::string m = core::ToLower(core::TrimSpace(hw_vif_model));
  for (std::string_view known : {"e1000", "e1000e", "rtl8139", "pcnet", "ne2k_pci"}) {
    if (m == known) {
      return m;
    }
  }
  return "virtio";
}

namespace {

bool IsRoot(const Volume& v, std::string_view root_device_name) {
  if (!root_device_name.empty()) {
    return v.device == root_device_name;
  }
  return v.bootable && (v.device == "/dev/vda" || v.device == "/dev/sda" ||
                        v.device == "/dev/hda" || v.device == "/dev/xvda");
}

// Index of the root volume: root_device_name, else a bootable volume on the first device, else
// the first bootable volume, else the first one.
size_t RootIndex(const std::vector<Volume>& volumes, std::string_view root_device_name) {
  for (size_t i = 0; i < volumes.size(); ++i) {
    if (IsRoot(volumes[i], root_device_name)) {
      return i;
    }
  }
  for (size_t i = 0; i < volumes.size(); ++i) {
    if (volumes[i].bootable) {
      return i;
    }
  }
  return 0;
}

}  // namespace

std::map<std::string, std::string> BootImageMetadata(const std::vector<Volume>& volumes,
                                                     std::string_view root_device_name) {
  if (volumes.empty()) {
    return {};
  }
  return volumes[RootIndex(volumes, root_device_name)].image_metadata;
}

model::VmDescription Describe(const ServerFacts& facts) {
  const Server& s = facts.server;
  model::VmDescription d;
  d.name = s.name;
  d.id = s.id;
  d.instance_uuid = s.id;
  d.metadata = s.metadata;
  d.host = s.host;
  d.cpus = s.vcpus.value_or(1);
  d.cores_per_socket = 1;
  d.memory_mib = s.ram_mib.value_or(0);
  auto prop = [&facts](const char* key) {
    auto it = facts.image_properties.find(key);
    return it == facts.image_properties.end() ? std::string() : core::ToLower(it->second);
  };
  d.firmware = prop("hw_firmware_type") == "uefi" ? model::Firmware::kEfi : model::Firmware::kBios;
  d.secure_boot = prop("os_secure_boot") == "required";
  d.tpm = !prop("hw_tpm_version").empty();
  d.guest_os = prop("os_distro");
  d.guest_os_type = prop("os_type");
  if (s.status == "ACTIVE") {
    d.power_state = model::PowerState::kOn;
  } else if (s.status == "SHUTOFF") {
    d.power_state = model::PowerState::kOff;
  } else if (s.status == "SUSPENDED" || s.status == "PAUSED") {
    d.power_state = model::PowerState::kSuspended;
  }

  // Disks: the root volume first, the others by device name (stable: API order on ties).
  std::vector<size_t> order(facts.volumes.size());
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  const size_t root = facts.volumes.empty() ? 0 : RootIndex(facts.volumes, s.root_device_name);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if ((a == root) != (b == root)) {
      return a == root;
    }
    const std::string& da = facts.volumes[a].device;
    const std::string& db = facts.volumes[b].device;
    if (da.empty() || db.empty()) {
      return false;
    }
    return da.size() != db.size() ? da.size() < db.size() : da < db;  // vdz before vdaa
  });
  const std::string hw_bus = prop("hw_disk_bus");
  for (size_t i : order) {
    const Volume& v = facts.volumes[i];
    model::DiskDescription disk;
    disk.id = v.id;
    disk.name = v.name.empty() ? v.id : v.name;
    disk.capacity_bytes = v.size_gib << 30;
    disk.controller = hw_bus.empty() ? "virtio" : hw_bus;
    disk.bus = DiskBusFor(hw_bus);
    disk.boot_order = i == root ? 1 : 0;
    disk.location = v.device;
    disk.storage = v.volume_type;
    disk.format = "raw";  // exported as a Glance image of disk_format raw
    d.disks.push_back(std::move(disk));
  }

  const std::string vif = prop("hw_vif_model");
  auto nic = [&](std::string mac, std::string network) {
    model::NicDescription n;
    n.mac = std::move(mac);
    n.network = std::move(network);
    n.adapter_type = vif.empty() ? "virtio" : vif;
    n.model = NicModelFor(vif);
    d.nics.push_back(std::move(n));
  };
  if (!facts.interfaces.empty()) {
    for (const Interface& i : facts.interfaces) {
      std::string network;
      if (auto it = facts.network_names.find(i.net_id); it != facts.network_names.end()) {
        network = it->second;
      }
      if (network.empty()) {  // no Neutron answer: the addresses name the network by MAC
        for (const auto& [net, mac] : s.address_macs) {
          if (mac == i.mac) {
            network = net;
          }
        }
      }
      nic(i.mac, network.empty() ? i.net_id : network);
    }
  } else {
    auto macs = s.address_macs;
    std::stable_sort(macs.begin(), macs.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [net, mac] : macs) {
      nic(mac, net);
    }
  }
  return d;
}

bool LooksLikeUuid(std::string_view s) {
  auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  };
  if (s.size() == 32) {
    return std::all_of(s.begin(), s.end(), hex);
  }
  if (s.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !hex(s[i])) {
      return false;
    }
  }
  return true;
}

std::string ExactNameRegex(std::string_view name) {
  std::string out = "^";
  for (char c : name) {
    if (std::string_view(".^$*+?()[]{}|\\").find(c) != std::string_view::npos) {
      out += '\\';
    }
    out += c;
  }
  out += '$';
  return out;
}

std::optional<model::SourceDigest> ParseGlanceDigest(const nlohmann::json& image) {
  const std::string algo = Str(image, "os_hash_algo");
  const std::string value = Str(image, "os_hash_value");
  const auto algorithm = disk::ParseDigestAlgorithm(algo);
  if (!algorithm || !disk::IsDigestHex(*algorithm, value)) {
    return std::nullopt;
  }
  return model::SourceDigest{.algorithm = disk::DigestAlgorithmLowerName(*algorithm),
                             .hex = core::ToLower(value),
                             .verifier = std::string(disk::kVerifierGlance),
                             .covers_served_bytes = Str(image, "disk_format") == "raw"};
}

}  // namespace vmimport::source::openstack
