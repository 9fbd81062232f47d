#pragma once

// A read-ahead window over a ByteSource for decoders that parse a stream front to back: Fill
// makes bytes contiguous (so a whole compressed grain can be decompressed in place), Consume
// moves on, offset() says where in the input the window starts (for error messages). Memory is
// the fixed capacity given at construction.

#include <cstddef>
#include <cstdint>
#include <span>
#include <stop_token>
#include <vector>

#include "disk/byte_source.h"

namespace vmimport::disk {

class StreamBuffer {
 public:
  //! `start_offset`: input offset of the source's next byte (for bytes the caller read already).
  StreamBuffer(ByteSource& source, size_t capacity, uint64_t start_offset = 0);

  //! Makes at least `n` bytes (n <= capacity) available in Data() and returns how many are
  //! available: fewer than `n` only when the source has ended.
  [[nodiscard]] Result<size_t> Fill(std::stop_token stop, size_t n);
  std::span<const std::byte> Data() const { return {buffer_.data() + begin_, end_ - begin_}; }
  //! Drops `n` buffered bytes (n <= Data().size()).
  void Consume(size_t n);
  //! Consumes `n` bytes, reading through the source; returns how many were skipped (fewer than
  //! `n` only at the end of the source).
  [[nodiscard]] Result<uint64_t> Skip(std::stop_token stop, uint64_t n);
  //! Input offset of Data()[0].
  uint64_t offset() const { return offset_; }
  size_t capacity() const { return buffer_.size(); }

 private:
  ByteSource& source_;
  std::vector<std::byte> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
  uint64_t offset_ = 0;
  bool eof_ = false;
};

}  // namespace vmimport::disk
