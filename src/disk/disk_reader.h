#pragma once

// DiskReader: the decoded raw stream of one disk, whatever its container format. Decoders
// (raw, VMDK, qcow2) implement it; decorators (HashingReader) wrap it. A reader is used by one
// thread at a time and read once, front to back.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "disk/byte_source.h"
#include "disk/digest.h"

namespace vmimport::disk {

class DiskReader {
 public:
  virtual ~DiskReader() = default;
  //! Size of the raw disk in bytes, known before the first Read.
  virtual uint64_t VirtualSize() const = 0;
  //! Fills up to out.size() bytes of the raw disk, continuing where the previous call stopped.
  //! Returns 0 only after all VirtualSize() bytes were returned and the input was checked to be
  //! complete: a stream that ends early is an error, never a short disk. Errors: kCorruptData (the
  //! message names the input offset), kUnsupported, kCancelled once `stop` is requested, and the
  //! source's I/O errors. After an error the reader only repeats that error.
  [[nodiscard]] virtual Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) = 0;
  //! Short format name for logs and metrics: "raw", "vmdk-streamOptimized", "qcow2", ...
  virtual std::string_view FormatName() const = 0;
  //! Digests the source declared and that were checked against its bytes (a vSphere NFC
  //! manifest, an OVA manifest, Glance's os_hash_value), once the whole disk passed; empty
  //! before and when nobody could check. Decorators forward it.
  virtual std::vector<VerifiedDigest> SourceDigests() const { return {}; }
};
using DiskReaderPtr = std::unique_ptr<DiskReader>;

//! The bookkeeping every decoder shares: position, stop checks, the sticky error, and the rule
//! that the last bytes are handed out only once the input is known to be complete.
class PositionedDiskReader : public DiskReader {
 public:
  explicit PositionedDiskReader(uint64_t virtual_size) : virtual_size_(virtual_size) {}

  // disk::DiskReader
  uint64_t VirtualSize() const final { return virtual_size_; }
  Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) final;

 protected:
  //! Produces 1..out.size() bytes of the disk at `position` (out.size() never passes the end).
  [[nodiscard]] virtual Result<size_t> ReadAtPosition(std::stop_token stop, uint64_t position,
                                                      std::span<std::byte> out) = 0;
  //! Called once, before the bytes that reach VirtualSize() are handed out: checks what must
  //! follow the data (an end-of-stream marker, no trailing garbage).
  [[nodiscard]] virtual Status CheckComplete(std::stop_token stop) {
    (void)stop;
    return core::Ok();
  }
  uint64_t position() const { return position_; }

 private:
  uint64_t virtual_size_ = 0;
  uint64_t position_ = 0;
  bool complete_checked_ = false;
  std::optional<core::Error> error_;
};

//! A raw image: the source's bytes are the disk. A size that is not a multiple of 512 is padded
//! with zeros to the next sector, as qemu does (a disk is made of sectors).
class RawReader final : public PositionedDiskReader {
 public:
  explicit RawReader(RandomAccessSourcePtr source);

  // disk::DiskReader
  std::string_view FormatName() const override { return "raw"; }

 protected:
  // disk::PositionedDiskReader
  Result<size_t> ReadAtPosition(std::stop_token stop, uint64_t position,
                                std::span<std::byte> out) override;

 private:
  RandomAccessSourcePtr source_;
};

//! A raw image arriving as a stream of `size` bytes; a stream that ends early or runs past
//! `size` is kCorruptData. Padded to a whole sector like RawReader.
class RawStreamReader final : public PositionedDiskReader {
 public:
  RawStreamReader(ByteSourcePtr source, uint64_t size);

  // disk::DiskReader
  std::string_view FormatName() const override { return "raw"; }

 protected:
  // disk::PositionedDiskReader
  Result<size_t> ReadAtPosition(std::stop_token stop, uint64_t position,
                                std::span<std::byte> out) override;
  Status CheckComplete(std::stop_token stop) override;

 private:
  ByteSourcePtr source_;
  uint64_t data_size_;
};

//! `size` rounded up to a whole number of 512-byte sectors.
uint64_t RoundUpToSector(uint64_t size);

//! Reads `reader` to its end, handing each chunk to `consume` (which may fail the copy).
//! `buffer_bytes` bounds the memory used.
template <class Consume>
Status DrainDisk(std::stop_token stop, DiskReader& reader, size_t buffer_bytes, Consume&& consume);

}  // namespace vmimport::disk

#include "disk/disk_reader_inl.h"
