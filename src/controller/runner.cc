#include "controller/runner.h"

#include <exception>

namespace vmimport::controller {

Runner::Runner(std::string name, WorkQueue& queue, Reconciler& reconciler, const core::Logger& log)
    : name_(std::move(name)),
      queue_(queue),
      reconciler_(reconciler),
      log_(log.With({{"controller", name_}})) {}

Runner::~Runner() { Stop(); }

void Runner::Start(int workers) {
  for (int i = 0; i < workers; ++i) {
    workers_.emplace_back([this](std::stop_token stop) { Work(stop); });
  }
}

void Runner::Stop() {
  for (auto& w : workers_) {
    w.request_stop();
  }
  queue_.ShutDown();
  workers_.clear();  // joins
}

void Runner::Work(std::stop_token stop) {
  while (auto key = queue_.Get(stop)) {
    ProcessOne(stop, *key);
    queue_.Done(*key);
  }
}

void Runner::ProcessOne(std::stop_token stop, const std::string& key) {
  const uint64_t id = next_reconcile_id_++;
  const core::Logger log = log_.With({{"key", key}, {"reconcile_id", id}});
  stats_.reconciles++;
  core::Result<ReconcileResult> result;
  try {
    result = reconciler_.Reconcile(stop, key);
  } catch (const std::exception& e) {
    stats_.panics++;
    log.Error("reconcile threw", {{"error", e.what()}});
    queue_.AddRateLimited(key);
    return;
  } catch (...) {
    stats_.panics++;
    log.Error("reconcile threw", {{"error", "unknown exception"}});
    queue_.AddRateLimited(key);
    return;
  }
  if (!result) {
    stats_.errors++;
    if (result.error().Terminal()) {
      log.Error("reconcile failed, not retrying", {{"error", result.error().message}});
      queue_.Forget(key);
      return;
    }
    if (result.error().code == core::ErrorCode::kCancelled && stop.stop_requested()) {
      return;  // shutting down
    }
    log.Warn("reconcile failed, retrying with backoff",
             {{"error", result.error().message}, {"requeues", queue_.NumRequeues(key)}});
    queue_.AddRateLimited(key);
    return;
  }
  queue_.Forget(key);
  if (result->requeue_after.count() > 0) {
    queue_.AddAfter(key, result->requeue_after);
  }
}

}  // namespace vmimport::controller
