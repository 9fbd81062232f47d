#include "disk/vmdk_stream.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "disk/bytes.h"
#include "disk/checked_cast.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

namespace {

constexpr size_t kGrainMarkerHeaderBytes = 12;  // u64 lba + u32 size
// Largest grain directory read from the overHead (qemu-img layout): 8 TiB disks at 64 KiB grains.
constexpr uint64_t kMaxOverheadDirectoryBytes = uint64_t{1} << 20;

}  // namespace

Result<std::unique_ptr<StreamOptimizedVmdk>> StreamOptimizedVmdk::Open(
    std::stop_token stop, ByteSourcePtr source, StreamOptimizedOptions options) {
  std::array<std::byte, kSectorSize> sector{};
  auto got = ReadFull(stop, *source, sector);
  if (!got) {
    return MakeError(got.error());
  }
  if (*got < sector.size()) {
    return MakeError(ErrorCode::kCorruptData, "vmdk: " + options.name +
                                                  ": truncated header: stream ended at offset " +
                                                  std::to_string(*got));
  }
  auto header = ParseVmdkSparseHeader(sector, options.name, 0);
  if (!header) {
    return MakeError(header.error());
  }
  if (!header->compressed() || !header->has_markers()) {
    return MakeError(ErrorCode::kUnsupported,
                     "vmdk: " + options.name +
                         ": sparse extent without compressed grains and markers is not "
                         "streamOptimized; it needs random access");
  }
  uint64_t capacity_sectors = header->capacity_sectors;
  if (options.footer_capacity_sectors) {
    if (capacity_sectors != 0 && capacity_sectors != *options.footer_capacity_sectors) {
      return MakeError(ErrorCode::kCorruptData,
                       "vmdk: " + options.name + ": header offset 12: capacity " +
                           std::to_string(capacity_sectors) + " sectors disagrees with footer " +
                           std::to_string(*options.footer_capacity_sectors));
    }
    capacity_sectors = *options.footer_capacity_sectors;
  }
  if (capacity_sectors == 0 && header->gd_at_end()) {
    return MakeError(ErrorCode::kUnsupported,
                     "vmdk: " + options.name +
                         ": capacity is only in the footer (GD_AT_END) and the source cannot seek");
  }
  if (capacity_sectors > kMaxVirtualSize / kSectorSize) {
    return MakeError(ErrorCode::kUnsupported, "vmdk: " + options.name + ": capacity " +
                                                  std::to_string(capacity_sectors) +
                                                  " sectors exceeds the limit");
  }
  if (header->overhead_sectors == 0 || header->overhead_sectors > kMaxVirtualSize / kSectorSize) {
    return MakeError(ErrorCode::kCorruptData,
                     "vmdk: " + options.name + ": header at offset 0: overHead " +
                         std::to_string(header->overhead_sectors) + " sectors out of range");
  }
  const uint64_t capacity_bytes = capacity_sectors * kSectorSize;
  return std::unique_ptr<StreamOptimizedVmdk>(
      new StreamOptimizedVmdk(std::move(source), *header, capacity_bytes, std::move(options)));
}

StreamOptimizedVmdk::StreamOptimizedVmdk(ByteSourcePtr source, VmdkSparseHeader header,
                                         uint64_t capacity_bytes, StreamOptimizedOptions options)
    : PositionedDiskReader(capacity_bytes),
      source_(std::move(source)),
      header_(header),
      capacity_bytes_(capacity_bytes),
      options_(std::move(options)),
      // A grain marker must fit the window whole; deflate never needs 2x (stored blocks add 5
      // bytes per 64 KiB), so anything larger is corrupt.
      input_(*source_,
             CheckedCast<size_t>(std::max<uint64_t>(
                 options_.read_window_bytes,
                 RoundUpToSector(kGrainMarkerHeaderBytes + 2 * header.grain_bytes() + 1024) +
                     kSectorSize)),
             kSectorSize),
      inflater_(options_.inflate_backend),
      max_compressed_bytes_(2 * header.grain_bytes() + 1024) {}

tl::unexpected<core::Error> StreamOptimizedVmdk::Corrupt(uint64_t offset,
                                                         const std::string& what) const {
  return MakeError(ErrorCode::kCorruptData,
                   "vmdk: " + options_.name + ": offset " + std::to_string(offset) + ": " + what);
}

Status StreamOptimizedVmdk::SkipTo(std::stop_token stop, uint64_t offset) {
  const uint64_t skip = offset - input_.offset();
  auto skipped = input_.Skip(stop, skip);
  if (!skipped) {
    return MakeError(skipped.error());
  }
  if (*skipped < skip) {
    return Corrupt(input_.offset(), "stream ended inside the metadata before the first grain (" +
                                        std::to_string(header_.overhead_sectors) +
                                        " sectors of overHead)");
  }
  return core::Ok();
}

Status StreamOptimizedVmdk::ScanOverhead(std::stop_token stop) {
  const uint64_t first_marker = header_.overhead_sectors * kSectorSize;
  if (first_marker < input_.offset()) {
    return Corrupt(0, "overHead ends inside the header");
  }
  // qemu-img writes its grain directory and tables here, before the grains, and no
  // end-of-stream marker after them: count the grains the tables promise so that a stream cut
  // at a grain boundary is still caught. Tables elsewhere (VMware: GD_AT_END) are not needed.
  const uint64_t sectors_per_table = header_.grain_sectors * header_.gtes_per_gt;
  const uint64_t gd_entries =
      (header_.capacity_sectors + sectors_per_table - 1) / sectors_per_table;
  const uint64_t gd_begin = header_.gd_offset_sectors * kSectorSize;
  const uint64_t gd_bytes = gd_entries * 4;
  const bool gd_inside = !header_.gd_at_end() && header_.gd_offset_sectors > 0 &&
                         header_.gd_offset_sectors < header_.overhead_sectors &&
                         gd_begin >= input_.offset() && gd_bytes <= kMaxOverheadDirectoryBytes &&
                         gd_bytes <= first_marker - gd_begin;
  if (!gd_inside) {
    return SkipTo(stop, first_marker);
  }
  auto st = SkipTo(stop, gd_begin);
  if (!st) {
    return st;
  }
  std::vector<uint64_t> tables;  // file offsets of the grain tables
  for (uint64_t done = 0; done < gd_bytes;) {
    const auto want = CheckedCast<size_t>(std::min<uint64_t>(gd_bytes - done, 65536));
    auto got = input_.Fill(stop, want);
    if (!got) {
      return MakeError(got.error());
    }
    if (*got < want) {
      return Corrupt(input_.offset(), "stream ended inside the grain directory");
    }
    for (size_t i = 0; i + 4 <= want; i += 4) {
      const uint32_t sector = LoadLe32(input_.Data().data() + i);
      if (sector != 0) {
        tables.push_back(uint64_t{sector} * kSectorSize);
      }
    }
    input_.Consume(want);
    done += want;
  }
  std::sort(tables.begin(), tables.end());
  const uint64_t table_bytes = uint64_t{header_.gtes_per_gt} * 4;
  uint64_t promised = 0;
  for (uint64_t table : tables) {
    if (table < input_.offset() || table > first_marker || table_bytes > first_marker - table) {
      // Not laid out as qemu-img does: rely on the end-of-stream marker.
      return SkipTo(stop, first_marker);
    }
    st = SkipTo(stop, table);
    if (!st) {
      return st;
    }
    auto got = input_.Fill(stop, CheckedCast<size_t>(table_bytes));
    if (!got) {
      return MakeError(got.error());
    }
    if (*got < table_bytes) {
      return Corrupt(input_.offset(), "stream ended inside a grain table");
    }
    for (size_t i = 0; i < table_bytes; i += 4) {
      const uint32_t entry = LoadLe32(input_.Data().data() + i);
      if (entry != 0 && !(entry == 1 && header_.zeroed_grain_gte())) {
        ++promised;
      }
    }
    input_.Consume(CheckedCast<size_t>(table_bytes));
  }
  promised_grains_ = promised;
  return SkipTo(stop, first_marker);
}

Status StreamOptimizedVmdk::ParseNextGrain(std::stop_token stop) {
  if (!overhead_skipped_) {
    auto st = ScanOverhead(stop);
    if (!st) {
      return st;
    }
    overhead_skipped_ = true;
  }
  for (;;) {
    const uint64_t marker_offset = input_.offset();
    auto avail = input_.Fill(stop, kSectorSize);
    if (!avail) {
      return MakeError(avail.error());
    }
    if (*avail == 0) {
      if (promised_grains_ && *promised_grains_ == decoded_grains_) {
        // qemu-img's layout: no end-of-stream marker, but every grain its tables promise came.
        return EndOfStream();
      }
      return Corrupt(marker_offset,
                     "stream ended without an end-of-stream marker" +
                         (promised_grains_ ? " after " + std::to_string(decoded_grains_) + " of " +
                                                 std::to_string(*promised_grains_) + " grains"
                                           : std::string()));
    }
    if (*avail < kSectorSize) {
      return Corrupt(marker_offset, "truncated marker (" + std::to_string(*avail) + " bytes)");
    }
    const std::byte* p = input_.Data().data();
    const uint64_t value = LoadLe64(p);
    const uint32_t size = LoadLe32(p + 8);

    if (size != 0) {
      // Grain marker: value is the grain's first sector.
      if (size > max_compressed_bytes_) {
        return Corrupt(marker_offset, "grain marker: compressed size " + std::to_string(size) +
                                          " exceeds the limit " +
                                          std::to_string(max_compressed_bytes_));
      }
      if (value % header_.grain_sectors != 0) {
        return Corrupt(marker_offset, "grain marker: lba " + std::to_string(value) +
                                          " is not on a grain boundary");
      }
      if (value >= capacity_bytes_ / kSectorSize) {
        return Corrupt(marker_offset,
                       "grain marker: lba " + std::to_string(value) + " is past the capacity of " +
                           std::to_string(capacity_bytes_ / kSectorSize) + " sectors");
      }
      const uint64_t grain_offset = value * kSectorSize;
      if (grain_offset < min_next_grain_) {
        return Corrupt(marker_offset, "grain marker: lba " + std::to_string(value) +
                                          " is out of order (grains must increase)");
      }
      const auto total =
          CheckedCast<size_t>(RoundUpToSector(kGrainMarkerHeaderBytes + uint64_t{size}));
      auto have = input_.Fill(stop, total);
      if (!have) {
        return MakeError(have.error());
      }
      if (*have < total) {
        return Corrupt(marker_offset, "truncated grain: stream ended after " +
                                          std::to_string(*have) + " of " + std::to_string(total) +
                                          " bytes");
      }
      next_known_ = true;
      next_grain_offset_ = grain_offset;
      next_grain_size_ = size;
      next_marker_offset_ = marker_offset;
      min_next_grain_ = grain_offset + header_.grain_bytes();
      return core::Ok();
    }

    // Metadata marker: value is the number of sectors that follow.
    const uint32_t type = LoadLe32(p + 12);
    input_.Consume(kSectorSize);
    if (value > kMaxVirtualSize / kSectorSize) {
      return Corrupt(marker_offset,
                     "metadata marker: " + std::to_string(value) + " sectors out of range");
    }
    switch (type) {
      case kVmdkMarkerEos:
        if (promised_grains_ && *promised_grains_ != decoded_grains_) {
          // (An all-zero sector reads as this marker: zeros where grains were is no end.)
          return Corrupt(marker_offset, "end-of-stream marker after " +
                                            std::to_string(decoded_grains_) + " of " +
                                            std::to_string(*promised_grains_) + " grains");
        }
        return EndOfStream();
      case kVmdkMarkerFooter: {
        auto st = ParseFooter(stop, marker_offset, value);
        if (!st) {
          return st;
        }
        continue;
      }
      case kVmdkMarkerGrainTable:
      case kVmdkMarkerGrainDirectory: {
        // The tables repeat what the grain markers said; skip them.
        const uint64_t bytes = value * kSectorSize;
        auto skipped = input_.Skip(stop, bytes);
        if (!skipped) {
          return MakeError(skipped.error());
        }
        if (*skipped < bytes) {
          return Corrupt(marker_offset, "truncated metadata: stream ended after " +
                                            std::to_string(*skipped) + " of " +
                                            std::to_string(bytes) + " bytes");
        }
        continue;
      }
      default: return Corrupt(marker_offset, "unknown marker type " + std::to_string(type));
    }
  }
}

Status StreamOptimizedVmdk::EndOfStream() {
  end_of_stream_ = true;
  next_known_ = true;
  next_grain_offset_ = capacity_bytes_;
  return core::Ok();
}

Status StreamOptimizedVmdk::ParseFooter(std::stop_token stop, uint64_t marker_offset,
                                        uint64_t num_sectors) {
  if (num_sectors < 1) {
    return Corrupt(marker_offset, "footer marker without a footer sector");
  }
  const uint64_t footer_offset = input_.offset();
  auto avail = input_.Fill(stop, kSectorSize);
  if (!avail) {
    return MakeError(avail.error());
  }
  if (*avail < kSectorSize) {
    return Corrupt(footer_offset, "truncated footer");
  }
  auto footer =
      ParseVmdkSparseHeader(input_.Data().first(kSectorSize), options_.name, footer_offset);
  if (!footer) {
    return MakeError(footer.error());
  }
  if (footer->capacity_sectors * kSectorSize != capacity_bytes_) {
    return Corrupt(footer_offset, "footer capacity " + std::to_string(footer->capacity_sectors) +
                                      " sectors disagrees with the capacity in use (" +
                                      std::to_string(capacity_bytes_ / kSectorSize) + ")");
  }
  if (footer->grain_sectors != header_.grain_sectors) {
    return Corrupt(footer_offset, "footer grain size " + std::to_string(footer->grain_sectors) +
                                      " disagrees with the header (" +
                                      std::to_string(header_.grain_sectors) + ")");
  }
  input_.Consume(kSectorSize);
  if (num_sectors > 1) {
    const uint64_t rest = (num_sectors - 1) * kSectorSize;
    auto skipped = input_.Skip(stop, rest);
    if (!skipped) {
      return MakeError(skipped.error());
    }
    if (*skipped < rest) {
      return Corrupt(footer_offset, "truncated footer");
    }
  }
  footer_seen_ = true;
  return core::Ok();
}

Result<size_t> StreamOptimizedVmdk::DecodeGrain(std::span<std::byte> out) {
  const uint64_t needed =
      std::min<uint64_t>(header_.grain_bytes(), capacity_bytes_ - next_grain_offset_);
  const auto data = input_.Data().subspan(kGrainMarkerHeaderBytes, next_grain_size_);
  auto produced = inflater_.Inflate(data, out.first(CheckedCast<size_t>(header_.grain_bytes())),
                                    DeflateWrapper::kAuto);
  if (!produced) {
    return Corrupt(next_marker_offset_, "grain at lba " +
                                            std::to_string(next_grain_offset_ / kSectorSize) +
                                            ": " + produced.error().message);
  }
  if (*produced < needed) {
    return Corrupt(next_marker_offset_, "grain at lba " +
                                            std::to_string(next_grain_offset_ / kSectorSize) +
                                            " decompressed to " + std::to_string(*produced) +
                                            " bytes, expected " + std::to_string(needed));
  }
  input_.Consume(CheckedCast<size_t>(RoundUpToSector(kGrainMarkerHeaderBytes + next_grain_size_)));
  next_known_ = false;
  ++decoded_grains_;
  return CheckedCast<size_t>(needed);
}

Result<size_t> StreamOptimizedVmdk::ReadAtPosition(std::stop_token stop, uint64_t position,
                                                   std::span<std::byte> out) {
  size_t done = 0;
  while (done < out.size()) {
    const uint64_t at = position + done;
    const std::span<std::byte> rest = out.subspan(done);
    // 1. What is left of a grain decoded into grain_.
    if (grain_valid_ > 0 && at >= grain_offset_ && at < grain_offset_ + grain_valid_) {
      const auto skip = CheckedCast<size_t>(at - grain_offset_);
      const size_t n = std::min(rest.size(), grain_valid_ - skip);
      std::memcpy(rest.data(), grain_.data() + skip, n);
      done += n;
      continue;
    }
    // 2. Find the next grain.
    if (!next_known_) {
      if (stop.stop_requested()) {
        return CancelledError();
      }
      auto st = ParseNextGrain(stop);
      if (!st) {
        return MakeError(st.error());
      }
    }
    // 3. Zeros up to it.
    if (at < next_grain_offset_) {
      const auto n = CheckedCast<size_t>(std::min<uint64_t>(rest.size(), next_grain_offset_ - at));
      std::memset(rest.data(), 0, n);
      done += n;
      continue;
    }
    // 4. The grain itself: straight into the caller's span when a whole grain fits.
    if (end_of_stream_ || at != next_grain_offset_) {
      return MakeError(ErrorCode::kInternal, "vmdk: " + options_.name +
                                                 ": decoder lost its place at disk offset " +
                                                 std::to_string(at));
    }
    const uint64_t grain_bytes = header_.grain_bytes();
    if (rest.size() >= grain_bytes) {
      auto n = DecodeGrain(rest);
      if (!n) {
        return MakeError(n.error());
      }
      done += *n;
      continue;
    }
    if (grain_.size() < grain_bytes) {
      grain_.resize(CheckedCast<size_t>(grain_bytes));
    }
    grain_offset_ = next_grain_offset_;
    auto n = DecodeGrain(grain_);
    if (!n) {
      grain_valid_ = 0;
      return MakeError(n.error());
    }
    grain_valid_ = *n;
  }
  return done;
}

Status StreamOptimizedVmdk::CheckComplete(std::stop_token stop) {
  // Past the last byte of the disk only metadata may follow, up to the end-of-stream marker.
  while (!end_of_stream_) {
    if (next_known_) {
      return Corrupt(next_marker_offset_, "grain past the end of the disk");
    }
    auto st = ParseNextGrain(stop);
    if (!st) {
      return st;
    }
  }
  if (header_.gd_at_end() && !footer_seen_) {
    return Corrupt(input_.offset(), "end-of-stream without the footer a GD_AT_END header needs");
  }
  return core::Ok();
}

}  // namespace vmimport::disk
