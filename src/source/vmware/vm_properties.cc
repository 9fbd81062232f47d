#include "source/vmware/vm_properties.h"

#include <algorithm>

#include "core/strings.h"
#include "source/vmware/soap.h"

namespace vmimport::source::vmware {
namespace {

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

const std::vector<std::string>& DescribePropertyPaths() {
  static const std::vector<std::string> kPaths = {"name",
                                                  "parent",
                                                  "config.hardware.numCPU",
                                                  "config.hardware.numCoresPerSocket",
                                                  "config.hardware.memoryMB",
                                                  "config.firmware",
                                                  "config.bootOptions",
                                                  "config.uuid",
                                                  "config.instanceUuid",
                                                  "config.guestId",
                                                  "config.guestFullName",
                                                  "guest.guestFamily",
                                                  "guest.toolsRunningStatus",
                                                  "runtime.powerState",
                                                  "runtime.host",
                                                  "config.hardware.device",
                                                  "summary.config.tpmPresent"};
  return kPaths;
}

// "[datastore1] vm/vm.vmdk" -> "datastore1"; "" for a path without the bracketed datastore.
std::string DatastoreOfPath(std::string_view path) {
  if (path.empty() || path.front() != '[') {
    return {};
  }
  const size_t close = path.find(']');
  return close == std::string_view::npos ? std::string() : std::string(path.substr(1, close - 1));
}

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

model::VmDescription DescriptionFromProperties(const std::map<std::string, pugi::xml_node>& props,
                                               const std::string& id,
                                               const std::string& inventory_path,
                                               std::vector<PendingPortgroup>& pending) {
  auto node = [&props](const std::string& path) {
    auto it = props.find(path);
    return it == props.end() ? pugi::xml_node() : it->second;
  };
  auto text = [&node](const std::string& path) { return std::string(node(path).child_value()); };
  model::VmDescription d;
  d.name = text("name");
  d.id = id;
  d.inventory_path = inventory_path;
  d.cpus = std::max(1, node("config.hardware.numCPU").text().as_int(1));
  d.cores_per_socket = std::max(1, node("config.hardware.numCoresPerSocket").text().as_int(1));
  if (d.cpus % d.cores_per_socket != 0) {
    d.cores_per_socket = 1;  // an inconsistent topology: keep the vCPU count, one core each
  }
  // vSphere's memoryMB is in MiB (the reference writes it as SI megabytes).
  d.memory_mib = node("config.hardware.memoryMB").text().as_ullong(0);
  d.firmware = core::EqualsIgnoreCase(text("config.firmware"), "efi") ? model::Firmware::kEfi
                                                                      : model::Firmware::kBios;
  d.secure_boot =
      std::string_view(node("config.bootOptions").child_value("efiSecureBootEnabled")) == "true";
  d.tpm = text("summary.config.tpmPresent") == "true";
  d.bios_uuid = text("config.uuid");
  d.instance_uuid = text("config.instanceUuid");
  d.guest_os = text("config.guestId");
  d.guest_os_full_name = text("config.guestFullName");
  d.guest_os_type = text("guest.guestFamily");  // reported only while VMware Tools run
  d.tools_running = text("guest.toolsRunningStatus") == "guestToolsRunning";
  d.host = text("runtime.host");  // a HostSystem moref value; the caller resolves its name
  const std::string power = text("runtime.powerState");
  d.power_state = power == "poweredOn"    ? model::PowerState::kOn
                  : power == "poweredOff" ? model::PowerState::kOff
                  : power == "suspended"  ? model::PowerState::kSuspended
                                          : model::PowerState::kUnknown;

  // Devices: controllers first (a controller may come after its disks), then disks and NICs.
  std::map<std::string, std::string> controller_by_key;
  const pugi::xml_node devices = node("config.hardware.device");
  for (auto dev : devices.children()) {
    if (const std::string name = ControllerName(XsiType(dev)); !name.empty()) {
      controller_by_key[dev.child_value("key")] = name;
    }
  }
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
      nic.network = backing.child("port").child_value("portgroupKey");
      pending.push_back(PendingPortgroup{d.nics.size(), nic.network});
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
