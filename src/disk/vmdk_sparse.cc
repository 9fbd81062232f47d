#include "disk/vmdk_sparse.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "disk/bytes.h"
#include "disk/checked_cast.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

namespace {

constexpr uint64_t kMaxEmbeddedDescriptorBytes = uint64_t{1} << 20;
constexpr size_t kGrainMarkerHeaderBytes = 12;
constexpr size_t kTableWindowEntries = 4096;

}  // namespace

Result<VmdkSparseHeader> ReadVmdkFooter(std::stop_token stop, const RandomAccessSource& source) {
  const uint64_t size = source.Size();
  if (size < 4 * kSectorSize) {
    return MakeError(ErrorCode::kCorruptData,
                     "vmdk: " + source.Name() + ": offset " + std::to_string(size) +
                         ": file ends before the footer a GD_AT_END header needs");
  }
  const uint64_t at = size - 3 * kSectorSize;
  std::array<std::byte, 3 * kSectorSize> tail{};
  auto st = source.ReadAt(stop, at, tail);
  if (!st) {
    return MakeError(st.error());
  }
  auto is_marker = [&](size_t sector, uint32_t type) {
    const std::byte* p = tail.data() + sector * kSectorSize;
    return LoadLe32(p + 8) == 0 && LoadLe32(p + 12) == type;
  };
  if (!is_marker(0, kVmdkMarkerFooter) || !is_marker(2, kVmdkMarkerEos)) {
    return MakeError(ErrorCode::kCorruptData,
                     "vmdk: " + source.Name() + ": offset " + std::to_string(at) +
                         ": no footer marker, footer and end-of-stream marker at the end of the "
                         "file (truncated?)");
  }
  return ParseVmdkSparseHeader(std::span<const std::byte>(tail).subspan(kSectorSize, kSectorSize),
                               source.Name(), at + kSectorSize);
}

Result<std::string> ReadEmbeddedDescriptor(std::stop_token stop, const RandomAccessSource& source,
                                           const VmdkSparseHeader& header) {
  if (header.descriptor_offset_sectors == 0 || header.descriptor_size_sectors == 0) {
    return std::string();
  }
  if (header.descriptor_size_sectors > kMaxEmbeddedDescriptorBytes / kSectorSize ||
      header.descriptor_offset_sectors > source.Size() / kSectorSize) {
    return MakeError(ErrorCode::kCorruptData,
                     "vmdk: " + source.Name() + ": header offset 28: embedded descriptor (" +
                         std::to_string(header.descriptor_size_sectors) + " sectors at sector " +
                         std::to_string(header.descriptor_offset_sectors) + ") out of range");
  }
  std::string text(CheckedCast<size_t>(header.descriptor_size_sectors * kSectorSize), '\0');
  auto st = source.ReadAt(stop, header.descriptor_offset_sectors * kSectorSize,
                          std::as_writable_bytes(std::span<char>(text)));
  if (!st) {
    return MakeError(st.error());
  }
  text.resize(std::min(text.size(), text.find('\0')));
  return text;
}

Result<std::unique_ptr<VmdkSparseExtent>> VmdkSparseExtent::Open(std::stop_token stop,
                                                                 RandomAccessSourcePtr source,
                                                                 InflateBackend backend) {
  std::array<std::byte, kSectorSize> sector{};
  auto st = source->ReadAt(stop, 0, sector);
  if (!st) {
    return MakeError(st.error());
  }
  auto header = ParseVmdkSparseHeader(sector, source->Name(), 0);
  if (!header) {
    return MakeError(header.error());
  }
  if (header->gd_at_end()) {
    auto footer = ReadVmdkFooter(stop, *source);
    if (!footer) {
      return MakeError(footer.error());
    }
    if (footer->gd_at_end() || footer->grain_sectors != header->grain_sectors ||
        footer->gtes_per_gt != header->gtes_per_gt ||
        (header->capacity_sectors != 0 && footer->capacity_sectors != header->capacity_sectors)) {
      return MakeError(ErrorCode::kCorruptData,
                       "vmdk: " + source->Name() + ": offset " +
                           std::to_string(source->Size() - 2 * kSectorSize) +
                           ": footer disagrees with the header");
    }
    header = footer;
  }
  if (header->compressed() && !header->has_markers()) {
    return MakeError(ErrorCode::kUnsupported,
                     "vmdk: " + source->Name() + ": compressed grains without markers");
  }
  const uint64_t sectors_per_table = header->grain_sectors * header->gtes_per_gt;
  const uint64_t gd_entries =
      (header->capacity_sectors + sectors_per_table - 1) / sectors_per_table;
  const uint64_t file_size = source->Size();
  if (gd_entries > 0 &&
      (header->gd_offset_sectors == 0 || header->gd_offset_sectors > file_size / kSectorSize ||
       gd_entries * 4 > file_size - header->gd_offset_sectors * kSectorSize)) {
    return MakeError(ErrorCode::kCorruptData,
                     "vmdk: " + source->Name() + ": offset 56: grain directory (" +
                         std::to_string(gd_entries) + " entries at sector " +
                         std::to_string(header->gd_offset_sectors) + ") lies outside the file (" +
                         std::to_string(file_size) + " bytes)");
  }
  auto extent =
      std::unique_ptr<VmdkSparseExtent>(new VmdkSparseExtent(std::move(source), *header, backend));
  extent->gd_entries_ = gd_entries;
  return extent;
}

VmdkSparseExtent::VmdkSparseExtent(RandomAccessSourcePtr source, VmdkSparseHeader header,
                                   InflateBackend backend)
    : source_(std::move(source)),
      header_(header),
      gd_(*source_, kTableWindowEntries),
      gt_(*source_, kTableWindowEntries),
      inflater_(backend) {
  gd_.Select(header_.gd_offset_sectors * kSectorSize, 0, 4);
}

tl::unexpected<core::Error> VmdkSparseExtent::Corrupt(uint64_t offset,
                                                      const std::string& what) const {
  return MakeError(ErrorCode::kCorruptData,
                   "vmdk: " + source_->Name() + ": offset " + std::to_string(offset) + ": " + what);
}

Result<uint32_t> VmdkSparseExtent::GrainEntry(std::stop_token stop, uint64_t grain) {
  const uint64_t table = grain / header_.gtes_per_gt;
  gd_.Select(header_.gd_offset_sectors * kSectorSize, gd_entries_, 4);
  auto gd_entry = gd_.Entry(stop, table);
  if (!gd_entry) {
    return MakeError(gd_entry.error());
  }
  const uint32_t gt_sector = LoadLe32(*gd_entry);
  if (gt_sector == 0) {
    return uint32_t{0};
  }
  const uint64_t gt_offset = uint64_t{gt_sector} * kSectorSize;
  const uint64_t gt_bytes = uint64_t{header_.gtes_per_gt} * 4;
  if (gt_offset > source_->Size() || gt_bytes > source_->Size() - gt_offset) {
    return Corrupt(header_.gd_offset_sectors * kSectorSize + table * 4,
                   "grain table " + std::to_string(table) + " at offset " +
                       std::to_string(gt_offset) + " lies past the end of the file (" +
                       std::to_string(source_->Size()) + " bytes)");
  }
  gt_.Select(gt_offset, header_.gtes_per_gt, 4);
  auto gt_entry = gt_.Entry(stop, grain % header_.gtes_per_gt);
  if (!gt_entry) {
    return MakeError(gt_entry.error());
  }
  return LoadLe32(*gt_entry);
}

Status VmdkSparseExtent::LoadCompressedGrain(std::stop_token stop, uint64_t grain,
                                             uint32_t sector) {
  const uint64_t at = uint64_t{sector} * kSectorSize;
  std::array<std::byte, kGrainMarkerHeaderBytes> marker{};
  auto st = source_->ReadAt(stop, at, marker);
  if (!st) {
    return st;
  }
  const uint64_t lba = LoadLe64(marker.data());
  const uint32_t size = LoadLe32(marker.data() + 8);
  if (lba != grain * header_.grain_sectors) {
    return Corrupt(at, "grain marker says lba " + std::to_string(lba) + ", the grain table lba " +
                           std::to_string(grain * header_.grain_sectors));
  }
  const uint64_t limit = 2 * header_.grain_bytes() + 1024;
  if (size == 0 || size > limit) {
    return Corrupt(at, "grain marker: compressed size " + std::to_string(size) + " out of range");
  }
  compressed_.resize(size);
  st = source_->ReadAt(stop, at + kGrainMarkerHeaderBytes, compressed_);
  if (!st) {
    return st;
  }
  grain_.resize(CheckedCast<size_t>(header_.grain_bytes()));
  grain_index_.reset();
  auto produced = inflater_.Inflate(compressed_, grain_, DeflateWrapper::kAuto);
  if (!produced) {
    return Corrupt(at, "grain at lba " + std::to_string(lba) + ": " + produced.error().message);
  }
  const uint64_t needed =
      std::min(header_.grain_bytes(), header_.capacity_bytes() - grain * header_.grain_bytes());
  if (*produced < needed) {
    return Corrupt(at, "grain at lba " + std::to_string(lba) + " decompressed to " +
                           std::to_string(*produced) + " bytes, expected " +
                           std::to_string(needed));
  }
  std::memset(grain_.data() + *produced, 0, grain_.size() - *produced);
  grain_index_ = grain;
  return core::Ok();
}

Result<size_t> VmdkSparseExtent::ReadAt(std::stop_token stop, uint64_t offset,
                                        std::span<std::byte> out) {
  const uint64_t grain_bytes = header_.grain_bytes();
  const uint64_t grain = offset / grain_bytes;
  const uint64_t in_grain = offset % grain_bytes;
  auto entry = GrainEntry(stop, grain);
  if (!entry) {
    return MakeError(entry.error());
  }
  auto n = CheckedCast<size_t>(std::min<uint64_t>(out.size(), grain_bytes - in_grain));
  if (*entry == 0 || (*entry == 1 && header_.zeroed_grain_gte())) {
    std::memset(out.data(), 0, n);
    return n;
  }
  if (header_.compressed()) {
    if (grain_index_ != grain) {
      auto st = LoadCompressedGrain(stop, grain, *entry);
      if (!st) {
        return MakeError(st.error());
      }
    }
    std::memcpy(out.data(), grain_.data() + in_grain, n);
    return n;
  }
  // Plain grains: extend the read over following grains stored right after this one.
  uint64_t next_sector = uint64_t{*entry} + header_.grain_sectors;
  uint64_t next_grain = grain + 1;
  while (n < out.size() && next_grain % header_.gtes_per_gt != 0) {
    auto next = GrainEntry(stop, next_grain);
    if (!next) {
      return MakeError(next.error());
    }
    if (*next != next_sector) {
      break;
    }
    n = CheckedCast<size_t>(std::min<uint64_t>(out.size(), n + grain_bytes));
    next_sector += header_.grain_sectors;
    ++next_grain;
  }
  auto st = source_->ReadAt(stop, uint64_t{*entry} * kSectorSize + in_grain, out.first(n));
  if (!st) {
    return MakeError(st.error());
  }
  return n;
}

}  // namespace vmimport::disk
