// Every image of the qemu-img corpus must decode to exactly the bytes `qemu-img convert -O raw`
// produces, whatever the read size, and streamable formats also from a stream with short reads.

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "disk/byte_source.h"
#include "disk/open.h"
#include "disk_test_util.h"

namespace vmimport::disk {
namespace {

using testing::Corpus;
using testing::CorpusImage;
using testing::DecodeAll;

std::string ExpectedFormat(const std::string& name) {
  const std::string suffix = name.substr(name.find('.') + 1);
  if (suffix.starts_with("qcow2")) {
    return "qcow2";
  }
  if (suffix == "vmdk-zeroed-grain") {
    return "vmdk-monolithicSparse";
  }
  return suffix;
}

class CorpusTest : public ::testing::TestWithParam<CorpusImage> {};

TEST(Corpus, HasEveryFormat) {
  // Guards against an empty or partial corpus making the parameterised tests vacuous.
  std::vector<std::string> names;
  for (const auto& image : Corpus()) {
    names.push_back(image.name);
  }
  for (const char* want :
       {"random.raw", "sparse.vmdk-streamOptimized", "sparse.vmdk-monolithicSparse",
        "sparse.vmdk-monolithicFlat", "sparse.vmdk-twoGbMaxExtentFlat", "sparse.qcow2-v2",
        "sparse.qcow2-v3", "text.qcow2-zlib", "text.qcow2-zstd", "edit.qcow2-zero-clusters",
        "edit.qcow2-subclusters", "edit.vmdk-zeroed-grain", "grains.vmdk-streamOptimized"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
  EXPECT_GE(names.size(), 40u);
}

TEST_P(CorpusTest, DecodesLikeQemuImg) {
  const CorpusImage& image = GetParam();
  auto reader = OpenDiskFile({}, image.path);
  ASSERT_TRUE(reader) << reader.error().ToString();
  EXPECT_EQ((*reader)->VirtualSize(), image.size);
  EXPECT_EQ((*reader)->FormatName(), ExpectedFormat(image.name));
  auto decoded = DecodeAll(**reader);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(decoded->bytes, image.size);
  EXPECT_EQ(decoded->sha256, image.sha256);
}

TEST_P(CorpusTest, DecodesLikeQemuImgInReadsThatSplitGrains) {
  const CorpusImage& image = GetParam();
  // A read size that is not a multiple of a sector, and for small images a tiny one.
  const size_t chunk = image.size <= (size_t{4} << 20) ? 1000 : 65536 + 333;
  auto reader = OpenDiskFile({}, image.path);
  ASSERT_TRUE(reader) << reader.error().ToString();
  auto decoded = DecodeAll(**reader, chunk);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(decoded->sha256, image.sha256);
}

TEST_P(CorpusTest, ReadAfterTheEndKeepsReturningZero) {
  auto reader = OpenDiskFile({}, GetParam().path);
  ASSERT_TRUE(reader) << reader.error().ToString();
  ASSERT_TRUE(DecodeAll(**reader));
  std::vector<std::byte> buf(4096);
  auto n = (*reader)->Read({}, buf);
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ(*n, 0u);
}

TEST_P(CorpusTest, StreamableFormatsDecodeFromAStreamWithShortReads) {
  const CorpusImage& image = GetParam();
  const std::string format = ExpectedFormat(image.name);
  if (format != "vmdk-streamOptimized" && format != "raw") {
    // The others need random access: OpenDiskStream must say so, not guess.
    auto reader = OpenDiskStream(
        {}, std::make_unique<MemoryByteSource>(testing::ReadFile(image.path)), std::nullopt);
    ASSERT_FALSE(reader);
    EXPECT_EQ(reader.error().code, core::ErrorCode::kUnsupported) << reader.error().ToString();
    return;
  }
  auto bytes = testing::ReadFile(image.path);
  const uint64_t raw_size = bytes.size();
  auto reader =
      OpenDiskStream({}, std::make_unique<MemoryByteSource>(std::move(bytes), 777), raw_size);
  ASSERT_TRUE(reader) << reader.error().ToString();
  EXPECT_EQ((*reader)->VirtualSize(), image.size);
  auto decoded = DecodeAll(**reader, 100000);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(decoded->sha256, image.sha256);
}

std::string TestName(const ::testing::TestParamInfo<CorpusImage>& info) {
  std::string name = info.param.name;
  std::replace_if(
      name.begin(), name.end(), [](char c) { return !std::isalnum(c); }, '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(QemuImg, CorpusTest, ::testing::ValuesIn(Corpus()), TestName);

}  // namespace
}  // namespace vmimport::disk
