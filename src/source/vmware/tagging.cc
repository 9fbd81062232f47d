#include "source/vmware/tagging.h"

#include <algorithm>
#include <set>

#include "core/json.h"
#include "core/strings.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;
using core::MakeError;
using Json = nlohmann::json;

// A vAPI answer is {"value": ...}; vcsim leaves an empty value out ({}).
core::Result<Json> ValueOf(const http::Response& r, const std::string& what) {
  auto parsed = core::ParseJson(r.body);
  if (!parsed || !parsed->is_object()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "vsphere tags: " + what + ": the answer is not a vAPI value");
  }
  return parsed->contains("value") ? (*parsed)["value"] : Json();
}

class RestSession {
 public:
  RestSession(std::stop_token stop, http::Client& http, std::string base)
      : stop_(std::move(stop)), http_(http), base_(std::move(base)) {}

  core::Result<Json> Call(const std::string& method, const std::string& path,
                          const std::string& what, const Json& body = nullptr,
                          const std::string& basic_auth = "") {
    http::Request req;
    req.method = method;
    req.url = base_ + path;
    req.headers.emplace_back("Accept", "application/json");
    if (!basic_auth.empty()) {
      req.headers.emplace_back("Authorization", "Basic " + core::Base64Encode(basic_auth));
    }
    if (!session_.empty()) {
      req.headers.emplace_back("vmware-api-session-id", session_);
    }
    if (!body.is_null()) {
      req.headers.emplace_back("Content-Type", "application/json");
      req.body = body.dump();
    }
    ++calls_;
    auto r = http_.Do(stop_, req);
    if (!r) {
      return MakeError(r.error().Wrap("vsphere tags: " + what));
    }
    if (r->status == 401 || r->status == 403) {
      return MakeError(ErrorCode::kUnauthenticated, "vsphere tags: " + what + ": refused (HTTP " +
                                                        std::to_string(r->status) + ")");
    }
    if (r->status == 404 && path == kSessionPath) {
      return MakeError(ErrorCode::kUnsupported,
                       "vsphere tags: the endpoint serves no vAPI REST (" + base_ + ")");
    }
    if (r->status < 200 || r->status >= 300) {
      return MakeError(ErrorCode::kUnavailable,
                       "vsphere tags: " + what + ": HTTP " + std::to_string(r->status));
    }
    if (method == "DELETE") {
      return Json();
    }
    return ValueOf(*r, what);
  }

  core::Status Login(const std::string& user, const std::string& password) {
    auto id = Call("POST", kSessionPath, "login", nullptr, user + ":" + password);
    if (!id) {
      return MakeError(id.error());
    }
    if (!id->is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, "vsphere tags: login: no session id");
    }
    session_ = id->get<std::string>();
    return {};
  }

  void Logout() {
    if (!session_.empty()) {
      (void)Call("DELETE", kSessionPath, "logout");  // best effort: the session expires anyway
    }
  }

  uint64_t calls() const { return calls_; }

  static constexpr const char* kSessionPath = "/com/vmware/cis/session";

 private:
  std::stop_token stop_;
  http::Client& http_;
  const std::string base_;
  std::string session_;
  uint64_t calls_ = 0;
};

}  // namespace

std::string RestBaseUrl(const std::string& endpoint) {
  const size_t scheme = endpoint.find("://");
  const size_t path = endpoint.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  return (path == std::string::npos ? endpoint : endpoint.substr(0, path)) + "/rest";
}

core::Result<VmTagMap> JoinVmTags(const std::map<std::string, TagInfo>& tags,
                                  const std::map<std::string, std::string>& category_names,
                                  const Json& attached) {
  if (!attached.is_array() && !attached.is_null()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "vsphere tags: list-attached-objects-on-tags: not a list");
  }
  std::map<std::string, std::set<std::string>> by_vm;
  for (const Json& entry : attached.is_array() ? attached : Json::array()) {
    const std::string tag_id = core::JsonString(entry, "tag_id");
    auto tag = tags.find(tag_id);
    if (tag == tags.end()) {
      continue;  // made after the tag list was read
    }
    auto category = category_names.find(tag->second.category_id);
    const std::string label =
        (category == category_names.end() ? std::string("?") : category->second) + "/" +
        tag->second.name;
    for (const Json& obj : core::JsonArray(entry, "object_ids")) {
      if (core::JsonString(obj, "type") == "VirtualMachine") {
        by_vm[core::JsonString(obj, "id")].insert(label);
      }
    }
  }
  VmTagMap out;
  for (auto& [vm, labels] : by_vm) {
    out[vm] = std::vector<std::string>(labels.begin(), labels.end());
  }
  return out;
}

core::Result<VmTagMap> ListVmTags(std::stop_token stop, http::Client& http,
                                  const std::string& endpoint, const std::string& user,
                                  const std::string& password, uint64_t* calls) {
  RestSession rest(stop, http, RestBaseUrl(endpoint));
  auto result = [&]() -> core::Result<VmTagMap> {
    if (auto st = rest.Login(user, password); !st) {
      return MakeError(st.error());
    }
    auto ids = rest.Call("GET", "/com/vmware/cis/tagging/tag", "list tags");
    if (!ids) {
      return MakeError(ids.error());
    }
    std::map<std::string, TagInfo> tags;
    std::set<std::string> categories;
    Json tag_ids = Json::array();
    for (const Json& id : ids->is_array() ? *ids : Json::array()) {
      if (!id.is_string()) {
        continue;
      }
      auto tag = rest.Call("GET", "/com/vmware/cis/tagging/tag/id:" + id.get<std::string>(),
                           "read tag " + id.get<std::string>());
      if (!tag) {
        return MakeError(tag.error());
      }
      TagInfo info{core::JsonString(*tag, "name"), core::JsonString(*tag, "category_id")};
      categories.insert(info.category_id);
      tags[id.get<std::string>()] = std::move(info);
      tag_ids.push_back(id);
    }
    std::map<std::string, std::string> category_names;
    for (const std::string& id : categories) {
      auto category =
          rest.Call("GET", "/com/vmware/cis/tagging/category/id:" + id, "read category " + id);
      if (!category) {
        return MakeError(category.error());
      }
      category_names[id] = core::JsonString(*category, "name");
    }
    if (tags.empty()) {
      return VmTagMap{};
    }
    auto attached = rest.Call(
        "POST", "/com/vmware/cis/tagging/tag-association?~action=list-attached-objects-on-tags",
        "list tagged objects", Json{{"tag_ids", tag_ids}});
    if (!attached) {
      return MakeError(attached.error());
    }
    return JoinVmTags(tags, category_names, *attached);
  }();
  rest.Logout();
  if (calls != nullptr) {
    *calls = rest.calls();
  }
  return result;
}

}  // namespace vmimport::source::vmware
