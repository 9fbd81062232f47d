#include "disk/bytes.h"

#include <cstring>

namespace vmimport::disk {

bool IsAllZero(std::span<const std::byte> bytes) {
  // Compare 8 bytes at a time; the compiler vectorises the loop.
  const std::byte* p = bytes.data();
  size_t n = bytes.size();
  while (n >= 64) {
    uint64_t acc = 0;
    for (size_t i = 0; i < 8; ++i) {
      uint64_t word = 0;
      std::memcpy(&word, p + 8 * i, sizeof(word));
      acc |= word;
    }
    if (acc != 0) {
      return false;
    }
    p += 64;
    n -= 64;
  }
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != std::byte{0}) {
      return false;
    }
  }
  return true;
}

}  // namespace vmimport::disk
