#include "disk/sparse_gzip.h"

#include <libdeflate.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace vmimport::disk {

namespace {

// gzip member header (RFC 1952 2.3): ID1 ID2 CM=8 (deflate), FLG=0, MTIME=0 (none), XFL=0,
// OS=3 (Unix).
constexpr std::array<uint8_t, 10> kGzipHeader{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};

// Fixed Huffman codes (RFC 1951 3.2.6), bit-reversed: deflate writes Huffman codes from their
// most significant bit, our bit buffer fills from the least.
//   literal 0:    8 bits 00110000           -> 0x0c
//   length 258:   symbol 285, 8 bits 11000101 -> 0xa3, no extra bits
//   distance 1:   code 0, 5 bits 00000, no extra bits
//   end of block: symbol 256, 7 bits 0000000
constexpr uint32_t kLiteralZero = 0x0c;
constexpr int kLiteralBits = 8;
constexpr uint32_t kMatch258Dist1 = 0xa3;  // 8 bits of length, then 5 zero bits of distance
constexpr int kMatchBits = 13;
constexpr int kEndOfBlockBits = 7;
constexpr uint64_t kMaxMatch = 258;
constexpr size_t kMaxStored = 65535;

bool AllZero(std::span<const std::byte> b) {
  return !b.empty() && b[0] == std::byte{0} &&
         std::memcmp(b.data(), b.data() + 1, b.size() - 1) == 0;
}

void PutLe32(uint32_t v, std::vector<std::byte>& out) {
  for (int i = 0; i < 4; ++i) {
    out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
  }
}

}  // namespace

uint32_t Crc32OfZeros(uint32_t crc, uint64_t count) {
  // powers[i]: the CRC-32 of 2^i zero bytes.
  static const std::array<uLong, 48> powers = [] {
    std::array<uLong, 48> p{};
    const Bytef zero = 0;
    p[0] = ::crc32(0, &zero, 1);
    for (size_t i = 1; i < p.size(); ++i) {
      p[i] = ::crc32_combine(p[i - 1], p[i - 1], static_cast<z_off_t>(uint64_t{1} << (i - 1)));
    }
    return p;
  }();
  uLong out = crc;
  for (size_t i = 0; i < powers.size() && count != 0; ++i, count >>= 1) {
    if ((count & 1) != 0) {
      out = ::crc32_combine(out, powers[i], static_cast<z_off_t>(uint64_t{1} << i));
    }
  }
  return static_cast<uint32_t>(out);
}

SparseGzipEncoder::SparseGzipEncoder(std::vector<std::byte>& out) {
  for (uint8_t b : kGzipHeader) {
    out.push_back(static_cast<std::byte>(b));
  }
}

void SparseGzipEncoder::PutBits(uint32_t value, int count, std::vector<std::byte>& out) {
  bit_buffer_ |= static_cast<uint64_t>(value) << bit_count_;
  bit_count_ += count;
  while (bit_count_ >= 8) {
    out.push_back(static_cast<std::byte>(bit_buffer_ & 0xff));
    bit_buffer_ >>= 8;
    bit_count_ -= 8;
  }
}

void SparseGzipEncoder::AlignToByte(std::vector<std::byte>& out) {
  if (bit_count_ > 0) {
    PutBits(0, 8 - bit_count_, out);
  }
}

void SparseGzipEncoder::Zeros(uint64_t count, std::vector<std::byte>& out) {
  // A fixed-Huffman block (BFINAL 0, BTYPE 01): a literal 0, then copies of the byte before.
  PutBits(0b010, 3, out);
  PutBits(kLiteralZero, kLiteralBits, out);
  uint64_t left = count - 1;
  for (; left >= kMaxMatch; left -= kMaxMatch) {
    PutBits(kMatch258Dist1, kMatchBits, out);
  }
  for (; left > 0; --left) {  // < 258 bytes: literals are simpler than a length table
    PutBits(kLiteralZero, kLiteralBits, out);
  }
  PutBits(0, kEndOfBlockBits, out);
  crc_ = Crc32OfZeros(crc_, count);
}

void SparseGzipEncoder::Stored(std::span<const std::byte> data, std::vector<std::byte>& out) {
  // libdeflate's CRC-32 (zlib's polynomial and conditioning) uses carry-less multiplication
  // where the CPU has it: several times zlib's speed, and most of the cost of a disk of data.
  crc_ = libdeflate_crc32(crc_, data.data(), data.size());
  while (!data.empty()) {
    const size_t n = std::min(data.size(), kMaxStored);
    PutBits(0b000, 3, out);  // BFINAL 0, BTYPE 00, then LEN and NLEN from the next byte
    AlignToByte(out);
    const auto len = static_cast<uint16_t>(n);
    const auto nlen = static_cast<uint16_t>(~len);
    out.push_back(static_cast<std::byte>(len & 0xff));
    out.push_back(static_cast<std::byte>(len >> 8));
    out.push_back(static_cast<std::byte>(nlen & 0xff));
    out.push_back(static_cast<std::byte>(nlen >> 8));
    out.insert(out.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
    data = data.subspan(n);
  }
}

void SparseGzipEncoder::Add(std::span<const std::byte> in, std::vector<std::byte>& out) {
  input_bytes_ += in.size();
  // Runs of zero blocks and of data blocks, each emitted whole.
  size_t run_start = 0;
  bool run_zero = false;
  for (size_t pos = 0; pos < in.size();) {
    const size_t n = std::min(kZeroBlock, in.size() - pos);
    const bool zero = AllZero(in.subspan(pos, n));
    if (pos > run_start && zero != run_zero) {
      if (run_zero) {
        Zeros(pos - run_start, out);
      } else {
        Stored(in.subspan(run_start, pos - run_start), out);
      }
      run_start = pos;
    }
    run_zero = zero;
    pos += n;
  }
  if (run_start < in.size()) {
    if (run_zero) {
      Zeros(in.size() - run_start, out);
    } else {
      Stored(in.subspan(run_start), out);
    }
  }
}

void SparseGzipEncoder::Finish(std::vector<std::byte>& out) {
  if (finished_) {
    return;
  }
  finished_ = true;
  PutBits(0b011, 3, out);  // BFINAL 1, BTYPE 01: an empty fixed-Huffman block
  PutBits(0, kEndOfBlockBits, out);
  AlignToByte(out);
  PutLe32(crc_, out);
  PutLe32(static_cast<uint32_t>(input_bytes_ & 0xffffffffU), out);
}

}  // namespace vmimport::disk
