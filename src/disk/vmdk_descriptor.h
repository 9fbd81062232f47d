#pragma once

// The VMDK text descriptor ("Virtual Disk Format 5.0", section "The Descriptor File"): either a
// small file of its own (monolithicFlat, twoGbMaxExtentFlat/Sparse, vmfs) or embedded in a sparse
// extent. Line-oriented ASCII, '#' starts a comment, NUL ends an embedded one:
//
//   # Disk DescriptorFile
//   version=1
//   CID=fffffffe
//   parentCID=ffffffff                 ffffffff: no parent; anything else is a delta disk
//   createType="monolithicFlat"
//   parentFileNameHint="base.vmdk"     delta disks only
//   # Extent description
//   RW 4192256 FLAT "disk-flat.vmdk" 0      access, size in sectors, type, "file", offset
//   RW 4192256 SPARSE "disk-s002.vmdk"      (sectors, FLAT/VMFS only)
//   RW 1024 ZERO                            no file
//   ddb.adapterType = "lsilogic"            disk database: ignored here
//
// Extent file names are relative to the descriptor's directory; a name that is absolute or goes
// up ("..") is refused, since descriptors come from untrusted sources.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "disk/byte_source.h"
#include "disk/disk_reader.h"
#include "disk/inflate.h"

namespace vmimport::disk {

enum class VmdkExtentType { kFlat, kSparse, kZero };

struct VmdkExtentLine {
  VmdkExtentType type = VmdkExtentType::kFlat;
  uint64_t size_sectors = 0;
  std::string file_name;        //!< empty for ZERO
  uint64_t offset_sectors = 0;  //!< FLAT only
};

struct VmdkDescriptor {
  std::string create_type;
  std::string parent_cid;
  std::string parent_file_name_hint;
  std::vector<VmdkExtentLine> extents;

  //! True when the descriptor names a parent (a delta disk).
  bool HasParent() const;
  //! Sum of the extents, in bytes.
  uint64_t SizeBytes() const;
};

//! Parses descriptor text (stops at the first NUL). `name` goes into messages. kCorruptData for a
//! malformed extent line (naming the line), no extents, or sizes that overflow; kUnsupported for
//! extent types or access modes we do not read (VMFSSPARSE, SESPARSE, VMFSRDM, VMFSRAW,
//! NOACCESS) and totals above kMaxVirtualSize.
[[nodiscard]] core::Result<VmdkDescriptor> ParseVmdkDescriptor(std::string_view text,
                                                               std::string_view name);

//! Opens an extent file named by a descriptor.
using ExtentFileOpener =
    std::function<core::Result<RandomAccessSourcePtr>(std::string_view file_name)>;

//! Opens names relative to `directory`; refuses absolute names and ".." components
//! (kPermissionDenied).
ExtentFileOpener DirectoryExtentOpener(std::string directory);

//! The disk described by `descriptor`: its extents read front to back, each opened when the
//! read reaches it. Every extent file is opened and checked (size, header) once here, so that a
//! missing or short file fails before the first byte. kUnsupported for a delta disk.
[[nodiscard]] core::Result<DiskReaderPtr> OpenVmdkDescriptor(
    std::stop_token stop, const VmdkDescriptor& descriptor, ExtentFileOpener opener,
    InflateBackend backend = kDefaultInflateBackend);

}  // namespace vmimport::disk
