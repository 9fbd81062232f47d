// Damaged images: cut short at many offsets, or with bytes flipped. The decoder must answer with
// an error that names the offset, or (when only trailing bytes it does not need are gone) with
// the complete, correct disk; never a crash, never a short or silently wrong success for a cut.

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "disk/byte_source.h"
#include "disk/open.h"
#include "disk_test_util.h"

namespace vmimport::disk {
namespace {

using core::ErrorCode;

// Offsets to cut at: dense over the headers, spread over the body, dense over the tail.
std::vector<size_t> CutOffsets(size_t size, size_t magic_bytes) {
  std::set<size_t> cuts;
  for (size_t at = magic_bytes; at < std::min<size_t>(size, 1100); at += 7) {
    cuts.insert(at);
  }
  for (size_t at = 1100; at < size; at += std::max<size_t>(size / 120, 1)) {
    cuts.insert(at);
  }
  for (size_t back = 1; back <= std::min<size_t>(size, 1600); back += 11) {
    cuts.insert(size - back);
  }
  // Every sector boundary near the end: where a stream cut between two grains would end.
  for (size_t at = size - std::min<size_t>(size, 140000) / 512 * 512; at < size; at += 512) {
    if (at >= magic_bytes) {
      cuts.insert(at);
    }
  }
  for (size_t at : {size_t{511}, size_t{512}, size_t{513}, size_t{65535}, size_t{65536},
                    size_t{65537}, size / 2}) {
    if (at >= magic_bytes && at < size) {
      cuts.insert(at);
    }
  }
  return {cuts.begin(), cuts.end()};
}

struct Outcome {
  std::optional<core::Error> error;
  std::string sha256;
  uint64_t bytes = 0;
  uint64_t virtual_size = 0;
};

Outcome DecodeBytes(std::vector<std::byte> bytes, ExtentFileOpener opener,
                    uint64_t max_virtual_size = UINT64_MAX) {
  Outcome outcome;
  auto reader =
      OpenDisk({}, std::make_unique<MemorySource>(std::move(bytes), "image"), std::move(opener));
  if (!reader) {
    outcome.error = reader.error();
    return outcome;
  }
  outcome.virtual_size = (*reader)->VirtualSize();
  if (outcome.virtual_size > max_virtual_size) {
    return outcome;  // a flipped size field: opening without crashing is what counts
  }
  auto decoded = testing::DecodeAll(**reader, 100000);
  if (!decoded) {
    outcome.error = decoded.error();
    return outcome;
  }
  outcome.sha256 = decoded->sha256;
  outcome.bytes = decoded->bytes;
  return outcome;
}

std::string ParamName(const ::testing::TestParamInfo<std::string>& param) {
  std::string name = param.param;
  std::replace_if(
      name.begin(), name.end(), [](char c) { return !std::isalnum(c); }, '_');
  return name;
}

class TruncationTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TruncationTest, EveryCutIsAnErrorNamingTheOffsetOrTheWholeDisk) {
  const auto& image = testing::CorpusEntry(GetParam());
  const auto bytes = testing::ReadFile(image.path);
  ASSERT_GT(bytes.size(), 1000u);
  size_t errors = 0;
  for (size_t cut : CutOffsets(bytes.size(), 4)) {
    std::vector<std::byte> cut_bytes(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(cut));
    Outcome o = DecodeBytes(std::move(cut_bytes), nullptr);
    if (o.error) {
      ++errors;
      EXPECT_EQ(o.error->code, ErrorCode::kCorruptData)
          << "cut at " << cut << ": " << o.error->ToString();
      EXPECT_NE(o.error->message.find("offset"), std::string::npos)
          << "cut at " << cut << ": " << o.error->ToString();
      continue;
    }
    // Success is only acceptable when nothing the disk needs was cut.
    EXPECT_EQ(o.bytes, image.size) << "short success, cut at " << cut;
    EXPECT_EQ(o.sha256, image.sha256) << "wrong disk, cut at " << cut;
  }
  EXPECT_GT(errors, 0u);
}

INSTANTIATE_TEST_SUITE_P(Corpus, TruncationTest,
                         ::testing::Values("random.vmdk-streamOptimized",
                                           "text.vmdk-streamOptimized",
                                           "grains.vmdk-streamOptimized",
                                           "random.vmdk-monolithicSparse", "edit.vmdk-zeroed-grain",
                                           "random.qcow2-v2", "random.qcow2-v3", "text.qcow2-zlib",
                                           "text.qcow2-zstd", "text.qcow2-v2-zlib",
                                           "random.qcow2-512-clusters", "random.qcow2-extended-l2",
                                           "edit.qcow2-subclusters", "edit.qcow2-zero-clusters"),
                         ParamName);

// An opener serving the named extent cut to `keep` bytes, the others from disk.
ExtentFileOpener CuttingOpener(const std::string& dir, const std::string& cut_name, size_t keep) {
  return [dir, cut_name, keep](std::string_view name) -> Result<RandomAccessSourcePtr> {
    auto bytes = testing::ReadFile(dir + "/" + std::string(name));
    if (name == cut_name) {
      bytes.resize(std::min(bytes.size(), keep));
    }
    return RandomAccessSourcePtr(
        std::make_unique<MemorySource>(std::move(bytes), std::string(name)));
  };
}

TEST(Truncation, ShortExtentFilesAreCorruptBeforeTheFirstByte) {
  for (const std::string name : {"random.vmdk-monolithicFlat", "random.vmdk-twoGbMaxExtentFlat",
                                 "random.vmdk-twoGbMaxExtentSparse"}) {
    const auto& image = testing::CorpusEntry(name);
    const std::string dir = image.path.substr(0, image.path.rfind('/'));
    const std::string extent = name.ends_with("monolithicFlat")       ? "disk-flat.vmdk"
                               : name.ends_with("twoGbMaxExtentFlat") ? "disk-f001.vmdk"
                                                                      : "disk-s001.vmdk";
    const size_t full = testing::ReadFile(dir + "/" + extent).size();
    for (size_t keep : {size_t{0}, size_t{100}, size_t{512}, full / 2, full - 512, full - 1}) {
      Outcome o = DecodeBytes(testing::ReadFile(image.path), CuttingOpener(dir, extent, keep));
      if (!o.error && keep >= full - 512) {
        // Only the unused tail of the last sparse grain (past the capacity) was cut.
        EXPECT_EQ(o.sha256, image.sha256) << name << " with " << extent << " cut to " << keep;
        continue;
      }
      ASSERT_TRUE(o.error) << name << " with " << extent << " cut to " << keep;
      EXPECT_EQ(o.error->code, ErrorCode::kCorruptData) << o.error->ToString();
      EXPECT_NE(o.error->message.find("offset"), std::string::npos) << o.error->ToString();
    }
    Outcome whole = DecodeBytes(testing::ReadFile(image.path), CuttingOpener(dir, extent, full));
    ASSERT_FALSE(whole.error) << whole.error->ToString();
    EXPECT_EQ(whole.sha256, image.sha256);
  }
}

class ByteFlipTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ByteFlipTest, FlippedBytesNeverCrashOrLeaveTheRules) {
  const auto& image = testing::CorpusEntry(GetParam());
  const auto bytes = testing::ReadFile(image.path);
  // Headers get three masks on every 5th byte, the rest one mask on a spread of bytes.
  std::set<size_t> header_positions;
  std::set<size_t> positions;
  for (size_t at = 0; at < std::min<size_t>(bytes.size(), 512); at += 5) {
    header_positions.insert(at);
  }
  for (size_t at = 512; at < std::min<size_t>(bytes.size(), 1024); at += 9) {
    positions.insert(at);
  }
  for (size_t at = 1024; at < bytes.size(); at += std::max<size_t>(bytes.size() / 100, 1)) {
    positions.insert(at);
  }
  positions.insert(header_positions.begin(), header_positions.end());
  size_t errors = 0;
  for (size_t at : positions) {
    for (std::byte mask : {std::byte{0xff}, std::byte{0x01}, std::byte{0x80}}) {
      if (mask != std::byte{0xff} && !header_positions.contains(at)) {
        continue;
      }
      auto flipped = bytes;
      flipped[at] ^= mask;
      Outcome o = DecodeBytes(std::move(flipped), nullptr, size_t{256} << 20);
      if (!o.error) {
        if (o.virtual_size <= (size_t{256} << 20)) {
          EXPECT_EQ(o.bytes, o.virtual_size) << "flip at " << at;
        }
        continue;
      }
      ++errors;
      const ErrorCode code = o.error->code;
      EXPECT_TRUE(code == ErrorCode::kCorruptData || code == ErrorCode::kUnsupported)
          << "flip at " << at << ": " << o.error->ToString();
      if (code == ErrorCode::kCorruptData) {
        EXPECT_NE(o.error->message.find("offset"), std::string::npos)
            << "flip at " << at << ": " << o.error->ToString();
      }
    }
  }
  EXPECT_GT(errors, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Corpus, ByteFlipTest,
    ::testing::Values("random.vmdk-streamOptimized", "text.vmdk-streamOptimized",
                      "grains.vmdk-streamOptimized", "random.vmdk-monolithicSparse",
                      "edit.vmdk-zeroed-grain", "random.qcow2-v2", "text.qcow2-zlib",
                      "text.qcow2-zstd", "random.qcow2-512-clusters", "edit.qcow2-subclusters",
                      "edit.qcow2-zero-clusters", "tiny.vmdk-streamOptimized", "tiny.qcow2-v3"),
    ParamName);

}  // namespace
}  // namespace vmimport::disk
