#pragma once

// The OVF descriptor (DSP0243 1.x/2.x, as VMware, VirtualBox and others write it) parsed into the
// neutral model: CPUs, memory, firmware, disks (capacity, controller → bus, order), NICs
// (network names for the mapping, MACs where present). Plain data in, plain data out: no I/O.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "model/vm.h"

namespace vmimport::ovf {

//! One <References>/<File>.
struct FileReference {
  std::string id;    //!< ovf:id
  std::string href;  //!< ovf:href: the file's name inside the archive
  std::optional<uint64_t> size;
  std::string compression;  //!< ovf:compression ("gzip"): unsupported when set
  uint64_t chunk_size = 0;  //!< ovf:chunkSize: split files, unsupported when set
};

//! One <VirtualSystem>, described. Each disk's `location` is the href of its file in the archive
//! and its `id` the OVF diskId; disks come in the order of their Items, with boot_order 1, 2, ...
struct VirtualSystem {
  std::string id;  //!< ovf:id
  model::VmDescription vm;
};

struct Envelope {
  std::vector<FileReference> files;
  std::vector<VirtualSystem> systems;  //!< also those inside a VirtualSystemCollection

  const FileReference* FileByHref(std::string_view href) const;
};

//! Parses an OVF descriptor; `name` names it in errors. Errors: kCorruptData for XML that does not
//! parse or is not an Envelope, a disk Item naming no disk or file, sizes that do not parse or
//! overflow; kUnsupported for disks without a file, compressed or chunked files, and files
//! referenced by URL.
[[nodiscard]] core::Result<Envelope> ParseEnvelope(std::string_view xml, std::string_view name);

//! Multiplier of an OVF/CIM programmatic unit ("byte", "byte * 2^20", "byte * 1024",
//! "MegaBytes", "KB", "GiB", ...). nullopt when the unit is not a byte unit or overflows.
std::optional<uint64_t> ParseByteUnits(std::string_view units);

//! KubeVirt bus for an OVF controller (normalized name, see envelope.cc): like the vSphere path,
//! PVSCSI goes to sata (KubeVirt cannot express it), other SCSI to scsi.
std::string BusForController(std::string_view controller);
//! KubeVirt NIC model for an OVF ResourceSubType ("VmxNet3", "E1000", ...); "" when unknown.
std::string ModelForAdapter(std::string_view adapter);

}  // namespace vmimport::ovf
