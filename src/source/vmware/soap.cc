#include "source/vmware/soap.h"

#include "core/strings.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;
using core::MakeError;

constexpr std::string_view kEnvelopeHead =
    R"(<?xml version="1.0" encoding="UTF-8"?>)"
    R"(<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/")"
    R"( xmlns:xsd="http://www.w3.org/2001/XMLSchema")"
    R"( xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>)";
constexpr std::string_view kEnvelopeTail = "</soapenv:Body></soapenv:Envelope>";

// Local name of an element ("soapenv:Body" -> "Body").
std::string_view LocalName(const char* name) {
  std::string_view n(name);
  const size_t colon = n.find(':');
  return colon == std::string_view::npos ? n : n.substr(colon + 1);
}

pugi::xml_node ChildByLocalName(pugi::xml_node parent, std::string_view local) {
  for (pugi::xml_node c = parent.first_child(); c; c = c.next_sibling()) {
    if (c.type() == pugi::node_element && LocalName(c.name()) == local) {
      return c;
    }
  }
  return {};
}

pugi::xml_node SoapBody(const pugi::xml_document& doc) {
  return ChildByLocalName(ChildByLocalName(doc, "Envelope"), "Body");
}

}  // namespace

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out.append("&amp;"); break;
      case '<': out.append("&lt;"); break;
      case '>': out.append("&gt;"); break;
      case '"': out.append("&quot;"); break;
      case '\'': out.append("&apos;"); break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string MoRef::Xml(std::string_view tag) const {
  std::string out;
  out.append("<").append(tag).append(" type=\"").append(XmlEscape(type)).append("\">");
  out.append(XmlEscape(value)).append("</").append(tag).append(">");
  return out;
}

pugi::xml_node SoapResponse::Body() const { return SoapBody(*doc_).first_child(); }

std::string XsiType(pugi::xml_node node) {
  for (pugi::xml_attribute a = node.first_attribute(); a; a = a.next_attribute()) {
    if (LocalName(a.name()) == "type" &&
        std::string_view(a.name()).find(':') != std::string::npos) {
      return std::string(LocalName(a.value()));
    }
  }
  return {};
}

SoapFault ParseMethodFault(pugi::xml_node fault, const std::string& message) {
  // <InvalidPowerStateFault xsi:type="InvalidPowerState">     (or <fault xsi:type=...> in a
  //   <requestedState>poweredOff</requestedState>              LocalizedMethodFault)
  //   <existingState>poweredOn</existingState>
  //   <obj type="VirtualMachine">vm-42</obj>                   ManagedObjectNotFound
  //   <object type="Folder">group-d1</object>                  NotAuthenticated, NoPermission
  //   <privilegeId>System.View</privilegeId>                   NotAuthenticated, NoPermission
  // </InvalidPowerStateFault>
  // Fault text is the peer's: each byte that is not UTF-8 is replaced, so the message can go into
  // status, Events and logs as it is.
  SoapFault f;
  f.message = core::SanitizeUtf8(message);
  const std::string xsi_type = XsiType(fault);
  std::string_view type = xsi_type;
  if (type.empty() && fault) {
    type = LocalName(fault.name());
    if (type.ends_with("Fault") && type != "Fault") {
      type.remove_suffix(5);
    }
  }
  f.type = type.empty() || type == "fault" ? "SoapFault" : core::SanitizeUtf8(type);
  for (const char* name : {"obj", "object"}) {
    if (const pugi::xml_node ref = ChildByLocalName(fault, name); ref) {
      f.object = MoRef{core::SanitizeUtf8(ref.attribute("type").as_string()),
                       core::SanitizeUtf8(ref.child_value())};
      break;
    }
  }
  f.requested_state = core::SanitizeUtf8(ChildByLocalName(fault, "requestedState").child_value());
  f.existing_state = core::SanitizeUtf8(ChildByLocalName(fault, "existingState").child_value());
  f.privilege = core::SanitizeUtf8(ChildByLocalName(fault, "privilegeId").child_value());
  return f;
}

std::optional<SoapFault> ParseSoapFault(std::string_view body) {
  // <soapenv:Envelope><soapenv:Body><soapenv:Fault>
  //   <faultcode>ServerFaultCode</faultcode><faultstring>Login failure</faultstring>
  //   <detail><InvalidLoginFault xsi:type="InvalidLogin"/></detail>
  // </soapenv:Fault></soapenv:Body></soapenv:Envelope>
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) {
    return std::nullopt;
  }
  const pugi::xml_node fault = ChildByLocalName(SoapBody(doc), "Fault");
  if (!fault) {
    return std::nullopt;
  }
  std::string message = ChildByLocalName(fault, "faultstring").child_value();
  // The detail's xsi:type names the fault; else its element name without the "Fault" suffix.
  pugi::xml_node detail;
  for (pugi::xml_node d = ChildByLocalName(fault, "detail").first_child(); d;
       d = d.next_sibling()) {
    if (d.type() == pugi::node_element) {
      detail = d;
      break;
    }
  }
  if (!detail) {
    SoapFault f;
    f.type = "SoapFault";
    f.message = core::SanitizeUtf8(message);
    return f;
  }
  return ParseMethodFault(detail, message);
}

core::ErrorCode ErrorCodeForFault(std::string_view t) {
  if (t == "InvalidLogin" || t == "NotAuthenticated" || t == "InvalidCertificate") {
    return ErrorCode::kUnauthenticated;
  }
  if (t == "ManagedObjectNotFound" || t == "NotFound") {
    return ErrorCode::kNotFound;
  }
  if (t == "InvalidPowerState" || t == "TaskInProgress" || t == "InvalidState") {
    return ErrorCode::kConflict;
  }
  if (t == "NoPermission") {
    return ErrorCode::kPermissionDenied;
  }
  if (t == "InvalidArgument" || t == "InvalidRequest" || t == "InvalidProperty") {
    return ErrorCode::kInvalidArgument;
  }
  if (t == "Timedout") {
    return ErrorCode::kDeadlineExceeded;
  }
  return ErrorCode::kInternal;
}

std::string DescribeFault(const SoapFault& f) {
  std::string out = f.type;
  if (!f.message.empty()) {
    out += ": " + f.message;
  }
  const std::string object =
      f.object.empty() ? std::string("the object") : f.object.type + " " + f.object.value;
  if (f.type == "InvalidLogin") {
    out += ": the user name or password was refused";
  } else if (f.type == "NotAuthenticated") {
    out += ": the session is not logged in or has expired; log in again";
  } else if (f.type == "ManagedObjectNotFound") {
    out += ": " + object + " no longer exists (deleted, or re-registered under a new id)";
  } else if (f.type == "InvalidPowerState") {
    out += ": the VM is " + (f.existing_state.empty() ? "in another state" : f.existing_state) +
           (f.requested_state.empty() ? std::string()
                                      : ", the operation needs it " + f.requested_state);
  } else if (f.type == "TaskInProgress") {
    out += ": another task is still running on " + object + "; retry once it ends";
  } else if (f.type == "NoPermission") {
    out +=
        ": the user lacks privilege " + (f.privilege.empty() ? "?" : f.privilege) + " on " + object;
  }
  return out;
}

core::Error FaultError(std::string_view context, const SoapFault& fault) {
  return core::Error{ErrorCodeForFault(fault.type),
                     std::string(context) + ": " + DescribeFault(fault)};
}

SoapClient::SoapClient(http::Client& http, std::string sdk_url)
    : http_(http), sdk_url_(std::move(sdk_url)) {}

std::string SoapClient::SessionCookie() const {
  std::lock_guard lock(mu_);
  return cookie_;
}

void SoapClient::SetSessionCookie(std::string cookie) {
  std::lock_guard lock(mu_);
  cookie_ = std::move(cookie);
}

void SoapClient::SetReauthenticator(Reauthenticator reauthenticate) {
  std::lock_guard lock(mu_);
  reauthenticate_ = std::move(reauthenticate);
}

core::Status SoapClient::Reauthenticate(std::stop_token stop, const std::string& stale_cookie) {
  std::lock_guard relogin(relogin_mu_);
  Reauthenticator reauthenticate;
  {
    std::lock_guard lock(mu_);
    if (!cookie_.empty() && cookie_ != stale_cookie) {
      return {};  // another call logged in again while this one waited
    }
    reauthenticate = reauthenticate_;
  }
  if (!reauthenticate) {
    return MakeError(ErrorCode::kUnauthenticated,
                     "vsphere: the session expired and no login is set");
  }
  return reauthenticate(std::move(stop));
}

Result<SoapResponse> SoapClient::Call(std::stop_token stop, std::string_view method,
                                      std::string_view inner_xml) {
  const std::string cookie = SessionCookie();
  std::string fault_type;
  auto r = CallOnce(stop, method, inner_xml, fault_type);
  const bool session_call =
      method == "Login" || method == "Logout" || method == "RetrieveServiceContent";
  bool can_reauthenticate = false;
  {
    std::lock_guard lock(mu_);
    can_reauthenticate = static_cast<bool>(reauthenticate_);
  }
  if (r || fault_type != "NotAuthenticated" || session_call || !can_reauthenticate) {
    return r;
  }
  if (auto relogin = Reauthenticate(stop, cookie); !relogin) {
    return MakeError(r.error().code,
                     r.error().message + "; logging in again failed: " + relogin.error().message);
  }
  return CallOnce(std::move(stop), method, inner_xml, fault_type);
}

Result<SoapResponse> SoapClient::CallOnce(std::stop_token stop, std::string_view method,
                                          std::string_view inner_xml, std::string& fault_type) {
  calls_.fetch_add(1);
  http::Request req;
  req.method = "POST";
  req.url = sdk_url_;
  req.body.reserve(kEnvelopeHead.size() + inner_xml.size() + 2 * method.size() + 64);
  req.body.append(kEnvelopeHead).append("<").append(method).append(" xmlns=\"urn:vim25\">");
  req.body.append(inner_xml).append("</").append(method).append(">").append(kEnvelopeTail);
  req.headers.emplace_back("Content-Type", "text/xml; charset=utf-8");
  req.headers.emplace_back("SOAPAction", "urn:vim25/6.5");
  if (!user_agent_.empty()) {
    req.headers.emplace_back("User-Agent", user_agent_);
  }
  if (const std::string cookie = SessionCookie(); !cookie.empty()) {
    req.headers.emplace_back("Cookie", "vmware_soap_session=" + cookie);
  }
  const std::string what = "vsphere " + std::string(method);
  auto resp = http_.Do(std::move(stop), req);
  if (!resp) {
    return MakeError(resp.error().Wrap(what));
  }
  for (const std::string& set_cookie : resp->AllHeaders("set-cookie")) {
    constexpr std::string_view kName = "vmware_soap_session=";
    if (set_cookie.starts_with(kName)) {
      std::string value = set_cookie.substr(kName.size(), set_cookie.find(';') - kName.size());
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      SetSessionCookie(std::move(value));
    }
  }
  if (auto fault = ParseSoapFault(resp->body)) {
    fault_type = fault->type;
    return MakeError(FaultError(what, *fault));
  }
  if (resp->status != 200) {
    return MakeError(resp->status >= 500 ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                     what + ": http status " + std::to_string(resp->status));
  }
  auto doc = std::make_unique<pugi::xml_document>();
  const pugi::xml_parse_result parsed = doc->load_buffer(resp->body.data(), resp->body.size());
  if (!parsed) {
    return MakeError(ErrorCode::kInternal,
                     what + ": response is not XML: " + std::string(parsed.description()));
  }
  if (!SoapBody(*doc).first_child()) {
    return MakeError(ErrorCode::kInternal, what + ": response has no SOAP body");
  }
  return SoapResponse(std::move(doc));
}

}  // namespace vmimport::source::vmware
