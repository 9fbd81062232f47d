#include "source/vmware/session.h"

#include "core/strings.h"
#include "source/tls.h"
#include "source/vmware/properties.h"
#include "source/vmware/task.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;
using core::MakeError;

MoRef RefOf(pugi::xml_node node) {
  return MoRef{node.attribute("type").as_string(), node.child_value()};
}

}  // namespace

std::string NormalizeSdkUrl(const std::string& endpoint) {
  const size_t scheme = endpoint.find("://");
  const size_t path = endpoint.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (path == std::string::npos) {
    return endpoint + "/sdk";
  }
  if (endpoint.size() == path + 1) {
    return endpoint + "sdk";
  }
  return endpoint;
}

core::Status CheckLoginInputs(const SourceConfig& config) {
  if (!core::ToLower(config.endpoint).starts_with("https://")) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "spec.endpoint must be an https:// URL (the login would send the password "
                     "in clear text otherwise)");
  }
  for (const char* key : {"username", "password"}) {
    const auto it = config.secret.find(key);
    if (it == config.secret.end() || (it->second.empty() && std::string_view(key) == "username")) {
      // "the secret has no password" first (what the bad-input world test looks for), then
      // which Secret, when the caller said.
      return MakeError(ErrorCode::kInvalidArgument,
                       std::string("the secret has no ") + key + " (" +
                           (config.secret_key.empty() ? std::string("it") : SecretName(config)) +
                           " must hold username and password)");
    }
  }
  return {};
}

Session::Session(http::Client& http, const std::string& sdk_url) : soap_(http, sdk_url) {}

Session::~Session() {
  StopKeepAlive();
  if (logged_in_) {
    (void)Logout({});
  }
}

core::Status Session::LoginWithCredentials(std::stop_token stop) {
  auto login = soap_.Call(stop, "Login",
                          content_.session_manager.Xml("_this") + "<userName>" + XmlEscape(user_) +
                              "</userName><password>" + XmlEscape(password_) + "</password>");
  if (!login) {
    return MakeError(login.error());
  }
  return {};
}

void Session::StartKeepAlive(std::chrono::milliseconds interval) {
  StopKeepAlive();
  keep_alive_ = std::jthread([this, interval](std::stop_token stop) {
    while (SleepFor(stop, interval)) {
      // A failure is not fatal here: the next call logs in again if the session is gone.
      (void)soap_.Call(stop, "CurrentTime",
                       MoRef{"ServiceInstance", "ServiceInstance"}.Xml("_this"));
    }
  });
}

void Session::StopKeepAlive() {
  if (keep_alive_.joinable()) {
    keep_alive_.request_stop();
    keep_alive_.join();
  }
}

core::Result<std::unique_ptr<Session>> Session::Login(std::stop_token stop, http::Client& http,
                                                      const std::string& sdk_url,
                                                      const std::string& user,
                                                      const std::string& password,
                                                      const std::string& user_agent) {
  std::unique_ptr<Session> s(new Session(http, sdk_url));
  s->user_agent_ = user_agent;
  s->soap_.SetUserAgent(user_agent);
  auto sc = s->soap_.Call(stop, "RetrieveServiceContent",
                          MoRef{"ServiceInstance", "ServiceInstance"}.Xml("_this"));
  if (!sc) {
    return MakeError(sc.error());
  }
  const pugi::xml_node rv = sc->ReturnVal();
  s->content_.root_folder = RefOf(rv.child("rootFolder"));
  s->content_.session_manager = RefOf(rv.child("sessionManager"));
  s->content_.search_index = RefOf(rv.child("searchIndex"));
  s->content_.property_collector = RefOf(rv.child("propertyCollector"));
  s->content_.view_manager = RefOf(rv.child("viewManager"));
  s->content_.api_version = rv.child("about").child_value("apiVersion");
  if (s->content_.session_manager.empty() || s->content_.search_index.empty()) {
    return MakeError(ErrorCode::kInternal,
                     "vsphere: the service content lacks a session manager or search index");
  }
  s->user_ = user;
  s->password_ = password;
  if (auto login = s->LoginWithCredentials(stop); !login) {
    return MakeError(login.error());
  }
  s->logged_in_ = true;
  Session* self = s.get();
  s->soap_.SetReauthenticator([self](std::stop_token relogin_stop) -> core::Status {
    self->soap_.SetSessionCookie("");  // the expired cookie must not ride along
    if (auto login = self->LoginWithCredentials(std::move(relogin_stop)); !login) {
      return login;
    }
    self->relogins_.fetch_add(1);
    return {};
  });
  return s;
}

core::Result<int> Session::EndOtherSessionsOfThisAgent(std::stop_token stop) {
  if (user_agent_.empty()) {
    return 0;
  }
  // SessionManager.sessionList: <val><UserSession><key/><userAgent/>...</UserSession>...</val>;
  // currentSession: <val><key/>...</val>.
  auto props =
      RetrieveProperties(stop, *this, content_.session_manager, {"sessionList", "currentSession"});
  if (!props) {
    return MakeError(props.error().Wrap("reading the session list"));
  }
  const std::string current = (*props)["currentSession"].child_value("key");
  std::string keys;
  int stale = 0;
  for (pugi::xml_node s : (*props)["sessionList"].children("UserSession")) {
    const std::string key = s.child_value("key");
    if (key != current && s.child_value("userAgent") == user_agent_) {
      keys += "<sessionId>" + XmlEscape(key) + "</sessionId>";
      ++stale;
    }
  }
  if (stale == 0) {
    return 0;
  }
  auto r = soap_.Call(stop, "TerminateSession", content_.session_manager.Xml("_this") + keys);
  if (!r) {
    if (r.error().code == ErrorCode::kPermissionDenied) {
      return 0;
    }
    return MakeError(r.error().Wrap("ending " + std::to_string(stale) + " stale sessions"));
  }
  return stale;
}

core::Status Session::Logout(std::stop_token stop) {
  if (!logged_in_) {
    return {};
  }
  StopKeepAlive();
  logged_in_ = false;
  soap_.SetReauthenticator(nullptr);
  auto r = soap_.Call(stop, "Logout", content_.session_manager.Xml("_this"));
  if (!r) {
    return MakeError(r.error());
  }
  soap_.SetSessionCookie("");
  return {};
}

core::Result<MoRef> Session::FindByInventoryPath(std::stop_token stop, const std::string& path) {
  std::string p = path;
  while (!p.empty() && p.front() == '/') {
    p.erase(0, 1);
  }
  auto r = soap_.Call(
      stop, "FindByInventoryPath",
      content_.search_index.Xml("_this") + "<inventoryPath>" + XmlEscape(p) + "</inventoryPath>");
  if (!r) {
    return MakeError(r.error());
  }
  const MoRef ref = RefOf(r->ReturnVal());
  if (ref.empty()) {
    return MakeError(ErrorCode::kNotFound, "vsphere: nothing at inventory path /" + p);
  }
  return ref;
}

core::Result<MoRef> Session::FindDatacenter(std::stop_token stop, const std::string& name) {
  auto ref = FindByInventoryPath(stop, name);
  if (!ref) {
    if (ref.error().code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kNotFound, "vsphere: datacenter " + name + " not found");
    }
    return ref;
  }
  if (ref->type != "Datacenter") {
    return MakeError(ErrorCode::kNotFound,
                     "vsphere: " + name + " is a " + ref->type + ", not a datacenter");
  }
  return ref;
}

core::Status VmwareConnectionChecker::CheckConnection(std::stop_token stop,
                                                      const SourceConfig& config) {
  auto tls = TlsFromSecret(config.secret);
  if (!tls) {
    return MakeError(tls.error());
  }
  if (auto inputs = CheckLoginInputs(config); !inputs) {
    return inputs;
  }
  const auto user = config.secret.find("username");
  const auto password = config.secret.find("password");
  if (config.datacenter.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "spec.dc is empty");
  }
  auto http = http::Client::Create(*tls);
  if (!http) {
    return MakeError(http.error());
  }
  auto session = Session::Login(stop, **http, NormalizeSdkUrl(config.endpoint), user->second,
                                password->second);
  if (!session) {
    return MakeError(session.error());
  }
  auto dc = (*session)->FindDatacenter(stop, config.datacenter);
  (void)(*session)->Logout(stop);
  if (!dc) {
    return MakeError(dc.error());
  }
  return {};
}

}  // namespace vmimport::source::vmware
