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

EventRecorder::EventRecorder(Api& api, std::string component, const core::Clock& clock,
                             core::Logger log, EventRecorderOptions options)
    : api_(api),
      component_(std::move(component)),
      clock_(clock),
      log_(std::move(log)),
      options_(options),
      writer_([this](std::stop_token stop) { Run(stop); }) {}

EventRecorder::~EventRecorder() {
  Flush(std::chrono::seconds(3));
  writer_.request_stop();
  cv_.notify_all();
}

void EventRecorder::Record(const Json& object, const std::string& type, const std::string& reason,
                           const std::string& message) {
  const Json& md = core::JsonObject(object, "metadata");
  std::string ns = core::JsonString(md, "namespace");
  if (ns.empty()) {
    ns = "default";
  }
  Pending event{.involved = {{"apiVersion", core::JsonString(object, "apiVersion")},
                             {"kind", core::JsonString(object, "kind")},
                             {"name", core::JsonString(md, "name")},
                             {"namespace", ns},
                             {"uid", core::JsonString(md, "uid")},
                             {"resourceVersion", core::JsonString(md, "resourceVersion")}},
                .type = type,
                .reason = core::SanitizeUtf8(reason),
                .message = core::SanitizeUtf8(message),
                .timestamp = core::FormatRfc3339(clock_.WallNow())};
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= options_.queue_size) {
      dropped_.fetch_add(1);
    } else {
      queue_.push_back(std::move(event));
      cv_.notify_all();
      return;
    }
  }
  log_.Warn("event queue full: event dropped",
            {{"reason", reason}, {"object", ns + "/" + core::JsonString(md, "name")}});
}

bool EventRecorder::Flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return queue_.empty() && in_flight_ == 0; });
}

void EventRecorder::Run(std::stop_token stop) {
  for (;;) {
    Pending event;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, stop, [this] { return !queue_.empty(); });
      if (queue_.empty()) {
        return;  // stop requested and nothing left
      }
      event = std::move(queue_.front());
      queue_.pop_front();
      ++in_flight_;
    }
    Write(event);
    {
      std::lock_guard lock(mu_);
      --in_flight_;
    }
    cv_.notify_all();
  }
}

void EventRecorder::Write(const Pending& event) {
  const std::string ns = core::JsonString(event.involved, "namespace");
  const std::string name = core::JsonString(event.involved, "name");
  const std::string key = core::JsonString(event.involved, "uid") + "\x1f" + event.type + "\x1f" +
                          event.reason + "\x1f" + event.message;
  if (auto it = seen_.find(key); it != seen_.end()) {
    const Seen seen = it->second;
    auto patched = api_.MergePatch({}, kEvents, seen.ns, seen.event_name,
                                   {{"count", seen.count + 1}, {"lastTimestamp", event.timestamp}});
    if (patched) {
      ++it->second.count;
      return;
    }
    seen_.erase(it);  // the Event is gone (TTL): create a new one below
    order_.remove(key);
  }
  const std::string event_name = name + "." + UniqueSuffix();
  const Json body = {{"apiVersion", "v1"},
                     {"kind", "Event"},
                     {"metadata", {{"name", event_name}, {"namespace", ns}}},
                     {"involvedObject", event.involved},
                     {"type", event.type},
                     {"reason", event.reason},
                     {"message", event.message},
                     {"source", {{"component", component_}}},
                     {"reportingComponent", component_},
                     {"firstTimestamp", event.timestamp},
                     {"lastTimestamp", event.timestamp},
                     {"count", 1}};
  auto created = api_.Create({}, kEvents, ns, body);
  if (!created) {
    failed_.fetch_add(1);
    log_.Warn("cannot record event", {{"reason", event.reason},
                                      {"object", ns + "/" + name},
                                      {"error", created.error().message}});
    return;
  }
  seen_[key] = Seen{event_name, ns, 1};
  order_.push_back(key);
  while (order_.size() > options_.cache_size) {
    seen_.erase(order_.front());
    order_.pop_front();
  }
}

}  // namespace vmimport::kube
