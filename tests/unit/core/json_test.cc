#include "core/json.h"

#include <gtest/gtest.h>

#include "core/strings.h"

namespace vmimport::core {
namespace {

const std::string kBadUtf8 =
    "vm-\xC3\xB1"
    "and\xFF\xC3";  // "vm-ñand", a stray 0xFF, a cut 'ú'

TEST(JsonAccessors, WrongTypesReadAsAbsentAndNeverThrow) {
  const Json j = ParseJson(R"({"s":"x","i":-3,"u":18446744073709551615,"f":1.5,"b":true,
                               "o":{"k":"v"},"a":[1],"n":null})")
                     .value();
  EXPECT_EQ(JsonString(j, "s"), "x");
  EXPECT_EQ(JsonString(j, "i", "dflt"), "dflt");
  EXPECT_EQ(JsonString(j, "missing"), "");
  EXPECT_EQ(JsonInt(j, "i"), -3);
  EXPECT_EQ(JsonInt(j, "u"), std::nullopt);  // above int64
  EXPECT_EQ(JsonInt(j, "s"), std::nullopt);
  EXPECT_EQ(JsonInt(j, "f"), std::nullopt);
  EXPECT_EQ(JsonUint(j, "u"), 18446744073709551615ULL);
  EXPECT_EQ(JsonUint(j, "i"), std::nullopt);  // negative
  EXPECT_EQ(JsonNumber(j, "f"), 1.5);
  EXPECT_EQ(JsonNumber(j, "i"), -3.0);
  EXPECT_EQ(JsonNumber(j, "s"), std::nullopt);
  EXPECT_EQ(JsonBool(j, "b"), true);
  EXPECT_EQ(JsonBool(j, "s"), std::nullopt);
  EXPECT_EQ(JsonString(JsonObject(j, "o"), "k"), "v");
  EXPECT_TRUE(JsonObject(j, "a").empty());
  EXPECT_TRUE(JsonObject(j, "a").is_object());
  EXPECT_EQ(JsonArray(j, "a").size(), 1U);
  EXPECT_TRUE(JsonArray(j, "o").is_array());
  EXPECT_EQ(JsonMember(j, "n")->type(), Json::value_t::null);
  // Not an object at all: what nlohmann's value() and const operator[] throw or assert on.
  for (const Json& other : {Json(), Json(3), Json("text"), Json::array({1, 2})}) {
    EXPECT_EQ(JsonMember(other, "k"), nullptr);
    EXPECT_EQ(JsonString(other, "k", "d"), "d");
    EXPECT_EQ(JsonInt(other, "k"), std::nullopt);
    EXPECT_TRUE(JsonObject(other, "k").is_object());
    EXPECT_TRUE(JsonArray(other, "k").is_array());
  }
}

TEST(JsonAccessors, RequireStringNamesThePath) {
  const Json j = {{"type", 7}};
  auto r = RequireJsonString(j, "type", "watch event");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message, "watch event.type: expected a string");
  EXPECT_EQ(RequireJsonString({{"type", "ADDED"}}, "type", "").value_or("?"), "ADDED");
  EXPECT_FALSE(RequireJsonString(Json(), "type", "x"));
}

TEST(ParseJson, RejectsGarbageAndInvalidUtf8WithoutThrowing) {
  EXPECT_FALSE(ParseJson("{"));
  EXPECT_FALSE(ParseJson(""));
  EXPECT_FALSE(ParseJson("{\"a\":\"" + kBadUtf8 + "\"}"));
  EXPECT_TRUE(ParseJson(R"({"a":"vm-ñandú"})"));
}

TEST(DumpJson, ReplacesInvalidUtf8WhereStrictDumpThrows) {
  const Json j = {{"message", kBadUtf8}, {"nested", {{"name", std::string("\xED\xA0\x80")}}}};
  EXPECT_THROW((void)j.dump(), Json::type_error);  // why DumpJson exists
  const std::string out = DumpJson(j);
  EXPECT_TRUE(IsValidUtf8(out)) << out;
  EXPECT_NE(out.find("vm-\xC3\xB1"
                     "and\xEF\xBF\xBD\xEF\xBF\xBD"),
            std::string::npos)
      << out;
  auto back = ParseJson(out);
  ASSERT_TRUE(back);
  EXPECT_EQ(JsonString(JsonObject(*back, "nested"), "name"),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate: three bad bytes
  EXPECT_EQ(DumpJson({{"a", "ñ"}}, 1), "{\n \"a\": \"ñ\"\n}");
}

TEST(SanitizeJsonStrings, MakesAStrictDumpSafe) {
  Json j = {{"conditions", {{{"message", kBadUtf8}}, {{"message", "fine ñ"}}}}, {"n", 1}};
  SanitizeJsonStrings(j);
  std::string out;
  ASSERT_NO_THROW(out = j.dump());
  EXPECT_TRUE(IsValidUtf8(out));
  EXPECT_EQ(j["conditions"][1]["message"], "fine ñ");
  EXPECT_EQ(j["conditions"][0]["message"], SanitizeUtf8(kBadUtf8));
}

}  // namespace
}  // namespace vmimport::core
