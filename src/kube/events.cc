#include "kube/events.h"

#include <fmt/format.h>

#include <random>

#include "core/json.h"
#include "core/strings.h"

namespace vmimport::kube {
namespace {

const Resource kEvents{"", "v1", "events", true};

std::string UniqueSuffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

}  // namespace

EventRecorder::EventRecorder(Client& client, std::string component, const core::Clock& clock,
                             core::Logger log, size_t cache_size)
    : client_(client),
      component_(std::move(component)),
      clock_(clock),
      log_(std::move(log)),
      cache_size_(cache_size) {}

void EventRecorder::Record(const Json& object, const std::string& type, const std::string& reason,
                           const std::string& raw_message) {
  // The message often carries text from a source (a VM name, a fault): never invalid UTF-8.
  const std::string message = core::SanitizeUtf8(raw_message);
  const Json& md = core::JsonObject(object, "metadata");
  const std::string ns = core::JsonString(md, "namespace", "default");
  const std::string name = core::JsonString(md, "name");
  const std::string uid = core::JsonString(md, "uid");
  const std::string now = core::FormatRfc3339(clock_.WallNow());
  const std::string key = uid + "\x1f" + type + "\x1f" + reason + "\x1f" + message;

  std::unique_lock lock(mu_);
  if (auto it = seen_.find(key); it != seen_.end()) {
    Seen seen = it->second;
    ++it->second.count;
    lock.unlock();
    auto patched = client_.MergePatch({}, kEvents, seen.ns, seen.event_name,
                                      {{"count", seen.count + 1}, {"lastTimestamp", now}});
    if (patched) {
      return;
    }
    lock.lock();
    seen_.erase(key);  // the Event is gone (TTL): create a new one below
    order_.remove(key);
    lock.unlock();
  } else {
    lock.unlock();
  }

  const std::string event_name = name + "." + UniqueSuffix();
  Json event = {{"apiVersion", "v1"},
                {"kind", "Event"},
                {"metadata", {{"name", event_name}, {"namespace", ns}}},
                {"involvedObject",
                 {{"apiVersion", core::JsonString(object, "apiVersion")},
                  {"kind", core::JsonString(object, "kind")},
                  {"name", name},
                  {"namespace", ns},
                  {"uid", uid},
                  {"resourceVersion", core::JsonString(md, "resourceVersion")}}},
                {"type", type},
                {"reason", reason},
                {"message", message},
                {"source", {{"component", component_}}},
                {"reportingComponent", component_},
                {"firstTimestamp", now},
                {"lastTimestamp", now},
                {"count", 1}};
  auto created = client_.Create({}, kEvents, ns, event);
  if (!created) {
    log_.Warn(
        "cannot record event",
        {{"reason", reason}, {"object", ns + "/" + name}, {"error", created.error().message}});
    return;
  }
  lock.lock();
  seen_[key] = Seen{event_name, ns, 1};
  order_.push_back(key);
  while (order_.size() > cache_size_) {
    seen_.erase(order_.front());
    order_.pop_front();
  }
}

}  // namespace vmimport::kube
