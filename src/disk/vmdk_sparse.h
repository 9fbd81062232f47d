#pragma once

// VMDK hosted sparse extent read at random offsets (monolithicSparse files, SPARSE extents of a
// descriptor, and streamOptimized files whose grain directory can be found). Header layout in
// vmdk_header.h; tables per "Virtual Disk Format 5.0", "Grain Directories and Grain Tables":
//
//   grain directory (gdOffset, sectors): u32 LE per grain table = the table's sector, 0 = none;
//                   ceil(capacity / (grainSize * numGTEsPerGT)) entries
//   grain table:    numGTEsPerGT u32 LE = the grain's sector; 0 = unallocated (zero, no parent),
//                   1 = zeroed grain when the zeroed-grain-GTE flag is set
//   grain:          grainSize sectors of data; with compression, a grain marker (u64 lba,
//                   u32 size) and zlib/deflate data instead
//   GD_AT_END:      the directory location is in the footer: the last three sectors of the file
//                   are a footer marker, the footer (header copy) and the end-of-stream marker
//
// Memory: one window of the directory and of a grain table, plus one grain when compressed.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "disk/extent.h"
#include "disk/inflate.h"
#include "disk/table_cache.h"
#include "disk/vmdk_header.h"

namespace vmimport::disk {

//! Reads the footer of a streamOptimized file from its last 1536 bytes. kCorruptData when they
//! are not footer marker + footer + end-of-stream marker.
[[nodiscard]] Result<VmdkSparseHeader> ReadVmdkFooter(std::stop_token stop,
                                                      const RandomAccessSource& source);

//! Reads the embedded descriptor of a sparse extent (empty when it has none); at most 1 MiB.
[[nodiscard]] Result<std::string> ReadEmbeddedDescriptor(std::stop_token stop,
                                                         const RandomAccessSource& source,
                                                         const VmdkSparseHeader& header);

class VmdkSparseExtent final : public Extent {
 public:
  //! Reads and checks the header (and the footer when gdOffset is GD_AT_END) and the location of
  //! the grain directory. kCorruptData for bad headers or a directory outside the file,
  //! kUnsupported for compressed grains without markers.
  static Result<std::unique_ptr<VmdkSparseExtent>> Open(
      std::stop_token stop, RandomAccessSourcePtr source,
      InflateBackend backend = kDefaultInflateBackend);

  // disk::Extent
  uint64_t Size() const override { return header_.capacity_bytes(); }
  Result<size_t> ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out) override;

  const VmdkSparseHeader& header() const { return header_; }
  const RandomAccessSource& source() const { return *source_; }

 private:
  VmdkSparseExtent(RandomAccessSourcePtr source, VmdkSparseHeader header, InflateBackend backend);

  //! The grain table entry for grain `grain` (0 when its table is absent).
  [[nodiscard]] Result<uint32_t> GrainEntry(std::stop_token stop, uint64_t grain);
  [[nodiscard]] Status LoadCompressedGrain(std::stop_token stop, uint64_t grain, uint32_t sector);
  tl::unexpected<core::Error> Corrupt(uint64_t offset, const std::string& what) const;

  RandomAccessSourcePtr source_;
  VmdkSparseHeader header_;
  uint64_t gd_entries_ = 0;
  TableWindow gd_;
  TableWindow gt_;
  Inflater inflater_;
  std::vector<std::byte> compressed_;
  std::vector<std::byte> grain_;
  std::optional<uint64_t> grain_index_;  // which grain grain_ holds
};

}  // namespace vmimport::disk
