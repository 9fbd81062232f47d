// libFuzzer target: VMDK sparse extents read at random offsets (header, embedded descriptor,
// grain directory and tables, compressed grains, the footer of GD_AT_END files), through the
// same entry point as a file.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "disk/byte_source.h"
#include "disk/open.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmimport::disk;
  if (size < 4 || std::memcmp(data, "KDMV", 4) != 0) {
    return 0;  // other formats have their own targets
  }
  std::vector<std::byte> bytes(size);
  std::memcpy(bytes.data(), data, size);
  auto reader = OpenDisk({}, std::make_unique<MemorySource>(std::move(bytes)), nullptr);
  if (reader) {
    fuzz::Drain(**reader);
  }
  return 0;
}
