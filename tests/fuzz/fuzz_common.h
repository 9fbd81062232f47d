#pragma once

// Shared by the libFuzzer targets: read a decoded disk to its end, but at most a few MiB, so that
// a fuzzed header announcing a petabyte of zeros does not turn into a timeout.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "disk/disk_reader.h"

namespace vmimport::disk::fuzz {

inline constexpr size_t kMaxDecodedBytes = size_t{4} << 20;

inline void Drain(DiskReader& reader) {
  std::vector<std::byte> buffer(size_t{64} << 10);
  size_t total = 0;
  while (total < kMaxDecodedBytes) {
    auto n = reader.Read({}, buffer);
    if (!n || *n == 0) {
      return;
    }
    total += *n;
  }
}

}  // namespace vmimport::disk::fuzz
