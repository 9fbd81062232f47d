#pragma once

// Fixed-width loads from byte buffers in a stated byte order (VMDK is little-endian, qcow2
// big-endian). The caller guarantees the bytes are there; the loads never read past `p + N`.

#include <cstddef>
#include <cstdint>
#include <span>

namespace vmimport::disk {

inline uint16_t LoadLe16(const std::byte* p) {
  return static_cast<uint16_t>(static_cast<uint16_t>(p[0]) | (static_cast<uint16_t>(p[1]) << 8));
}

inline uint32_t LoadLe32(const std::byte* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

inline uint64_t LoadLe64(const std::byte* p) {
  return static_cast<uint64_t>(LoadLe32(p)) | (static_cast<uint64_t>(LoadLe32(p + 4)) << 32);
}

inline uint32_t LoadBe32(const std::byte* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

inline uint64_t LoadBe64(const std::byte* p) {
  return (static_cast<uint64_t>(LoadBe32(p)) << 32) | static_cast<uint64_t>(LoadBe32(p + 4));
}

inline void StoreLe32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xffu);
  }
}

inline void StoreLe64(std::byte* p, uint64_t v) {
  StoreLe32(p, static_cast<uint32_t>(v & 0xffffffffu));
  StoreLe32(p + 4, static_cast<uint32_t>(v >> 32));
}

inline void StoreBe32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    p[i] = static_cast<std::byte>((v >> (24 - 8 * i)) & 0xffu);
  }
}

inline void StoreBe64(std::byte* p, uint64_t v) {
  StoreBe32(p, static_cast<uint32_t>(v >> 32));
  StoreBe32(p + 4, static_cast<uint32_t>(v & 0xffffffffu));
}

//! True when every byte of `bytes` is zero (fast path for long runs).
bool IsAllZero(std::span<const std::byte> bytes);

}  // namespace vmimport::disk
