#pragma once

// Runs a Reconciler on N worker threads fed by a WorkQueue, with controller-runtime's outcome
// contract in one place:
//   error, terminal   -> logged, Forget (not retried until the object changes)
//   error, otherwise  -> AddRateLimited (per-key backoff)
//   requeue_after > 0 -> Forget + AddAfter
//   success           -> Forget
// An exception escaping Reconcile is caught, logged and counted, and retried like an error.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "controller/work_queue.h"
#include "core/log.h"
#include "core/result.h"

namespace vmimport::controller {

struct ReconcileResult {
  std::chrono::milliseconds requeue_after{0};
};

class Reconciler {
 public:
  virtual ~Reconciler() = default;
  //! Idempotent: may run any number of times against the same state. `key` is "namespace/name".
  virtual core::Result<ReconcileResult> Reconcile(std::stop_token stop, const std::string& key) = 0;
};

struct RunnerStats {
  std::atomic<uint64_t> reconciles{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> panics{0};
};

class Runner {
 public:
  Runner(std::string name, WorkQueue& queue, Reconciler& reconciler, const core::Logger& log);
  //! Stops the workers: shuts the queue down and joins.
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  void Start(int workers);
  //! Requests stop, shuts the queue down, waits for running reconciles to return.
  void Stop();
  const RunnerStats& stats() const { return stats_; }

 private:
  void Work(std::stop_token stop);
  void ProcessOne(std::stop_token stop, const std::string& key);

  std::string name_;
  WorkQueue& queue_;
  Reconciler& reconciler_;
  core::Logger log_;
  RunnerStats stats_;
  std::atomic<uint64_t> next_reconcile_id_{1};
  std::vector<std::jthread> workers_;
};

}  // namespace vmimport::controller
