// streamOptimized streams laid out as VMware writes them (GD_AT_END, footer, table markers),
// decoded from a stream, checked against qemu-img and bent into every shape the decoder must
// refuse.

#include "disk/vmdk_stream.h"

#include <gtest/gtest.h>

#include <cstring>

#include "disk/byte_source.h"
#include "disk/bytes.h"
#include "disk/open.h"
#include "disk_test_util.h"
#include "vmware_stream.h"

namespace vmimport::disk {
namespace {

using core::ErrorCode;
using testing::DecodeAll;
using testing::MakeVmwareStream;
using testing::VmwareStreamOptions;

// 40 MiB + 7 sectors: two grain tables, a partial last grain, zero and random grains.
std::vector<std::byte> SampleDisk() {
  std::vector<std::byte> disk((size_t{40} << 20) + 7 * 512);
  auto random = testing::PseudoRandomBytes(300000, 7);
  std::memcpy(disk.data() + 1000, random.data(), random.size());
  std::memcpy(disk.data() + (size_t{33} << 20) + 12345, random.data(), 100000);
  std::memset(disk.data() + (size_t{20} << 20), 'x', 70000);  // compressible
  std::memcpy(disk.data() + disk.size() - 2000, random.data(), 2000);
  return disk;
}

Result<DiskReaderPtr> OpenStream(std::vector<std::byte> bytes, size_t max_chunk = 4096) {
  return OpenDiskStream({}, std::make_unique<MemoryByteSource>(std::move(bytes), max_chunk),
                        std::nullopt);
}

// Decodes and expects an error of `code` whose message contains `needle`; also checks that no
// read ever handed out the disk's last byte (a broken stream is never a complete disk).
void ExpectDecodeError(std::vector<std::byte> stream, ErrorCode code, const std::string& needle) {
  auto reader = OpenStream(std::move(stream));
  ASSERT_TRUE(reader) << reader.error().ToString();
  std::vector<std::byte> buf(1 << 20);
  uint64_t total = 0;
  for (;;) {
    auto n = (*reader)->Read({}, buf);
    if (!n) {
      EXPECT_EQ(n.error().code, code) << n.error().ToString();
      EXPECT_NE(n.error().message.find(needle), std::string::npos) << n.error().ToString();
      EXPECT_NE(n.error().message.find("offset"), std::string::npos) << n.error().ToString();
      EXPECT_LT(total, (*reader)->VirtualSize());
      // The error sticks.
      auto again = (*reader)->Read({}, buf);
      ASSERT_FALSE(again);
      EXPECT_EQ(again.error().code, code);
      return;
    }
    ASSERT_NE(*n, 0u) << "decoded a broken stream without error";
    total += *n;
  }
}

TEST(VmdkStream, VmwareLayoutDecodesFromAStreamLikeQemuImg) {
  const auto disk = SampleDisk();
  const auto stream = MakeVmwareStream(disk);
  testing::TempDir dir;
  testing::WriteFile(dir.File("vmware.vmdk"), stream);
  // The reference reads our hand-made stream as the disk: the writer is right.
  EXPECT_EQ(testing::QemuRawSha256(dir.File("vmware.vmdk")), testing::Sha256Hex(disk));

  auto reader = OpenStream(stream, 1000);
  ASSERT_TRUE(reader) << reader.error().ToString();
  EXPECT_EQ((*reader)->FormatName(), "vmdk-streamOptimized");
  EXPECT_EQ((*reader)->VirtualSize(), disk.size());
  auto decoded = DecodeAll(**reader, 3 * 4096 + 7);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(decoded->sha256, testing::Sha256Hex(disk));
}

TEST(VmdkStream, CapacityOnlyInTheFooterNeedsASeekableSource) {
  const auto disk = SampleDisk();
  const auto stream = MakeVmwareStream(disk, {.capacity_in_header = false});
  auto from_stream = OpenStream(stream);
  ASSERT_FALSE(from_stream);
  EXPECT_EQ(from_stream.error().code, ErrorCode::kUnsupported) << from_stream.error().ToString();

  // (qemu-img refuses a header without capacity, so the disk itself is the reference here.)
  testing::TempDir dir;
  testing::WriteFile(dir.File("footer.vmdk"), stream);
  auto from_file = OpenDiskFile({}, dir.File("footer.vmdk"));
  ASSERT_TRUE(from_file) << from_file.error().ToString();
  EXPECT_EQ((*from_file)->VirtualSize(), disk.size());
  auto decoded = DecodeAll(**from_file);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(decoded->sha256, testing::Sha256Hex(disk));
}

TEST(VmdkStream, BareDeflateGrainsDecode) {
  const auto disk = SampleDisk();
  auto reader = OpenStream(MakeVmwareStream(disk, {.raw_deflate = true}));
  ASSERT_TRUE(reader) << reader.error().ToString();
  auto decoded = DecodeAll(**reader);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(decoded->sha256, testing::Sha256Hex(disk));
}

TEST(VmdkStream, BothInflateBackendsDecodeTheSameBytes) {
  const auto disk = SampleDisk();
  const auto stream = MakeVmwareStream(disk);
  for (InflateBackend backend : {InflateBackend::kLibdeflate, InflateBackend::kZlib}) {
    auto reader = OpenDiskStream({}, std::make_unique<MemoryByteSource>(stream), std::nullopt,
                                 OpenOptions{.inflate_backend = backend});
    ASSERT_TRUE(reader) << reader.error().ToString();
    auto decoded = DecodeAll(**reader);
    ASSERT_TRUE(decoded) << InflateBackendName(backend) << ": " << decoded.error().ToString();
    EXPECT_EQ(decoded->sha256, testing::Sha256Hex(disk)) << InflateBackendName(backend);
  }
}

TEST(VmdkStream, MissingEndOfStreamMarkerIsCorrupt) {
  ExpectDecodeError(MakeVmwareStream(SampleDisk(), {.write_eos = false}), ErrorCode::kCorruptData,
                    "without an end-of-stream marker");
}

TEST(VmdkStream, GdAtEndWithoutFooterIsCorrupt) {
  ExpectDecodeError(MakeVmwareStream(SampleDisk(), {.write_footer = false}),
                    ErrorCode::kCorruptData, "footer");
}

TEST(VmdkStream, FooterThatDisagreesWithTheHeaderIsCorrupt) {
  ExpectDecodeError(MakeVmwareStream(SampleDisk(), {.footer_capacity_sectors = 1234}),
                    ErrorCode::kCorruptData, "footer capacity");
}

TEST(VmdkStream, GrainsOutOfOrderAreCorrupt) {
  ExpectDecodeError(MakeVmwareStream(SampleDisk(), {.swap_first_two_grains = true}),
                    ErrorCode::kCorruptData, "out of order");
}

TEST(VmdkStream, GrainPastTheCapacityIsCorrupt) {
  const auto disk = SampleDisk();
  const uint64_t first_grain_past_end = (disk.size() / 512 + 127) / 128 * 128;
  ExpectDecodeError(MakeVmwareStream(disk, {.extra_grain_lba = first_grain_past_end}),
                    ErrorCode::kCorruptData, "past the capacity");
}

TEST(VmdkStream, GrainThatDecompressesShortIsCorrupt) {
  ExpectDecodeError(MakeVmwareStream(SampleDisk(), {.truncate_first_grain_data = true}),
                    ErrorCode::kCorruptData, "decompressed to 65535 bytes");
}

TEST(VmdkStream, UnknownMarkerTypeIsCorrupt) {
  ExpectDecodeError(MakeVmwareStream(SampleDisk(), {.extra_marker_type = 9}),
                    ErrorCode::kCorruptData, "unknown marker type 9");
}

TEST(VmdkStream, GrainLargerThanTheLimitIsCorrupt) {
  auto stream = MakeVmwareStream(SampleDisk());
  // The first grain marker sits at the overHead (sector 128): give it a 4 GiB size.
  StoreLe32(stream.data() + 128 * 512 + 8, 0xffffffffu);
  ExpectDecodeError(std::move(stream), ErrorCode::kCorruptData, "exceeds the limit");
}

TEST(VmdkStream, MonolithicSparseIsNotAStream) {
  auto reader =
      OpenStream(testing::ReadFile(testing::CorpusEntry("random.vmdk-monolithicSparse").path));
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().code, ErrorCode::kUnsupported) << reader.error().ToString();
}

TEST(VmdkStream, StopRequestCancelsTheRead) {
  auto reader = OpenStream(MakeVmwareStream(SampleDisk()));
  ASSERT_TRUE(reader) << reader.error().ToString();
  std::stop_source stop;
  stop.request_stop();
  std::vector<std::byte> buf(4096);
  auto n = (*reader)->Read(stop.get_token(), buf);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, ErrorCode::kCancelled);
}

TEST(VmdkStream, TheLastBytesWaitForTheEndOfStreamMarker) {
  // With the marker missing, every byte but the disk's end may come out; the end never does.
  const auto disk = SampleDisk();
  auto reader = OpenStream(MakeVmwareStream(disk, {.write_eos = false}));
  ASSERT_TRUE(reader);
  std::vector<std::byte> buf(disk.size());
  auto n = (*reader)->Read({}, buf);
  ASSERT_FALSE(n);  // one read asked for the whole disk: nothing is handed out
  EXPECT_EQ(n.error().code, ErrorCode::kCorruptData);
}

}  // namespace
}  // namespace vmimport::disk
