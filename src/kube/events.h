#pragma once

// Records core/v1 Events on objects, as `kubectl describe` shows them. Record() only queues: one
// thread of the recorder writes to the API server, so a slow or unreachable API server never
// stalls a reconcile or a disk stream, and no caller's lock is ever held across the network.
// The queue is bounded: when it is full, a new event is dropped and counted (DroppedEvents), and
// a log line says so. Repeats of the same (object, type, reason, message) within a process bump
// the existing Event's count instead of creating a new one. Messages that are not valid UTF-8
// are recorded with the bad bytes replaced. Thread-safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <unordered_map>

#include "core/clock.h"
#include "core/log.h"
#include "kube/api.h"

namespace vmimport::kube {

struct EventRecorderOptions {
  size_t cache_size = 4096;  //!< (object, reason, message) keys remembered for counting repeats
  size_t queue_size = 1000;  //!< events waiting to be written; more are dropped
};

class EventRecorder final : public EventSink {
 public:
  //! `api` must outlive the recorder. Starts the writer thread.
  EventRecorder(Api& api, std::string component, const core::Clock& clock, core::Logger log,
                EventRecorderOptions options = {});
  //! Writes what is queued (for at most a few seconds), then stops the writer.
  ~EventRecorder() override;
  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  // kube::EventSink
  void Record(const Json& object, const std::string& type, const std::string& reason,
              const std::string& message) override;

  //! Waits until every event queued so far is written (or dropped); false on timeout.
  bool Flush(std::chrono::milliseconds timeout);
  //! Events dropped because the queue was full.
  uint64_t DroppedEvents() const { return dropped_.load(); }
  //! Events whose write the API server refused or did not answer.
  uint64_t FailedEvents() const { return failed_.load(); }

 private:
  struct Pending {  // NOLINT(bugprone-exception-escape): nlohmann::json members
    Json involved;  // apiVersion, kind, name, namespace, uid, resourceVersion
    std::string type;
    std::string reason;
    std::string message;
    std::string timestamp;
  };
  struct Seen {
    std::string event_name;
    std::string ns;
    long count = 0;
  };
  void Run(std::stop_token stop);
  void Write(const Pending& event);

  Api& api_;
  const std::string component_;
  const core::Clock& clock_;
  core::Logger log_;
  const EventRecorderOptions options_;
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> failed_{0};

  std::mutex mu_;  // guards queue_, in_flight_
  std::condition_variable_any cv_;
  std::deque<Pending> queue_;
  size_t in_flight_ = 0;
  // Only the writer thread touches these.
  std::unordered_map<std::string, Seen> seen_;
  std::list<std::string> order_;  // oldest first, for eviction

  std::jthread writer_;  // last: started after everything above exists
};

}  // namespace vmimport::kube
