#include "source/importer.h"

#include "disk/open.h"

namespace vmimport::source {

core::Result<disk::DiskReaderPtr> OpenDiskReader(std::stop_token stop, SourceVm& vm, size_t index) {
  auto bytes = vm.OpenDisk(stop, index);
  if (!bytes) {
    return core::MakeError(bytes.error());
  }
  return disk::OpenDiskStream(stop, std::move(*bytes), std::nullopt);
}

}  // namespace vmimport::source
