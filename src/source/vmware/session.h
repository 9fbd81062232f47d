#pragma once

// A logged-in vim25 session: RetrieveServiceContent, Login, inventory lookups, Logout.
// The reference never logs out; we do, on Logout() or in the destructor.
//
// vCenter drops a session after it was idle for config.vmacore.soap.sessionTimeout (30 min by
// default). Two answers: a call that meets NotAuthenticated logs in again and is sent once more
// (SoapClient's reauthenticator, set at Login), and StartKeepAlive keeps an idle session alive.

#include <atomic>
#include <chrono>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>

#include "core/result.h"
#include "http/client.h"
#include "source/provider.h"
#include "source/vmware/soap.h"

namespace vmimport::source::vmware {

struct ServiceContent {
  MoRef root_folder;
  MoRef session_manager;
  MoRef search_index;
  MoRef property_collector;
  MoRef view_manager;
  std::string api_version;
};

//! https://host -> https://host/sdk; a URL with a path is kept as it is.
std::string NormalizeSdkUrl(const std::string& endpoint);

//! What must hold before a login is tried: an https endpoint (the password never goes out in
//! clear text) and a Secret with a non-empty username and a password. kInvalidArgument names
//! what is wrong.
core::Status CheckLoginInputs(const SourceConfig& config);

class Session {
 public:
  //! Errors: transport (kUnavailable, "tls:" in the message for TLS), kUnauthenticated for a
  //! refused login. `http` must outlive the session. `user_agent`, when not empty, is the HTTP
  //! User-Agent of every call: vSphere shows it as the session's userAgent.
  static core::Result<std::unique_ptr<Session>> Login(std::stop_token stop, http::Client& http,
                                                      const std::string& sdk_url,
                                                      const std::string& user,
                                                      const std::string& password,
                                                      const std::string& user_agent = "");
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  //! Ends the session; afterwards no call logs in again by itself.
  core::Status Logout(std::stop_token stop);

  //! Calls ServiceInstance.CurrentTime every `interval` on a thread of its own until Logout or
  //! the destructor, so that a session used only by long downloads does not expire. Calling it
  //! again changes the interval.
  void StartKeepAlive(std::chrono::milliseconds interval);
  //! Ends every other session whose userAgent is this session's (a process killed before it
  //! logged out leaves its session, and the export lease it holds, behind). Returns how many
  //! were ended. Needs the Sessions.TerminateSession privilege: without it (NoPermission) the
  //! stale sessions are left to expire and 0 is returned.
  core::Result<int> EndOtherSessionsOfThisAgent(std::stop_token stop);

  //! How many times the session logged in again after it had expired.
  int relogins() const { return relogins_.load(); }

  //! The object at an inventory path such as "DC0/vm/team-a/web" (a leading "/" is ignored);
  //! kNotFound when nothing is there.
  core::Result<MoRef> FindByInventoryPath(std::stop_token stop, const std::string& path);
  //! The datacenter named `name` (may be nested in folders: "folder/DC0"); kNotFound otherwise.
  core::Result<MoRef> FindDatacenter(std::stop_token stop, const std::string& name);

  SoapClient& soap() { return soap_; }
  const ServiceContent& content() const { return content_; }

 private:
  Session(http::Client& http, const std::string& sdk_url);
  core::Status LoginWithCredentials(std::stop_token stop);
  void StopKeepAlive();

  SoapClient soap_;
  ServiceContent content_;
  std::string user_;
  std::string user_agent_;
  std::string password_;  // kept to log in again; never logged
  bool logged_in_ = false;
  std::atomic<int> relogins_{0};
  std::jthread keep_alive_;  // last: stopped before the members it uses go away
};

//! ConnectionChecker for VmwareSource: login with the Secret's username/password, then the
//! datacenter spec.dc must exist; logs out afterwards.
class VmwareConnectionChecker final : public ConnectionChecker {
 public:
  // source::ConnectionChecker
  core::Status CheckConnection(std::stop_token stop, const SourceConfig& config) override;
};

}  // namespace vmimport::source::vmware
