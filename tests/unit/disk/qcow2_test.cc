#include "disk/qcow2.h"

#include <gtest/gtest.h>

#include "disk/bytes.h"
#include "disk/open.h"
#include "disk_test_util.h"

namespace vmimport::disk {
namespace {

using core::ErrorCode;

core::Error OpenError(const std::string& path) {
  auto reader = OpenDiskFile({}, path);
  if (reader) {
    ADD_FAILURE() << path << " opened";
    return {};
  }
  return reader.error();
}

// Opens `bytes`, reads to the end and returns the error (failing the test if there is none).
core::Error DecodeError(std::vector<std::byte> bytes) {
  auto reader = OpenDisk({}, std::make_unique<MemorySource>(std::move(bytes), "image"), nullptr);
  if (!reader) {
    return reader.error();
  }
  auto decoded = testing::DecodeAll(**reader);
  if (decoded) {
    ADD_FAILURE() << "decoded without error";
    return {};
  }
  return decoded.error();
}

TEST(Qcow2, BackingFileIsUnsupported) {
  testing::TempDir dir;
  ASSERT_TRUE(testing::Run("cd " + dir.path() +
                           " && qemu-img create -q -f qcow2 base.qcow2 1M && " +
                           "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2"));
  auto e = OpenError(dir.File("top.qcow2"));
  EXPECT_EQ(e.code, ErrorCode::kUnsupported);
  EXPECT_NE(e.message.find("backing file"), std::string::npos) << e.ToString();
}

TEST(Qcow2, EncryptionIsUnsupported) {
  // A plain qcow2 whose header says LUKS (crypt_method 2 at offset 32): qemu-img's own LUKS
  // create benchmarks PBKDF and fails on a loaded machine ("Unable to get accurate CPU usage").
  testing::TempDir dir;
  ASSERT_TRUE(testing::Run("qemu-img create -q -f qcow2 " + dir.File("enc.qcow2") + " 1M"));
  auto bytes = testing::ReadFile(dir.File("enc.qcow2"));
  ASSERT_GT(bytes.size(), 36U);
  bytes[35] = std::byte{2};
  testing::WriteFile(dir.File("enc.qcow2"), bytes);
  auto e = OpenError(dir.File("enc.qcow2"));
  EXPECT_EQ(e.code, ErrorCode::kUnsupported);
  EXPECT_NE(e.message.find("encrypted"), std::string::npos) << e.ToString();
}

TEST(Qcow2, ExternalDataFileIsUnsupported) {
  testing::TempDir dir;
  ASSERT_TRUE(testing::Run("qemu-img create -q -f qcow2 -o data_file=" + dir.File("data.raw") +
                           " " + dir.File("ext.qcow2") + " 1M"));
  auto e = OpenError(dir.File("ext.qcow2"));
  EXPECT_EQ(e.code, ErrorCode::kUnsupported);
  EXPECT_NE(e.message.find("external data file"), std::string::npos) << e.ToString();
}

std::vector<std::byte> V3Image() {
  return testing::ReadFile(testing::CorpusEntry("random.qcow2-v3").path);
}

TEST(Qcow2, HeaderChecks) {
  {
    auto b = V3Image();
    StoreBe32(b.data() + 4, 1);
    auto e = DecodeError(b);
    EXPECT_EQ(e.code, ErrorCode::kUnsupported) << e.ToString();
  }
  {
    auto b = V3Image();
    StoreBe64(b.data() + 72, LoadBe64(b.data() + 72) | kQcow2IncompatCorrupt);
    auto e = DecodeError(b);
    EXPECT_EQ(e.code, ErrorCode::kCorruptData) << e.ToString();
    EXPECT_NE(e.message.find("marked corrupt"), std::string::npos) << e.ToString();
  }
  {
    auto b = V3Image();
    StoreBe64(b.data() + 72, LoadBe64(b.data() + 72) | (uint64_t{1} << 40));
    auto e = DecodeError(b);
    EXPECT_EQ(e.code, ErrorCode::kUnsupported) << e.ToString();
    EXPECT_NE(e.message.find("unknown incompatible features 0x10000000000"), std::string::npos)
        << e.ToString();
  }
  {
    auto b = V3Image();
    StoreBe32(b.data() + 20, 22);  // 4 MiB clusters
    auto e = DecodeError(b);
    EXPECT_EQ(e.code, ErrorCode::kCorruptData) << e.ToString();
    EXPECT_NE(e.message.find("header offset 20"), std::string::npos) << e.ToString();
  }
  {
    auto b = V3Image();
    StoreBe32(b.data() + 36, 0);  // no L1 entries for a non-empty disk
    auto e = DecodeError(b);
    EXPECT_EQ(e.code, ErrorCode::kCorruptData) << e.ToString();
    EXPECT_NE(e.message.find("l1_size"), std::string::npos) << e.ToString();
  }
  {
    auto b = V3Image();
    b[104] = std::byte{1};  // zstd without the feature bit
    auto e = DecodeError(b);
    EXPECT_EQ(e.code, ErrorCode::kCorruptData) << e.ToString();
  }
}

uint64_t L1Offset(const std::vector<std::byte>& b) { return LoadBe64(b.data() + 40); }

TEST(Qcow2, MisalignedL2TableIsCorruptAndNamesTheL1Entry) {
  auto b = V3Image();
  const uint64_t l1 = L1Offset(b);
  StoreBe64(b.data() + l1, (LoadBe64(b.data() + l1) + 512) | (uint64_t{1} << 63));
  auto e = DecodeError(b);
  EXPECT_EQ(e.code, ErrorCode::kCorruptData) << e.ToString();
  EXPECT_NE(e.message.find("offset " + std::to_string(l1) + ": L1 entry 0"), std::string::npos)
      << e.ToString();
}

TEST(Qcow2, DataClusterPastTheEndIsCorrupt) {
  auto b = V3Image();
  const uint64_t l2 = LoadBe64(b.data() + L1Offset(b)) & 0x00fffffffffffe00ULL;
  StoreBe64(b.data() + l2 + 8, (uint64_t{1} << 63) | (uint64_t{1} << 40));  // cluster 1 at 1 TiB
  auto e = DecodeError(b);
  EXPECT_EQ(e.code, ErrorCode::kCorruptData) << e.ToString();
  EXPECT_NE(e.message.find("offset " + std::to_string(l2 + 8)), std::string::npos) << e.ToString();
}

TEST(Qcow2, ZeroFlagInVersion2IsCorrupt) {
  auto b = testing::ReadFile(testing::CorpusEntry("random.qcow2-v2").path);
  const uint64_t l2 = LoadBe64(b.data() + L1Offset(b)) & 0x00fffffffffffe00ULL;
  StoreBe64(b.data() + l2, LoadBe64(b.data() + l2) | 1);
  auto e = DecodeError(b);
  EXPECT_EQ(e.code, ErrorCode::kCorruptData) << e.ToString();
  EXPECT_NE(e.message.find("zero flag in a version 2 image"), std::string::npos) << e.ToString();
}

TEST(Qcow2, CompressedClusterThatDoesNotInflateIsCorrupt) {
  auto b = testing::ReadFile(testing::CorpusEntry("text.qcow2-zlib").path);
  const uint64_t l2 = LoadBe64(b.data() + L1Offset(b)) & 0x00fffffffffffe00ULL;
  const uint64_t entry = LoadBe64(b.data() + l2);
  ASSERT_NE(entry & (uint64_t{1} << 62), 0u) << "first cluster is not compressed";
  const uint64_t host = entry & ((uint64_t{1} << 54) - 1);  // 64 KiB clusters: x = 54
  for (size_t i = 0; i < 64; ++i) {
    b[host + i] = std::byte{0xff};
  }
  auto e = DecodeError(b);
  EXPECT_EQ(e.code, ErrorCode::kCorruptData) << e.ToString();
  EXPECT_NE(e.message.find("compressed cluster 0"), std::string::npos) << e.ToString();
}

}  // namespace
}  // namespace vmimport::disk
