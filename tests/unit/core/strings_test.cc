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

TEST(Utf8, SequenceLengthFollowsRfc3629) {
  EXPECT_EQ(Utf8SequenceLength("a", 0), 1U);
  EXPECT_EQ(Utf8SequenceLength("\xC3\xB1", 0), 2U);          // ñ
  EXPECT_EQ(Utf8SequenceLength("\xE2\x82\xAC", 0), 3U);      // €
  EXPECT_EQ(Utf8SequenceLength("\xF0\x9F\x98\x80", 0), 4U);  // an emoji
  EXPECT_EQ(Utf8SequenceLength("\xC3", 0), 0U);              // cut short
  EXPECT_EQ(Utf8SequenceLength("\xB1", 0), 0U);              // a lone continuation byte
  EXPECT_EQ(Utf8SequenceLength("\xC0\xAF", 0), 0U);          // overlong '/'
  EXPECT_EQ(Utf8SequenceLength("\xE0\x80\xAF", 0), 0U);      // overlong '/'
  EXPECT_EQ(Utf8SequenceLength("\xED\xA0\x80", 0), 0U);      // a surrogate
  EXPECT_EQ(Utf8SequenceLength("\xF4\x90\x80\x80", 0), 0U);  // above U+10FFFF
  EXPECT_EQ(Utf8SequenceLength("\xFF", 0), 0U);
  EXPECT_EQ(Utf8SequenceLength("a", 1), 0U);  // past the end
}

TEST(Utf8, SanitizeReplacesEachBadByteAndKeepsGoodText) {
  EXPECT_EQ(SanitizeUtf8("vm-ñandú"), "vm-ñandú");
  EXPECT_EQ(SanitizeUtf8(""), "");
  EXPECT_EQ(SanitizeUtf8("a\xFF"
                         "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(SanitizeUtf8("\xC3"), "\xEF\xBF\xBD");  // a character cut at the end
  EXPECT_EQ(SanitizeUtf8(std::string("x\0y", 3)), std::string("x\0y", 3));
  EXPECT_TRUE(IsValidUtf8(SanitizeUtf8("\xED\xA0\x80\xC0\xAF\xF8")));
  EXPECT_TRUE(IsValidUtf8("vm-ñandú"));
  EXPECT_FALSE(
      IsValidUtf8("vm-\xF1"
                  "and\xFA"));  // the same name in Latin-1
}

TEST(Utf8, TruncateNeverSplitsACharacter) {
  EXPECT_EQ(TruncateUtf8("abc", 5), "abc");
  EXPECT_EQ(TruncateUtf8("añb", 2), "a");  // ñ is two bytes: not cut in half
  EXPECT_EQ(TruncateUtf8("añb", 3), "añ");
  EXPECT_EQ(TruncateUtf8("a\xFF"
                         "b",
                         2),
            "a\xFF");  // a bad byte counts as one
  EXPECT_EQ(TruncateUtf8("ñ", 0), "");
}

}  // namespace
}  // namespace vmimport::core
