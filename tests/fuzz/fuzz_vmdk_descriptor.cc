// libFuzzer target: the VMDK text descriptor, then the disk it describes, with every extent file
// served from memory (32 KiB of pattern bytes).

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "disk/byte_source.h"
#include "disk/vmdk_descriptor.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmimport::disk;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto descriptor = ParseVmdkDescriptor(text, "fuzz.vmdk");
  if (!descriptor) {
    return 0;
  }
  auto opener = [](std::string_view name) -> vmimport::core::Result<RandomAccessSourcePtr> {
    std::vector<std::byte> bytes(32768);
    for (size_t i = 0; i < bytes.size(); ++i) {
      bytes[i] = static_cast<std::byte>((i + name.size()) & 0xff);
    }
    return RandomAccessSourcePtr(
        std::make_unique<MemorySource>(std::move(bytes), std::string(name)));
  };
  auto reader = OpenVmdkDescriptor({}, *descriptor, opener);
  if (reader) {
    fuzz::Drain(**reader);
  }
  return 0;
}
