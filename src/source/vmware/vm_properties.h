#pragma once

// A VM's description from its vim25 properties: which properties Describe and the inventory
// scan read, and how they become a model::VmDescription. No network: the caller fetched them
// (one RetrieveProperties per VM for Describe, a paged PropertyCollector query for a listing).

#include <map>
#include <pugixml.hpp>
#include <string>
#include <vector>

#include "model/vm.h"

namespace vmimport::source::vmware {

//! The VirtualMachine properties a description needs (name, hardware, firmware, devices, power,
//! tools, parent for the inventory path).
const std::vector<std::string>& DescribePropertyPaths();

//! A NIC on a distributed port group whose name is not known yet: its network holds the
//! portgroup key until the caller resolves it.
struct PendingPortgroup {
  size_t nic_index = 0;
  std::string key;  //!< dvportgroup-12
};

//! Builds the description from `props` (property path -> its <val>); `id` is the VM's moref
//! value, `inventory_path` its /DC/vm/... path. NICs on distributed port groups are appended to
//! `pending` with their key as network; `host` holds the HostSystem moref value until the caller
//! resolves its name (ObjectNames). Never fails: a property that is absent leaves its
//! default (1 vCPU, BIOS, unknown power).
model::VmDescription DescriptionFromProperties(const std::map<std::string, pugi::xml_node>& props,
                                               const std::string& id,
                                               const std::string& inventory_path,
                                               std::vector<PendingPortgroup>& pending);

//! KubeVirt bus for a vSphere controller type name (as Describe reports it), like the reference:
//! pvscsi → sata (KubeVirt cannot express PVSCSI), lsilogic/lsilogicsas/buslogic → scsi,
//! sata/ide → sata, nvme → virtio, usb → usb; anything else → `fallback`.
std::string BusForController(const std::string& controller, const std::string& fallback);
//! KubeVirt NIC model for a vSphere card type: vmxnet* → virtio, e1000e, e1000, pcnet32 → pcnet.
std::string ModelForAdapter(const std::string& adapter);

}  // namespace vmimport::source::vmware
