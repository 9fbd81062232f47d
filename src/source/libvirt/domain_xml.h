#pragma once

// Pure translation of libvirt's domain and storage volume XML into the neutral model: no I/O,
// so that every rule (memory units, topology, firmware, buses, boot order, NIC networks, which
// disks can be streamed) is unit-tested. Element names follow libvirt's "Domain XML format" and
// "Storage volume XML" documents.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "model/vm.h"

namespace vmimport::source::libvirt {

//! Where one <disk device='disk'> of a domain reads its bytes from.
struct DiskSource {
  std::string type;                //!< <disk type=...>: "file", "block", "volume", "network", ...
  std::string device;              //!< "disk", "lun"
  std::string path;                //!< <source file=...> or <source dev=...>
  std::string pool;                //!< <source pool=...> (type volume)
  std::string volume;              //!< <source volume=...> (type volume)
  std::string driver_format;       //!< <driver type=...>: "raw", "qcow2", ...
  std::string target;              //!< <target dev=...>: "vda"
  bool has_backing_store = false;  //!< a non-empty <backingStore> (live XML of a running domain)
  //! Why this disk cannot be streamed (a LUN, a network disk, ...); empty when it can.
  std::string refusal;
};

//! A domain as its XML describes it: the model (disks without capacity yet: that comes from
//! their volumes) and, in the same order as vm.disks, where each disk's bytes are.
struct DomainXml {
  model::VmDescription vm;
  std::vector<DiskSource> disks;
};

//! Parses <domain>...</domain>. Only device='disk' and device='lun' disks become disks (cdrom
//! and floppy are media, not the VM's disks); a LUN, a network disk or a disk without a source
//! is kept with a `refusal`. Errors: kCorruptData when the XML does not parse or is not a domain,
//! or a memory/vcpu value is not a number or has an unknown unit.
core::Result<DomainXml> ParseDomainXml(std::string_view xml);

//! Bytes of libvirt's scaled integer `value` in `unit` (b, bytes, k/KiB, KB, M/MiB, MB, G/GiB,
//! GB, T/TiB, TB; empty = `default_unit`). Errors: kCorruptData naming the value.
core::Result<uint64_t> ScaledBytes(std::string_view value, std::string_view unit,
                                   std::string_view default_unit);

//! A storage volume as its XML describes it.
struct VolumeXml {
  std::string format;  //!< <target><format type=...>: "raw", "qcow2", ...
  uint64_t capacity_bytes = 0;
  std::string backing_path;  //!< <backingStore><path>: empty when the volume has none
};
core::Result<VolumeXml> ParseVolumeXml(std::string_view xml);

//! libvirt's <target bus=...> → the KubeVirt bus: virtio, scsi, sata (also for ide), usb;
//! anything else sata.
std::string DiskBusFor(std::string_view libvirt_bus);
//! libvirt's <model type=...> → the KubeVirt NIC model (virtio, e1000, e1000e, rtl8139, pcnet,
//! ne2k_pci); anything else (or none: libvirt's default for x86 is rtl8139) as KubeVirt knows it.
std::string NicModelFor(std::string_view libvirt_model);

}  // namespace vmimport::source::libvirt
