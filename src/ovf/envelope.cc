#include "ovf/envelope.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <pugixml.hpp>

#include "core/strings.h"

namespace vmimport::ovf {

// Structure of an OVF descriptor (DSP0243; element prefixes vary between producers, so every
// element and attribute is matched by its local name):
//   <Envelope>
//     <References><File ovf:id="file1" ovf:href="disk1.vmdk" ovf:size="..."/>...</References>
//     <DiskSection><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="16"
//                        ovf:capacityAllocationUnits="byte * 2^30"/>...</DiskSection>
//     <NetworkSection><Network ovf:name="VM Network"/>...</NetworkSection>
//     <DeploymentOptionSection><Configuration ovf:id="small" ovf:default="true"/>...
//     <VirtualSystem ovf:id="vm1">            (or several inside a <VirtualSystemCollection>)
//       <Name>vm1</Name>
//       <OperatingSystemSection vmw:osType="ubuntu64Guest"/>
//       <VirtualHardwareSection>
//         <System><vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType></System>
//         <Item> (or StorageItem / EthernetPortItem, OVF 2.x), children in the rasd namespace:
//           ResourceType 3 processor: VirtualQuantity = vCPUs, vmw:CoresPerSocket
//                        4 memory: VirtualQuantity x AllocationUnits ("byte * 2^20")
//                        5 IDE, 6 SCSI (ResourceSubType lsilogic, VirtualSCSI = PVSCSI, ...),
//                        20 other storage (vmware.sata.ahci, vmware.nvme.controller), 23 USB:
//                          controllers, keyed by InstanceID
//                        17 disk: HostResource "ovf:/disk/<diskId>", Parent = controller
//                        10 NIC: Connection = network name, Address = MAC, ResourceSubType
//           an Item with ovf:configuration="a b" exists only in those deployment options
//         <vmw:Config vmw:key="firmware" vmw:value="efi"/>, bootOptions.efiSecureBootEnabled,
//         tpm.present / tpm20.enabled
//       </VirtualHardwareSection>
//     </VirtualSystem>
//   </Envelope>
namespace {

using core::ErrorCode;
using core::MakeError;

std::string_view LocalName(const char* qualified) {
  std::string_view s(qualified);
  const size_t colon = s.find(':');
  return colon == std::string_view::npos ? s : s.substr(colon + 1);
}

pugi::xml_node Child(pugi::xml_node node, std::string_view local) {
  for (pugi::xml_node c : node.children()) {
    if (c.type() == pugi::node_element && LocalName(c.name()) == local) {
      return c;
    }
  }
  return {};
}

std::vector<pugi::xml_node> Children(pugi::xml_node node, std::string_view local) {
  std::vector<pugi::xml_node> out;
  for (pugi::xml_node c : node.children()) {
    if (c.type() == pugi::node_element && LocalName(c.name()) == local) {
      out.push_back(c);
    }
  }
  return out;
}

std::string Attr(pugi::xml_node node, std::string_view local) {
  for (pugi::xml_attribute a : node.attributes()) {
    if (LocalName(a.name()) == local && !std::string_view(a.name()).starts_with("xmlns")) {
      return a.value();
    }
  }
  return "";
}

std::string Text(pugi::xml_node node, std::string_view local) {
  return std::string(core::TrimSpace(Child(node, local).child_value()));
}

std::optional<uint64_t> ParseU64(std::string_view s) {
  s = core::TrimSpace(s);
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

std::optional<uint64_t> Multiply(uint64_t a, uint64_t b) {
  uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) {
    return std::nullopt;
  }
  return out;
}

// Controller names as the vSphere provider spells them (model::DiskDescription::controller).
std::string ControllerName(const std::string& sub_type, int resource_type) {
  const std::string s = core::ToLower(sub_type);
  if (s == "virtualscsi" || s.find("pvscsi") != std::string::npos) {
    return "pvscsi";
  }
  if (s == "lsilogicsas") {
    return "lsilogicsas";
  }
  if (s.find("lsilogic") != std::string::npos) {
    return "lsilogic";
  }
  if (s.find("buslogic") != std::string::npos) {
    return "buslogic";
  }
  if (s.find("ahci") != std::string::npos || s.find("sata") != std::string::npos) {
    return "sata";
  }
  if (s.find("nvme") != std::string::npos) {
    return "nvme";
  }
  if (s.find("virtio") != std::string::npos) {
    return "virtio";
  }
  if (s.find("usb") != std::string::npos || s.find("xhci") != std::string::npos) {
    return "usb";
  }
  if (s.find("ide") != std::string::npos || s == "piix4") {
    return "ide";
  }
  if (s.find("scsi") != std::string::npos) {
    return "scsi";
  }
  switch (resource_type) {  // no (known) subtype: the CIM resource type decides
    case 5: return "ide";
    case 6: return "scsi";
    case 20: return "sata";
    case 23: return "usb";
    default: return "";
  }
}

std::string AdapterName(const std::string& sub_type) {
  std::string s = core::ToLower(sub_type);
  if (s.starts_with("virtual")) {
    s.erase(0, 7);
  }
  if (s == "pcnet32" || s == "pcnet") {
    return "pcnet32";
  }
  return s;
}

// A MAC as the model wants it: lower-case, colon-separated; "" when `s` is not one.
std::string NormalizeMac(std::string_view s) {
  std::string hex;
  for (char c : s) {
    if (std::isxdigit(static_cast<unsigned char>(c)) != 0) {
      hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (c != ':' && c != '-') {
      return "";
    }
  }
  if (hex.size() != 12) {
    return "";
  }
  std::string out;
  for (size_t i = 0; i < 12; i += 2) {
    out += (i == 0 ? "" : ":") + hex.substr(i, 2);
  }
  return out;
}

struct DiskDef {
  std::string file_ref;
  uint64_t capacity_bytes = 0;
  std::string format;  // model::DiskDescription::format
};

// ovf:format of a Disk, e.g.
// "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized", as
// model::DiskDescription::format: "vmdk", or empty for anything else (the magic decides).
std::string DiskFormatOf(const std::string& uri) {
  return uri.find("/vmdk.html") != std::string::npos ? "vmdk" : "";
}

bool IsTrue(const std::string& v) { return core::EqualsIgnoreCase(v, "true"); }

core::Result<VirtualSystem> DescribeSystem(pugi::xml_node system, const Envelope& envelope,
                                           const std::map<std::string, DiskDef>& disks,
                                           const std::string& default_config,
                                           const std::string& where) {
  VirtualSystem out;
  out.id = Attr(system, "id");
  model::VmDescription& vm = out.vm;
  vm.id = out.id;
  vm.name = Text(system, "Name");
  if (vm.name.empty()) {
    vm.name = out.id;
  }
  vm.power_state = model::PowerState::kOff;
  const pugi::xml_node os = Child(system, "OperatingSystemSection");
  vm.guest_os = Attr(os, "osType");
  vm.guest_os_full_name = Text(os, "Description");
  if (vm.guest_os.empty()) {
    vm.guest_os = vm.guest_os_full_name;
  }
  const pugi::xml_node hw = Child(system, "VirtualHardwareSection");
  if (!hw) {
    return MakeError(ErrorCode::kCorruptData,
                     where + ": VirtualSystem " + out.id + " has no VirtualHardwareSection");
  }
  const std::string sys_where = where + ": VirtualSystem " + out.id;

  // Firmware: vmw:Config keys, or any "firmware" element/attribute of <System> (vssd).
  for (pugi::xml_node c : Children(hw, "Config")) {
    const std::string key = Attr(c, "key");
    const std::string value = Attr(c, "value");
    if (key == "firmware") {
      vm.firmware =
          core::EqualsIgnoreCase(value, "efi") ? model::Firmware::kEfi : model::Firmware::kBios;
    } else if (key == "bootOptions.efiSecureBootEnabled") {
      vm.secure_boot = IsTrue(value);
    } else if ((key == "tpm.present" || key == "tpm20.enabled") && IsTrue(value)) {
      vm.tpm = true;
    }
  }
  const pugi::xml_node vssd = Child(hw, "System");
  for (pugi::xml_node c : vssd.children()) {
    const std::string n = core::ToLower(LocalName(c.name()));
    if ((n == "firmware" || n == "firmwaretype") &&
        core::ToLower(c.child_value()).find("efi") != std::string::npos) {
      vm.firmware = model::Firmware::kEfi;
    }
  }
  if (const std::string fw = core::ToLower(Attr(vssd, "firmware")); !fw.empty()) {
    vm.firmware =
        fw.find("efi") != std::string::npos ? model::Firmware::kEfi : model::Firmware::kBios;
  }

  // Items valid in the default deployment option.
  std::vector<pugi::xml_node> items;
  for (pugi::xml_node c : hw.children()) {
    const std::string_view n = LocalName(c.name());
    if (n != "Item" && n != "StorageItem" && n != "EthernetPortItem") {
      continue;
    }
    const std::string configs = Attr(c, "configuration");
    if (!configs.empty()) {
      bool match = false;
      for (std::string_view cfg : core::Split(configs, ' ')) {
        match |= !cfg.empty() && cfg == default_config;
      }
      if (!match) {
        continue;
      }
    }
    items.push_back(c);
  }
  std::map<std::string, std::string> controllers;  // InstanceID → controller name
  for (pugi::xml_node item : items) {
    auto type = ParseU64(Text(item, "ResourceType"));
    if (!type) {
      continue;
    }
    const std::string sub_type = Text(item, "ResourceSubType");
    if (*type == 5 || *type == 6 || *type == 20 || *type == 23) {
      controllers[Text(item, "InstanceID")] = ControllerName(sub_type, static_cast<int>(*type));
    }
    if (core::EqualsIgnoreCase(sub_type, "vmware.vtpm")) {
      vm.tpm = true;
    }
  }
  bool have_cpu = false;
  for (pugi::xml_node item : items) {
    auto type = ParseU64(Text(item, "ResourceType"));
    if (!type) {
      continue;
    }
    const std::string label = Text(item, "ElementName");
    if (*type == 3) {
      auto cpus = ParseU64(Text(item, "VirtualQuantity"));
      if (!cpus || *cpus == 0 || *cpus > 4096) {
        return MakeError(ErrorCode::kCorruptData, sys_where + ": processor VirtualQuantity \"" +
                                                      Text(item, "VirtualQuantity") +
                                                      "\" is not a CPU count");
      }
      vm.cpus = static_cast<int>(*cpus);
      have_cpu = true;
      auto cores = ParseU64(Text(item, "CoresPerSocket"));
      vm.cores_per_socket = cores && *cores > 0 && *cores <= *cpus && *cpus % *cores == 0
                                ? static_cast<int>(*cores)
                                : 1;
    } else if (*type == 4) {
      // Without AllocationUnits, megabytes: what every producer we know writes anyway.
      std::string units = Text(item, "AllocationUnits");
      if (units.empty()) {
        units = "byte * 2^20";
      }
      auto unit = ParseByteUnits(units);
      auto quantity = ParseU64(Text(item, "VirtualQuantity"));
      auto bytes = unit && quantity ? Multiply(*quantity, *unit) : std::nullopt;
      if (!bytes || *bytes == 0) {
        return MakeError(ErrorCode::kCorruptData, sys_where + ": memory \"" +
                                                      Text(item, "VirtualQuantity") + "\" of \"" +
                                                      units + "\" is not a memory size");
      }
      vm.memory_mib = (*bytes + (1U << 20) - 1) >> 20U;
    } else if (*type == 17) {
      model::DiskDescription d;
      d.name = label;
      std::string host = Text(item, "HostResource");
      const size_t slash = host.rfind('/');
      const std::string ref = slash == std::string::npos ? host : host.substr(slash + 1);
      const FileReference* file = nullptr;
      if (host.find("/disk/") != std::string::npos) {
        auto disk = disks.find(ref);
        if (disk == disks.end()) {
          return MakeError(ErrorCode::kCorruptData, sys_where + ": " + label + " names disk \"" +
                                                        ref + "\", which DiskSection lacks");
        }
        d.id = ref;
        d.capacity_bytes = disk->second.capacity_bytes;
        d.format = disk->second.format;
        if (disk->second.file_ref.empty()) {
          return MakeError(ErrorCode::kUnsupported,
                           sys_where + ": disk " + ref + " has no file (an empty disk)");
        }
        for (const FileReference& f : envelope.files) {
          if (f.id == disk->second.file_ref) {
            file = &f;
          }
        }
        if (file == nullptr) {
          return MakeError(ErrorCode::kCorruptData, sys_where + ": disk " + ref + " names file \"" +
                                                        disk->second.file_ref +
                                                        "\", which References lacks");
        }
      } else {
        return MakeError(ErrorCode::kCorruptData, sys_where + ": " + label +
                                                      " has HostResource \"" + host +
                                                      "\" (expected ovf:/disk/<id>)");
      }
      if (!file->compression.empty() && file->compression != "identity") {
        return MakeError(ErrorCode::kUnsupported, sys_where + ": " + file->href + " is " +
                                                      file->compression + "-compressed");
      }
      if (file->chunk_size != 0) {
        return MakeError(ErrorCode::kUnsupported,
                         sys_where + ": " + file->href + " is split into chunks");
      }
      if (file->href.find("://") != std::string::npos) {
        return MakeError(ErrorCode::kUnsupported,
                         sys_where + ": " + file->href + " is outside the archive");
      }
      d.location = file->href;
      d.storage = file->href;  // an OVA's "storage" is the disk file spec.storageMapping names
      auto c = controllers.find(Text(item, "Parent"));
      d.controller = c == controllers.end() ? "" : c->second;
      d.bus = BusForController(d.controller);
      d.boot_order = static_cast<int>(vm.disks.size()) + 1;
      vm.disks.push_back(std::move(d));
    } else if (*type == 15 || *type == 16) {  // CD drive, DVD drive
      ++vm.cdroms;
    } else if (*type == 10) {
      model::NicDescription nic;
      nic.network = Text(item, "Connection");
      nic.mac = NormalizeMac(Text(item, "Address"));
      nic.adapter_type = AdapterName(Text(item, "ResourceSubType"));
      nic.model = ModelForAdapter(nic.adapter_type);
      vm.nics.push_back(std::move(nic));
    }
  }
  if (!have_cpu) {
    vm.cpus = 1;
  }
  return out;
}

void CollectSystems(pugi::xml_node node, std::vector<pugi::xml_node>& out) {
  for (pugi::xml_node c : node.children()) {
    if (c.type() != pugi::node_element) {
      continue;
    }
    const std::string_view n = LocalName(c.name());
    if (n == "VirtualSystem") {
      out.push_back(c);
    } else if (n == "VirtualSystemCollection") {
      CollectSystems(c, out);
    }
  }
}

}  // namespace

const FileReference* Envelope::FileByHref(std::string_view href) const {
  for (const FileReference& f : files) {
    if (f.href == href) {
      return &f;
    }
  }
  return nullptr;
}

std::optional<uint64_t> ParseByteUnits(std::string_view units) {
  // DSP0004 programmatic units: "byte" followed by factors "* <base>^<exponent>" or "* <n>";
  // plus the words producers use instead.
  std::string s;
  for (char c : units) {
    if (std::isspace(static_cast<unsigned char>(c)) == 0) {
      s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  static const std::map<std::string, uint64_t> kWords = {
      {"b", 1},           {"byte", 1},         {"bytes", 1},
      {"kb", 1ULL << 10}, {"kib", 1ULL << 10}, {"kilobytes", 1ULL << 10},
      {"mb", 1ULL << 20}, {"mib", 1ULL << 20}, {"megabytes", 1ULL << 20},
      {"gb", 1ULL << 30}, {"gib", 1ULL << 30}, {"gigabytes", 1ULL << 30},
      {"tb", 1ULL << 40}, {"tib", 1ULL << 40}, {"terabytes", 1ULL << 40},
  };
  if (auto w = kWords.find(s); w != kWords.end()) {
    return w->second;
  }
  if (!s.starts_with("byte")) {
    return std::nullopt;
  }
  std::string_view rest = std::string_view(s).substr(4);
  uint64_t value = 1;
  while (!rest.empty()) {
    if (rest.front() != '*') {
      return std::nullopt;
    }
    rest.remove_prefix(1);
    const size_t next = rest.find('*');
    const std::string_view factor = rest.substr(0, next);
    rest.remove_prefix(next == std::string_view::npos ? rest.size() : next);
    const size_t caret = factor.find('^');
    auto base = ParseU64(factor.substr(0, caret));
    if (!base) {
      return std::nullopt;
    }
    uint64_t f = *base;
    if (caret != std::string_view::npos) {
      auto exponent = ParseU64(factor.substr(caret + 1));
      if (!exponent || *exponent > 64) {
        return std::nullopt;
      }
      f = 1;
      for (uint64_t i = 0; i < *exponent; ++i) {
        auto m = Multiply(f, *base);
        if (!m) {
          return std::nullopt;
        }
        f = *m;
      }
    }
    auto m = Multiply(value, f);
    if (!m) {
      return std::nullopt;
    }
    value = *m;
  }
  return value;
}

std::string BusForController(std::string_view controller) {
  if (controller == "pvscsi") {
    return "sata";
  }
  if (controller == "lsilogic" || controller == "lsilogicsas" || controller == "buslogic" ||
      controller == "scsi") {
    return "scsi";
  }
  if (controller == "sata" || controller == "ide") {
    return "sata";
  }
  if (controller == "nvme" || controller == "virtio") {
    return "virtio";
  }
  if (controller == "usb") {
    return "usb";
  }
  return "virtio";
}

std::string ModelForAdapter(std::string_view adapter) {
  if (adapter == "vmxnet3" || adapter == "vmxnet2" || adapter == "vmxnet" || adapter == "virtio") {
    return "virtio";
  }
  if (adapter == "e1000e") {
    return "e1000e";
  }
  if (adapter == "e1000") {
    return "e1000";
  }
  if (adapter == "pcnet32") {
    return "pcnet";
  }
  if (adapter == "rtl8139") {
    return "rtl8139";
  }
  return "";
}

core::Result<Envelope> ParseEnvelope(std::string_view xml, std::string_view name) {
  const std::string where(name);
  pugi::xml_document doc;
  const pugi::xml_parse_result parsed =
      doc.load_buffer(xml.data(), xml.size(), pugi::parse_default, pugi::encoding_auto);
  if (!parsed) {
    return MakeError(ErrorCode::kCorruptData, where + ": not XML: " + parsed.description() +
                                                  " at offset " + std::to_string(parsed.offset));
  }
  const pugi::xml_node root = doc.document_element();
  if (LocalName(root.name()) != "Envelope") {
    return MakeError(ErrorCode::kCorruptData, where + ": root element is <" +
                                                  std::string(root.name()) + ">, not <Envelope>");
  }
  Envelope out;
  for (pugi::xml_node f : Children(Child(root, "References"), "File")) {
    FileReference ref;
    ref.id = Attr(f, "id");
    ref.href = Attr(f, "href");
    ref.compression = Attr(f, "compression");
    if (const std::string size = Attr(f, "size"); !size.empty()) {
      ref.size = ParseU64(size);
      if (!ref.size) {
        return MakeError(ErrorCode::kCorruptData,
                         where + ": file " + ref.href + " has size \"" + size + "\"");
      }
    }
    if (const std::string chunk = Attr(f, "chunkSize"); !chunk.empty()) {
      ref.chunk_size = ParseU64(chunk).value_or(1);
    }
    out.files.push_back(std::move(ref));
  }
  std::map<std::string, DiskDef> disks;
  for (pugi::xml_node d : Children(Child(root, "DiskSection"), "Disk")) {
    const std::string id = Attr(d, "diskId");
    DiskDef def;
    def.file_ref = Attr(d, "fileRef");
    def.format = DiskFormatOf(Attr(d, "format"));
    std::string units = Attr(d, "capacityAllocationUnits");
    if (units.empty()) {
      units = "byte";
    }
    auto unit = ParseByteUnits(units);
    auto capacity = ParseU64(Attr(d, "capacity"));
    auto bytes = unit && capacity ? Multiply(*capacity, *unit) : std::nullopt;
    if (!bytes) {
      return MakeError(ErrorCode::kCorruptData, where + ": disk " + id + " has capacity \"" +
                                                    Attr(d, "capacity") + "\" of \"" + units +
                                                    "\"");
    }
    def.capacity_bytes = *bytes;
    disks[id] = std::move(def);
  }
  std::string default_config;
  for (pugi::xml_node c : Children(Child(root, "DeploymentOptionSection"), "Configuration")) {
    if (default_config.empty() || IsTrue(Attr(c, "default"))) {
      default_config = Attr(c, "id");
    }
  }
  std::vector<pugi::xml_node> systems;
  CollectSystems(root, systems);
  if (systems.empty()) {
    return MakeError(ErrorCode::kCorruptData, where + ": no VirtualSystem");
  }
  for (pugi::xml_node s : systems) {
    auto system = DescribeSystem(s, out, disks, default_config, where);
    if (!system) {
      return MakeError(system.error());
    }
    out.systems.push_back(std::move(*system));
  }
  return out;
}

}  // namespace vmimport::ovf
