#include "core/clock.h"

#include <gtest/gtest.h>

namespace vmimport::core {
namespace {

using namespace std::chrono;

TEST(Rfc3339, FormatsAndParsesKubernetesTimes) {
  const auto t =
      sys_days{year{2026} / 11 / 24} + hours(5) + minutes(46) + seconds(25) + microseconds(123456);
  EXPECT_EQ(FormatRfc3339(t), "2026-11-24T05:46:25Z");
  EXPECT_EQ(FormatRfc3339Micro(t), "2026-11-24T05:46:25.123456Z");
  system_clock::time_point back;
  ASSERT_TRUE(ParseRfc3339("2026-11-24T05:46:25.123456Z", back));
  EXPECT_EQ(back, t);
  ASSERT_TRUE(ParseRfc3339("2026-11-24T07:46:25+02:00", back));
  EXPECT_EQ(back, floor<seconds>(t));
}

TEST(Rfc3339, RejectsMalformedTimes) {
  system_clock::time_point out;
  for (const char* bad : {"", "2026-11-24", "2026-13-01T00:00:00Z", "2026-11-24T05:46:25",
                          "2026-11-24T05:46:25X", "2026-11-24 05:46:25Z"}) {
    EXPECT_FALSE(ParseRfc3339(bad, out)) << bad;
  }
}

}  // namespace
}  // namespace vmimport::core
