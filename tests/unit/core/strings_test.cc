#include "core/strings.h"

#include <gtest/gtest.h>

namespace vmimport::core {
namespace {

TEST(Base64, RoundTripsEveryLengthModuloThree) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto back = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(back.has_value()) << s;
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(Base64Encode("hello"), "aGVsbG8=");
}

TEST(Base64, IgnoresWhitespaceAndRejectsGarbage) {
  EXPECT_EQ(Base64Decode("aGVs\nbG8=").value_or("?"), "hello");
  EXPECT_FALSE(Base64Decode("aGVs*bG8=").has_value());
  EXPECT_FALSE(Base64Decode("aGVsbG8=aa").has_value());
}

TEST(Strings, SplitKeepsEmptyFields) {
  auto parts = Split("a::b", ':');
  ASSERT_EQ(parts.size(), 3U);
  EXPECT_EQ(parts[1], "");
  EXPECT_EQ(parts[2], "b");
}

TEST(Strings, UrlEncodeLeavesUnreservedAlone) {
  EXPECT_EQ(UrlEncode("a-b_c.d~e"), "a-b_c.d~e");
  EXPECT_EQ(UrlEncode("app in (a,b)"), "app%20in%20%28a%2Cb%29");
}

TEST(Strings, CaseHelpers) {
  EXPECT_EQ(ToLower("VmwareSource"), "vmwaresource");
  EXPECT_TRUE(EqualsIgnoreCase("OvaSource", "ovasource"));
  EXPECT_FALSE(EqualsIgnoreCase("OvaSource", "ovasourc"));
  EXPECT_EQ(TrimSpace("  x y \n"), "x y");
  EXPECT_EQ(HexEncode(std::string("\x01\xab", 2)), "01ab");
}

}  // namespace
}  // namespace vmimport::core
