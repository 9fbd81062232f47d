#include "source/vmware/inventory.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "core/strings.h"
#include "source/vmware/properties.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;
using core::MakeError;

MoRef RefOf(pugi::xml_node node) {
  return MoRef{node.attribute("type").as_string(), node.child_value()};
}

bool LooksLikeUuid(const std::string& s) {
  if (s.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : std::isxdigit(static_cast<unsigned char>(s[i])) == 0) {
      return false;
    }
  }
  return true;
}

std::string ControllerName(const std::string& type) {
  static const std::map<std::string, std::string> kNames = {
      {"ParaVirtualSCSIController", "pvscsi"},
      {"VirtualLsiLogicController", "lsilogic"},
      {"VirtualLsiLogicSASController", "lsilogicsas"},
      {"VirtualBusLogicController", "buslogic"},
      {"VirtualAHCIController", "sata"},
      {"VirtualSATAController", "sata"},
      {"VirtualIDEController", "ide"},
      {"VirtualNVMEController", "nvme"},
      {"VirtualUSBController", "usb"},
      {"VirtualUSBXHCIController", "usb"},
  };
  auto it = kNames.find(type);
  return it == kNames.end() ? "" : it->second;
}

std::string AdapterName(const std::string& type) {
  static const std::map<std::string, std::string> kNames = {
      {"VirtualVmxnet3", "vmxnet3"}, {"VirtualVmxnet3Vrdma", "vmxnet3"},
      {"VirtualVmxnet2", "vmxnet2"}, {"VirtualVmxnet", "vmxnet"},
      {"VirtualE1000e", "e1000e"},   {"VirtualE1000", "e1000"},
      {"VirtualPCNet32", "pcnet32"}, {"VirtualSriovEthernetCard", "sriov"},
  };
  auto it = kNames.find(type);
  return it == kNames.end() ? "" : it->second;
}

}  // namespace

std::string BusForController(const std::string& controller, const std::string& fallback) {
  if (controller == "pvscsi") {
    return "sata";
  }
  if (controller == "lsilogic" || controller == "lsilogicsas" || controller == "buslogic") {
    return "scsi";
  }
  if (controller == "sata" || controller == "ide") {
    return "sata";
  }
  if (controller == "nvme") {
    return "virtio";
  }
  if (controller == "usb") {
    return "usb";
  }
  return fallback;
}

// "[datastore1] vm/vm.vmdk" -> "datastore1"; "" for a path without the bracketed datastore.
std::string DatastoreOfPath(std::string_view path) {
  if (path.empty() || path.front() != '[') {
    return {};
  }
  const size_t close = path.find(']');
  return close == std::string_view::npos ? std::string() : std::string(path.substr(1, close - 1));
}

std::string ModelForAdapter(const std::string& adapter) {
  if (adapter == "vmxnet3" || adapter == "vmxnet2" || adapter == "vmxnet") {
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
  return "";
}

core::Result<std::vector<VmRef>> Inventory::ListVms(std::stop_token stop, const MoRef& folder) {
  auto view =
      session_.soap().Call(stop, "CreateContainerView",
                           session_.content().view_manager.Xml("_this") + folder.Xml("container") +
                               "<type>VirtualMachine</type><recursive>true</recursive>");
  if (!view) {
    return MakeError(view.error().Wrap("vsphere: list VMs"));
  }
  const MoRef view_ref = RefOf(view->ReturnVal());
  const std::string spec =
      "<specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet></propSet>"
      "<objectSet>" +
      view_ref.Xml("obj") +
      "<skip>true</skip><selectSet xsi:type=\"TraversalSpec\"><name>traverseEntities</name>"
      "<type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet>"
      "</specSet>";
  auto r = session_.soap().Call(stop, "RetrieveProperties",
                                session_.content().property_collector.Xml("_this") + spec);
  (void)session_.soap().Call(stop, "DestroyView", view_ref.Xml("_this"));
  if (!r) {
    return MakeError(r.error().Wrap("vsphere: list VMs"));
  }
  std::vector<VmRef> vms;
  for (auto obj : r->Body().children("returnval")) {
    VmRef vm;
    vm.ref = RefOf(obj.child("obj"));
    for (auto prop : obj.children("propSet")) {
      if (std::string_view(prop.child_value("name")) == "name") {
        vm.name = prop.child_value("val");
      }
    }
    vms.push_back(std::move(vm));
  }
  return vms;
}

core::Result<MoRef> Inventory::VmFolder(std::stop_token stop, const std::string& datacenter,
                                        const std::string& folder) {
  auto dc = session_.FindDatacenter(stop, datacenter);
  if (!dc) {
    return MakeError(dc.error());
  }
  std::string path = datacenter;
  while (!path.empty() && path.front() == '/') {
    path.erase(0, 1);
  }
  path += "/vm";
  std::string f = folder;
  while (!f.empty() && f.front() == '/') {
    f.erase(0, 1);
  }
  while (!f.empty() && f.back() == '/') {
    f.pop_back();
  }
  if (!f.empty()) {
    path += "/" + f;
  }
  auto ref = session_.FindByInventoryPath(stop, path);
  if (!ref) {
    if (ref.error().code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kNotFound, "vsphere: folder /" + path + " not found");
    }
    return MakeError(ref.error());
  }
  return ref;
}

core::Result<std::string> Inventory::InventoryPath(std::stop_token stop, const MoRef& entity) {
  std::vector<std::string> parts;
  MoRef current = entity;
  for (int depth = 0; depth < 64 && !current.empty(); ++depth) {
    if (current.value == session_.content().root_folder.value) {
      break;
    }
    auto props = RetrieveProperties(stop, session_, current, {"name", "parent"});
    if (!props) {
      return MakeError(props.error());
    }
    parts.push_back(props->Text("name"));
    current = RefOf((*props)["parent"]);
  }
  std::string path;
  std::reverse(parts.begin(), parts.end());
  for (const auto& part : parts) {
    path += "/" + part;
  }
  return path;
}

core::Result<VmRef> Inventory::FindVm(std::stop_token stop, const std::string& datacenter,
                                      const std::string& folder, const std::string& name_or_uuid) {
  if (name_or_uuid.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "vsphere: no VM name given");
  }
  std::vector<VmRef> matches;
  if (LooksLikeUuid(name_or_uuid)) {
    auto dc = session_.FindDatacenter(stop, datacenter);
    if (!dc) {
      return MakeError(dc.error());
    }
    for (const char* instance : {"false", "true"}) {
      auto r = session_.soap().Call(stop, "FindAllByUuid",
                                    session_.content().search_index.Xml("_this") +
                                        dc->Xml("datacenter") + "<uuid>" + name_or_uuid +
                                        "</uuid><vmSearch>true</vmSearch><instanceUuid>" +
                                        instance + "</instanceUuid>");
      if (!r) {
        return MakeError(r.error().Wrap("vsphere: find VM by UUID"));
      }
      for (auto rv : r->Body().children("returnval")) {
        const MoRef ref = RefOf(rv);
        if (std::none_of(matches.begin(), matches.end(),
                         [&ref](const VmRef& m) { return m.ref.value == ref.value; })) {
          matches.push_back(VmRef{ref, "", ""});
        }
      }
    }
  }
  if (matches.empty()) {
    auto root = VmFolder(stop, datacenter, folder);
    if (!root) {
      return MakeError(root.error());
    }
    auto all = ListVms(stop, *root);
    if (!all) {
      return MakeError(all.error());
    }
    for (VmRef& vm : *all) {
      if (vm.name == name_or_uuid) {
        matches.push_back(std::move(vm));
      }
    }
  }
  const std::string where =
      "datacenter " + datacenter + (folder.empty() ? "" : " under folder " + folder);
  if (matches.empty()) {
    return MakeError(ErrorCode::kNotFound, "vsphere: no VM named " + name_or_uuid + " in " + where);
  }
  for (VmRef& vm : matches) {
    auto path = InventoryPath(stop, vm.ref);
    if (!path) {
      return MakeError(path.error());
    }
    vm.inventory_path = *path;
    vm.name = vm.inventory_path.substr(vm.inventory_path.rfind('/') + 1);
  }
  if (matches.size() > 1) {
    std::string paths;
    for (const VmRef& vm : matches) {
      paths += (paths.empty() ? "" : ", ") + vm.inventory_path;
    }
    return MakeError(ErrorCode::kInvalidArgument,
                     "vsphere: " + std::to_string(matches.size()) + " VMs match " + name_or_uuid +
                         " in " + where + " (" + paths +
                         "): refusing to guess; set spec.folder or use the VM's UUID");
  }
  return matches.front();
}

core::Result<model::VmDescription> Inventory::Describe(std::stop_token stop, const VmRef& vm) {
  auto props = RetrieveProperties(
      stop, session_, vm.ref,
      {"name", "config.hardware.numCPU", "config.hardware.numCoresPerSocket",
       "config.hardware.memoryMB", "config.firmware", "config.bootOptions", "config.uuid",
       "config.instanceUuid", "config.guestId", "config.guestFullName", "guest.guestFamily",
       "guest.toolsRunningStatus", "runtime.powerState", "config.hardware.device",
       "summary.config.tpmPresent"});
  if (!props) {
    return MakeError(props.error().Wrap("vsphere: describe " + vm.inventory_path));
  }
  const ObjectProperties& p = *props;
  model::VmDescription d;
  d.name = p.Text("name");
  d.id = vm.ref.value;
  d.inventory_path = vm.inventory_path;
  d.cpus = std::max(1, p["config.hardware.numCPU"].text().as_int(1));
  d.cores_per_socket = std::max(1, p["config.hardware.numCoresPerSocket"].text().as_int(1));
  if (d.cpus % d.cores_per_socket != 0) {
    d.cores_per_socket = 1;  // an inconsistent topology: keep the vCPU count, one core each
  }
  // vSphere's memoryMB is in MiB (the reference writes it as SI megabytes).
  d.memory_mib = p["config.hardware.memoryMB"].text().as_ullong(0);
  d.firmware = core::EqualsIgnoreCase(p.Text("config.firmware"), "efi") ? model::Firmware::kEfi
                                                                        : model::Firmware::kBios;
  d.secure_boot =
      std::string_view(p["config.bootOptions"].child_value("efiSecureBootEnabled")) == "true";
  d.tpm = p.Text("summary.config.tpmPresent") == "true";
  d.bios_uuid = p.Text("config.uuid");
  d.instance_uuid = p.Text("config.instanceUuid");
  d.guest_os = p.Text("config.guestId");
  d.guest_os_full_name = p.Text("config.guestFullName");
  d.guest_os_type = p.Text("guest.guestFamily");  // reported only while VMware Tools run
  d.tools_running = p.Text("guest.toolsRunningStatus") == "guestToolsRunning";
  const std::string power = p.Text("runtime.powerState");
  d.power_state = power == "poweredOn"    ? model::PowerState::kOn
                  : power == "poweredOff" ? model::PowerState::kOff
                  : power == "suspended"  ? model::PowerState::kSuspended
                                          : model::PowerState::kUnknown;

  // Devices: controllers first (a controller may come after its disks), then disks and NICs.
  std::map<std::string, std::string> controller_by_key;
  const pugi::xml_node devices = p["config.hardware.device"];
  for (auto dev : devices.children()) {
    const std::string type = XsiType(dev);
    if (const std::string name = ControllerName(type); !name.empty()) {
      controller_by_key[dev.child_value("key")] = name;
    }
  }
  std::map<std::string, std::string> dvpg_names;  // portgroup key -> name
  for (auto dev : devices.children()) {
    const std::string type = XsiType(dev);
    if (type == "VirtualCdrom") {
      ++d.cdroms;
      continue;
    }
    if (type == "VirtualDisk") {
      model::DiskDescription disk;
      disk.id = dev.child_value("key");
      disk.name = dev.child("deviceInfo").child_value("label");
      uint64_t bytes = dev.child("capacityInBytes").text().as_ullong(0);
      if (bytes == 0) {
        bytes = dev.child("capacityInKB").text().as_ullong(0) * 1024;
      }
      disk.capacity_bytes = bytes;
      auto it = controller_by_key.find(dev.child_value("controllerKey"));
      disk.controller = it == controller_by_key.end() ? "" : it->second;
      disk.bus = BusForController(disk.controller, "virtio");
      disk.location = dev.child("backing").child_value("fileName");
      disk.storage = DatastoreOfPath(disk.location);
      disk.format = "vmdk";  // ExportVm serves every disk as a streamOptimized VMDK
      d.disks.push_back(std::move(disk));
      continue;
    }
    const std::string adapter = AdapterName(type);
    if (adapter.empty()) {
      continue;
    }
    model::NicDescription nic;
    nic.adapter_type = adapter;
    nic.model = ModelForAdapter(adapter);
    nic.mac = core::ToLower(dev.child_value("macAddress"));
    const pugi::xml_node backing = dev.child("backing");
    const std::string backing_type = XsiType(backing);
    if (backing_type == "VirtualEthernetCardDistributedVirtualPortBackingInfo") {
      const std::string key = backing.child("port").child_value("portgroupKey");
      if (!dvpg_names.contains(key)) {
        auto pg =
            RetrieveProperties(stop, session_, MoRef{"DistributedVirtualPortgroup", key}, {"name"});
        dvpg_names[key] = pg && !pg->Text("name").empty() ? pg->Text("name") : key;
      }
      nic.network = dvpg_names[key];
    } else if (backing_type == "VirtualEthernetCardNetworkBackingInfo") {
      nic.network = backing.child_value("deviceName");
    } else {
      nic.network = dev.child("deviceInfo").child_value("summary");
    }
    d.nics.push_back(std::move(nic));
  }
  for (size_t i = 0; i < d.disks.size(); ++i) {
    d.disks[i].boot_order = static_cast<int>(i) + 1;
  }
  return d;
}

}  // namespace vmimport::source::vmware
