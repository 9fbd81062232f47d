#include "disk/format.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "disk/open.h"
#include "disk_test_util.h"

namespace vmimport::disk {
namespace {

std::vector<std::byte> Bytes(std::string_view s) {
  std::vector<std::byte> b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

TEST(DetectFormat, ReadsTheMagicBytes) {
  EXPECT_EQ(DetectFormat(Bytes("KDMV\x03")), DiskFormat::kVmdkSparse);
  EXPECT_EQ(DetectFormat(Bytes("# Disk DescriptorFile\nversion=1\n")), DiskFormat::kVmdkDescriptor);
  EXPECT_EQ(DetectFormat(Bytes(std::string_view("QFI\xfb\0\0\0\3", 8))), DiskFormat::kQcow2);
  EXPECT_EQ(DetectFormat(Bytes("vhdxfile")), DiskFormat::kUnsupported);
  EXPECT_EQ(DetectFormat(Bytes("conectix")), DiskFormat::kUnsupported);
  EXPECT_EQ(DetectFormat(Bytes("COWD")), DiskFormat::kUnsupported);
  EXPECT_EQ(DetectFormat(Bytes(std::string_view("\xeb\x63\x90", 3))), DiskFormat::kRaw);  // MBR
  EXPECT_EQ(DetectFormat(Bytes("KDM")), DiskFormat::kRaw);  // too short to be anything else
  EXPECT_EQ(DetectFormat({}), DiskFormat::kRaw);
  EXPECT_EQ(DetectFormat(Bytes("# Disk Descriptor")), DiskFormat::kRaw);
}

TEST(DetectFormat, IgnoresTheFileName) {
  // A qcow2 named .vmdk and a raw disk named .qcow2 decode as what they are.
  testing::TempDir dir;
  const auto& qcow2 = testing::CorpusEntry("random.qcow2-v3");
  const auto& raw = testing::CorpusEntry("random.raw");
  testing::WriteFile(dir.File("disk.vmdk"), testing::ReadFile(qcow2.path));
  testing::WriteFile(dir.File("disk.qcow2"), testing::ReadFile(raw.path));
  auto as_vmdk = OpenDiskFile({}, dir.File("disk.vmdk"));
  ASSERT_TRUE(as_vmdk) << as_vmdk.error().ToString();
  EXPECT_EQ((*as_vmdk)->FormatName(), "qcow2");
  auto as_qcow2 = OpenDiskFile({}, dir.File("disk.qcow2"));
  ASSERT_TRUE(as_qcow2) << as_qcow2.error().ToString();
  EXPECT_EQ((*as_qcow2)->FormatName(), "raw");
  auto decoded = testing::DecodeAll(**as_vmdk);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->sha256, qcow2.sha256);
}

TEST(OpenDisk, RefusesKnownFormatsItCannotRead) {
  testing::TempDir dir;
  auto vhdx = Bytes("vhdxfile");
  vhdx.resize(4096);
  testing::WriteFile(dir.File("x.img"), vhdx);
  auto reader = OpenDiskFile({}, dir.File("x.img"));
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().code, core::ErrorCode::kUnsupported);
  EXPECT_NE(reader.error().message.find("vhdx"), std::string::npos) << reader.error().ToString();
}

TEST(OpenDisk, MissingFileIsNotFound) {
  auto reader = OpenDiskFile({}, "/nonexistent/disk.vmdk");
  ASSERT_FALSE(reader);
  EXPECT_EQ(reader.error().code, core::ErrorCode::kNotFound);
}

}  // namespace
}  // namespace vmimport::disk
