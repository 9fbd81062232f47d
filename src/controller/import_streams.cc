// What the image server tells the import reconciler about disk streams (progress, outcome,
// checksums), kept per incarnation and disk, and turned into status and metrics.

#include <cmath>

#include "controller/import_internal.h"
#include "controller/import_reconciler.h"
#include "core/strings.h"

namespace vmimport::controller {

using core::ErrorCode;
using namespace import_detail;  // NOLINT(google-build-using-namespace): this reconciler's own

core::Labels ImportReconciler::MetricLabels(const std::string& stream) const {
  core::Labels labels;
  const auto parsed = ParseStreamName(stream);
  std::lock_guard lock(mu_);
  const auto it = parsed ? incarnations_.find(parsed->first) : incarnations_.end();
  if (it == incarnations_.end()) {
    return {{"disk", stream}};
  }
  const auto slash = it->second->key.find('/');
  labels.emplace_back("namespace", it->second->key.substr(0, slash));
  labels.emplace_back(
      "import", slash == std::string::npos ? it->second->key : it->second->key.substr(slash + 1));
  labels.emplace_back("disk", "disk-" + std::to_string(parsed->second));
  labels.emplace_back("source", it->second->source_host);
  return labels;
}

void ImportReconciler::OnStreamStarted(const imageserver::StreamInfo& info) {
  const auto parsed = ParseStreamName(info.disk_name);
  if (!parsed) {
    return;
  }
  std::lock_guard lock(mu_);
  auto it = incarnations_.find(parsed->first);
  if (it == incarnations_.end()) {
    return;  // an incarnation that ended: its late streams count for nothing
  }
  auto& s = it->second->streams[parsed->second];
  s.bytes = 0;
  s.total = info.total_bytes;
}

void ImportReconciler::OnProgress(const imageserver::StreamProgress& progress) {
  const auto parsed = ParseStreamName(progress.info.disk_name);
  if (!parsed) {
    return;
  }
  std::string key;
  {
    std::lock_guard lock(mu_);
    auto it = incarnations_.find(parsed->first);
    if (it == incarnations_.end()) {
      return;
    }
    auto& s = it->second->streams[parsed->second];
    s.bytes = progress.bytes;
    s.total = progress.info.total_bytes;
    s.bytes_per_second = progress.bytes_per_second;
    key = it->second->key;
  }
  if (auto* m = metrics_.load()) {
    m->Set("vmimport_disk_bytes_done", MetricLabels(progress.info.disk_name),
           static_cast<double>(progress.bytes));
  }
  queue_.Add(key);
}

void ImportReconciler::OnStreamFinished(const imageserver::StreamResult& result) {
  const auto parsed = ParseStreamName(result.info.disk_name);
  std::string key;
  if (parsed) {
    std::lock_guard lock(mu_);
    if (auto it = incarnations_.find(parsed->first); it != incarnations_.end()) {
      key = it->second->key;
      auto& s = it->second->streams[parsed->second];
      s.bytes = result.bytes;
      s.bytes_per_second = result.bytes_per_second;
      if (result.checksums) {
        s.checksums = result.checksums;
      }
      if (result.outcome == imageserver::StreamOutcome::kCompleted) {
        s.permanent_error.reset();
        s.source_digests = result.source_digests;
        s.completed = true;
      } else if (result.error && (result.error->code == ErrorCode::kCorruptData ||
                                  result.error->code == ErrorCode::kUnsupported)) {
        s.permanent_error = result.error;
      }
      s.last_error = result.error ? result.error->ToString()
                                  : std::string(imageserver::StreamOutcomeName(result.outcome));
    }
  }
  if (auto* m = metrics_.load()) {
    const core::Labels labels = MetricLabels(result.info.disk_name);
    m->Add("vmimport_stream_bytes_total", labels, static_cast<double>(result.bytes));
    m->Set("vmimport_disk_bytes_done", labels, static_cast<double>(result.bytes));
    m->Add("vmimport_streams_total",
           {{"outcome", std::string(imageserver::StreamOutcomeName(result.outcome))}});
    if (result.outcome == imageserver::StreamOutcome::kCompleted) {
      m->Observe("vmimport_stream_throughput_bytes_per_second", {}, result.bytes_per_second);
    }
  }
  log_.Info("disk stream finished", {{"import", key},
                                     {"disk", result.info.disk_name},
                                     {"outcome", imageserver::StreamOutcomeName(result.outcome)},
                                     {"bytes", result.bytes},
                                     {"MBps", result.bytes_per_second / 1e6}});
  if (!key.empty()) {
    queue_.Add(key);
  }
}

void ImportReconciler::FillProgress(Pass& pass) {
  auto& vm_import = pass.vm_import;
  std::lock_guard lock(mu_);
  auto inc = incarnations_.find(pass.uid);
  if (inc == incarnations_.end()) {
    return;
  }
  uint64_t done = 0;
  uint64_t total = 0;
  for (size_t i = 0; i < vm_import.status.disk_import_status.size(); ++i) {
    auto it = inc->second->streams.find(i);
    if (it == inc->second->streams.end()) {
      continue;
    }
    auto& p = vm_import.status.disk_import_status[i].progress;
    const DiskStreamState& s = it->second;
    p.bytes_done = s.bytes;
    p.bytes_total = s.total;
    p.bytes_per_second = static_cast<uint64_t>(s.bytes_per_second);
    p.eta_seconds =
        s.bytes_per_second > 0 && s.total >= s.bytes
            ? static_cast<int64_t>(std::ceil(double(s.total - s.bytes) / s.bytes_per_second))
            : -1;
    if (s.checksums) {
      p.sha256 = s.checksums->sha256;
      p.sha512 = s.checksums->sha512;
    }
    done += std::min(s.bytes, s.total);
    total += s.total;
  }
  // status.progress: one figure for the printer column, over every disk streamed so far.
  if (total > 0) {
    vm_import.status.extra["progress"] = std::to_string(done * 100 / total) + "%";
  }
}

}  // namespace vmimport::controller
