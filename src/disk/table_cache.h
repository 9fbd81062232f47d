#pragma once

// A window onto an on-disk table of fixed-size entries (qcow2 L1/L2, VMDK grain directory and
// grain tables), so that decoders never hold a whole table: a sequential pass touches each table
// front to back and re-reads nothing.

#include <cstddef>
#include <cstdint>
#include <stop_token>
#include <vector>

#include "disk/byte_source.h"

namespace vmimport::disk {

class TableWindow {
 public:
  TableWindow(const RandomAccessSource& source, size_t window_entries)
      : source_(source), window_entries_(window_entries) {}

  //! Points the window at a table of `entry_count` entries of `entry_bytes` bytes at `offset`.
  //! Cheap when it is the table already in use.
  void Select(uint64_t offset, uint64_t entry_count, size_t entry_bytes);
  //! The bytes of entry `index` (< entry_count), valid until the next call. Reads the window
  //! holding it on a miss; a table that runs past the end of the source is kCorruptData naming
  //! the offset.
  [[nodiscard]] Result<const std::byte*> Entry(std::stop_token stop, uint64_t index);

 private:
  const RandomAccessSource& source_;
  size_t window_entries_;
  uint64_t offset_ = 0;
  uint64_t entry_count_ = 0;
  size_t entry_bytes_ = 0;
  bool loaded_ = false;
  uint64_t first_ = 0;  // index of the first entry in bytes_
  uint64_t count_ = 0;  // entries in bytes_
  std::vector<std::byte> bytes_;
};

}  // namespace vmimport::disk
