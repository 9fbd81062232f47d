#pragma once

// A rate-limited work queue with client-go's guarantees:
//  - a key is queued at most once (adding a queued key is a no-op);
//  - a key is never handed to two workers at once: a key added while it is being processed is
//    queued again when the worker calls Done;
//  - AddAfter delays a key (the earliest requested time wins);
//  - AddRateLimited delays by max(per-key exponential backoff, a global token bucket), and
//    Forget resets the key's backoff.
// Thread-safe.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/clock.h"

namespace vmimport::controller {

struct RateLimits {
  std::chrono::nanoseconds base_delay = std::chrono::milliseconds(5);
  std::chrono::nanoseconds max_delay = std::chrono::minutes(5);
  double qps = 10.0;  //!< global bucket: sustained rate of rate-limited re-adds
  int burst = 100;    //!< global bucket size
};

class WorkQueue {
 public:
  explicit WorkQueue(const core::Clock& clock, RateLimits limits = {});

  void Add(const std::string& key);
  void AddAfter(const std::string& key, std::chrono::nanoseconds delay);
  void AddRateLimited(const std::string& key);
  //! Forgets the key's failures: its next AddRateLimited starts at base_delay again.
  void Forget(const std::string& key);
  int NumRequeues(const std::string& key) const;
  //! The delay AddRateLimited would use now, and counts a failure (exposed for tests).
  std::chrono::nanoseconds When(const std::string& key);

  //! Blocks until a key is ready; nullopt once the queue is shut down or `stop` is requested.
  std::optional<std::string> Get(std::stop_token stop);
  //! Marks the key processed; a re-add that arrived meanwhile is queued now.
  void Done(const std::string& key);

  //! Wakes every Get with nullopt; later adds are ignored.
  void ShutDown();
  bool ShuttingDown() const;
  //! Keys ready to be handed out.
  size_t Len() const;
  //! Keys waiting for their AddAfter time.
  size_t DelayedLen() const;
  //! Re-checks delayed keys against the clock (call after moving a FakeClock).
  void Tick();

 private:
  void AddLocked(const std::string& key);
  void PromoteDueLocked();

  const core::Clock& clock_;
  const RateLimits limits_;

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable_any cv_;
  std::deque<std::string> queue_;
  std::unordered_set<std::string> dirty_;       // queued or to be queued after Done
  std::unordered_set<std::string> processing_;  // handed to a worker
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> delayed_;
  std::set<std::pair<std::chrono::steady_clock::time_point, std::string>> delayed_by_time_;
  std::unordered_map<std::string, int> failures_;
  double tokens_;
  std::chrono::steady_clock::time_point tokens_at_;
  bool shutting_down_ = false;
};

}  // namespace vmimport::controller
