#include "ovf/tar.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "unit/ovf/tar_builder.h"

namespace vmimport::ovf {
namespace {

using testing::TarBuilder;

std::vector<std::byte> Bytes(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

struct Read {
  std::vector<TarEntry> entries;
  std::vector<std::string> data;
  std::optional<core::Error> error;
};

// Reads every entry and its whole data, stopping at the first error.
Read ReadArchive(const std::string& archive, size_t max_chunk = 0) {
  disk::MemoryByteSource source(Bytes(archive), max_chunk);
  TarReader tar(source, "test.ova");
  Read out;
  while (true) {
    auto next = tar.Next({});
    if (!next) {
      out.error = next.error();
      return out;
    }
    if (!*next) {
      return out;
    }
    out.entries.push_back(**next);
    std::string data;
    std::byte buf[100];
    while (true) {
      auto n = tar.Data().Read({}, buf);
      if (!n) {
        out.error = n.error();
        return out;
      }
      if (*n == 0) {
        break;
      }
      data.append(reinterpret_cast<const char*>(buf), *n);
    }
    out.data.push_back(data);
  }
}

TEST(TarReader, ReadsUstarEntriesInOrderWithTheirOffsets) {
  const std::string disk(1500, 'd');
  TarBuilder b;
  b.File("vm.ovf", "<Envelope/>").File("vm.mf", "SHA256(x)= y\n").File("./disk1.vmdk", disk).End();
  const Read r = ReadArchive(b.str(), 7);  // short reads everywhere
  ASSERT_FALSE(r.error) << r.error->ToString();
  ASSERT_EQ(r.entries.size(), 3U);
  EXPECT_EQ(r.entries[0].name, "vm.ovf");
  EXPECT_EQ(r.entries[0].header_offset, 0U);
  EXPECT_EQ(r.entries[0].data_offset, 512U);
  EXPECT_EQ(r.entries[1].header_offset, 1024U);
  EXPECT_EQ(r.entries[2].name, "disk1.vmdk");  // "./" dropped
  EXPECT_EQ(r.entries[2].size, 1500U);
  EXPECT_EQ(r.entries[2].EndOffset(), 2048U + 512U + 1536U);
  EXPECT_EQ(r.data[0], "<Envelope/>");
  EXPECT_EQ(r.data[2], disk);
}

TEST(TarReader, UnreadDataIsSkippedByNext) {
  TarBuilder b;
  b.File("a.vmdk", std::string(3000, 'a')).File("b.ovf", "ovf").End();
  disk::MemoryByteSource source(Bytes(b.str()));
  TarReader tar(source, "test.ova");
  ASSERT_EQ((*tar.Next({}))->name, "a.vmdk");
  std::byte one[1];
  ASSERT_EQ(*tar.Data().Read({}, one), 1U);
  auto next = tar.Next({});
  ASSERT_TRUE(next && *next);
  EXPECT_EQ((*next)->name, "b.ovf");
  EXPECT_FALSE(*tar.Next({}));
}

TEST(TarReader, SkipFunctionPassesOverDataWithoutReadingIt) {
  TarBuilder b;
  b.File("a.vmdk", std::string(5000, 'a')).File("b.ovf", "ovf").End();
  const std::string archive = b.str();
  // The source holds only the headers; data bytes would read as garbage if they were read.
  disk::MemoryByteSource headers(Bytes(archive.substr(0, 512) + archive.substr(512 + 5120)));
  uint64_t skipped = 0;
  TarReader tar(headers, "test.ova", 0, [&](std::stop_token, uint64_t n) {
    skipped += n;
    return core::Status{};
  });
  ASSERT_EQ((*tar.Next({}))->name, "a.vmdk");
  auto next = tar.Next({});
  ASSERT_TRUE(next && *next) << (next ? "" : next.error().ToString());
  EXPECT_EQ((*next)->name, "b.ovf");
  EXPECT_EQ((*next)->header_offset, 512U + 5120U);
  EXPECT_EQ(skipped, 5120U);
}

TEST(TarReader, GnuLongNamesAndPaxPathsAndSizes) {
  const std::string long_name = std::string(150, 'n') + ".vmdk";
  const std::string pax_name = "dir/" + std::string(120, 'p') + ".vmdk";
  TarBuilder b;
  b.LongName(long_name).File("truncated-name", "long");
  b.Pax({{"path", pax_name}, {"size", "3"}}).File("short", "");  // the header says 0 bytes
  b.Raw(std::string("pax") + std::string(509, '\0'));
  b.Base256File("big.vmdk", "base256").End();
  const Read r = ReadArchive(b.str());
  ASSERT_FALSE(r.error) << r.error->ToString();
  ASSERT_EQ(r.entries.size(), 3U);
  EXPECT_EQ(r.entries[0].name, long_name);
  EXPECT_EQ(r.entries[0].header_offset, 0U);  // the 'L' header belongs to the entry
  EXPECT_EQ(r.entries[0].data_offset, 3U * 512U);
  EXPECT_EQ(r.data[0], "long");
  EXPECT_EQ(r.entries[1].name, pax_name);
  EXPECT_EQ(r.entries[1].size, 3U);
  EXPECT_EQ(r.data[1], "pax");
  EXPECT_EQ(r.entries[2].name, "big.vmdk");
  EXPECT_EQ(r.data[2], "base256");
}

TEST(TarReader, ParsesTarNumbers) {
  auto num = [](const std::string& s) { return ParseTarNumber(std::as_bytes(std::span(s))); };
  EXPECT_EQ(num("00000001750\0"), 1000U);
  EXPECT_EQ(num("   1750 \0\0"), 1000U);
  EXPECT_EQ(num(std::string(12, '\0')), 0U);
  EXPECT_EQ(num("1000000000000"), 68719476736U);  // 8^12 = 64 GiB: the octal limit
  EXPECT_FALSE(num("00000001790\0"));
  EXPECT_FALSE(num("12 34"));
  std::string b256(12, '\0');
  b256[0] = static_cast<char>(0x80);
  b256[7] = 0x02;  // 2 << 32 = 8 GiB
  EXPECT_EQ(num(b256), 8589934592U);
  b256[0] = static_cast<char>(0xff);
  EXPECT_FALSE(num(b256));
  std::string huge(12, static_cast<char>(0xfe));
  huge[0] = static_cast<char>(0x80 | 0x7f);
  EXPECT_FALSE(num(huge));
}

TEST(TarReader, TruncatedEntryIsAnErrorNeverAShortEntry) {
  TarBuilder b;
  b.File("vm.ovf", "ovf").File("disk1.vmdk", std::string(4000, 'x')).End();
  const std::string cut = b.str().substr(0, 1024 + 512 + 2000);
  const Read r = ReadArchive(cut);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->code, core::ErrorCode::kCorruptData);
  EXPECT_NE(r.error->message.find("truncated"), std::string::npos) << r.error->message;
  EXPECT_NE(r.error->message.find("disk1.vmdk"), std::string::npos) << r.error->message;
  EXPECT_NE(r.error->message.find("2000 of 4000"), std::string::npos) << r.error->message;
  EXPECT_EQ(r.data.size(), 1U);  // only the complete entry came out
}

TEST(TarReader, TruncatedWhileSkippingOrInsideAHeaderIsAnError) {
  TarBuilder b;
  b.File("disk1.vmdk", std::string(4000, 'x')).File("vm.ovf", "ovf").End();
  {
    disk::MemoryByteSource source(Bytes(b.str().substr(0, 2000)));
    TarReader tar(source, "test.ova");
    ASSERT_TRUE(tar.Next({}));
    auto next = tar.Next({});  // skips disk1's data, which is cut
    ASSERT_FALSE(next);
    EXPECT_EQ(next.error().code, core::ErrorCode::kCorruptData);
    EXPECT_NE(next.error().message.find("disk1.vmdk"), std::string::npos);
  }
  {
    const Read r = ReadArchive(b.str().substr(0, 512 + 4096 + 100));  // mid-header
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->message.find("truncated"), std::string::npos) << r.error->message;
  }
  {
    TarBuilder pax;
    pax.Pax({{"path", "x.vmdk"}});  // a pax header and then nothing
    const Read r = ReadArchive(pax.str());
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->message.find("truncated"), std::string::npos) << r.error->message;
  }
}

TEST(TarReader, BadChecksumAndBadPaxAreCorrupt) {
  TarBuilder b;
  b.File("vm.ovf", "ovf").End();
  std::string bad = b.str();
  bad[10] = 'X';
  Read r = ReadArchive(bad);
  ASSERT_TRUE(r.error);
  EXPECT_NE(r.error->message.find("checksum"), std::string::npos);
  TarBuilder p;
  p.Pax({{"size", "-1"}}).File("x", "").End();
  r = ReadArchive(p.str());
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->code, core::ErrorCode::kCorruptData);
  EXPECT_NE(r.error->message.find("pax size"), std::string::npos) << r.error->message;
}

TEST(TarReader, ArchiveEndingAtAnEntryBoundaryEnds) {
  TarBuilder b;
  b.File("vm.ovf", "ovf");  // no end-of-archive blocks
  const Read r = ReadArchive(b.str());
  ASSERT_FALSE(r.error);
  EXPECT_EQ(r.entries.size(), 1U);
}

}  // namespace
}  // namespace vmimport::ovf
