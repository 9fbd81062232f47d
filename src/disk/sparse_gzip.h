#pragma once

// A raw disk as one gzip member (RFC 1952) that any gzip decoder reads as it streams (CDI's
// importer decompresses gzip in-stream: pkg/importer/format-readers.go), built so that zeros cost
// almost nothing on the wire and no byte is compressed:
//  - each all-zero 4 KiB block (runs of them within one Add) becomes a fixed-Huffman deflate
//    block (RFC 1951 3.2.6) of one literal 0 and back-references <length 258, distance 1>:
//    13 bits per 258 zero bytes, 0.63% of their size;
//  - every other byte goes into stored blocks (3.2.4): its own size plus 5 bytes per 64 KiB.
// So the CPU cost is a zero scan and CRC-32, not deflate's match search (gzip -1 does about
// 36 MB/s on random data here, far below a disk stream), and a disk of data grows by 0.008%.
//
// Not thread-safe; one encoder per stream. Nothing here fails: input is bytes, output appended.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace vmimport::disk {

class SparseGzipEncoder {
 public:
  //! The granularity of the zero scan.
  static constexpr size_t kZeroBlock = 4096;

  //! Appends the gzip header to `out`.
  explicit SparseGzipEncoder(std::vector<std::byte>& out);

  //! Appends the encoding of `in` (the next bytes of the disk) to `out`. Not after Finish.
  void Add(std::span<const std::byte> in, std::vector<std::byte>& out);
  //! Appends the final block and the trailer (CRC-32 and size mod 2^32). Once.
  void Finish(std::vector<std::byte>& out);

  uint64_t input_bytes() const { return input_bytes_; }

 private:
  void PutBits(uint32_t value, int count, std::vector<std::byte>& out);
  void AlignToByte(std::vector<std::byte>& out);
  void Zeros(uint64_t count, std::vector<std::byte>& out);
  void Stored(std::span<const std::byte> data, std::vector<std::byte>& out);

  uint64_t bit_buffer_ = 0;
  int bit_count_ = 0;
  uint32_t crc_ = 0;
  uint64_t input_bytes_ = 0;
  bool finished_ = false;
};

//! CRC-32 (gzip's) of `count` zero bytes appended to a stream whose CRC is `crc`, in O(log count).
uint32_t Crc32OfZeros(uint32_t crc, uint64_t count);

}  // namespace vmimport::disk
