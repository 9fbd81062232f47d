#pragma once

// Inventory lookups and the VM description, over a logged-in Session.
//
// Finding a VM never guesses: a name is searched in the whole datacenter (or under spec.folder,
// nested), and more than one match is refused with every matching inventory path, because the
// wrong VM must never be powered off. A BIOS or instance UUID works as well. A name is looked up
// with one paged inventory scan (inventory_scan.h): paths come from memory, not from a walk up
// the tree per match.

#include <stop_token>
#include <string>
#include <vector>

#include "core/result.h"
#include "model/vm.h"
#include "source/vmware/session.h"
#include "source/vmware/vm_properties.h"

namespace vmimport::source::vmware {

struct VmRef {
  MoRef ref;
  std::string name;
  std::string inventory_path;  //!< /DC0/vm/team-a/web
};

class Inventory {
 public:
  explicit Inventory(Session& session) : session_(session) {}

  //! The datacenter's VM folder, or the folder `folder` under it ("a/b"); kNotFound otherwise.
  core::Result<MoRef> VmFolder(std::stop_token stop, const std::string& datacenter,
                               const std::string& folder);
  //! /DC/vm/.../name of any managed entity.
  core::Result<std::string> InventoryPath(std::stop_token stop, const MoRef& entity);

  //! Finds exactly one VM by name (under folder) or by BIOS/instance UUID. Errors: kNotFound
  //! ("no VM named x in datacenter DC0"), kInvalidArgument for an ambiguous name listing every
  //! matching inventory path.
  core::Result<VmRef> FindVm(std::stop_token stop, const std::string& datacenter,
                             const std::string& folder, const std::string& name_or_uuid);

  //! Hardware, firmware, disks, NICs, power and tools state.
  core::Result<model::VmDescription> Describe(std::stop_token stop, const VmRef& vm);

 private:
  Session& session_;
};

}  // namespace vmimport::source::vmware
