#include "source/vmware/properties.h"

#include "source/vmware/session.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;
using core::MakeError;

// What the missingSet of a RetrieveProperties answer says about the object as a whole.
enum class Missing { kNone, kNotAuthenticated, kNotFound };

Missing ParseMissing(pugi::xml_node returnval, SoapFault& fault) {
  // <returnval><obj type="VirtualMachine">vm-42</obj>
  //   <propSet><name>runtime.powerState</name><val xsi:type="...">poweredOn</val></propSet>
  //   <missingSet><path>guest</path>
  //     <fault><fault xsi:type="NotAuthenticated">...</fault><localizedMessage/></fault>
  //   </missingSet>
  // </returnval>
  for (auto missing : returnval.children("missingSet")) {
    const pugi::xml_node outer = missing.child("fault");
    SoapFault f = ParseMethodFault(outer.child("fault"), outer.child_value("localizedMessage"));
    if (f.type == "NotAuthenticated") {
      fault = std::move(f);
      return Missing::kNotAuthenticated;
    }
    if (f.type == "ManagedObjectNotFound") {
      fault = std::move(f);
      return Missing::kNotFound;
    }
  }
  return Missing::kNone;
}

}  // namespace

core::Result<ObjectProperties> RetrieveProperties(std::stop_token stop, Session& session,
                                                  const MoRef& obj,
                                                  const std::vector<std::string>& paths) {
  std::string spec = "<specSet><propSet><type>" + XmlEscape(obj.type) + "</type>";
  for (const auto& p : paths) {
    spec += "<pathSet>" + XmlEscape(p) + "</pathSet>";
  }
  spec += "</propSet><objectSet>" + obj.Xml("obj") + "</objectSet></specSet>";
  const std::string what = "vsphere RetrieveProperties " + obj.type + " " + obj.value;
  for (int attempt = 0;; ++attempt) {
    const std::string cookie = session.soap().SessionCookie();
    auto r = session.soap().Call(stop, "RetrieveProperties",
                                 session.content().property_collector.Xml("_this") + spec);
    if (!r) {
      return MakeError(r.error());
    }
    ObjectProperties props;
    props.response = std::make_shared<SoapResponse>(std::move(*r));
    const pugi::xml_node rv = props.response->ReturnVal();
    SoapFault fault;
    switch (ParseMissing(rv, fault)) {
      case Missing::kNone: break;
      case Missing::kNotFound: return MakeError(FaultError(what, fault));
      case Missing::kNotAuthenticated:
        if (attempt > 0) {
          return MakeError(FaultError(what, fault));
        }
        if (auto relogin = session.soap().Reauthenticate(stop, cookie); !relogin) {
          return MakeError(FaultError(what, fault).code,
                           FaultError(what, fault).message +
                               "; logging in again failed: " + relogin.error().message);
        }
        continue;
    }
    for (auto prop : rv.children("propSet")) {
      props.values[prop.child_value("name")] = prop.child("val");
    }
    return props;
  }
}

}  // namespace vmimport::source::vmware
