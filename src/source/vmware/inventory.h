#pragma once

// Inventory lookups and the VM description, over a logged-in Session.
//
// Finding a VM never guesses: a name is searched in the whole datacenter (or under spec.folder,
// nested), and more than one match is refused with every matching inventory path, because the
// wrong VM must never be powered off. A BIOS or instance UUID works as well.

#include <stop_token>
#include <string>
#include <vector>

#include "core/result.h"
#include "model/vm.h"
#include "source/vmware/session.h"

namespace vmimport::source::vmware {

struct VmRef {
  MoRef ref;
  std::string name;
  std::string inventory_path;  //!< /DC0/vm/team-a/web
};

class Inventory {
 public:
  explicit Inventory(Session& session) : session_(session) {}

  //! Every VM under `folder` (recursive), with names; paths are not filled.
  core::Result<std::vector<VmRef>> ListVms(std::stop_token stop, const MoRef& folder);
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

//! KubeVirt bus for a vSphere controller type name (as Describe reports it), like the reference:
//! pvscsi → sata (KubeVirt cannot express PVSCSI), lsilogic/lsilogicsas/buslogic → scsi,
//! sata/ide → sata, nvme → virtio, usb → usb; anything else → `fallback`.
std::string BusForController(const std::string& controller, const std::string& fallback);
//! KubeVirt NIC model for a vSphere card type: vmxnet* → virtio, e1000e, e1000, pcnet32 → pcnet.
std::string ModelForAdapter(const std::string& adapter);

}  // namespace vmimport::source::vmware
