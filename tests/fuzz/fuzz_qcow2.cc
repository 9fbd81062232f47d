// libFuzzer target: qcow2 header, L1/L2 tables, subclusters and compressed clusters.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "disk/byte_source.h"
#include "disk/qcow2.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmimport::disk;
  std::vector<std::byte> bytes(size);
  std::memcpy(bytes.data(), data, size);
  auto reader = OpenQcow2({}, std::make_unique<MemorySource>(std::move(bytes)));
  if (reader) {
    fuzz::Drain(**reader);
  }
  return 0;
}
