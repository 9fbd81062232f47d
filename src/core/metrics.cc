#include "core/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace vmimport::core {

namespace {

// Label values escape backslash, double quote and newline; help text backslash and newline.
std::string Escape(std::string_view s, bool quote) {
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Number(double v) {
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

std::string LabelText(const Labels& labels, const std::string& extra_key = "",
                      const std::string& extra_value = "") {
  if (labels.empty() && extra_key.empty()) {
    return "";
  }
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += (first ? "" : ",") + k + "=\"" + Escape(v, true) + "\"";
    first = false;
  }
  if (!extra_key.empty()) {
    out += (first ? "" : ",") + extra_key + "=\"" + extra_value + "\"";
  }
  return out + "}";
}

const char* TypeName(Metrics::Type t) {
  switch (t) {
    case Metrics::Type::kCounter: return "counter";
    case Metrics::Type::kGauge: return "gauge";
    case Metrics::Type::kHistogram: return "histogram";
  }
  return "untyped";
}

Labels Sorted(Labels labels) {
  std::sort(labels.begin(), labels.end());
  return labels;
}

}  // namespace

std::vector<double> DurationBuckets() {
  return {1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400};
}

std::vector<double> ThroughputBuckets() {
  return {1e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6, 1e9, 2e9, 4e9};
}

void Metrics::Declare(std::string_view name, Type type, std::string_view help,
                      std::vector<double> buckets) {
  std::lock_guard lock(mu_);
  Family& f = FamilyLocked(name, type);
  f.type = type;
  f.help = std::string(help);
  if (type == Type::kHistogram) {
    f.buckets = buckets.empty() ? DurationBuckets() : std::move(buckets);
  }
}

Metrics::Family& Metrics::FamilyLocked(std::string_view name, Type type) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    Family f;
    f.type = type;
    if (type == Type::kHistogram) {
      f.buckets = DurationBuckets();
    }
    it = families_.emplace(std::string(name), std::move(f)).first;
  }
  return it->second;
}

void Metrics::Add(std::string_view name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  FamilyLocked(name, Type::kCounter).values[Sorted(labels)] += std::max(0.0, value);
}

void Metrics::Set(std::string_view name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  FamilyLocked(name, Type::kGauge).values[Sorted(labels)] = value;
}

void Metrics::Observe(std::string_view name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  Family& f = FamilyLocked(name, Type::kHistogram);
  Histogram& h = f.histograms[Sorted(labels)];
  h.counts.resize(f.buckets.size() + 1, 0);
  size_t i = 0;
  while (i < f.buckets.size() && value > f.buckets[i]) {
    ++i;
  }
  h.counts[i]++;
  h.sum += value;
  h.count++;
}

void Metrics::AddCollector(std::function<void(Metrics&)> collect) {
  std::lock_guard lock(collectors_mu_);
  collectors_.push_back(std::move(collect));
}

double Metrics::ValueForTest(std::string_view name, const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    return 0;
  }
  auto v = it->second.values.find(Sorted(labels));
  return v == it->second.values.end() ? 0 : v->second;
}

std::string Metrics::Render() {
  {
    std::lock_guard lock(collectors_mu_);
    for (auto& c : collectors_) {
      c(*this);
    }
  }
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    if (!f.help.empty()) {
      out += "# HELP " + name + " " + Escape(f.help, false) + "\n";
    }
    out += "# TYPE " + name + " " + TypeName(f.type) + "\n";
    if (f.type != Type::kHistogram) {
      for (const auto& [labels, v] : f.values) {
        out += name + LabelText(labels) + " " + Number(v) + "\n";
      }
      continue;
    }
    for (const auto& [labels, h] : f.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= f.buckets.size(); ++i) {
        cumulative += i < h.counts.size() ? h.counts[i] : 0;
        const std::string le = i < f.buckets.size() ? Number(f.buckets[i]) : "+Inf";
        out += name + "_bucket" + LabelText(labels, "le", le) + " " + std::to_string(cumulative) +
               "\n";
      }
      out += name + "_sum" + LabelText(labels) + " " + Number(h.sum) + "\n";
      out += name + "_count" + LabelText(labels) + " " + std::to_string(h.count) + "\n";
    }
  }
  return out;
}

}  // namespace vmimport::core
