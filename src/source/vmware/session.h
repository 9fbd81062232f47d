#pragma once

// A logged-in vim25 session: RetrieveServiceContent, Login, inventory lookups, Logout.
// The reference never logs out; we do, on Logout() or in the destructor.

#include <memory>
#include <stop_token>
#include <string>

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

class Session {
 public:
  //! Errors: transport (kUnavailable, "tls:" in the message for TLS), kUnauthenticated for a
  //! refused login. `http` must outlive the session.
  static core::Result<std::unique_ptr<Session>> Login(std::stop_token stop, http::Client& http,
                                                      const std::string& sdk_url,
                                                      const std::string& user,
                                                      const std::string& password);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  core::Status Logout(std::stop_token stop);

  //! The object at an inventory path such as "DC0/vm/team-a/web" (a leading "/" is ignored);
  //! kNotFound when nothing is there.
  core::Result<MoRef> FindByInventoryPath(std::stop_token stop, const std::string& path);
  //! The datacenter named `name` (may be nested in folders: "folder/DC0"); kNotFound otherwise.
  core::Result<MoRef> FindDatacenter(std::stop_token stop, const std::string& name);

  SoapClient& soap() { return soap_; }
  const ServiceContent& content() const { return content_; }

 private:
  Session(http::Client& http, const std::string& sdk_url);
  SoapClient soap_;
  ServiceContent content_;
  bool logged_in_ = false;
};

//! ConnectionChecker for VmwareSource: login with the Secret's username/password, then the
//! datacenter spec.dc must exist; logs out afterwards.
class VmwareConnectionChecker final : public ConnectionChecker {
 public:
  // source::ConnectionChecker
  core::Status CheckConnection(std::stop_token stop, const SourceConfig& config) override;
};

}  // namespace vmimport::source::vmware
