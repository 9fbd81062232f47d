#include "source/libvirt/domain_xml.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <pugixml.hpp>

#include "core/strings.h"

namespace vmimport::source::libvirt {

using core::ErrorCode;
using core::MakeError;

namespace {

constexpr uint64_t kMiB = uint64_t{1024} * 1024;

std::optional<uint64_t> ParseUint(std::string_view text) {
  text = core::TrimSpace(text);
  uint64_t v = 0;
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || p != end || text.empty()) {
    return std::nullopt;
  }
  return v;
}

int ParseInt(const char* text, int fallback) {
  auto v = ParseUint(text);
  return v && *v > 0 && *v <= 4096 ? static_cast<int>(*v) : fallback;
}

// The network a NIC is on, as an administrator names it: the libvirt network, the host bridge,
// the host device of a macvtap; "" for qemu's user-mode network (no host network at all).
std::string NicNetwork(const pugi::xml_node& nic) {
  const std::string type = nic.attribute("type").as_string();
  const pugi::xml_node src = nic.child("source");
  if (type == "network") {
    return src.attribute("network").as_string();
  }
  if (type == "bridge") {
    return src.attribute("bridge").as_string();
  }
  if (type == "direct") {
    return src.attribute("dev").as_string();
  }
  return "";
}

std::string DiskRefusal(const DiskSource& d) {
  if (d.device == "lun") {
    return "disk " + d.target +
           " is a LUN (device='lun'): SCSI passthrough has no volume libvirt can stream";
  }
  if (d.type == "network") {
    return "disk " + d.target +
           " is a network disk (type='network'): libvirt cannot stream it as a storage volume";
  }
  if (d.type != "file" && d.type != "block" && d.type != "volume") {
    return "disk " + d.target + " has source type '" + d.type + "', which libvirt cannot stream";
  }
  if (d.type == "volume" ? (d.pool.empty() || d.volume.empty()) : d.path.empty()) {
    return "disk " + d.target + " has no source (an empty drive)";
  }
  return "";
}

}  // namespace

core::Result<uint64_t> ScaledBytes(std::string_view value, std::string_view unit,
                                   std::string_view default_unit) {
  auto v = ParseUint(value);
  if (!v) {
    return MakeError(ErrorCode::kCorruptData,
                     "libvirt: '" + std::string(value) + "' is not a non-negative integer");
  }
  const std::string u = core::ToLower(unit.empty() ? default_unit : unit);
  uint64_t scale = 0;
  if (u == "b" || u == "bytes") {
    scale = 1;
  } else if (u == "k" || u == "kib") {
    scale = 1024;
  } else if (u == "kb") {
    scale = 1000;
  } else if (u == "m" || u == "mib") {
    scale = kMiB;
  } else if (u == "mb") {
    scale = uint64_t{1000} * 1000;
  } else if (u == "g" || u == "gib") {
    scale = kMiB * 1024;
  } else if (u == "gb") {
    scale = 1000ULL * 1000 * 1000;
  } else if (u == "t" || u == "tib") {
    scale = kMiB * kMiB;
  } else if (u == "tb") {
    scale = 1000ULL * 1000 * 1000 * 1000;
  } else {
    return MakeError(ErrorCode::kCorruptData, "libvirt: unknown unit '" + std::string(unit) + "'");
  }
  if (*v > std::numeric_limits<uint64_t>::max() / scale) {
    return MakeError(ErrorCode::kCorruptData,
                     "libvirt: " + std::string(value) + " " + std::string(unit) + " overflows");
  }
  return *v * scale;
}

std::string DiskBusFor(std::string_view libvirt_bus) {
  std::string b = core::ToLower(libvirt_bus);
  if (b == "virtio" || b == "scsi" || b == "usb" || b == "sata") {
    return b;
  }
  return "sata";  // ide, sd, fdc, xen: KubeVirt has none of them; SATA is what every OS boots
}

std::string NicModelFor(std::string_view libvirt_model) {
  std::string m = core::ToLower(libvirt_model);
  if (m == "virtio" || m == "virtio-transitional" || m == "virtio-non-transitional") {
    return "virtio";
  }
  if (m == "e1000" || m == "e1000e" || m == "rtl8139" || m == "pcnet" || m == "ne2k_pci") {
    return m;
  }
  if (m.empty()) {
    return "rtl8139";  // libvirt's default model for x86 guests
  }
  return "virtio";
}

core::Result<DomainXml> ParseDomainXml(std::string_view xml) {
  pugi::xml_document doc;
  const auto parsed = doc.load_buffer(xml.data(), xml.size());
  if (!parsed) {
    return MakeError(ErrorCode::kCorruptData,
                     std::string("libvirt: domain XML does not parse: ") + parsed.description());
  }
  const pugi::xml_node dom = doc.child("domain");
  if (!dom) {
    return MakeError(ErrorCode::kCorruptData, "libvirt: domain XML has no <domain> element");
  }
  DomainXml out;
  model::VmDescription& vm = out.vm;
  vm.name = dom.child_value("name");
  vm.bios_uuid = core::ToLower(core::TrimSpace(dom.child_value("uuid")));
  vm.id = vm.bios_uuid;

  // Memory: <memory> is the maximum the guest is given at boot (currentMemory is a balloon
  // target); libvirt's default unit is KiB. The model counts MiB: a remainder is rounded up so
  // that the guest never gets less than it had.
  const pugi::xml_node mem = dom.child("memory");
  if (mem) {
    auto bytes = ScaledBytes(mem.child_value(), mem.attribute("unit").as_string(), "KiB");
    if (!bytes) {
      return MakeError(bytes.error().Wrap("<memory>"));
    }
    vm.memory_mib = (*bytes + kMiB - 1) / kMiB;
  }
  // vCPUs: <vcpu> is the maximum; <cpu><topology> splits it into sockets x dies x cores x threads.
  if (auto n = ParseUint(dom.child_value("vcpu")); n && *n > 0 && *n <= 4096) {
    vm.cpus = static_cast<int>(*n);
  } else if (dom.child("vcpu")) {
    return MakeError(ErrorCode::kCorruptData, std::string("libvirt: <vcpu> '") +
                                                  dom.child_value("vcpu") + "' is not a count");
  }
  if (const pugi::xml_node topo = dom.child("cpu").child("topology")) {
    const int sockets = ParseInt(topo.attribute("sockets").as_string(), 1);
    if (sockets > 0 && vm.cpus % sockets == 0) {
      vm.cores_per_socket = vm.cpus / sockets;
    }
  } else {
    vm.cores_per_socket = vm.cpus;  // libvirt's default: one socket
  }

  // Firmware: <os firmware='efi'> (automatic selection) or an explicit pflash loader is UEFI.
  const pugi::xml_node os = dom.child("os");
  const pugi::xml_node loader = os.child("loader");
  const std::string fw = os.attribute("firmware").as_string();
  if (fw == "efi" || std::string(loader.attribute("type").as_string()) == "pflash") {
    vm.firmware = model::Firmware::kEfi;
  }
  if (std::string(loader.attribute("secure").as_string()) == "yes") {
    vm.secure_boot = true;
  }
  for (const pugi::xml_node f : os.child("firmware").children("feature")) {
    if (std::string(f.attribute("name").as_string()) == "secure-boot" &&
        std::string(f.attribute("enabled").as_string()) == "yes") {
      vm.secure_boot = true;
    }
  }
  const pugi::xml_node devices = dom.child("devices");
  vm.tpm = static_cast<bool>(devices.child("tpm"));
  for (const pugi::xml_node md : dom.child("metadata").children()) {
    // <libosinfo:libosinfo><libosinfo:os id="http://ubuntu.com/ubuntu/22.04"/>
    if (std::string_view(md.name()).ends_with("libosinfo")) {
      for (const pugi::xml_node c : md.children()) {
        if (std::string_view(c.name()).ends_with("os")) {
          vm.guest_os = c.attribute("id").as_string();
        }
      }
    }
  }

  // Disks, in the domain's order. Boot order: per-device <boot order='N'/> when any device has
  // one (libvirt then forbids <os><boot>); otherwise <os><boot dev='hd'/> (or none: libvirt's
  // default is hd) boots the first disk.
  bool any_boot_order = false;
  for (const pugi::xml_node disk : devices.children("disk")) {
    const std::string device = disk.attribute("device").as_string("disk");
    if (device != "disk" && device != "lun") {
      continue;
    }
    DiskSource src;
    src.type = disk.attribute("type").as_string("file");
    src.device = device;
    const pugi::xml_node s = disk.child("source");
    src.path = s.attribute(src.type == "block" ? "dev" : "file").as_string();
    src.pool = s.attribute("pool").as_string();
    src.volume = s.attribute("volume").as_string();
    src.driver_format = disk.child("driver").attribute("type").as_string();
    src.target = disk.child("target").attribute("dev").as_string();
    const pugi::xml_node backing = disk.child("backingStore");
    src.has_backing_store = backing && backing.child("source");
    src.refusal = DiskRefusal(src);

    model::DiskDescription d;
    d.id = src.target;
    d.name = src.target;
    const std::string bus = disk.child("target").attribute("bus").as_string();
    d.controller = bus;
    d.bus = DiskBusFor(bus);
    d.boot_order = ParseInt(disk.child("boot").attribute("order").as_string(), 0);
    any_boot_order = any_boot_order || d.boot_order > 0;
    d.location = src.type == "volume" ? src.pool + "/" + src.volume : src.path;
    d.storage = src.type == "volume" ? src.pool : "";  // a file's pool: ResolveDisks asks libvirt
    // The provider decodes qcow2 itself (it needs reads at any offset) and hands raw bytes on.
    d.format = "raw";
    vm.disks.push_back(std::move(d));
    out.disks.push_back(std::move(src));
  }
  if (!any_boot_order && !vm.disks.empty()) {
    bool hd = !os.child("boot");
    for (const pugi::xml_node b : os.children("boot")) {
      hd = hd || std::string(b.attribute("dev").as_string()) == "hd";
    }
    if (hd) {
      vm.disks.front().boot_order = 1;
    }
  }

  for (const pugi::xml_node nic : devices.children("interface")) {
    model::NicDescription n;
    n.mac = core::ToLower(nic.child("mac").attribute("address").as_string());
    n.network = NicNetwork(nic);
    n.adapter_type = nic.child("model").attribute("type").as_string();
    n.model = NicModelFor(n.adapter_type);
    vm.nics.push_back(std::move(n));
  }
  return out;
}

core::Result<VolumeXml> ParseVolumeXml(std::string_view xml) {
  pugi::xml_document doc;
  const auto parsed = doc.load_buffer(xml.data(), xml.size());
  const pugi::xml_node vol = doc.child("volume");
  if (!parsed || !vol) {
    return MakeError(ErrorCode::kCorruptData, "libvirt: volume XML does not parse");
  }
  VolumeXml out;
  out.format = vol.child("target").child("format").attribute("type").as_string();
  const pugi::xml_node cap = vol.child("capacity");
  auto bytes = ScaledBytes(cap.child_value(), cap.attribute("unit").as_string(), "bytes");
  if (!bytes) {
    return MakeError(bytes.error().Wrap("volume <capacity>"));
  }
  out.capacity_bytes = *bytes;
  out.backing_path = vol.child("backingStore").child_value("path");
  return out;
}

}  // namespace vmimport::source::libvirt
