#pragma once

// Container format detection from magic bytes only; a file name never decides the format.
//
//   offset 0          format
//   "KDMV"            VMDK hosted sparse extent (monolithicSparse, streamOptimized, a SPARSE
//                     extent of a descriptor): VMDK 5.0 spec, "Hosted Sparse Extent Header"
//   "# Disk Descri"   VMDK text descriptor ("# Disk DescriptorFile"): spec, "The Descriptor File"
//   "QFI\xfb"         qcow2 (version 2 or 3; version 1 "qcow" is refused later)
//   "COWD"            VMDK ESXi 3 sparse (vmfsSparse): refused
//   "vhdxfile"        VHDX: refused
//   "conectix"        VHD (dynamic VHDs carry a footer copy at offset 0): refused
//   anything else     raw
//
// Refusing the formats we know but cannot decode keeps them from being served as "raw" bytes.
// LUKS is not among them on purpose: a guest-encrypted disk is legitimately raw.

#include <cstddef>
#include <span>
#include <string_view>

namespace vmimport::disk {

enum class DiskFormat {
  kRaw,
  kVmdkSparse,
  kVmdkDescriptor,
  kQcow2,
  kUnsupported,  // a known format we refuse (see UnsupportedFormatName)
};

//! How many leading bytes DetectFormat looks at; give it at least this many when the input has
//! them (fewer is fine for tiny inputs).
inline constexpr size_t kDetectBytes = 512;

DiskFormat DetectFormat(std::span<const std::byte> head);
std::string_view DiskFormatName(DiskFormat format);
//! For kUnsupported: which format it is ("vhdx", ...); empty otherwise.
std::string_view UnsupportedFormatName(std::span<const std::byte> head);

}  // namespace vmimport::disk
