#pragma once

// Opening a disk image whatever its format: the format comes from the magic bytes (format.h),
// never from a file name.

#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>

#include "disk/byte_source.h"
#include "disk/disk_reader.h"
#include "disk/format.h"
#include "disk/inflate.h"
#include "disk/vmdk_descriptor.h"

namespace vmimport::disk {

struct OpenOptions {
  InflateBackend inflate_backend = kDefaultInflateBackend;
  //! What the source says a stream is (vSphere's NFC export and an OVF disk: kVmdkSparse; a
  //! Glance image of a Cinder volume: kRaw). OpenDiskStream refuses a declared image without
  //! any known magic with kCorruptData naming its first bytes, instead of taking it for raw
  //! bytes; a declared raw stream is raw whatever its magic. Unset: the magic alone decides.
  std::optional<DiskFormat> declared;
};

//! Opens an image readable at any offset. Descriptor extents are opened through `opener`
//! (nullptr: a descriptor is kUnsupported). Errors: those of the format's decoder; kUnsupported
//! for formats we recognise but do not read (VHD, VHDX, COWD).
[[nodiscard]] Result<DiskReaderPtr> OpenDisk(std::stop_token stop, RandomAccessSourcePtr source,
                                             ExtentFileOpener opener, OpenOptions options = {});

//! Opens a local image file; a descriptor's extents are resolved next to it.
[[nodiscard]] Result<DiskReaderPtr> OpenDiskFile(std::stop_token stop, const std::string& path,
                                                 OpenOptions options = {});

//! Opens an image arriving as a stream: a streamOptimized VMDK, or raw bytes when `raw_size`
//! is given (a raw stream has no header to say its size). Formats that need random access
//! (qcow2, monolithicSparse, descriptors) are kUnsupported. See OpenOptions::declared.
[[nodiscard]] Result<DiskReaderPtr> OpenDiskStream(std::stop_token stop, ByteSourcePtr source,
                                                   std::optional<uint64_t> raw_size,
                                                   OpenOptions options = {});

}  // namespace vmimport::disk
