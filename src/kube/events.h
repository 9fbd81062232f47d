#pragma once

// Records core/v1 Events on objects, as `kubectl describe` shows them. Repeats of the same
// (object, type, reason, message) within a process bump the existing Event's count instead of
// creating a new one. Recording never fails the caller: errors are logged. Thread-safe.

#include <chrono>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/clock.h"
#include "core/log.h"
#include "kube/client.h"

namespace vmimport::kube {

class EventRecorder {
 public:
  EventRecorder(Client& client, std::string component, const core::Clock& clock, core::Logger log,
                size_t cache_size = 4096);

  //! `type` is "Normal" or "Warning"; `reason` CamelCase; `message` a sentence for a person.
  void Record(const Json& object, const std::string& type, const std::string& reason,
              const std::string& message);

 private:
  struct Seen {
    std::string event_name;
    std::string ns;
    long count = 0;
  };
  Client& client_;
  const std::string component_;
  const core::Clock& clock_;
  core::Logger log_;
  const size_t cache_size_;
  std::mutex mu_;  // guards seen_ and order_
  std::unordered_map<std::string, Seen> seen_;
  std::list<std::string> order_;  // oldest first, for eviction
};

}  // namespace vmimport::kube
