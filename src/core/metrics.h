#pragma once

// A small metrics registry rendered in the Prometheus text exposition format (version 0.0.4):
// counters, gauges and histograms with labels, plus collectors that compute gauges at scrape
// time (queue depth, imports by state). Thread-safe. Names follow Prometheus conventions
// (vmimport_*_total for counters, _seconds / _bytes units).

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vmimport::core {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  enum class Type { kCounter, kGauge, kHistogram };

  //! Declares a metric: its type, help text and (histograms) upper bucket bounds, ascending.
  //! Recording into an undeclared name declares it as the kind the call implies, without help.
  void Declare(std::string_view name, Type type, std::string_view help,
               std::vector<double> buckets = {});

  //! Counter += value (value >= 0).
  void Add(std::string_view name, const Labels& labels, double value = 1);
  //! Gauge = value.
  void Set(std::string_view name, const Labels& labels, double value);
  //! Histogram observation.
  void Observe(std::string_view name, const Labels& labels, double value);

  //! Called at every Render, before the text is made; it may Set gauges.
  void AddCollector(std::function<void(Metrics&)> collect);

  //! The whole registry as Prometheus text.
  std::string Render();

  //! The value of a counter or gauge (0 when absent): for tests.
  double ValueForTest(std::string_view name, const Labels& labels) const;

 private:
  struct Histogram {
    std::vector<uint64_t> counts;  // per bucket (not cumulative), +Inf last
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    Type type = Type::kCounter;
    std::string help;
    std::vector<double> buckets;
    std::map<Labels, double> values;
    std::map<Labels, Histogram> histograms;
  };
  Family& FamilyLocked(std::string_view name, Type type);

  mutable std::mutex mu_;  // guards families_
  std::map<std::string, Family, std::less<>> families_;
  std::mutex collectors_mu_;  // guards collectors_
  std::vector<std::function<void(Metrics&)>> collectors_;
};

//! Seconds buckets from 1 s to about 4 h, for import and phase durations.
std::vector<double> DurationBuckets();
//! Bytes-per-second buckets from 1 MB/s to 4 GB/s, for stream throughput.
std::vector<double> ThroughputBuckets();

}  // namespace vmimport::core
