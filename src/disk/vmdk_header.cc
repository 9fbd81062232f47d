#include "disk/vmdk_header.h"

#include <bit>

#include "disk/bytes.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

core::Result<VmdkSparseHeader> ParseVmdkSparseHeader(std::span<const std::byte> sector,
                                                     std::string_view name, uint64_t offset) {
  const std::string where =
      "vmdk: " + std::string(name) + ": header at offset " + std::to_string(offset) + ": ";
  auto corrupt = [&](const std::string& what) {
    return MakeError(ErrorCode::kCorruptData, where + what);
  };
  if (sector.size() < kSectorSize) {
    return corrupt("truncated (" + std::to_string(sector.size()) + " bytes)");
  }
  const std::byte* p = sector.data();
  if (LoadLe32(p) != 0x564d444bu) {
    return corrupt("bad magic (not KDMV)");
  }
  VmdkSparseHeader h;
  h.version = LoadLe32(p + 4);
  h.flags = LoadLe32(p + 8);
  h.capacity_sectors = LoadLe64(p + 12);
  h.grain_sectors = LoadLe64(p + 20);
  h.descriptor_offset_sectors = LoadLe64(p + 28);
  h.descriptor_size_sectors = LoadLe64(p + 36);
  h.gtes_per_gt = LoadLe32(p + 44);
  h.rgd_offset_sectors = LoadLe64(p + 48);
  h.gd_offset_sectors = LoadLe64(p + 56);
  h.overhead_sectors = LoadLe64(p + 64);
  h.compress_algorithm = LoadLe16(p + 77);

  if (h.version < 1 || h.version > 3) {
    return MakeError(ErrorCode::kUnsupported,
                     where + "version " + std::to_string(h.version) + " (supported: 1 to 3)");
  }
  if ((h.flags & kVmdkFlagNewlineTest) != 0 &&
      (p[73] != std::byte{'\n'} || p[74] != std::byte{' '} || p[75] != std::byte{'\r'} ||
       p[76] != std::byte{'\n'})) {
    return corrupt("newline-detection bytes altered (file transferred in text mode?)");
  }
  if (h.grain_sectors == 0 || !std::has_single_bit(h.grain_sectors)) {
    return corrupt("grain size " + std::to_string(h.grain_sectors) +
                   " sectors is not a power of two");
  }
  if (h.grain_sectors > kVmdkMaxGrainSectors) {
    return MakeError(ErrorCode::kUnsupported,
                     where + "grain size " + std::to_string(h.grain_sectors) +
                         " sectors exceeds the limit " + std::to_string(kVmdkMaxGrainSectors));
  }
  if (h.capacity_sectors > kMaxVirtualSize / kSectorSize) {
    return MakeError(ErrorCode::kUnsupported, where + "capacity " +
                                                  std::to_string(h.capacity_sectors) +
                                                  " sectors exceeds the limit of " +
                                                  std::to_string(kMaxVirtualSize) + " bytes");
  }
  if (h.gtes_per_gt == 0 || h.gtes_per_gt > 4096) {
    return corrupt("numGTEsPerGT " + std::to_string(h.gtes_per_gt) + " out of range");
  }
  if (h.compress_algorithm > 1) {
    return MakeError(ErrorCode::kUnsupported,
                     where + "compression algorithm " + std::to_string(h.compress_algorithm));
  }
  return h;
}

}  // namespace vmimport::disk
