#include "disk/qcow2.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <vector>

#include "disk/bytes.h"
#include "disk/checked_cast.h"
#include "disk/table_cache.h"
#include "disk/vmdk_header.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

namespace {

constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ULL;  // bits 9..55
constexpr uint64_t kL2Compressed = uint64_t{1} << 62;
constexpr uint64_t kL2Zero = 1;
constexpr uint64_t kMaxL1Bytes = uint64_t{32} << 20;  // qemu's QCOW_MAX_L1_SIZE
constexpr uint64_t kKnownIncompatible = kQcow2IncompatDirty | kQcow2IncompatCorrupt |
                                        kQcow2IncompatDataFile | kQcow2IncompatCompression |
                                        kQcow2IncompatExtendedL2;
constexpr size_t kTableWindowEntries = 4096;
constexpr uint32_t kSubclusters = 32;

std::string Hex(uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  do {
    s.insert(s.begin(), kDigits[v & 0xf]);
    v >>= 4;
  } while (v != 0);
  return "0x" + s;
}

class Qcow2Reader final : public PositionedDiskReader {
 public:
  Qcow2Reader(RandomAccessSourcePtr source, Qcow2Header header, InflateBackend backend)
      : PositionedDiskReader(header.size),
        source_(std::move(source)),
        header_(header),
        l1_(*source_, kTableWindowEntries),
        l2_(*source_, kTableWindowEntries),
        inflater_(backend) {
    l1_.Select(header_.l1_table_offset, header_.l1_size, 8);
  }

  // disk::DiskReader
  std::string_view FormatName() const override { return "qcow2"; }

 protected:
  // disk::PositionedDiskReader
  Result<size_t> ReadAtPosition(std::stop_token stop, uint64_t position,
                                std::span<std::byte> out) override;

 private:
  struct L2Entry {
    uint64_t entry = 0;
    uint64_t bitmap = 0;
    uint64_t file_offset = 0;  // where the entry is, for messages
  };
  // The L2 entry of virtual cluster `cluster`; nullopt when its L2 table is unallocated.
  Result<std::optional<L2Entry>> LookUp(std::stop_token stop, uint64_t cluster);
  Status LoadCompressed(std::stop_token stop, uint64_t cluster, const L2Entry& e);
  Result<size_t> ReadSubclusters(std::stop_token stop, uint64_t position, const L2Entry& e,
                                 std::span<std::byte> out);
  tl::unexpected<core::Error> Corrupt(uint64_t offset, const std::string& what) const {
    return MakeError(ErrorCode::kCorruptData, "qcow2: " + source_->Name() + ": offset " +
                                                  std::to_string(offset) + ": " + what);
  }

  RandomAccessSourcePtr source_;
  Qcow2Header header_;
  TableWindow l1_;
  TableWindow l2_;
  Inflater inflater_;
  std::unique_ptr<ZstdDecompressor> zstd_;
  std::vector<std::byte> compressed_;
  std::vector<std::byte> cluster_;
  std::optional<uint64_t> cluster_index_;  // which cluster cluster_ holds
};

Result<std::optional<Qcow2Reader::L2Entry>> Qcow2Reader::LookUp(std::stop_token stop,
                                                                uint64_t cluster) {
  const uint64_t l2_entries = header_.l2_entries();
  const uint64_t l1_index = cluster / l2_entries;
  auto l1 = l1_.Entry(stop, l1_index);
  if (!l1) {
    return MakeError(l1.error());
  }
  const uint64_t l1_entry_offset = header_.l1_table_offset + l1_index * 8;
  const uint64_t l2_offset = LoadBe64(*l1) & kOffsetMask;
  if (l2_offset == 0) {
    return std::optional<L2Entry>();
  }
  const uint64_t l2_bytes = header_.cluster_size();
  if ((l2_offset & (header_.cluster_size() - 1)) != 0) {
    return Corrupt(l1_entry_offset, "L1 entry " + std::to_string(l1_index) + ": L2 table offset " +
                                        Hex(l2_offset) + " is not cluster-aligned");
  }
  if (l2_offset > source_->Size() || l2_bytes > source_->Size() - l2_offset) {
    return Corrupt(l1_entry_offset, "L1 entry " + std::to_string(l1_index) + ": L2 table at " +
                                        std::to_string(l2_offset) +
                                        " lies past the end of the file (" +
                                        std::to_string(source_->Size()) + " bytes)");
  }
  l2_.Select(l2_offset, l2_entries, CheckedCast<size_t>(header_.l2_entry_bytes()));
  const uint64_t l2_index = cluster % l2_entries;
  auto l2 = l2_.Entry(stop, l2_index);
  if (!l2) {
    return MakeError(l2.error());
  }
  L2Entry e;
  e.entry = LoadBe64(*l2);
  e.bitmap = header_.extended_l2() ? LoadBe64(*l2 + 8) : 0;
  e.file_offset = l2_offset + l2_index * header_.l2_entry_bytes();
  return std::optional<L2Entry>(e);
}

Status Qcow2Reader::LoadCompressed(std::stop_token stop, uint64_t cluster, const L2Entry& e) {
  const uint32_t shift = 62 - (header_.cluster_bits - 8);
  const uint64_t offset_mask = (uint64_t{1} << shift) - 1;
  const uint64_t sectors_mask = (uint64_t{1} << (header_.cluster_bits - 8)) - 1;
  const uint64_t host = e.entry & offset_mask;
  const uint64_t sectors = ((e.entry >> shift) & sectors_mask) + 1;
  const uint64_t csize = sectors * kSectorSize - (host & (kSectorSize - 1));
  if (host == 0 || host >= source_->Size()) {
    return Corrupt(e.file_offset, "compressed cluster " + std::to_string(cluster) + " at " +
                                      std::to_string(host) + " lies outside the file (" +
                                      std::to_string(source_->Size()) + " bytes)");
  }
  // The sector count rounds up: the last cluster's data may end before the file does.
  const uint64_t readable = std::min(csize, source_->Size() - host);
  compressed_.resize(CheckedCast<size_t>(readable));
  auto st = source_->ReadAt(stop, host, compressed_);
  if (!st) {
    return st;
  }
  cluster_.resize(CheckedCast<size_t>(header_.cluster_size()));
  cluster_index_.reset();
  Result<size_t> produced = size_t{0};
  if (header_.compression_type == 1) {
    if (!zstd_) {
      zstd_ = std::make_unique<ZstdDecompressor>();
    }
    produced = zstd_->DecompressExactly(compressed_, cluster_);
  } else {
    produced = inflater_.Inflate(compressed_, cluster_, DeflateWrapper::kRaw);
  }
  if (!produced) {
    return Corrupt(e.file_offset, "compressed cluster " + std::to_string(cluster) + " at " +
                                      std::to_string(host) + ": " + produced.error().message);
  }
  if (*produced != cluster_.size()) {
    return Corrupt(e.file_offset, "compressed cluster " + std::to_string(cluster) + " at " +
                                      std::to_string(host) + " decompressed to " +
                                      std::to_string(*produced) + " bytes, expected " +
                                      std::to_string(cluster_.size()));
  }
  cluster_index_ = cluster;
  return core::Ok();
}

Result<size_t> Qcow2Reader::ReadSubclusters(std::stop_token stop, uint64_t position,
                                            const L2Entry& e, std::span<std::byte> out) {
  const uint64_t cluster_size = header_.cluster_size();
  const uint64_t sub_size = cluster_size / kSubclusters;
  const uint64_t in_cluster = position & (cluster_size - 1);
  const uint64_t host = e.entry & kOffsetMask;
  const auto alloc = static_cast<uint32_t>(e.bitmap & 0xffffffffu);
  const auto zero = static_cast<uint32_t>(e.bitmap >> 32);
  if ((alloc & zero) != 0) {
    return Corrupt(e.file_offset, "extended L2 entry marks subclusters both allocated and zero");
  }
  if (alloc != 0 && host == 0) {
    return Corrupt(e.file_offset, "extended L2 entry has allocated subclusters but no cluster");
  }
  // One run of subclusters in the same state.
  auto sub = CheckedCast<uint32_t>(in_cluster / sub_size);
  const bool allocated = ((alloc >> sub) & 1u) != 0;
  uint32_t end = sub + 1;
  while (end < kSubclusters && (((alloc >> end) & 1u) != 0) == allocated) {
    ++end;
  }
  const auto n = CheckedCast<size_t>(std::min<uint64_t>(out.size(), end * sub_size - in_cluster));
  if (!allocated) {
    std::memset(out.data(), 0, n);  // zero or unallocated: both read as zeros without a backing
    return n;
  }
  auto st = source_->ReadAt(stop, host + in_cluster, out.first(n));
  if (!st) {
    return Corrupt(e.file_offset,
                   "data cluster at " + std::to_string(host) + ": " + st.error().message);
  }
  return n;
}

Result<size_t> Qcow2Reader::ReadAtPosition(std::stop_token stop, uint64_t position,
                                           std::span<std::byte> out) {
  const uint64_t cluster_size = header_.cluster_size();
  const uint64_t cluster = position >> header_.cluster_bits;
  const uint64_t in_cluster = position & (cluster_size - 1);
  auto looked_up = LookUp(stop, cluster);
  if (!looked_up) {
    return MakeError(looked_up.error());
  }
  if (!*looked_up) {
    // No L2 table: zeros to the end of the range it would cover.
    const uint64_t span_bytes = header_.l2_entries() * cluster_size;
    const uint64_t left = span_bytes - position % span_bytes;
    const auto n = CheckedCast<size_t>(std::min<uint64_t>(out.size(), left));
    std::memset(out.data(), 0, n);
    return n;
  }
  const L2Entry e = **looked_up;
  if ((e.entry & kL2Compressed) != 0) {
    if (cluster_index_ != cluster) {
      auto st = LoadCompressed(stop, cluster, e);
      if (!st) {
        return MakeError(st.error());
      }
    }
    const auto n = CheckedCast<size_t>(std::min<uint64_t>(out.size(), cluster_size - in_cluster));
    std::memcpy(out.data(), cluster_.data() + in_cluster, n);
    return n;
  }
  if (header_.extended_l2()) {
    return ReadSubclusters(stop, position, e, out);
  }
  const uint64_t host = e.entry & kOffsetMask;
  const auto first = CheckedCast<size_t>(std::min<uint64_t>(out.size(), cluster_size - in_cluster));
  if ((e.entry & kL2Zero) != 0) {
    if (header_.version < 3) {
      return Corrupt(e.file_offset, "zero flag in a version 2 image");
    }
    std::memset(out.data(), 0, first);
    return first;
  }
  if (host == 0) {
    std::memset(out.data(), 0, first);
    return first;
  }
  if ((host & (cluster_size - 1)) != 0) {
    return Corrupt(e.file_offset, "data cluster offset " + Hex(host) + " is not cluster-aligned");
  }
  // Extend over following clusters stored right after this one (same L2 table).
  size_t n = first;
  uint64_t next_cluster = cluster + 1;
  uint64_t next_host = host + cluster_size;
  while (n < out.size() && next_cluster % header_.l2_entries() != 0) {
    auto next = LookUp(stop, next_cluster);
    if (!next) {
      return MakeError(next.error());
    }
    if (!*next || ((*next)->entry & (kL2Compressed | kL2Zero)) != 0 ||
        ((*next)->entry & kOffsetMask) != next_host) {
      break;
    }
    n = CheckedCast<size_t>(std::min<uint64_t>(out.size(), n + cluster_size));
    ++next_cluster;
    next_host += cluster_size;
  }
  auto st = source_->ReadAt(stop, host + in_cluster, out.first(n));
  if (!st) {
    return Corrupt(e.file_offset,
                   "data cluster at " + std::to_string(host) + ": " + st.error().message);
  }
  return n;
}

}  // namespace

core::Result<Qcow2Header> ParseQcow2Header(std::span<const std::byte> head, uint64_t file_size,
                                           std::string_view name) {
  const std::string prefix = "qcow2: " + std::string(name) + ": ";
  auto corrupt = [&](uint64_t offset, const std::string& what) {
    return MakeError(ErrorCode::kCorruptData,
                     prefix + "header offset " + std::to_string(offset) + ": " + what);
  };
  auto unsupported = [&](const std::string& what) {
    return MakeError(ErrorCode::kUnsupported, prefix + what);
  };
  if (head.size() < 72) {
    return corrupt(head.size(), "truncated header (" + std::to_string(head.size()) + " bytes)");
  }
  const std::byte* p = head.data();
  if (LoadBe32(p) != 0x514649fbu) {
    return corrupt(0, "bad magic");
  }
  Qcow2Header h;
  h.version = LoadBe32(p + 4);
  h.backing_file_offset = LoadBe64(p + 8);
  h.backing_file_size = LoadBe32(p + 16);
  h.cluster_bits = LoadBe32(p + 20);
  h.size = LoadBe64(p + 24);
  h.crypt_method = LoadBe32(p + 32);
  h.l1_size = LoadBe32(p + 36);
  h.l1_table_offset = LoadBe64(p + 40);
  if (h.version != 2 && h.version != 3) {
    return unsupported("version " + std::to_string(h.version) + " (supported: 2 and 3)");
  }
  h.header_length = 72;
  if (h.version == 3) {
    if (head.size() < 104) {
      return corrupt(head.size(), "truncated version 3 header");
    }
    h.incompatible_features = LoadBe64(p + 72);
    h.header_length = LoadBe32(p + 100);
    if (h.header_length < 104) {
      return corrupt(100, "header_length " + std::to_string(h.header_length) + " below 104");
    }
    if (h.header_length > 104) {
      if (head.size() < 105) {
        return corrupt(head.size(),
                       "truncated header (header_length " + std::to_string(h.header_length) + ")");
      }
      h.compression_type = static_cast<uint8_t>(p[104]);
    }
  }
  if (h.cluster_bits < 9 || h.cluster_bits > 21) {
    return corrupt(20, "cluster_bits " + std::to_string(h.cluster_bits) + " outside 9..21");
  }
  if (h.version == 3 && h.header_length > h.cluster_size()) {
    return corrupt(
        100, "header_length " + std::to_string(h.header_length) + " exceeds the cluster size");
  }
  if (h.backing_file_offset != 0) {
    return unsupported("image has a backing file: import a flattened image (qemu-img convert)");
  }
  if (h.crypt_method != 0) {
    return unsupported("encrypted image (crypt_method " + std::to_string(h.crypt_method) + ")");
  }
  if ((h.incompatible_features & kQcow2IncompatCorrupt) != 0) {
    return MakeError(ErrorCode::kCorruptData,
                     prefix + "header offset 72: image is marked corrupt (run qemu-img check)");
  }
  if ((h.incompatible_features & kQcow2IncompatDataFile) != 0) {
    return unsupported("external data file");
  }
  if ((h.incompatible_features & ~kKnownIncompatible) != 0) {
    return unsupported("unknown incompatible features " +
                       Hex(h.incompatible_features & ~kKnownIncompatible));
  }
  if ((h.incompatible_features & kQcow2IncompatCompression) != 0) {
    if (h.header_length <= 104) {
      return corrupt(100, "compression type feature without the compression_type field");
    }
    if (h.compression_type > 1) {
      return unsupported("compression type " + std::to_string(h.compression_type));
    }
  } else if (h.compression_type != 0) {
    return corrupt(104, "compression_type " + std::to_string(h.compression_type) +
                            " without the compression type feature bit");
  }
  if (h.extended_l2() && h.cluster_bits < 14) {
    return corrupt(20, "extended L2 entries need clusters of at least 16 KiB");
  }
  if (h.size > kMaxVirtualSize) {
    return unsupported("virtual size " + std::to_string(h.size) + " exceeds the limit");
  }
  const uint64_t bytes_per_l1 = h.l2_entries() * h.cluster_size();
  const uint64_t l1_needed = (h.size + bytes_per_l1 - 1) / bytes_per_l1;
  if (h.l1_size < l1_needed) {
    return corrupt(36, "l1_size " + std::to_string(h.l1_size) + " too small for the disk (" +
                           std::to_string(l1_needed) + " entries needed)");
  }
  if (uint64_t{h.l1_size} * 8 > kMaxL1Bytes) {
    return corrupt(36, "l1_size " + std::to_string(h.l1_size) + " exceeds the limit");
  }
  if (h.l1_size > 0) {
    if ((h.l1_table_offset & (h.cluster_size() - 1)) != 0) {
      return corrupt(40, "l1_table_offset " + Hex(h.l1_table_offset) + " is not cluster-aligned");
    }
    if (h.l1_table_offset > file_size || uint64_t{h.l1_size} * 8 > file_size - h.l1_table_offset) {
      return corrupt(40, "L1 table (" + std::to_string(h.l1_size) + " entries at " +
                             std::to_string(h.l1_table_offset) +
                             ") lies past the end of the file (" + std::to_string(file_size) +
                             " bytes)");
    }
  }
  return h;
}

core::Result<DiskReaderPtr> OpenQcow2(std::stop_token stop, RandomAccessSourcePtr source,
                                      InflateBackend backend) {
  std::array<std::byte, kQcow2HeaderBytes> head{};
  const auto n = CheckedCast<size_t>(std::min<uint64_t>(head.size(), source->Size()));
  auto st = source->ReadAt(stop, 0, std::span<std::byte>(head).first(n));
  if (!st) {
    return MakeError(st.error());
  }
  auto header =
      ParseQcow2Header(std::span<const std::byte>(head).first(n), source->Size(), source->Name());
  if (!header) {
    return MakeError(header.error());
  }
  return DiskReaderPtr(std::make_unique<Qcow2Reader>(std::move(source), *header, backend));
}

}  // namespace vmimport::disk
