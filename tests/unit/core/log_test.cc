#include "core/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/json.h"
#include "core/strings.h"

namespace vmimport::core {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(Logger, WritesLogfmtWithBoundFieldsFirst) {
  auto sink = std::make_shared<MemorySink>();
  Logger log(sink, LogLevel::kInfo, LogFormat::kLogfmt);
  auto bound = log.With({{"import", "default/web-1"}});
  bound.Info("disk stream finished", {{"disk", 0}, {"bytes", uint64_t{42949672960}}});
  const auto lines = sink->Lines();
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_THAT(lines[0], StartsWith("time="));
  EXPECT_THAT(lines[0], EndsWith(" level=info msg=\"disk stream finished\" import=default/web-1 "
                                 "disk=0 bytes=42949672960"));
}

TEST(Logger, QuotesAndEscapesValuesThatNeedIt) {
  auto sink = std::make_shared<MemorySink>();
  Logger log(sink, LogLevel::kDebug, LogFormat::kLogfmt);
  log.Error("x", {{"reason", "a b=\"c\"\n"}, {"empty", ""}, {"ok", true}});
  EXPECT_THAT(sink->Lines().at(0),
              EndsWith("level=error msg=\"x\" reason=\"a b=\\\"c\\\"\\n\" empty=\"\" ok=true"));
}

TEST(Logger, DropsLinesBelowItsLevel) {
  auto sink = std::make_shared<MemorySink>();
  Logger log(sink, LogLevel::kWarn, LogFormat::kLogfmt);
  log.Info("hidden");
  log.Debug("hidden");
  log.Warn("shown");
  ASSERT_EQ(sink->Lines().size(), 1U);
  EXPECT_THAT(sink->Lines()[0], HasSubstr("level=warning msg=\"shown\""));
}

TEST(Logger, WritesJsonWithTypedValues) {
  auto sink = std::make_shared<MemorySink>();
  Logger log(sink, LogLevel::kInfo, LogFormat::kJson);
  log.Info("m", {{"n", 3}, {"s", "q\""}});
  EXPECT_THAT(sink->Lines().at(0), EndsWith(R"("level":"info","msg":"m","n":3,"s":"q\""})"));
}

// A VM name or fault text from a source may be Latin-1 or cut mid-character: every line stays
// valid UTF-8 (JSON lines stay parseable), each bad byte shown as U+FFFD.
TEST(Logger, ReplacesInvalidUtf8InMessagesAndFields) {
  const std::string bad =
      "vm-\xF1"
      "and\xFA";  // "vm-ñandú" in Latin-1
  auto sink = std::make_shared<MemorySink>();
  Logger logfmt(sink, LogLevel::kInfo, LogFormat::kLogfmt);
  logfmt.With({{"vm", bad}}).Error("fault " + bad, {{"error", "cut \xC3"}, {"ok", "vm-ñandú"}});
  Logger json(sink, LogLevel::kInfo, LogFormat::kJson);
  json.With({{"vm", bad}}).Error("fault " + bad, {{"error", "cut \xC3"}, {"ok", "vm-ñandú"}});
  const auto lines = sink->Lines();
  ASSERT_EQ(lines.size(), 2U);
  for (const std::string& line : lines) {
    EXPECT_TRUE(IsValidUtf8(line)) << line;
  }
  EXPECT_THAT(lines[0], HasSubstr("msg=\"fault vm-\\ufffdand\\ufffd\" vm=\"vm-\\ufffdand\\ufffd\" "
                                  "error=\"cut \\ufffd\" ok=vm-ñandú"));
  auto parsed = ParseJson(lines[1]);
  ASSERT_TRUE(parsed) << lines[1];
  EXPECT_EQ(JsonString(*parsed, "msg"), "fault vm-\uFFFDand\uFFFD");
  EXPECT_EQ(JsonString(*parsed, "vm"), "vm-\uFFFDand\uFFFD");
  EXPECT_EQ(JsonString(*parsed, "error"), "cut \uFFFD");
  EXPECT_EQ(JsonString(*parsed, "ok"), "vm-ñandú");
}

TEST(LogLevel, ParsesKnownNamesOnly) {
  LogLevel level = LogLevel::kInfo;
  EXPECT_TRUE(ParseLogLevel("debug", level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_TRUE(ParseLogLevel("warning", level));
  EXPECT_EQ(level, LogLevel::kWarn);
  EXPECT_FALSE(ParseLogLevel("loud", level));
  EXPECT_EQ(level, LogLevel::kWarn);
}

}  // namespace
}  // namespace vmimport::core
