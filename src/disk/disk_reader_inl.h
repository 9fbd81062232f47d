#pragma once

// Template definitions for disk_reader.h.

#include <vector>

namespace vmimport::disk {

template <class Consume>
Status DrainDisk(std::stop_token stop, DiskReader& reader, size_t buffer_bytes, Consume&& consume) {
  std::vector<std::byte> buffer(buffer_bytes);
  for (;;) {
    auto n = reader.Read(stop, buffer);
    if (!n) {
      return core::MakeError(n.error());
    }
    if (*n == 0) {
      return core::Ok();
    }
    Status st = consume(std::span<const std::byte>(buffer.data(), *n));
    if (!st) {
      return st;
    }
  }
}

}  // namespace vmimport::disk
