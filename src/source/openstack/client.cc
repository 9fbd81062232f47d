#include "source/openstack/client.h"

#include <algorithm>
#include <set>

#include "core/clock.h"
#include "core/strings.h"
#include "source/openstack/json_util.h"
#include "source/tls.h"

namespace vmimport::source::openstack {

using core::ErrorCode;
using core::MakeError;

const char* ServiceName(Service service) {
  switch (service) {
    case Service::kCompute: return "nova";
    case Service::kBlockStorage: return "cinder";
    case Service::kImage: return "glance";
    case Service::kNetwork: return "neutron";
  }
  return "openstack";
}

namespace {

// Catalog types that serve `service`, in order of preference.
std::vector<std::string_view> CatalogTypes(Service service) {
  switch (service) {
    case Service::kCompute: return {"compute"};
    case Service::kBlockStorage: return {"volumev3", "block-storage", "volume"};
    case Service::kImage: return {"image"};
    case Service::kNetwork: return {"network"};
  }
  return {};
}

}  // namespace

// The body of POST /v3/auth/tokens (Identity API v3, "Password authentication with scoped
// authorization"):
//   {"token": {"expires_at": "2024-05-01T12:00:00.000000Z",
//              "project": {"id": "...", "name": "admin", "domain": {...}},
//              "catalog": [{"type": "compute", "name": "nova", "id": "...",
//                           "endpoints": [{"interface": "public", "region_id": "RegionOne",
//                                          "region": "RegionOne", "url": "http://..."}]}],
//              "user": {...}, "roles": [...], "methods": ["password"]}}
core::Result<TokenInfo> ParseTokenResponse(std::string_view body) {
  auto doc = ParseJson(body);
  const nlohmann::json* token = doc ? Member(*doc, "token") : nullptr;
  if (token == nullptr || !token->is_object()) {
    return MakeError(ErrorCode::kCorruptData, "keystone: the token response is not a v3 token");
  }
  TokenInfo info;
  info.project_id = Str(Obj(*token, "project"), "id");
  const std::string expires = Str(*token, "expires_at");
  if (!expires.empty() && !core::ParseRfc3339(expires, info.expires_at)) {
    return MakeError(ErrorCode::kCorruptData,
                     "keystone: the token's expires_at \"" + expires + "\" is not a time");
  }
  for (const auto& service : Arr(*token, "catalog")) {
    const std::string type = Str(service, "type");
    for (const auto& e : Arr(service, "endpoints")) {
      CatalogEndpoint ep{type, Str(e, "interface"), Str(e, "region_id"), Str(e, "url")};
      if (ep.region.empty()) {
        ep.region = Str(e, "region");
      }
      if (!ep.url.empty()) {
        info.catalog.push_back(std::move(ep));
      }
    }
  }
  return info;
}

core::Result<std::string> FindEndpoint(const std::vector<CatalogEndpoint>& catalog, Service service,
                                       std::string_view region, std::string_view interface) {
  std::set<std::string> regions;
  for (std::string_view type : CatalogTypes(service)) {
    for (const CatalogEndpoint& e : catalog) {
      if (e.type != type || e.interface != interface) {
        continue;
      }
      if (region.empty() || e.region == region) {
        std::string url = e.url;
        while (!url.empty() && url.back() == '/') {
          url.pop_back();
        }
        return url;
      }
      regions.insert(e.region);
    }
  }
  const std::string what =
      std::string(ServiceName(service)) + " (" + std::string(CatalogTypes(service).front()) + ")";
  if (regions.empty()) {
    return MakeError(ErrorCode::kNotFound, "keystone: the catalog has no " +
                                               std::string(interface) + " endpoint of " + what);
  }
  return MakeError(ErrorCode::kNotFound,
                   "keystone: region \"" + std::string(region) + "\" has no " +
                       std::string(interface) + " endpoint of " + what + "; regions: " +
                       core::Join(std::vector<std::string>(regions.begin(), regions.end()), ", "));
}

std::string IdentityV3Url(std::string_view endpoint) {
  std::string url(endpoint);
  while (!url.empty() && url.back() == '/') {
    url.pop_back();
  }
  if (!url.ends_with("/v3")) {
    url += "/v3";
  }
  return url;
}

// An OpenStack error body is one of (the first key names the error class):
//   {"itemNotFound": {"code": 404, "message": "..."}}      nova, cinder
//   {"error": {"code": 401, "title": "...", "message": "..."}}  keystone
//   {"NeutronError": {"type": "...", "message": "...", "detail": ""}}  neutron
//   {"message": "...", "code": "404 Not Found", "title": "Not Found"}  glance (also HTML)
core::Error ApiError(std::string_view service, std::string_view what, long status,
                     std::string_view body) {
  std::string detail;
  auto doc = ParseJson(body);
  if (!doc) {
    // A JSON error whose text is not UTF-8 (a name echoed back from the user) is still worth
    // reading: with each bad byte replaced it parses, and its message says what went wrong.
    doc = ParseJson(core::SanitizeUtf8(body));
  }
  if (doc && doc->is_object()) {
    detail = Str(*doc, "message");
    for (auto it = doc->begin(); detail.empty() && it != doc->end(); ++it) {
      detail = Str(it.value(), "message");
    }
  }
  if (detail.size() > 300) {
    detail = std::string(core::TruncateUtf8(detail, 300)) + "...";  // whole characters only
  }
  std::string message = std::string(service) + ": " + std::string(what) + ": http " +
                        std::to_string(status) + (detail.empty() ? "" : ": " + detail);
  ErrorCode code = ErrorCode::kInternal;
  if (status == 400) {
    code = ErrorCode::kInvalidArgument;
  } else if (status == 401) {
    code = ErrorCode::kUnauthenticated;
  } else if (status == 403) {
    code = ErrorCode::kPermissionDenied;
  } else if (status == 404) {
    code = ErrorCode::kNotFound;
  } else if (status == 409) {
    code = ErrorCode::kConflict;
  } else if (status == 413 || status == 429 || status >= 500) {
    code = ErrorCode::kUnavailable;
  }
  return {code, std::move(message)};
}

core::Result<Credentials> CredentialsFromSecret(const std::map<std::string, std::string>& secret,
                                                std::string_view secret_name) {
  auto get = [&secret](const char* key) {
    auto it = secret.find(key);
    return it == secret.end() ? std::string() : std::string(core::TrimSpace(it->second));
  };
  Credentials c{get("username"), "", get("project_name"), get("domain_name")};
  if (auto it = secret.find("password"); it != secret.end()) {
    c.password = it->second;  // passwords may end in spaces
  }
  for (const auto& [key, value] :
       {std::pair{"username", &c.username}, std::pair{"password", &c.password},
        std::pair{"project_name", &c.project_name}}) {
    if (value->empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "openstack: " + std::string(secret_name) + " has no " + key);
    }
  }
  if (c.domain_name.empty()) {
    c.domain_name = "Default";
  }
  return c;
}

core::Result<std::unique_ptr<Session>> Session::Login(std::stop_token stop,
                                                      const SourceConfig& config,
                                                      SessionOptions options) {
  if (config.endpoint.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "openstack: spec.endpoint is empty");
  }
  if (!config.endpoint.starts_with("http://") && !config.endpoint.starts_with("https://")) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "openstack: spec.endpoint \"" + config.endpoint + "\" is not an http(s) URL");
  }
  auto credentials = CredentialsFromSecret(config.secret, SecretName(config));
  if (!credentials) {
    return MakeError(credentials.error());
  }
  auto tls = TlsFromSecret(config.secret);
  if (!tls) {
    return MakeError(tls.error());
  }
  auto http = http::Client::Create(*tls);
  if (!http) {
    return MakeError(http.error());
  }
  std::unique_ptr<Session> session(new Session(std::move(*http), IdentityV3Url(config.endpoint),
                                               std::move(*credentials), config.region, options));
  {
    std::lock_guard lock(session->mu_);
    if (auto st = session->Authenticate(stop); !st) {
      return MakeError(st.error());
    }
  }
  return session;
}

core::Status Session::Authenticate(std::stop_token stop) {
  // JSON carries text only: a Secret value that is not UTF-8 is refused, never mangled.
  for (const std::string* field : {&credentials_.username, &credentials_.password,
                                   &credentials_.project_name, &credentials_.domain_name}) {
    if (!core::IsValidUtf8(*field)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "keystone: login at " + identity_url_ +
                           ": the credentials are not UTF-8 text (username, password, project or "
                           "domain name)");
    }
  }
  const Json body = {{"auth",
                      {{"identity",
                        {{"methods", {"password"}},
                         {"password",
                          {{"user",
                            {{"name", credentials_.username},
                             {"domain", {{"name", credentials_.domain_name}}},
                             {"password", credentials_.password}}}}}}},
                       {"scope",
                        {{"project",
                          {{"name", credentials_.project_name},
                           {"domain", {{"name", credentials_.domain_name}}}}}}}}}};
  http::Request request;
  request.method = "POST";
  request.url = identity_url_ + "/auth/tokens";
  request.headers = {{"Content-Type", "application/json"}, {"Accept", "application/json"}};
  request.body = core::DumpJson(body);
  request.timeout = options_.request_timeout;
  auto response = http_->Do(stop, request);
  if (!response) {
    return MakeError(response.error().Wrap("keystone: login at " + identity_url_));
  }
  if (response->status == 401) {
    return MakeError(ErrorCode::kUnauthenticated,
                     "keystone: login at " + identity_url_ + " as " + credentials_.username +
                         " (project " + credentials_.project_name + ", domain " +
                         credentials_.domain_name + "): the credentials were refused (http 401)");
  }
  if (response->status == 404) {
    return MakeError(ErrorCode::kNotFound,
                     "keystone: no identity v3 API at " + identity_url_ + " (http 404)");
  }
  if (response->status != 201 && response->status != 200) {
    return MakeError(
        ApiError("keystone", "login at " + identity_url_, response->status, response->body));
  }
  const auto token = response->Header("x-subject-token");
  if (!token || token->empty()) {
    return MakeError(ErrorCode::kInternal, "keystone: login at " + identity_url_ +
                                               ": the answer has no X-Subject-Token header");
  }
  auto info = ParseTokenResponse(response->body);
  if (!info) {
    return MakeError(info.error());
  }
  if (endpoints_.empty()) {  // first login: resolve the services once
    for (Service s : {Service::kCompute, Service::kBlockStorage, Service::kImage}) {
      auto url = FindEndpoint(info->catalog, s, region_);
      if (!url) {
        return MakeError(url.error());
      }
      std::string resolved = *url;
      // Cinder's catalog URL may still hold the template "%(project_id)s" or "$(project_id)s".
      for (std::string_view tmpl : {"%(project_id)s", "$(project_id)s", "%(tenant_id)s"}) {
        if (auto pos = resolved.find(tmpl); pos != std::string::npos) {
          resolved.replace(pos, tmpl.size(), info->project_id);
        }
      }
      endpoints_[s] = std::move(resolved);
    }
    if (auto url = FindEndpoint(info->catalog, Service::kNetwork, region_)) {
      endpoints_[Service::kNetwork] = *url;
    }
    project_id_ = info->project_id;
  }
  token_ = *token;
  expires_at_ = info->expires_at;
  ++logins_;
  return {};
}

core::Result<std::string> Session::Token(std::stop_token stop) {
  std::lock_guard lock(mu_);
  const bool expiring = expires_at_ != std::chrono::system_clock::time_point{} &&
                        std::chrono::system_clock::now() + options_.renew_margin >= expires_at_;
  if (token_.empty() || expiring) {
    if (auto st = Authenticate(stop); !st) {
      return MakeError(st.error());
    }
  }
  return token_;
}

void Session::InvalidateTokenForTest() {
  std::lock_guard lock(mu_);
  token_.clear();
}

int Session::logins() const {
  std::lock_guard lock(mu_);
  return logins_;
}

const std::string& Session::Endpoint(Service service) const {
  static const std::string none;
  auto it = endpoints_.find(service);
  return it == endpoints_.end() ? none : it->second;
}

core::Result<http::Response> Session::Raw(std::stop_token stop, Service service,
                                          std::string_view method, std::string_view path,
                                          const Json* body, const http::Headers& extra_headers) {
  const std::string& base = Endpoint(service);
  if (base.empty()) {
    return MakeError(ErrorCode::kNotFound, std::string(ServiceName(service)) +
                                               ": the catalog has no endpoint in region \"" +
                                               region_ + "\"");
  }
  for (int attempt = 0;; ++attempt) {
    auto token = Token(stop);
    if (!token) {
      return MakeError(token.error());
    }
    http::Request request;
    request.method = std::string(method);
    request.url = base + std::string(path);
    request.timeout = options_.request_timeout;
    request.headers = {{"X-Auth-Token", *token}, {"Accept", "application/json"}};
    if (body != nullptr) {
      request.headers.emplace_back("Content-Type", "application/json");
      request.body = core::DumpJson(*body);
    }
    request.headers.insert(request.headers.end(), extra_headers.begin(), extra_headers.end());
    ++requests_;
    auto response = http_->Do(stop, request);
    if (!response) {
      return MakeError(response.error().Wrap(std::string(ServiceName(service)) + ": " +
                                             std::string(method) + " " + std::string(path)));
    }
    if (response->status == 401 && attempt == 0) {
      std::lock_guard lock(mu_);
      if (token_ == *token) {
        token_.clear();  // expired or revoked early: log in again once
      }
      continue;
    }
    return response;
  }
}

core::Result<Json> Session::Call(std::stop_token stop, Service service, std::string_view method,
                                 std::string_view path, std::string_view what, const Json* body,
                                 const http::Headers& extra_headers) {
  auto response = Raw(stop, service, method, path, body, extra_headers);
  if (!response) {
    return MakeError(response.error());
  }
  if (response->status < 200 || response->status >= 300) {
    return MakeError(ApiError(ServiceName(service), what, response->status, response->body));
  }
  if (core::TrimSpace(response->body).empty()) {
    return Json();
  }
  auto doc = ParseJson(response->body);
  if (!doc) {
    return MakeError(ErrorCode::kInternal, std::string(ServiceName(service)) + ": " +
                                               std::string(what) + ": the answer is not JSON");
  }
  return std::move(*doc);
}

}  // namespace vmimport::source::openstack
