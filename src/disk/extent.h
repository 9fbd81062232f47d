#pragma once

// Extents: pieces of a disk readable at any offset (a flat file region, a sparse VMDK extent,
// zeros), and ExtentListReader, which reads a list of them front to back as one disk. VMDK
// descriptors (monolithicFlat, twoGbMaxExtentFlat/Sparse) are such lists; a monolithicSparse
// file is a list of one.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <vector>

#include "disk/byte_source.h"
#include "disk/disk_reader.h"

namespace vmimport::disk {

class Extent {
 public:
  virtual ~Extent() = default;
  //! Decoded size in bytes.
  virtual uint64_t Size() const = 0;
  //! Produces 1..out.size() bytes at `offset` (offset < Size(), out.size() <= Size() - offset).
  //! Errors as DiskReader::Read.
  [[nodiscard]] virtual Result<size_t> ReadAt(std::stop_token stop, uint64_t offset,
                                              std::span<std::byte> out) = 0;
};
using ExtentPtr = std::unique_ptr<Extent>;

class ZeroExtent final : public Extent {
 public:
  explicit ZeroExtent(uint64_t size) : size_(size) {}
  // disk::Extent
  uint64_t Size() const override { return size_; }
  Result<size_t> ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out) override;

 private:
  uint64_t size_;
};

//! `size` bytes of `source` starting at `start`; Open checks that the source holds them.
class FlatExtent final : public Extent {
 public:
  static Result<std::unique_ptr<FlatExtent>> Open(RandomAccessSourcePtr source, uint64_t start,
                                                  uint64_t size);
  // disk::Extent
  uint64_t Size() const override { return size_; }
  Result<size_t> ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out) override;

 private:
  FlatExtent(RandomAccessSourcePtr source, uint64_t start, uint64_t size)
      : source_(std::move(source)), start_(start), size_(size) {}
  RandomAccessSourcePtr source_;
  uint64_t start_;
  uint64_t size_;
};

//! One entry of an extent list. `open` runs when the read reaches the extent, so a disk split
//! into thousands of files holds one open at a time; the extent it returns must be at least
//! `size` bytes.
struct ExtentSlot {
  uint64_t size = 0;
  std::function<Result<ExtentPtr>(std::stop_token)> open;
};

class ExtentListReader final : public PositionedDiskReader {
 public:
  //! The disk is the slots' concatenation; VirtualSize() is the sum of their sizes (the caller
  //! checked it does not overflow).
  ExtentListReader(std::vector<ExtentSlot> slots, std::string format_name);

  // disk::DiskReader
  std::string_view FormatName() const override { return format_name_; }

 protected:
  // disk::PositionedDiskReader
  Result<size_t> ReadAtPosition(std::stop_token stop, uint64_t position,
                                std::span<std::byte> out) override;

 private:
  std::vector<ExtentSlot> slots_;
  std::string format_name_;
  size_t current_ = 0;          // slot holding `current_start_`
  uint64_t current_start_ = 0;  // disk offset of slots_[current_]
  ExtentPtr open_;              // slots_[current_] once opened
};

}  // namespace vmimport::disk
