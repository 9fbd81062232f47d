#pragma once

// vSphere Web Services (vim25) over SOAP 1.1: envelopes, the session cookie, and faults.
// One SoapClient per vCenter session. Thread-safe: calls may run concurrently; the session
// cookie is shared.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <pugixml.hpp>
#include <stop_token>
#include <string>
#include <string_view>

#include "core/result.h"
#include "http/client.h"

namespace vmimport::source::vmware {

using core::Result;

//! A managed object reference, e.g. {"VirtualMachine", "vm-42"}.
struct MoRef {
  std::string type;
  std::string value;
  bool empty() const { return value.empty(); }
  //! <tag type="VirtualMachine">vm-42</tag>
  std::string Xml(std::string_view tag) const;
};

//! The xsi:type of an element without its prefix ("VirtualDisk"), whatever prefix the answer
//! gave the XMLSchema-instance namespace (vCenter: "xsi:type", vcsim: "_XMLSchema-instance:type");
//! "" when it has none.
std::string XsiType(pugi::xml_node node);

//! Escapes text for an XML element or attribute value.
std::string XmlEscape(std::string_view text);

//! A parsed SOAP response; Body() is the first child of soapenv:Body (e.g. <LoginResponse>).
class SoapResponse {
 public:
  explicit SoapResponse(std::unique_ptr<pugi::xml_document> doc) : doc_(std::move(doc)) {}
  pugi::xml_node Body() const;
  //! <returnval> of the response body (the first one).
  pugi::xml_node ReturnVal() const { return Body().child("returnval"); }

 private:
  std::unique_ptr<pugi::xml_document> doc_;
};

//! The fault type of a SOAP fault ("InvalidLogin", "NotAuthenticated", ...), its text, and the
//! detail fields the clear error messages use.
struct SoapFault {
  std::string type;
  std::string message;
  MoRef object;                 //!< ManagedObjectNotFound.obj, NotAuthenticated/NoPermission.object
  std::string requested_state;  //!< InvalidPowerState
  std::string existing_state;   //!< InvalidPowerState
  std::string privilege;        //!< NoPermission.privilegeId
};

//! Parses a SOAP fault out of a response body; nullopt when the body holds no fault.
std::optional<SoapFault> ParseSoapFault(std::string_view body);
//! Reads a vim25 MethodFault element (a SOAP <detail> child, or the <fault> of a
//! LocalizedMethodFault in a task's or lease's error) into a SoapFault with `message`.
SoapFault ParseMethodFault(pugi::xml_node fault, const std::string& message);
//! Maps a fault to an error code: InvalidLogin/NotAuthenticated → kUnauthenticated,
//! ManagedObjectNotFound → kNotFound, InvalidPowerState/TaskInProgress → kConflict,
//! NoPermission → kPermissionDenied, others → kInternal.
core::ErrorCode ErrorCodeForFault(std::string_view fault_type);
//! "<FaultType>: <message>: <what it means>", e.g. "InvalidLogin: Login failure: the user name
//! or password was refused". Each fault the import path meets gets its own explanation.
std::string DescribeFault(const SoapFault& fault);
//! The fault as an Error: ErrorCodeForFault, DescribeFault prefixed by `context` and ": ".
core::Error FaultError(std::string_view context, const SoapFault& fault);

class SoapClient {
 public:
  //! `sdk_url` is https://host/sdk. `http` must outlive the client.
  SoapClient(http::Client& http, std::string sdk_url);

  //! Logs in again; set by Session so that an expired session is renewed transparently.
  using Reauthenticator = std::function<core::Status(std::stop_token stop)>;

  //! Sends <method xmlns="urn:vim25">`inner_xml`</method>. Errors: transport errors as
  //! http::Client; faults as "vsphere <method>: " + DescribeFault with ErrorCodeForFault. A
  //! NotAuthenticated fault (the session expired) is answered, when a reauthenticator is set, by
  //! logging in again and sending the call once more.
  Result<SoapResponse> Call(std::stop_token stop, std::string_view method,
                            std::string_view inner_xml);

  //! Installs (or, with nullptr, removes) the reauthenticator.
  void SetReauthenticator(Reauthenticator reauthenticate);
  //! Logs in again, unless another thread already did since `stale_cookie` was sent; calls that
  //! found the session expired all end up on one new session. kUnauthenticated when no
  //! reauthenticator is set.
  core::Status Reauthenticate(std::stop_token stop, const std::string& stale_cookie);

  //! The User-Agent header of every call (vSphere records it as the session's userAgent);
  //! empty: libcurl's default. Set before the first call.
  void SetUserAgent(std::string user_agent) { user_agent_ = std::move(user_agent); }

  //! The vmware_soap_session cookie value ("" before login); needed for NFC downloads.
  std::string SessionCookie() const;
  void SetSessionCookie(std::string cookie);
  const std::string& sdk_url() const { return sdk_url_; }
  //! The HTTP client the calls go through (its TLS settings serve NFC downloads too).
  http::Client& http() const { return http_; }
  //! SOAP requests sent so far (every POST, a retry after a new login included): what the
  //! inventory benchmark and tests count.
  uint64_t calls() const { return calls_.load(); }

 private:
  // One POST; `fault_type` receives the fault's type when the answer is a fault.
  Result<SoapResponse> CallOnce(std::stop_token stop, std::string_view method,
                                std::string_view inner_xml, std::string& fault_type);

  http::Client& http_;
  std::string sdk_url_;
  std::string user_agent_;
  mutable std::mutex mu_;  // guards cookie_, reauthenticate_
  std::string cookie_;
  Reauthenticator reauthenticate_;
  std::mutex relogin_mu_;  // serialises Reauthenticate: one login for many expired calls
  std::atomic<uint64_t> calls_{0};
};

}  // namespace vmimport::source::vmware
