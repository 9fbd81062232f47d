#include "source/vmware/inventory.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "core/strings.h"
#include "source/vmware/inventory_scan.h"
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

}  // namespace

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
    auto all = ScanVms(stop, session_, *root, VmFolderPath(datacenter, folder),
                       ScanOptions{.describe = false, .page_size = kDefaultPageSize});
    if (!all) {
      return MakeError(all.error());
    }
    for (model::VmDescription& vm : all->vms) {
      if (vm.name == name_or_uuid) {
        matches.push_back(VmRef{MoRef{"VirtualMachine", vm.id}, vm.name, vm.inventory_path});
      }
    }
  }
  const std::string where =
      "datacenter " + datacenter + (folder.empty() ? "" : " under folder " + folder);
  if (matches.empty()) {
    return MakeError(ErrorCode::kNotFound, "vsphere: no VM named " + name_or_uuid + " in " + where);
  }
  for (VmRef& vm : matches) {
    if (!vm.inventory_path.empty()) {
      continue;
    }
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
  auto props = RetrieveProperties(stop, session_, vm.ref, DescribePropertyPaths());
  if (!props) {
    return MakeError(props.error().Wrap("vsphere: describe " + vm.inventory_path));
  }
  std::vector<PendingPortgroup> pending;
  model::VmDescription d =
      DescriptionFromProperties(props->values, vm.ref.value, vm.inventory_path, pending);
  std::map<std::string, std::string> dvpg_names;  // portgroup key -> name
  for (const PendingPortgroup& nic : pending) {
    if (!dvpg_names.contains(nic.key)) {
      auto pg = RetrieveProperties(stop, session_, MoRef{"DistributedVirtualPortgroup", nic.key},
                                   {"name"});
      dvpg_names[nic.key] = pg && !pg->Text("name").empty() ? pg->Text("name") : nic.key;
    }
    d.nics[nic.nic_index].network = dvpg_names[nic.key];
  }
  if (!d.host.empty()) {
    auto names = ObjectNames(stop, session_, "HostSystem", {d.host});
    if (auto it = names.find(d.host); it != names.end() && !it->second.empty()) {
      d.host = it->second;
    }
  }
  return d;
}

}  // namespace vmimport::source::vmware
