#include "source/vmware/inventory_scan.h"

#include <algorithm>
#include <memory>
#include <set>
#include <unordered_map>

#include "source/vmware/session.h"
#include "source/vmware/vm_properties.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;
using core::MakeError;

MoRef RefOf(pugi::xml_node node) {
  return MoRef{node.attribute("type").as_string(), node.child_value()};
}

std::string Trim(std::string s) {
  while (!s.empty() && s.front() == '/') {
    s.erase(0, 1);
  }
  while (!s.empty() && s.back() == '/') {
    s.pop_back();
  }
  return s;
}

// One page: <returnval><token>..</token><objects><obj/><propSet/><missingSet/></objects>...
// (RetrieveResult); no <returnval> at all when nothing matched. Returns the token ("" on the
// last page) or the fault of an object whose properties are missing for an expired session.
core::Result<std::string> ReadPage(const SoapResponse& response,
                                   const std::function<void(const ObjectContentView&)>& on_object,
                                   size_t& objects) {
  const pugi::xml_node rv = response.ReturnVal();
  for (auto obj : rv.children("objects")) {
    for (auto missing : obj.children("missingSet")) {
      const pugi::xml_node outer = missing.child("fault");
      SoapFault f = ParseMethodFault(outer.child("fault"), outer.child_value("localizedMessage"));
      if (f.type == "NotAuthenticated") {
        return MakeError(FaultError("vsphere RetrievePropertiesEx", f));
      }
    }
    ObjectContentView view;
    view.obj = RefOf(obj.child("obj"));
    for (auto prop : obj.children("propSet")) {
      view.props[prop.child_value("name")] = prop.child("val");
    }
    ++objects;
    on_object(view);
  }
  return std::string(rv.child_value("token"));
}

struct FolderNode {
  std::string name;
  std::string parent;  // moref value
};

}  // namespace

std::string VmFolderPath(const std::string& datacenter, const std::string& folder) {
  std::string path = "/" + Trim(datacenter) + "/vm";
  if (const std::string f = Trim(folder); !f.empty()) {
    path += "/" + f;
  }
  return path;
}

core::Status RetrievePropertiesPaged(std::stop_token stop, Session& session,
                                     const std::string& spec_set, int page_size,
                                     const std::function<void(const ObjectContentView&)>& on_object,
                                     int& pages) {
  const std::string collector = session.content().property_collector.Xml("_this");
  auto first =
      session.soap().Call(stop, "RetrievePropertiesEx",
                          collector + spec_set + "<options><maxObjects>" +
                              std::to_string(std::max(1, page_size)) + "</maxObjects></options>");
  if (!first) {
    return MakeError(first.error());
  }
  ++pages;
  size_t objects = 0;
  auto token = ReadPage(*first, on_object, objects);
  while (token && !token->empty()) {
    if (stop.stop_requested()) {
      token = MakeError(ErrorCode::kCancelled, "vsphere: listing stopped");
      break;
    }
    const std::string current = *token;
    auto next = session.soap().Call(stop, "ContinueRetrievePropertiesEx",
                                    collector + "<token>" + XmlEscape(current) + "</token>");
    if (!next) {
      token = MakeError(next.error());
      (void)session.soap().Call(stop, "CancelRetrievePropertiesEx",
                                collector + "<token>" + XmlEscape(current) + "</token>");
      break;
    }
    ++pages;
    token = ReadPage(*next, on_object, objects);
  }
  if (!token) {
    return MakeError(token.error());
  }
  return {};
}

std::map<std::string, std::string> ObjectNames(std::stop_token stop, Session& session,
                                               const std::string& type,
                                               const std::set<std::string>& values) {
  std::map<std::string, std::string> names;
  if (values.empty()) {
    return names;
  }
  std::string spec = "<specSet><propSet><type>" + type + "</type><pathSet>name</pathSet></propSet>";
  for (const auto& value : values) {
    spec += "<objectSet>" + MoRef{type, value}.Xml("obj") + "</objectSet>";
  }
  spec += "</specSet>";
  auto r = session.soap().Call(stop, "RetrieveProperties",
                               session.content().property_collector.Xml("_this") + spec);
  if (!r) {
    return names;
  }
  for (auto obj : r->Body().children("returnval")) {
    for (auto prop : obj.children("propSet")) {
      if (std::string_view(prop.child_value("name")) == "name") {
        names[obj.child_value("obj")] = prop.child_value("val");
      }
    }
  }
  return names;
}

core::Result<VmListing> ScanVms(std::stop_token stop, Session& session, const MoRef& root,
                                const std::string& root_path, const ScanOptions& options) {
  const uint64_t calls_before = session.soap().calls();
  VmListing listing;
  auto view = session.soap().Call(
      stop, "CreateContainerView",
      session.content().view_manager.Xml("_this") + root.Xml("container") +
          "<type>Folder</type><type>VirtualMachine</type><recursive>true</recursive>");
  if (!view) {
    return MakeError(view.error().Wrap("vsphere: list VMs"));
  }
  const MoRef view_ref = RefOf(view->ReturnVal());
  std::string spec =
      "<specSet><propSet><type>Folder</type><pathSet>name</pathSet><pathSet>parent</pathSet>"
      "</propSet><propSet><type>VirtualMachine</type>";
  if (options.describe) {
    for (const auto& p : DescribePropertyPaths()) {
      spec += "<pathSet>" + p + "</pathSet>";
    }
  } else {
    spec += "<pathSet>name</pathSet><pathSet>parent</pathSet>";
  }
  spec += "</propSet><objectSet>" + view_ref.Xml("obj") +
          "<skip>true</skip><selectSet xsi:type=\"TraversalSpec\"><name>traverseEntities</name>"
          "<type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet>"
          "</specSet>";

  std::unordered_map<std::string, FolderNode> folders;
  std::vector<std::string> vm_parents;                       // parallel to listing.vms
  std::vector<std::pair<size_t, PendingPortgroup>> pending;  // vm index, NIC
  auto on_object = [&](const ObjectContentView& obj) {
    auto prop = [&obj](const char* path) {
      auto it = obj.props.find(path);
      return it == obj.props.end() ? pugi::xml_node() : it->second;
    };
    if (obj.obj.type == "Folder") {
      folders[obj.obj.value] = FolderNode{prop("name").child_value(), prop("parent").child_value()};
      return;
    }
    if (obj.obj.type != "VirtualMachine") {
      return;
    }
    std::vector<PendingPortgroup> nics;
    listing.vms.push_back(DescriptionFromProperties(obj.props, obj.obj.value, "", nics));
    vm_parents.emplace_back(prop("parent").child_value());
    for (auto& n : nics) {
      pending.emplace_back(listing.vms.size() - 1, std::move(n));
    }
  };
  auto scanned = RetrievePropertiesPaged(stop, session, spec, options.page_size, on_object,
                                         listing.stats.pages);
  (void)session.soap().Call(stop, "DestroyView", view_ref.Xml("_this"));
  if (!scanned) {
    return MakeError(scanned.error().Wrap("vsphere: list VMs"));
  }

  // Inventory paths from the folder tree in memory.
  std::unordered_map<std::string, std::string> folder_paths;
  std::function<std::string(const std::string&, int)> folder_path = [&](const std::string& value,
                                                                        int depth) -> std::string {
    if (value == root.value) {
      return root_path;
    }
    auto known = folder_paths.find(value);
    if (known != folder_paths.end()) {
      return known->second;
    }
    auto it = folders.find(value);
    if (it == folders.end() || depth > 64) {
      return "";  // outside the answer: not under root
    }
    const std::string parent = folder_path(it->second.parent, depth + 1);
    std::string path = parent.empty() ? "" : parent + "/" + it->second.name;
    folder_paths[value] = path;
    return path;
  };
  for (size_t i = 0; i < listing.vms.size(); ++i) {
    const std::string parent = folder_path(vm_parents[i], 0);
    listing.vms[i].inventory_path =
        (parent.empty() ? root_path : parent) + "/" + listing.vms[i].name;
  }

  // Distributed port group and host names: one call each for every key the VMs name.
  std::set<std::string> keys;
  for (const auto& [vm, nic] : pending) {
    keys.insert(nic.key);
  }
  const auto pg_names = ObjectNames(stop, session, "DistributedVirtualPortgroup", keys);
  for (const auto& [vm, nic] : pending) {
    auto it = pg_names.find(nic.key);
    if (it != pg_names.end() && !it->second.empty()) {
      listing.vms[vm].nics[nic.nic_index].network = it->second;
    }
  }
  std::set<std::string> hosts;
  for (const auto& vm : listing.vms) {
    if (!vm.host.empty()) {
      hosts.insert(vm.host);
    }
  }
  const auto host_names = ObjectNames(stop, session, "HostSystem", hosts);
  for (auto& vm : listing.vms) {
    auto it = host_names.find(vm.host);
    if (it != host_names.end() && !it->second.empty()) {
      vm.host = it->second;
    }
  }
  std::sort(listing.vms.begin(), listing.vms.end(),
            [](const auto& a, const auto& b) { return a.inventory_path < b.inventory_path; });
  listing.stats.objects = folders.size() + listing.vms.size();
  listing.stats.soap_calls = session.soap().calls() - calls_before;
  return listing;
}

}  // namespace vmimport::source::vmware
