#include "ovf/manifest.h"

#include <gtest/gtest.h>

#include <string>

#include "core/strings.h"

namespace vmimport::ovf {
namespace {

std::vector<std::byte> Bytes(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

const std::string kAbcSha1 = "a9993e364706816aba3e25717850c26c9cd0d89d";
const std::string kAbcSha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(Manifest, ParsesSha1AndSha256Lines) {
  auto m = ParseManifest("SHA1(vm.ovf)= " + kAbcSha1 +
                             "\r\n\nSHA256(disk (1).vmdk)=" + core::ToLower(kAbcSha256) + "\n",
                         "vm.mf");
  ASSERT_TRUE(m) << m.error().ToString();
  ASSERT_EQ(m->size(), 2U);
  EXPECT_EQ(m->at("vm.ovf").algorithm, DigestAlgorithm::kSha1);
  EXPECT_EQ(m->at("vm.ovf").hex, kAbcSha1);
  EXPECT_EQ(m->at("disk (1).vmdk").algorithm, DigestAlgorithm::kSha256);
}

TEST(Manifest, RejectsMalformedLinesAndAlgorithms) {
  auto bad = ParseManifest("SHA256(x)= 1234\n", "vm.mf");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, core::ErrorCode::kCorruptData);
  EXPECT_NE(bad.error().message.find("vm.mf: line 1"), std::string::npos);
  auto md5 = ParseManifest("MD5(x)= d41d8cd98f00b204e9800998ecf8427e\n", "vm.mf");
  ASSERT_FALSE(md5);
  EXPECT_EQ(md5.error().code, core::ErrorCode::kUnsupported);
  EXPECT_FALSE(ParseManifest("just text\n", "vm.mf"));
  EXPECT_FALSE(ParseManifest("SHA1(a)= " + kAbcSha1 + "\nSHA1(a)= " + kAbcSha1, "vm.mf"));
}

TEST(Manifest, DigestsMatchKnownVectors) {
  const std::string abc = "abc";
  EXPECT_EQ(DigestOf(DigestAlgorithm::kSha1, std::as_bytes(std::span(abc))), kAbcSha1);
  EXPECT_EQ(DigestOf(DigestAlgorithm::kSha256, std::as_bytes(std::span(abc))), kAbcSha256);
}

std::string ReadAllOf(disk::ByteSource& s, std::optional<core::Error>* error) {
  std::string out;
  std::byte buf[3];
  while (true) {
    auto n = s.Read({}, buf);
    if (!n) {
      *error = n.error();
      return out;
    }
    if (*n == 0) {
      return out;
    }
    out.append(reinterpret_cast<const char*>(buf), *n);
  }
}

TEST(DigestCheckingSource, PassesAMatchingFile) {
  DigestCheckingSource s(std::make_unique<disk::MemoryByteSource>(Bytes("abc")), "disk1.vmdk", 3,
                         {DigestAlgorithm::kSha1, kAbcSha1});
  std::optional<core::Error> error;
  EXPECT_EQ(ReadAllOf(s, &error), "abc");
  EXPECT_FALSE(error);
  EXPECT_TRUE(s.verified());
}

TEST(DigestCheckingSource, MismatchFailsTheReadOfTheLastByteWithBothDigests) {
  const std::string data = "abcdef";
  DigestCheckingSource s(std::make_unique<disk::MemoryByteSource>(Bytes(data)), "disk1.vmdk", 6,
                         {DigestAlgorithm::kSha256, kAbcSha256});
  std::optional<core::Error> error;
  const std::string got = ReadAllOf(s, &error);
  ASSERT_TRUE(error);
  EXPECT_EQ(got, "abc");  // the read holding the last byte failed instead of returning it
  EXPECT_EQ(error->code, core::ErrorCode::kCorruptData);
  EXPECT_NE(error->message.find("disk1.vmdk"), std::string::npos);
  EXPECT_NE(error->message.find(kAbcSha256), std::string::npos) << error->message;
  EXPECT_NE(error->message.find(DigestOf(DigestAlgorithm::kSha256, std::as_bytes(std::span(data)))),
            std::string::npos);
  EXPECT_FALSE(s.verified());
}

TEST(DigestCheckingSource, ShortFileIsTruncatedAndLongerInputIsNotRead) {
  DigestCheckingSource short_file(std::make_unique<disk::MemoryByteSource>(Bytes("ab")), "d.vmdk",
                                  3, {DigestAlgorithm::kSha1, kAbcSha1});
  std::optional<core::Error> error;
  ReadAllOf(short_file, &error);
  ASSERT_TRUE(error);
  EXPECT_NE(error->message.find("truncated"), std::string::npos);
  DigestCheckingSource longer(std::make_unique<disk::MemoryByteSource>(Bytes("abcXYZ")), "d.vmdk",
                              3, {DigestAlgorithm::kSha1, kAbcSha1});
  error.reset();
  EXPECT_EQ(ReadAllOf(longer, &error), "abc");
  EXPECT_FALSE(error);
}

}  // namespace
}  // namespace vmimport::ovf

namespace vmimport::disk {
namespace {

TEST(DigestAlgorithm, ParsesEverySpellingOurSourcesUse) {
  EXPECT_EQ(ParseDigestAlgorithm("sha256"), DigestAlgorithm::kSha256);  // vSphere checksumType
  EXPECT_EQ(ParseDigestAlgorithm("SHA512"), DigestAlgorithm::kSha512);  // OVF manifest
  EXPECT_EQ(ParseDigestAlgorithm("sha-1"), DigestAlgorithm::kSha1);
  EXPECT_FALSE(ParseDigestAlgorithm("md5"));  // Glance's old checksum
  EXPECT_FALSE(ParseDigestAlgorithm(""));
  EXPECT_STREQ(DigestAlgorithmLowerName(DigestAlgorithm::kSha512), "sha512");
  EXPECT_TRUE(IsDigestHex(DigestAlgorithm::kSha1, std::string(40, 'F')));
  EXPECT_FALSE(IsDigestHex(DigestAlgorithm::kSha1, std::string(39, 'f')));
  EXPECT_FALSE(IsDigestHex(DigestAlgorithm::kSha256, std::string(64, 'g')));
}

}  // namespace
}  // namespace vmimport::disk
