#pragma once

// What the simulator's parts share: JSON field access that never throws, object keys, and a keyed
// work queue. Test harness only.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "core/clock.h"

namespace vmimport::harvester_sim {

using Json = nlohmann::json;

inline std::string Now() { return core::FormatRfc3339(std::chrono::system_clock::now()); }

//! object[key] when it is a JSON object, else an empty object (never inserts, never throws).
inline const Json& Field(const Json& object, const char* key) {
  static const Json kEmpty = Json::object();
  if (!object.is_object()) {
    return kEmpty;
  }
  auto it = object.find(key);
  return it != object.end() && it->is_object() ? *it : kEmpty;
}

inline std::string NamespaceOf(const Json& o) {
  return Field(o, "metadata").value("namespace", "");
}
inline std::string NameOf(const Json& o) { return Field(o, "metadata").value("name", ""); }
inline bool IsDeleting(const Json& o) { return Field(o, "metadata").contains("deletionTimestamp"); }

inline std::pair<std::string, std::string> SplitKey(const std::string& key) {
  const auto slash = key.find('/');
  if (slash == std::string::npos) {
    return {"", key};
  }
  return {key.substr(0, slash), key.substr(slash + 1)};
}

//! A keyed queue: a key waits at most once; workers take keys in arrival order. Take returns
//! false once `stop` is set.
class KeyQueue {
 public:
  explicit KeyQueue(const std::atomic<bool>& stop) : stop_(stop) {}
  void Add(const std::string& key) {
    std::lock_guard lock(mu_);
    if (queued_.insert(key).second) {
      keys_.push_back(key);
      cv_.notify_one();
    }
  }
  void AddAfter(const std::string& key, std::chrono::milliseconds delay) {
    std::thread([this, key, delay] {
      std::this_thread::sleep_for(delay);
      Add(key);
    }).detach();
  }
  //! False once stopped; true with `key` empty when nothing came within 200 ms.
  bool Take(std::string& key) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return !keys_.empty() || stop_; });
    if (stop_ || keys_.empty()) {
      return !stop_.load();
    }
    key = keys_.front();
    keys_.pop_front();
    queued_.erase(key);
    return true;
  }

 private:
  const std::atomic<bool>& stop_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> keys_;
  std::set<std::string> queued_;
};

}  // namespace vmimport::harvester_sim
