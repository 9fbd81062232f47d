#pragma once

// qcow2, versions 2 and 3, read front to back (QEMU's docs/interop/qcow2.txt: "Header",
// "Cluster mapping", "Compressed Clusters Descriptor", "Extended L2 Entries").
// Big-endian header:
//
//    0  u32 magic                   'Q' 'F' 'I' 0xfb
//    4  u32 version                 2 or 3
//    8  u64 backing_file_offset     0 = no backing file (anything else is refused)
//   16  u32 backing_file_size
//   20  u32 cluster_bits            9..21 (512 B .. 2 MiB clusters)
//   24  u64 size                    virtual size in bytes
//   32  u32 crypt_method            0 = none (encryption is refused)
//   36  u32 l1_size                 L1 entries
//   40  u64 l1_table_offset         cluster-aligned
//   48  u64 refcount_table_offset   ignored: reading needs no refcounts
//   56  u32 refcount_table_clusters
//   60  u32 nb_snapshots            ignored: the active L1 is read
//   64  u64 snapshots_offset
//  version 3 only:
//   72  u64 incompatible_features   bit 0 dirty, 1 corrupt (refused), 2 external data file
//                                   (refused), 3 compression type, 4 extended L2; others refused
//   80  u64 compatible_features
//   88  u64 autoclear_features
//   96  u32 refcount_order
//  100  u32 header_length           >= 104
//  104  u8  compression_type        0 zlib (raw deflate), 1 zstd; only if header_length > 104
//
// Mapping: virtual cluster c -> L1[c / l2_entries] -> L2 table -> L2[c % l2_entries].
//   L1 entry (u64): bits 9..55 L2 table offset (0 = unallocated), bit 63 "copied"
//   L2 entry (u64): bit 62 compressed, bit 63 copied;
//     standard:   bit 0 reads as zeros (v3), bits 9..55 host cluster offset (0 = unallocated)
//     compressed: x = 62 - (cluster_bits - 8); bits 0..x-1 host byte offset, bits x..61
//                 additional 512-byte sectors; the data may run past its last used byte
//   extended L2 (incompatible bit 4): each entry is followed by a u64 bitmap of 32 subclusters,
//     bits 0..31 allocated, bits 32..63 reads as zeros
// Unallocated clusters read as zeros (no backing file). Memory: a window of L1 and of one L2
// table, plus a cluster and its compressed form when compressed clusters occur.

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "disk/disk_reader.h"
#include "disk/inflate.h"

namespace vmimport::disk {

inline constexpr uint64_t kQcow2IncompatDirty = 1u << 0;
inline constexpr uint64_t kQcow2IncompatCorrupt = 1u << 1;
inline constexpr uint64_t kQcow2IncompatDataFile = 1u << 2;
inline constexpr uint64_t kQcow2IncompatCompression = 1u << 3;
inline constexpr uint64_t kQcow2IncompatExtendedL2 = 1u << 4;

//! Bytes ParseQcow2Header looks at.
inline constexpr size_t kQcow2HeaderBytes = 112;

struct Qcow2Header {
  uint32_t version = 0;
  uint64_t backing_file_offset = 0;
  uint32_t backing_file_size = 0;
  uint32_t cluster_bits = 0;
  uint64_t size = 0;
  uint32_t crypt_method = 0;
  uint32_t l1_size = 0;
  uint64_t l1_table_offset = 0;
  uint64_t incompatible_features = 0;
  uint32_t header_length = 0;
  uint8_t compression_type = 0;  // 0 zlib, 1 zstd

  uint64_t cluster_size() const { return uint64_t{1} << cluster_bits; }
  bool extended_l2() const { return (incompatible_features & kQcow2IncompatExtendedL2) != 0; }
  //! Bytes per L2 entry: 8, or 16 with extended L2.
  uint64_t l2_entry_bytes() const { return extended_l2() ? 16 : 8; }
  uint64_t l2_entries() const { return cluster_size() / l2_entry_bytes(); }
};

//! Parses and checks the header in `head` (the file's first bytes; fewer than 72, or than
//! header_length needs, is truncation) against a file of `file_size` bytes. kCorruptData names the
//! header field's offset; kUnsupported for backing files, encryption, external data files,
//! unknown features or compression types, and sizes above kMaxVirtualSize.
[[nodiscard]] core::Result<Qcow2Header> ParseQcow2Header(std::span<const std::byte> head,
                                                         uint64_t file_size, std::string_view name);

//! Opens a qcow2 image. Errors as ParseQcow2Header; reading reports corrupt tables or clusters
//! with the offset of the entry at fault.
[[nodiscard]] core::Result<DiskReaderPtr> OpenQcow2(
    std::stop_token stop, RandomAccessSourcePtr source,
    InflateBackend backend = kDefaultInflateBackend);

}  // namespace vmimport::disk
