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

std::optional<SoapFault> ParseSoapFault(std::string_view body) {
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) {
    return std::nullopt;
  }
  const pugi::xml_node fault = ChildByLocalName(SoapBody(doc), "Fault");
  if (!fault) {
    return std::nullopt;
  }
  SoapFault f;
  f.message = fault.child_value("faultstring");
  // <detail><InvalidLoginFault xsi:type="InvalidLogin">...</detail>: the xsi:type names the
  // fault; fall back to the element name without its "Fault" suffix.
  const pugi::xml_node detail = fault.child("detail");
  for (pugi::xml_node d = detail.first_child(); d; d = d.next_sibling()) {
    if (d.type() != pugi::node_element) {
      continue;
    }
    std::string_view type = d.attribute("xsi:type").as_string();
    if (type.empty()) {
      type = LocalName(d.name());
      if (type.ends_with("Fault")) {
        type.remove_suffix(5);
      }
    }
    f.type = std::string(LocalName(std::string(type).c_str()));
    break;
  }
  if (f.type.empty()) {
    f.type = "SoapFault";
  }
  return f;
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
  return ErrorCode::kInternal;
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

Result<SoapResponse> SoapClient::Call(std::stop_token stop, std::string_view method,
                                      std::string_view inner_xml) {
  http::Request req;
  req.method = "POST";
  req.url = sdk_url_;
  req.body.reserve(kEnvelopeHead.size() + inner_xml.size() + 2 * method.size() + 64);
  req.body.append(kEnvelopeHead).append("<").append(method).append(" xmlns=\"urn:vim25\">");
  req.body.append(inner_xml).append("</").append(method).append(">").append(kEnvelopeTail);
  req.headers.emplace_back("Content-Type", "text/xml; charset=utf-8");
  req.headers.emplace_back("SOAPAction", "urn:vim25/6.5");
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
    return MakeError(
        ErrorCodeForFault(fault->type),
        what + ": " + fault->type + (fault->message.empty() ? "" : ": ") + fault->message);
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
