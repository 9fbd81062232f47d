#include "tests/unit/fakes/fake_kube.h"

#include "core/strings.h"

namespace vmimport::testing {

using core::ErrorCode;
using core::MakeError;

namespace {

std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

//! "a=b,c=d" against metadata.labels.
bool MatchesSelector(const Json& object, const std::string& selector) {
  if (selector.empty()) return true;
  const Json labels = object["metadata"].value("labels", Json::object());
  for (auto part : core::Split(selector, ',')) {
    const auto eq = part.find('=');
    if (eq == std::string_view::npos) return false;
    const std::string k(part.substr(0, eq));
    const std::string v(part.substr(eq + 1));
    if (!labels.contains(k) || !labels[k].is_string() || labels[k].get<std::string>() != v) {
      return false;
    }
  }
  return true;
}

Json WithoutStatus(Json j) {
  j.erase("status");
  return j;
}

Json SpecOf(const Json& j) {
  Json copy = j;
  copy.erase("status");
  copy.erase("metadata");
  return copy;
}

}  // namespace

void FakeApi::SetInjector(Injector injector) {
  std::lock_guard lock(mu_);
  injector_ = std::move(injector);
}

void FakeApi::FailNext(const std::string& verb, const std::string& plural, core::Error error,
                       int times) {
  std::lock_guard lock(mu_);
  failures_.push_back({verb, plural, std::move(error), times});
}

std::optional<core::Error> FakeApi::Check(const FakeCall& call) {
  calls_.push_back(call);
  for (auto it = failures_.begin(); it != failures_.end(); ++it) {
    if (it->verb == call.verb && (it->plural.empty() || it->plural == call.plural)) {
      core::Error e = it->error;
      if (--it->times <= 0) {
        failures_.erase(it);
      }
      return e;
    }
  }
  if (injector_) {
    return injector_(call);
  }
  return std::nullopt;
}

std::string FakeApi::NextVersion() { return std::to_string(++version_); }

Json FakeApi::Store(const Key& key, Json next, bool status_only, const Json* current) {
  if (current != nullptr) {
    Json merged = *current;
    if (status_only) {
      if (next.contains("status")) {
        merged["status"] = next["status"];
      } else {
        merged.erase("status");
      }
    } else {
      const bool spec_changed = SpecOf(next) != SpecOf(*current);
      const Json status = current->value("status", Json());
      merged = next;
      if (status.is_null()) {
        merged.erase("status");
      } else {
        merged["status"] = status;
      }
      // Immutable metadata stays as the server set it.
      for (const char* f : {"uid", "creationTimestamp", "namespace", "name", "deletionTimestamp"}) {
        if ((*current)["metadata"].contains(f)) {
          merged["metadata"][f] = (*current)["metadata"][f];
        } else {
          merged["metadata"].erase(f);
        }
      }
      const long generation = (*current)["metadata"].value("generation", 1L);
      merged["metadata"]["generation"] = spec_changed ? generation + 1 : generation;
    }
    merged["metadata"]["resourceVersion"] = NextVersion();
    // An object being deleted goes once its last finalizer is removed.
    if (merged["metadata"].contains("deletionTimestamp") &&
        merged["metadata"].value("finalizers", Json::array()).empty()) {
      objects_.erase(key);
      return merged;
    }
    objects_[key] = merged;
    return merged;
  }
  objects_[key] = next;
  return next;
}

core::Result<Json> FakeApi::Get(std::stop_token, const kube::Resource& r, const std::string& ns,
                                const std::string& name) {
  std::lock_guard lock(mu_);
  if (auto e = Check({"get", r.plural, ns, name, "", nullptr})) return MakeError(*e);
  auto it = objects_.find({r.plural, ns, name});
  if (it == objects_.end()) {
    return MakeError(ErrorCode::kNotFound, r.plural + " \"" + name + "\" not found");
  }
  return it->second;
}

core::Result<Json> FakeApi::List(std::stop_token, const kube::Resource& r, const std::string& ns,
                                 const kube::ListOptions& options) {
  std::lock_guard lock(mu_);
  if (auto e = Check({"list", r.plural, ns, "", "", nullptr})) return MakeError(*e);
  Json items = Json::array();
  for (const auto& [key, object] : objects_) {
    if (std::get<0>(key) != r.plural || (!ns.empty() && std::get<1>(key) != ns)) continue;
    if (MatchesSelector(object, options.label_selector)) items.push_back(object);
  }
  return Json{{"items", items}, {"metadata", {{"resourceVersion", std::to_string(version_)}}}};
}

core::Result<Json> FakeApi::Create(std::stop_token, const kube::Resource& r, const std::string& ns,
                                   const Json& object) {
  std::lock_guard lock(mu_);
  if (auto e = Check({"create", r.plural, ns, Str(object["metadata"], "name"), "", object})) {
    return MakeError(*e);
  }
  Json stored = object;
  Json& md = stored["metadata"];
  std::string name = Str(md, "name");
  if (name.empty() && !Str(md, "generateName").empty()) {
    name = Str(md, "generateName") + std::to_string(uid_ + 1);
  }
  if (name.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "metadata.name: Required value");
  }
  if (objects_.contains({r.plural, ns, name})) {
    return MakeError(ErrorCode::kAlreadyExists, r.plural + " \"" + name + "\" already exists");
  }
  md["name"] = name;
  if (r.namespaced) md["namespace"] = ns;
  md["uid"] = "uid-" + std::to_string(++uid_);
  md["generation"] = 1;
  md["creationTimestamp"] = "2026-12-05T00:00:00Z";
  md["resourceVersion"] = NextVersion();
  return Store({r.plural, ns, name}, stored, false, nullptr);
}

core::Result<Json> FakeApi::Update(std::stop_token, const kube::Resource& r, const std::string& ns,
                                   const Json& object) {
  std::lock_guard lock(mu_);
  const std::string name = Str(object["metadata"], "name");
  if (auto e = Check({"update", r.plural, ns, name, "", object})) return MakeError(*e);
  auto it = objects_.find({r.plural, ns, name});
  if (it == objects_.end()) return MakeError(ErrorCode::kNotFound, name + " not found");
  const std::string rv = Str(object["metadata"], "resourceVersion");
  if (!rv.empty() && rv != Str(it->second["metadata"], "resourceVersion")) {
    return MakeError(ErrorCode::kConflict, "the object has been modified");
  }
  const Json current = it->second;
  return Store(it->first, object, false, &current);
}

core::Result<Json> FakeApi::UpdateStatus(std::stop_token, const kube::Resource& r,
                                         const std::string& ns, const Json& object) {
  std::lock_guard lock(mu_);
  const std::string name = Str(object["metadata"], "name");
  if (auto e = Check({"updateStatus", r.plural, ns, name, "status", object})) {
    return MakeError(*e);
  }
  auto it = objects_.find({r.plural, ns, name});
  if (it == objects_.end()) return MakeError(ErrorCode::kNotFound, name + " not found");
  const std::string rv = Str(object["metadata"], "resourceVersion");
  if (!rv.empty() && rv != Str(it->second["metadata"], "resourceVersion")) {
    return MakeError(ErrorCode::kConflict, "the object has been modified");
  }
  const Json current = it->second;
  return Store(it->first, object, true, &current);
}

core::Result<Json> FakeApi::MergePatch(std::stop_token, const kube::Resource& r,
                                       const std::string& ns, const std::string& name,
                                       const Json& patch, const std::string& subresource) {
  std::lock_guard lock(mu_);
  if (auto e = Check({"patch", r.plural, ns, name, subresource, patch})) return MakeError(*e);
  auto it = objects_.find({r.plural, ns, name});
  if (it == objects_.end()) return MakeError(ErrorCode::kNotFound, name + " not found");
  const std::string rv =
      patch.contains("metadata") ? Str(patch["metadata"], "resourceVersion") : std::string();
  if (!rv.empty() && rv != Str(it->second["metadata"], "resourceVersion")) {
    return MakeError(ErrorCode::kConflict,
                     "Operation cannot be fulfilled: the object has been modified");
  }
  const Json current = it->second;
  Json next = current;
  next.merge_patch(patch);
  if (subresource == "status") {
    return Store(it->first, next, true, &current);
  }
  // The main resource ignores status changes.
  if (current.contains("status")) {
    next["status"] = current["status"];
  } else {
    next = WithoutStatus(next);
  }
  return Store(it->first, next, false, &current);
}

core::Status FakeApi::Delete(std::stop_token, const kube::Resource& r, const std::string& ns,
                             const std::string& name, const kube::DeleteOptions&) {
  std::lock_guard lock(mu_);
  if (auto e = Check({"delete", r.plural, ns, name, "", nullptr})) return MakeError(*e);
  auto it = objects_.find({r.plural, ns, name});
  if (it == objects_.end()) return MakeError(ErrorCode::kNotFound, name + " not found");
  if (it->second["metadata"].value("finalizers", Json::array()).empty()) {
    objects_.erase(it);
    return {};
  }
  if (!it->second["metadata"].contains("deletionTimestamp")) {
    it->second["metadata"]["deletionTimestamp"] = "2026-12-05T00:00:01Z";
    it->second["metadata"]["resourceVersion"] = NextVersion();
  }
  return {};
}

std::optional<Json> FakeApi::Peek(const std::string& plural, const std::string& ns,
                                  const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = objects_.find({plural, ns, name});
  if (it == objects_.end()) return std::nullopt;
  return it->second;
}

std::vector<Json> FakeApi::All(const std::string& plural) const {
  std::lock_guard lock(mu_);
  std::vector<Json> out;
  for (const auto& [key, object] : objects_) {
    if (std::get<0>(key) == plural) out.push_back(object);
  }
  return out;
}

Json FakeApi::Put(const std::string& plural, Json object) {
  std::lock_guard lock(mu_);
  object["metadata"]["resourceVersion"] = NextVersion();
  const Key key{plural, Str(object["metadata"], "namespace"), Str(object["metadata"], "name")};
  objects_[key] = object;
  return object;
}

std::vector<FakeCall> FakeApi::Calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

size_t FakeApi::CountCalls(const std::string& verb, const std::string& plural) const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& c : calls_) {
    if (c.verb == verb && (plural.empty() || c.plural == plural)) ++n;
  }
  return n;
}

void FakeApi::ClearCalls() {
  std::lock_guard lock(mu_);
  calls_.clear();
}

std::optional<Json> FakeCache::Get(const std::string& key) const {
  {
    std::lock_guard lock(mu_);
    if (auto it = pinned_.find(key); it != pinned_.end()) return it->second;
  }
  const auto slash = key.find('/');
  if (slash == std::string::npos) return api_.Peek(plural_, "", key);
  return api_.Peek(plural_, key.substr(0, slash), key.substr(slash + 1));
}

std::vector<Json> FakeCache::List() const { return api_.All(plural_); }

void FakeCache::Pin(const std::string& key, Json object) {
  std::lock_guard lock(mu_);
  pinned_[key] = std::move(object);
}

void FakeCache::Unpin(const std::string& key) {
  std::lock_guard lock(mu_);
  pinned_.erase(key);
}

void FakeCache::Hide(const std::string& key) {
  std::lock_guard lock(mu_);
  pinned_[key] = std::nullopt;
}

void FakeEvents::Record(const Json& object, const std::string& type, const std::string& reason,
                        const std::string& message) {
  const Json md = object.value("metadata", Json::object());
  std::lock_guard lock(mu_);
  events_.push_back({md.value("namespace", "") + "/" + md.value("name", ""), type, reason,
                     core::SanitizeUtf8(message)});
}

std::vector<RecordedEvent> FakeEvents::All() const {
  std::lock_guard lock(mu_);
  return events_;
}

std::vector<RecordedEvent> FakeEvents::WithReason(const std::string& reason) const {
  std::lock_guard lock(mu_);
  std::vector<RecordedEvent> out;
  for (const auto& e : events_) {
    if (e.reason == reason) out.push_back(e);
  }
  return out;
}

void FakeEvents::Clear() {
  std::lock_guard lock(mu_);
  events_.clear();
}

}  // namespace vmimport::testing
