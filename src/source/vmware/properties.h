#pragma once

// PropertyCollector.RetrieveProperties for one object, the way every vSphere read here uses it.

#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "core/result.h"
#include "source/vmware/soap.h"

namespace vmimport::source::vmware {

class Session;

//! The properties of one object; keeps the response alive for the nodes it hands out.
struct ObjectProperties {
  std::shared_ptr<SoapResponse> response;
  std::map<std::string, pugi::xml_node> values;  //!< property path -> its <val>

  //! The <val> of `path`; an empty node when the object lacks it.
  pugi::xml_node operator[](const std::string& path) const {
    auto it = values.find(path);
    return it == values.end() ? pugi::xml_node() : it->second;
  }
  std::string Text(const std::string& path) const { return (*this)[path].child_value(); }
};

//! Reads `paths` of `obj`. A property the server reports missing with NotAuthenticated (how
//! vCenter answers a RetrieveProperties on an expired session) logs in again through the session
//! and reads once more; one missing with ManagedObjectNotFound is kNotFound; other missing
//! properties are left out. Errors: those of SoapClient::Call.
core::Result<ObjectProperties> RetrieveProperties(std::stop_token stop, Session& session,
                                                  const MoRef& obj,
                                                  const std::vector<std::string>& paths);

}  // namespace vmimport::source::vmware
