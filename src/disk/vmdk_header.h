#pragma once

// The VMDK hosted sparse extent header ("Virtual Disk Format 5.0", section "Hosted Sparse Extent
// Header"; streamOptimized additions in "Stream-Optimized Compressed Sparse Extents").
// Little-endian, one 512-byte sector:
//
//    0  u32 magicNumber         'K' 'D' 'M' 'V' (0x564d444b)
//    4  u32 version             1, 2 or 3
//    8  u32 flags               bit 0: newline-detection bytes valid, bit 1: redundant grain
//                               table, bit 2: zeroed-grain GTE (entry 1 = zero grain),
//                               bit 16: compressed grains, bit 17: markers
//   12  u64 capacity            virtual size in sectors
//   20  u64 grainSize           sectors per grain (a power of two; 128 = 64 KiB in practice)
//   28  u64 descriptorOffset    sectors; embedded text descriptor, 0 if none
//   36  u64 descriptorSize      sectors
//   44  u32 numGTEsPerGT        grain table entries per grain table (512)
//   48  u64 rgdOffset           redundant grain directory, sectors
//   56  u64 gdOffset            grain directory, sectors; 0xffffffffffffffff (GD_AT_END): the
//                               real value is in the footer at the end of a stream
//   64  u64 overHead            sectors of metadata before the first grain
//   72  u8  uncleanShutdown
//   73  char singleEndLineChar '\n', nonEndLineChar ' ', doubleEndLineChar1 '\r', '\n' (76)
//   77  u16 compressAlgorithm   0 none, 1 deflate
//   79  u8  pad[433]
//
// streamOptimized markers (each starts on a sector boundary):
//   grain marker:    u64 lba (sectors), u32 size (> 0, compressed bytes), u8 data[size]; the
//                    whole is padded to the next sector boundary
//   metadata marker: u64 numSectors, u32 size (= 0), u32 type, u8 pad[496]; then numSectors
//                    sectors of metadata. type 0 end-of-stream, 1 grain table, 2 grain
//                    directory, 3 footer (one sector: a copy of this header with gdOffset set)

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/result.h"

namespace vmimport::disk {

inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint64_t kVmdkGdAtEnd = 0xffffffffffffffffULL;
//! Largest grain we decode: bounds the buffers of a stream (spec and every writer use 64 KiB).
inline constexpr uint64_t kVmdkMaxGrainSectors = 2048;  // 1 MiB
//! Largest virtual size any decoder accepts (1 PiB); beyond is kUnsupported.
inline constexpr uint64_t kMaxVirtualSize = uint64_t{1} << 50;

inline constexpr uint32_t kVmdkFlagNewlineTest = 1u << 0;
inline constexpr uint32_t kVmdkFlagRedundantGt = 1u << 1;
inline constexpr uint32_t kVmdkFlagZeroedGrainGte = 1u << 2;
inline constexpr uint32_t kVmdkFlagCompressed = 1u << 16;
inline constexpr uint32_t kVmdkFlagMarkers = 1u << 17;

inline constexpr uint32_t kVmdkMarkerEos = 0;
inline constexpr uint32_t kVmdkMarkerGrainTable = 1;
inline constexpr uint32_t kVmdkMarkerGrainDirectory = 2;
inline constexpr uint32_t kVmdkMarkerFooter = 3;

struct VmdkSparseHeader {
  uint32_t version = 0;
  uint32_t flags = 0;
  uint64_t capacity_sectors = 0;
  uint64_t grain_sectors = 0;
  uint64_t descriptor_offset_sectors = 0;
  uint64_t descriptor_size_sectors = 0;
  uint32_t gtes_per_gt = 0;
  uint64_t rgd_offset_sectors = 0;
  uint64_t gd_offset_sectors = 0;
  uint64_t overhead_sectors = 0;
  uint16_t compress_algorithm = 0;

  bool compressed() const { return compress_algorithm == 1; }
  bool has_markers() const { return (flags & kVmdkFlagMarkers) != 0; }
  bool gd_at_end() const { return gd_offset_sectors == kVmdkGdAtEnd; }
  bool zeroed_grain_gte() const { return (flags & kVmdkFlagZeroedGrainGte) != 0; }
  uint64_t grain_bytes() const { return grain_sectors * kSectorSize; }
  uint64_t capacity_bytes() const { return capacity_sectors * kSectorSize; }
};

//! Parses and checks one header sector (`sector` holds at least 512 bytes). `name` and `offset`
//! go into error messages ("vmdk: disk.vmdk: header at offset 0: ..."). kCorruptData for bad
//! magic, version, newline bytes, grain size or capacity overflow; kUnsupported for a grain above
//! kVmdkMaxGrainSectors, a capacity above kMaxVirtualSize or an unknown compression.
[[nodiscard]] core::Result<VmdkSparseHeader> ParseVmdkSparseHeader(
    std::span<const std::byte> sector, std::string_view name, uint64_t offset);

}  // namespace vmimport::disk
