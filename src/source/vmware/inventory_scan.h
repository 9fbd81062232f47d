#pragma once

// The inventory at the scale of a real vCenter: every VM under a folder, with every property a
// listing, a plan or a selection needs, in a constant number of SOAP calls.
//
//   CreateContainerView(folder, [Folder, VirtualMachine], recursive)
//   RetrievePropertiesEx(view, maxObjects = page_size)  ─► page 1 + token
//   ContinueRetrievePropertiesEx(token)                  ─► page 2 + token ... last page
//   RetrieveProperties(every distributed port group the NICs name)  (one call, names)
//   DestroyView
//
// Inventory paths come from the folders of the same answer, resolved in memory; a page's XML is
// turned into descriptions and freed before the next page is asked for, so memory grows with
// the descriptions, not with the SOAP text. The number of calls is 4 + (pages - 1) whatever the
// VM count; before, a listing cost about 3 calls per VM plus one per folder level.

#include <cstdint>
#include <functional>
#include <map>
#include <pugixml.hpp>
#include <set>
#include <stop_token>
#include <string>
#include <vector>

#include "core/result.h"
#include "model/vm.h"
#include "source/vmware/soap.h"

namespace vmimport::source::vmware {

class Session;

//! VMs per page (maxObjects) unless asked otherwise: vCenter caps pages itself (its default is
//! 100 objects for some properties); 500 keeps a page of described VMs at a few MB of XML.
inline constexpr int kDefaultPageSize = 500;

//! What a scan cost.
struct ScanStats {
  uint64_t soap_calls = 0;  //!< SOAP requests the scan sent (the session's calls() delta)
  int pages = 0;            //!< RetrievePropertiesEx + ContinueRetrievePropertiesEx answers
  size_t objects = 0;       //!< objects in those pages (folders and VMs)
};

struct ScanOptions {
  //! true: every property of DescribePropertyPaths (hardware, devices, power); false: names and
  //! parents only, what finding a VM by name needs.
  bool describe = true;
  int page_size = kDefaultPageSize;
};

struct VmListing {
  std::vector<model::VmDescription> vms;  //!< sorted by inventory path
  ScanStats stats;
};

//! One object of a property answer: its reference and property path -> <val>; the nodes are
//! valid only while the callback that receives it runs.
struct ObjectContentView {
  MoRef obj;
  std::map<std::string, pugi::xml_node> props;
};

//! Sends `spec_set` (a <specSet>...</specSet>) as RetrievePropertiesEx with maxObjects
//! `page_size`, then ContinueRetrievePropertiesEx while the answer carries a token; calls
//! `on_object` for each object. An object whose properties are missing with NotAuthenticated
//! (an expired session, as vCenter answers it inside the result) fails the query with
//! kUnauthenticated; a stop or an error between pages cancels the rest
//! (CancelRetrievePropertiesEx, best effort). `pages` counts the answers. Errors: those of
//! SoapClient::Call, kCancelled on stop.
core::Status RetrievePropertiesPaged(std::stop_token stop, Session& session,
                                     const std::string& spec_set, int page_size,
                                     const std::function<void(const ObjectContentView&)>& on_object,
                                     int& pages);

//! The names of the `type` objects with these moref values, in one RetrieveProperties call (none
//! when `values` is empty). Best effort: an object gone meanwhile, or a failed call, leaves its
//! value out of the answer (the caller keeps the moref value).
std::map<std::string, std::string> ObjectNames(std::stop_token stop, Session& session,
                                               const std::string& type,
                                               const std::set<std::string>& values);

//! Every VM under the folder `root` (recursive), whose own inventory path is `root_path`
//! ("/DC0/vm/team-a"), described (or only named, see ScanOptions) in one paged query. A VM whose
//! parent chain leaves the folders of the answer (a VM in a vApp) gets root_path/name. Errors:
//! those of RetrievePropertiesPaged and CreateContainerView, wrapped "vsphere: list VMs". The
//! names of distributed port groups and hosts cost one more call each (when any is named).
core::Result<VmListing> ScanVms(std::stop_token stop, Session& session, const MoRef& root,
                                const std::string& root_path, const ScanOptions& options = {});

//! "/DC0/vm" or "/DC0/vm/a/b" for a datacenter and a folder as a source's spec and an import's
//! spec.folder give them (leading and trailing slashes ignored).
std::string VmFolderPath(const std::string& datacenter, const std::string& folder);

}  // namespace vmimport::source::vmware
