#pragma once

// vSphere Web Services (vim25) over SOAP 1.1: envelopes, the session cookie, and faults.
// One SoapClient per vCenter session. Thread-safe: calls may run concurrently; the session
// cookie is shared.

#include <memory>
#include <mutex>
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

//! The fault type of a SOAP fault ("InvalidLogin", "NotAuthenticated", ...) and its text.
struct SoapFault {
  std::string type;
  std::string message;
};

//! Parses a SOAP fault out of a response body; nullopt when the body holds no fault.
std::optional<SoapFault> ParseSoapFault(std::string_view body);
//! Maps a fault to an error code: InvalidLogin/NotAuthenticated → kUnauthenticated,
//! ManagedObjectNotFound → kNotFound, InvalidPowerState/TaskInProgress → kConflict,
//! NoPermission → kPermissionDenied, others → kInternal.
core::ErrorCode ErrorCodeForFault(std::string_view fault_type);

class SoapClient {
 public:
  //! `sdk_url` is https://host/sdk. `http` must outlive the client.
  SoapClient(http::Client& http, std::string sdk_url);

  //! Sends <method xmlns="urn:vim25">`inner_xml`</method>. Errors: transport errors as
  //! http::Client; faults as "<method>: <FaultType>: <message>" with ErrorCodeForFault.
  Result<SoapResponse> Call(std::stop_token stop, std::string_view method,
                            std::string_view inner_xml);

  //! The vmware_soap_session cookie value ("" before login); needed for NFC downloads.
  std::string SessionCookie() const;
  void SetSessionCookie(std::string cookie);
  const std::string& sdk_url() const { return sdk_url_; }

 private:
  http::Client& http_;
  std::string sdk_url_;
  mutable std::mutex mu_;  // guards cookie_
  std::string cookie_;
};

}  // namespace vmimport::source::vmware
