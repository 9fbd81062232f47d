#include "kube/informer.h"

#include <algorithm>
#include <random>
#include <utility>

#include "core/json.h"
#include "core/strings.h"

namespace vmimport::kube {

using core::ErrorCode;

std::string ObjectKeyOf(const Json& object) {
  const Json& md = core::JsonObject(object, "metadata");
  const std::string name = core::JsonString(md, "name");
  const std::string ns = core::JsonString(md, "namespace");
  return ns.empty() ? name : ns + "/" + name;
}

namespace {

// metadata.managedFields (server-side apply bookkeeping) is often larger than the rest of the
// object and nothing here reads it: the cache keeps objects without it.
void DropManagedFields(Json& object) {
  if (object.is_object() && object.contains("metadata") && object["metadata"].is_object()) {
    object["metadata"].erase("managedFields");
  }
}

std::string ResourceVersionOf(const Json& object) {
  return core::JsonString(core::JsonObject(object, "metadata"), "resourceVersion");
}

// Handlers are the controller's code; one that throws must not end the informer's thread (a
// jthread that lets an exception out terminates the process) nor unwind through libcurl (Apply
// runs inside the watch's write callback).
template <class F>
void CallHandler(const core::Logger& log, const char* what, F&& call) {
  try {
    call();
  } catch (const std::exception& e) {
    log.Error("informer handler threw",
              {{"handler", what}, {"error", core::SanitizeUtf8(e.what())}});
  } catch (...) {
    log.Error("informer handler threw", {{"handler", what}, {"error", "unknown exception"}});
  }
}

}  // namespace

Informer::Informer(Client& client, Resource resource, std::string ns, const core::Logger& log,
                   InformerOptions options)
    : client_(client),
      resource_(std::move(resource)),
      ns_(std::move(ns)),
      log_(log.With({{"informer", resource_.plural}})),
      options_(std::move(options)) {}

Informer::~Informer() { Stop(); }

void Informer::AddHandlers(InformerHandlers handlers) { handlers_.push_back(std::move(handlers)); }

void Informer::Start() {
  thread_ = std::jthread([this](std::stop_token stop) { Run(stop); });
}

void Informer::Stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

bool Informer::HasSynced() const {
  std::lock_guard lock(mu_);
  return synced_;
}

bool Informer::WaitForSync(std::stop_token stop, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return synced_cv_.wait_for(lock, stop, timeout, [this] { return synced_; });
}

std::optional<Json> Informer::Get(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::vector<Json> Informer::List() const {
  std::lock_guard lock(mu_);
  std::vector<Json> out;
  out.reserve(cache_.size());
  for (const auto& [key, obj] : cache_) {
    out.push_back(obj);
  }
  return out;
}

size_t Informer::Size() const {
  std::lock_guard lock(mu_);
  return cache_.size();
}

std::string Informer::LastResourceVersion() const {
  std::lock_guard lock(mu_);
  return resource_version_;
}

void Informer::Backoff(std::stop_token stop, std::chrono::milliseconds& delay) {
  static thread_local std::mt19937 rng{std::random_device{}()};
  // Full jitter on the upper half, so that many informers do not retry in lockstep.
  std::uniform_int_distribution<long> jitter(delay.count() / 2, delay.count());
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_for(lock, stop, std::chrono::milliseconds(jitter(rng)), [] { return false; });
  delay = std::min(delay * 2, options_.max_backoff);
}

core::Status Informer::ListAll(std::stop_token stop) {
  std::map<std::string, Json> fresh;
  std::string rv;
  ListOptions o{.label_selector = options_.label_selector,
                .field_selector = options_.field_selector,
                .limit = options_.page_size,
                .metadata_only = options_.metadata_only};
  while (true) {
    auto page = client_.List(stop, resource_, ns_, o);
    if (!page) {
      return core::MakeError(page.error());
    }
    std::string kind = core::JsonString(*page, "kind");
    if (kind.size() > 4 && kind.ends_with("List")) {
      kind.resize(kind.size() - 4);
    }
    Json* items = page->is_object() ? &(*page)["items"] : nullptr;
    if (items != nullptr && !items->is_array() && !items->is_null()) {
      return core::MakeError(core::ErrorCode::kInternal,
                             "list " + resource_.plural + ": items is not an array");
    }
    Json none = Json::array();
    for (Json& item : items != nullptr && items->is_array() ? *items : none) {
      if (!item.is_object()) {
        continue;  // not an object: nothing a handler could use
      }
      // List items carry no apiVersion/kind; restore them so handlers see whole objects.
      item["apiVersion"] = resource_.ApiVersion();
      if (!kind.empty() && !options_.metadata_only) {
        item["kind"] = kind;
      }
      DropManagedFields(item);
      fresh.emplace(ObjectKeyOf(item), std::move(item));
    }
    const Json& md = core::JsonObject(*page, "metadata");
    rv = core::JsonString(md, "resourceVersion", rv);
    const std::string cont = core::JsonString(md, "continue");
    if (cont.empty()) {
      break;
    }
    o.continue_token = cont;
  }
  stats_.lists++;

  // Replace the cache and report the differences.
  std::vector<Json> added;
  std::vector<std::pair<Json, Json>> updated;
  std::vector<Json> deleted;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, obj] : fresh) {
      auto it = cache_.find(key);
      if (it == cache_.end()) {
        added.push_back(obj);
      } else if (ResourceVersionOf(it->second) != ResourceVersionOf(obj)) {
        updated.emplace_back(it->second, obj);
      }
    }
    for (const auto& [key, obj] : cache_) {
      if (!fresh.contains(key)) {
        deleted.push_back(obj);
      }
    }
    cache_ = std::move(fresh);
    resource_version_ = rv;
    synced_ = true;
  }
  synced_cv_.notify_all();
  for (const auto& h : handlers_) {
    for (const Json& o2 : added) {
      if (h.on_add) {
        CallHandler(log_, "add", [&] { h.on_add(o2); });
      }
    }
    for (const auto& change : updated) {
      if (h.on_update) {
        CallHandler(log_, "update", [&] { h.on_update(change.first, change.second); });
      }
    }
    for (const Json& o2 : deleted) {
      if (h.on_delete) {
        CallHandler(log_, "delete", [&] { h.on_delete(o2); });
      }
    }
  }
  return {};
}

void Informer::Apply(const WatchEvent& event) {
  const std::string rv = ResourceVersionOf(event.object);
  if (event.type == "BOOKMARK") {
    std::lock_guard lock(mu_);
    if (!rv.empty()) {
      resource_version_ = rv;
    }
    return;
  }
  if (!event.object.is_object()) {
    return;  // nothing to cache or hand on
  }
  stats_.events++;
  Json object = event.object;
  DropManagedFields(object);
  const std::string key = ObjectKeyOf(object);
  std::optional<Json> old_obj;
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      old_obj = it->second;
    }
    if (event.type == "DELETED") {
      cache_.erase(key);
    } else {
      cache_[key] = object;
    }
    if (!rv.empty()) {
      resource_version_ = rv;
    }
  }
  for (const auto& h : handlers_) {
    if (event.type == "DELETED") {
      if (h.on_delete) {
        CallHandler(log_, "delete", [&] { h.on_delete(old_obj ? *old_obj : object); });
      }
    } else if (old_obj) {
      if (h.on_update) {
        CallHandler(log_, "update", [&] { h.on_update(*old_obj, object); });
      }
    } else {
      if (h.on_add) {
        CallHandler(log_, "add", [&] { h.on_add(object); });
      }
    }
  }
}

void Informer::Run(std::stop_token stop) {
  std::chrono::milliseconds delay = options_.min_backoff;
  bool need_list = true;
  while (!stop.stop_requested()) {
    if (need_list) {
      auto listed = ListAll(stop);
      if (!listed) {
        if (stop.stop_requested()) {
          return;
        }
        stats_.errors++;
        log_.Warn("list failed, retrying",
                  {{"error", listed.error().message}, {"retry_in_ms", delay.count()}});
        Backoff(stop, delay);
        continue;
      }
      need_list = false;
      delay = options_.min_backoff;
      log_.Debug("listed", {{"objects", Size()}, {"resource_version", LastResourceVersion()}});
    }
    ListOptions o{.label_selector = options_.label_selector,
                  .field_selector = options_.field_selector,
                  .resource_version = LastResourceVersion(),
                  .metadata_only = options_.metadata_only};
    stats_.watches++;
    bool got_event = false;
    auto watched = client_.Watch(stop, resource_, ns_, o, options_.watch_timeout,
                                 [this, &got_event](const WatchEvent& ev) {
                                   got_event = true;
                                   Apply(ev);
                                   return true;
                                 });
    if (stop.stop_requested()) {
      return;
    }
    if (watched) {
      delay = options_.min_backoff;
      continue;  // the server ended the watch: resume from the last resourceVersion
    }
    if (watched.error().code == ErrorCode::kGone) {
      log_.Info("resource version expired, listing again",
                {{"resource_version", LastResourceVersion()}});
      need_list = true;
      continue;
    }
    stats_.errors++;
    if (got_event) {
      delay = options_.min_backoff;  // the connection worked for a while: retry soon
    }
    log_.Warn("watch failed, resuming", {{"error", watched.error().message},
                                         {"resource_version", LastResourceVersion()},
                                         {"retry_in_ms", delay.count()}});
    Backoff(stop, delay);
  }
}

}  // namespace vmimport::kube
