#include "kube/client.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/json.h"
#include "core/strings.h"

namespace vmimport::kube {
namespace {

using core::ErrorCode;
using core::MakeError;

constexpr const char* kMetadataAccept =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
constexpr const char* kMetadataListAccept =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";

std::string Query(const ListOptions& o) {
  std::string q;
  auto add = [&q](const char* key, const std::string& value) {
    if (value.empty()) {
      return;
    }
    q.append(q.empty() ? "?" : "&").append(key).append("=").append(core::UrlEncode(value));
  };
  add("labelSelector", o.label_selector);
  add("fieldSelector", o.field_selector);
  add("limit", o.limit > 0 ? std::to_string(o.limit) : "");
  add("continue", o.continue_token);
  add("resourceVersion", o.resource_version);
  return q;
}

//! The query a write carries for the resource's field validation ("" or "?fieldValidation=...").
std::string WriteQuery(const Resource& r) {
  switch (r.field_validation) {
    case FieldValidation::kStrict: return "?fieldValidation=Strict";
    case FieldValidation::kServerDefault: return "";
  }
  return "";
}

std::string ObjectName(const Json& object) {
  return core::JsonString(core::JsonObject(object, "metadata"), "name");
}

//! The error of a non-2xx answer: its Status (or the start of whatever body it has) and code.
core::Error ApiError(const std::string& method, const std::string& path, long http_code,
                     const std::string& body) {
  const ApiStatus status = *ParseApiStatus(http_code, body);
  std::string msg = "kube " + method + " " + path + ": " + std::to_string(status.code);
  if (!status.reason.empty()) {
    msg.append(" ").append(status.reason);
  }
  if (!status.message.empty()) {
    msg.append(": ").append(status.message);
  }
  return core::Error{ErrorCodeFor(status), msg};
}

}  // namespace

std::string Resource::Path(const std::string& ns, const std::string& name,
                           const std::string& subresource) const {
  std::string p = group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
  if (namespaced && !ns.empty()) {
    p.append("/namespaces/").append(core::UrlEncode(ns));
  }
  p.append("/").append(plural);
  if (!name.empty()) {
    p.append("/").append(core::UrlEncode(name));
    if (!subresource.empty()) {
      p.append("/").append(subresource);
    }
  }
  return p;
}

std::optional<ApiStatus> ParseApiStatus(long http_code, const std::string& body) {
  ApiStatus s;
  s.code = http_code;
  const std::optional<Json> j = core::ParseJson(body);
  if (!j || core::JsonString(*j, "kind") != "Status") {
    // Not a Status (a proxy's HTML page, a truncated body): its start, cut whole characters or not.
    s.message = core::SanitizeUtf8(std::string_view(body).substr(0, 512));
    return s;
  }
  s.reason = core::JsonString(*j, "reason");
  s.message = core::JsonString(*j, "message");
  if (auto code = core::JsonInt(*j, "code")) {
    s.code = static_cast<long>(*code);
  }
  const Json& d = core::JsonObject(*j, "details");
  for (const Json& c : core::JsonArray(d, "causes")) {
    s.causes.push_back(core::JsonString(c, "field") + ": " + core::JsonString(c, "message"));
  }
  if (auto after = core::JsonInt(d, "retryAfterSeconds")) {
    s.retry_after = std::chrono::seconds(*after);
  }
  return s;
}

std::string ParseWarningHeader(std::string_view value) {
  // warn-code SP warn-agent SP warn-text [SP warn-date]; warn-text is a quoted-string.
  const std::string_view whole = core::TrimSpace(value);
  const size_t quote = whole.find('"');
  if (quote == std::string_view::npos) {
    return std::string(whole);
  }
  std::string text;
  for (size_t i = quote + 1; i < whole.size(); ++i) {
    const char c = whole[i];
    if (c == '\\' && i + 1 < whole.size()) {
      text.push_back(whole[++i]);
    } else if (c == '"') {
      return text;
    } else {
      text.push_back(c);
    }
  }
  return std::string(whole);  // no closing quote: not the RFC form
}

ErrorCode ErrorCodeFor(const ApiStatus& s) {
  switch (s.code) {
    case 400: return ErrorCode::kInvalidArgument;
    case 401: return ErrorCode::kUnauthenticated;
    case 403:
      // A ResourceQuota refusal ("exceeded quota") passes once objects go: worth retrying. Any
      // other 403 (RBAC) needs an operator.
      return s.message.find("exceeded quota") != std::string::npos ? ErrorCode::kUnavailable
                                                                   : ErrorCode::kPermissionDenied;
    case 404: return ErrorCode::kNotFound;
    case 409: return s.reason == "AlreadyExists" ? ErrorCode::kAlreadyExists : ErrorCode::kConflict;
    case 410: return ErrorCode::kGone;
    case 422: return ErrorCode::kInvalidArgument;
    case 429: return ErrorCode::kUnavailable;
    case 504: return ErrorCode::kDeadlineExceeded;
    default: return s.code >= 500 ? ErrorCode::kUnavailable : ErrorCode::kInternal;
  }
}

Result<std::unique_ptr<Client>> Client::Create(Config config) {
  auto http = http::Client::Create(config.tls);
  if (!http) {
    return MakeError(http.error().Wrap("kube"));
  }
  return std::unique_ptr<Client>(new Client(std::move(config), std::move(*http)));
}

Client::Client(Config config, std::unique_ptr<http::Client> http)
    : config_(std::move(config)), http_(std::move(http)) {}

Result<std::string> Client::Token() const {
  if (config_.token_file.empty()) {
    return config_.bearer_token;
  }
  // Re-read every time: the kubelet rotates projected service-account tokens in place.
  std::ifstream in(config_.token_file);
  if (!in) {
    return MakeError(ErrorCode::kUnauthenticated, "cannot read token file " + config_.token_file);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::string(core::TrimSpace(ss.str()));
}

Result<http::Request> Client::NewRequest(const std::string& method, const std::string& path,
                                         const std::string& accept) const {
  http::Request req;
  req.method = method;
  req.url = config_.server + path;
  req.headers.emplace_back("Accept", accept);
  req.headers.emplace_back("User-Agent", "vm-import/0.1");
  auto token = Token();
  if (!token) {
    return MakeError(token.error());
  }
  if (!token->empty()) {
    req.headers.emplace_back("Authorization", "Bearer " + *token);
  }
  return req;
}

Result<Json> Client::Call(std::stop_token stop, const std::string& method, const std::string& path,
                          const std::string& content_type, const std::string& body,
                          const std::string& accept) {
  auto req = NewRequest(method, path, accept);
  if (!req) {
    return MakeError(req.error());
  }
  req->body = body;
  if (!content_type.empty()) {
    req->headers.emplace_back("Content-Type", content_type);
  }
  auto resp = http_->Do(std::move(stop), *req);
  if (!resp) {
    return MakeError(resp.error().Wrap("kube " + method + " " + path));
  }
  Warned(method, path, *resp);
  if (resp->status >= 200 && resp->status < 300) {
    if (resp->body.empty()) {
      return Json::object();
    }
    std::optional<Json> j = core::ParseJson(resp->body);
    if (!j) {
      return MakeError(ErrorCode::kInternal,
                       "kube " + method + " " + path + ": response is not JSON");
    }
    return std::move(*j);
  }
  return MakeError(ApiError(method, path, resp->status, resp->body));
}

Result<TextBody> Client::GetText(std::stop_token stop, const std::string& path,
                                 const TextLimit& limit) {
  auto req = NewRequest("GET", path, "text/plain, */*");
  if (!req) {
    return MakeError(req.error());
  }
  TextBody out;
  std::string error_body;
  long status = 0;
  bool enough = false;  // the head is kept and complete: the transfer was ended on purpose
  auto on_head = [&status](const http::Response& head) {
    status = head.status;
    return true;
  };
  auto on_body = [&](std::string_view chunk) {
    if (status < 200 || status >= 300) {
      error_body.append(
          chunk.substr(0, (size_t{1} << 20) - std::min(error_body.size(), size_t{1} << 20)));
      return true;
    }
    out.total_bytes += chunk.size();
    if (!limit.keep_tail) {
      const size_t room = limit.max_bytes - out.text.size();
      out.text.append(chunk.substr(0, room));
      if (chunk.size() > room) {
        out.truncated = true;
        enough = true;
        return false;
      }
      return true;
    }
    out.text.append(chunk);
    // Drop the oldest bytes in batches, keeping at most twice the limit in memory.
    if (out.text.size() > 2 * limit.max_bytes) {
      out.text.erase(0, out.text.size() - limit.max_bytes);
      out.truncated = true;
    }
    return true;
  };
  auto resp = http_->Stream(std::move(stop), *req, on_head, on_body);
  if (!resp && !enough) {
    return MakeError(resp.error().Wrap("kube GET " + path));
  }
  if (resp) {
    Warned("GET", path, *resp);
  }
  if (status < 200 || status >= 300) {
    return MakeError(ApiError("GET", path, status, error_body));
  }
  if (limit.keep_tail && out.text.size() > limit.max_bytes) {
    out.text.erase(0, out.text.size() - limit.max_bytes);
    out.truncated = true;
  }
  if (limit.keep_tail && out.truncated) {
    // Start at a whole line (also skips a UTF-8 sequence the cut split).
    const size_t nl = out.text.find('\n');
    if (nl != std::string::npos && nl + 1 < out.text.size()) {
      out.text.erase(0, nl + 1);
    }
  }
  return out;
}

Result<TextBody> Client::PodLog(std::stop_token stop, const std::string& ns,
                                const std::string& name, const PodLogOptions& options) {
  static const Resource kPods{"", "v1", "pods", true};
  std::string query;
  auto add = [&query](const char* key, const std::string& value) {
    query.append(query.empty() ? "?" : "&").append(key).append("=").append(core::UrlEncode(value));
  };
  if (!options.container.empty()) {
    add("container", options.container);
  }
  if (options.previous) {
    add("previous", "true");
  }
  if (options.tail_lines) {
    add("tailLines", std::to_string(*options.tail_lines));
  }
  if (options.limit_bytes) {
    add("limitBytes", std::to_string(*options.limit_bytes));
  }
  return GetText(std::move(stop), kPods.Path(ns, name, "log") + query, options.keep);
}

void Client::Warned(const std::string& method, const std::string& path,
                    const http::Response& resp) {
  for (const std::string& value : resp.AllHeaders("warning")) {
    warnings_.fetch_add(1);
    if (warning_handler_) {
      warning_handler_(ApiWarning{method, path, core::SanitizeUtf8(ParseWarningHeader(value))});
    }
  }
}

Result<Json> Client::Get(std::stop_token stop, const Resource& r, const std::string& ns,
                         const std::string& name) {
  return Call(std::move(stop), "GET", r.Path(ns, name), "", "");
}

Result<Json> Client::List(std::stop_token stop, const Resource& r, const std::string& ns,
                          const ListOptions& options) {
  return Call(std::move(stop), "GET", r.Path(ns) + Query(options), "", "",
              options.metadata_only ? kMetadataListAccept : "application/json");
}

Result<Json> Client::Create(std::stop_token stop, const Resource& r, const std::string& ns,
                            const Json& object) {
  return Call(std::move(stop), "POST", r.Path(ns) + WriteQuery(r), "application/json",
              core::DumpJson(object));
}

Result<Json> Client::Update(std::stop_token stop, const Resource& r, const std::string& ns,
                            const Json& object) {
  return Call(std::move(stop), "PUT", r.Path(ns, ObjectName(object)) + WriteQuery(r),
              "application/json", core::DumpJson(object));
}

Result<Json> Client::UpdateStatus(std::stop_token stop, const Resource& r, const std::string& ns,
                                  const Json& object) {
  return Call(std::move(stop), "PUT", r.Path(ns, ObjectName(object), "status") + WriteQuery(r),
              "application/json", core::DumpJson(object));
}

Result<Json> Client::MergePatch(std::stop_token stop, const Resource& r, const std::string& ns,
                                const std::string& name, const Json& patch,
                                const std::string& subresource) {
  return Call(std::move(stop), "PATCH", r.Path(ns, name, subresource) + WriteQuery(r),
              "application/merge-patch+json", core::DumpJson(patch));
}

Status Client::Watch(std::stop_token stop, const Resource& r, const std::string& ns,
                     const ListOptions& options, std::chrono::seconds timeout,
                     const WatchHandler& on_event) {
  ListOptions o = options;
  o.limit = 0;
  o.continue_token.clear();
  std::string path = r.Path(ns) + Query(o);
  path.append(path.find('?') == std::string::npos ? "?" : "&");
  path.append("watch=true&allowWatchBookmarks=true&timeoutSeconds=" +
              std::to_string(timeout.count()));

  auto made = NewRequest("GET", path, options.metadata_only ? kMetadataAccept : "application/json");
  if (!made) {
    return MakeError(made.error());
  }
  http::Request& req = *made;
  // The server ends the watch after `timeout`; allow some slack before calling it stalled.
  req.timeout = timeout + std::chrono::seconds(30);
  req.stall_timeout = std::chrono::seconds(0);

  std::string buffer;
  std::string error_body;
  long status = 0;
  std::optional<core::Error> event_error;
  bool ended_by_handler = false;
  auto on_head = [&status](const http::Response& head) {
    status = head.status;
    return true;
  };
  auto on_body = [&](std::string_view chunk) {
    if (status != 200) {
      error_body.append(chunk);
      return error_body.size() < (1 << 20);
    }
    buffer.append(chunk);
    size_t start = 0;
    while (true) {
      const size_t nl = buffer.find('\n', start);
      if (nl == std::string::npos) {
        break;
      }
      const std::string_view line(buffer.data() + start, nl - start);
      start = nl + 1;
      if (core::TrimSpace(line).empty()) {
        continue;
      }
      // This runs inside libcurl's write callback: nothing here may throw.
      std::optional<Json> j = core::ParseJson(line);
      const Json* type = j ? core::JsonMember(*j, "type") : nullptr;
      if (type == nullptr || !type->is_string()) {
        event_error = core::Error{ErrorCode::kInternal, "watch " + r.plural + ": bad event line"};
        return false;
      }
      std::string type_name = type->get_ref<const std::string&>();
      WatchEvent ev{std::move(type_name), std::move((*j)["object"])};  // missing: null
      if (ev.type == "ERROR") {
        const auto st = ParseApiStatus(0, core::DumpJson(ev.object));
        const long code = static_cast<long>(core::JsonInt(ev.object, "code").value_or(0));
        event_error =
            core::Error{code == 410 ? ErrorCode::kGone : ErrorCodeFor(*st),
                        "watch " + r.plural + ": " + core::JsonString(ev.object, "message")};
        return false;
      }
      if (!on_event(ev)) {
        ended_by_handler = true;
        return false;
      }
    }
    buffer.erase(0, start);
    return true;
  };
  auto resp = http_->Stream(std::move(stop), req, on_head, on_body);
  if (event_error) {
    return MakeError(*event_error);
  }
  if (ended_by_handler) {
    return {};
  }
  if (!resp) {
    return MakeError(resp.error().Wrap("watch " + r.plural));
  }
  if (resp->status != 200) {
    const ApiStatus st = *ParseApiStatus(resp->status, error_body);
    return MakeError(ErrorCodeFor(st), "watch " + r.plural + ": " + std::to_string(st.code) + " " +
                                           st.reason + ": " + st.message);
  }
  return {};
}

Status Client::Delete(std::stop_token stop, const Resource& r, const std::string& ns,
                      const std::string& name, const DeleteOptions& options) {
  Json body = {{"apiVersion", "v1"}, {"kind", "DeleteOptions"}};
  if (!options.propagation_policy.empty()) {
    body["propagationPolicy"] = options.propagation_policy;
  }
  if (!options.precondition_uid.empty()) {
    body["preconditions"]["uid"] = options.precondition_uid;
  }
  if (!options.precondition_resource_version.empty()) {
    body["preconditions"]["resourceVersion"] = options.precondition_resource_version;
  }
  auto r2 =
      Call(std::move(stop), "DELETE", r.Path(ns, name), "application/json", core::DumpJson(body));
  if (!r2) {
    return MakeError(r2.error());
  }
  return {};
}

}  // namespace vmimport::kube
