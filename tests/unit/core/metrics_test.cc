#include "core/metrics.h"

#include <gtest/gtest.h>

namespace vmimport::core {
namespace {

TEST(Metrics, CountersAndGaugesRenderWithSortedEscapedLabels) {
  Metrics m;
  m.Declare("vmimport_streams_total", Metrics::Type::kCounter, "Finished streams.");
  m.Add("vmimport_streams_total", {{"outcome", "completed"}});
  m.Add("vmimport_streams_total", {{"outcome", "completed"}}, 2);
  m.Add("vmimport_streams_total", {{"outcome", "completed"}}, -5);  // counters never go down
  m.Set("vmimport_disk_bytes_done", {{"z", "1"}, {"a", "say \"hi\"\n"}}, 42);
  const std::string text = m.Render();
  EXPECT_NE(text.find("# HELP vmimport_streams_total Finished streams.\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE vmimport_streams_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("vmimport_streams_total{outcome=\"completed\"} 3\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("vmimport_disk_bytes_done{a=\"say \\\"hi\\\"\\n\",z=\"1\"} 42\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(m.ValueForTest("vmimport_streams_total", {{"outcome", "completed"}}), 3);
}

TEST(Metrics, HistogramBucketsAreCumulativeWithSumAndCount) {
  Metrics m;
  m.Declare("d_seconds", Metrics::Type::kHistogram, "durations", {1, 10});
  m.Observe("d_seconds", {}, 0.5);
  m.Observe("d_seconds", {}, 5);
  m.Observe("d_seconds", {}, 50);
  const std::string text = m.Render();
  EXPECT_NE(text.find("d_seconds_bucket{le=\"1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("d_seconds_bucket{le=\"10\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("d_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("d_seconds_sum 55.5\n"), std::string::npos);
  EXPECT_NE(text.find("d_seconds_count 3\n"), std::string::npos);
}

TEST(Metrics, CollectorsRunAtEveryRender) {
  Metrics m;
  int depth = 1;
  m.AddCollector([&depth](Metrics& mm) { mm.Set("q", {}, depth); });
  EXPECT_NE(m.Render().find("q 1\n"), std::string::npos);
  depth = 7;
  EXPECT_NE(m.Render().find("q 7\n"), std::string::npos);
}

}  // namespace
}  // namespace vmimport::core
