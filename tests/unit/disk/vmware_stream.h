#pragma once

// Writes streamOptimized VMDKs the way VMware does (qemu-img writes its tables up front instead):
// header with GD_AT_END, grains with markers, a grain table marker after each table's grains,
// then the grain directory, the footer and the end-of-stream marker. Options bend the layout to
// make the broken streams the decoder must refuse.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace vmimport::disk::testing {

struct VmwareStreamOptions {
  bool capacity_in_header = true;
  bool gd_at_end = true;  //!< false: header carries a (fake) gdOffset
  bool write_footer = true;
  bool write_eos = true;
  bool raw_deflate = false;  //!< grains as bare deflate instead of zlib
  bool swap_first_two_grains = false;
  std::optional<uint64_t> footer_capacity_sectors;  //!< override in the footer
  std::optional<uint64_t> extra_grain_lba;          //!< an extra grain marker at this lba
  bool truncate_first_grain_data = false;           //!< compress one byte less than a grain
  std::optional<uint32_t> extra_marker_type;        //!< a metadata marker of this type first
};

//! `data` is the raw disk (its size a multiple of 512); all-zero grains are left out.
std::vector<std::byte> MakeVmwareStream(const std::vector<std::byte>& data,
                                        const VmwareStreamOptions& options = {});

}  // namespace vmimport::disk::testing
