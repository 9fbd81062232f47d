// libFuzzer target: VMDK streamOptimized decoded from a stream (header, grain markers, metadata
// markers, footer), with short reads.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "disk/byte_source.h"
#include "disk/vmdk_stream.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmimport::disk;
  std::vector<std::byte> bytes(size);
  std::memcpy(bytes.data(), data, size);
  // The first byte picks the read size the source hands out, so short reads get fuzzed too.
  const size_t chunk = size > 0 ? size_t{data[0]} * 97 + 1 : 1;
  auto reader = StreamOptimizedVmdk::Open(
      {}, std::make_unique<MemoryByteSource>(std::move(bytes), chunk), {.name = "fuzz"});
  if (reader) {
    fuzz::Drain(**reader);
  }
  return 0;
}
