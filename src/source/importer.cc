#include "source/importer.h"

#include "disk/open.h"

namespace vmimport::source {

core::Result<disk::DiskReaderPtr> OpenDiskReader(std::stop_token stop, SourceVm& vm, size_t index) {
  auto bytes = vm.OpenDisk(stop, index);
  if (!bytes) {
    return core::MakeError(bytes.error());
  }
  // A raw disk (OpenStack's Glance images) has no header to say its size: its capacity does.
  std::optional<uint64_t> raw_size;
  const auto& disks = vm.Description().disks;
  if (index < disks.size() && disks[index].capacity_bytes > 0) {
    raw_size = disks[index].capacity_bytes;
  }
  return disk::OpenDiskStream(stop, std::move(*bytes), raw_size);
}

}  // namespace vmimport::source
