#pragma once

// The vSphere side of an import: source::Importer over a vim25 session. Open logs in, finds
// exactly one VM (Inventory::FindVm refuses an ambiguous name) and describes it; the SourceVm it
// returns powers the VM off (power.h) and exports its disks through an NFC lease (export.h). The
// session is kept alive while the import runs and logged out when the SourceVm goes.

#include "source/importer.h"
#include "source/vmware/inventory_scan.h"

namespace vmimport::source::vmware {

class VmwareImporter final : public Importer {
 public:
  // source::Importer
  core::Result<SourceVmPtr> Open(std::stop_token stop, const SourceConfig& config,
                                 const ImportRequest& request) override;
  core::Result<std::vector<model::VmDescription>> ListVms(std::stop_token stop,
                                                          const SourceConfig& config,
                                                          const std::string& folder) override;
  //! vAPI REST (tagging.h): 5 + tags + categories calls.
  core::Result<std::map<std::string, std::vector<std::string>>> ListVmTags(
      std::stop_token stop, const SourceConfig& config) override;
};

//! ListVms with what it cost: every VM under `folder` of the source's datacenter, described by
//! one paged PropertyCollector query (inventory_scan.h), and the SOAP calls of the whole listing
//! (login and logout included) in stats.soap_calls. Errors: those of Open's login, kNotFound for
//! a missing datacenter or folder, those of ScanVms.
core::Result<VmListing> ListInventory(std::stop_token stop, const SourceConfig& config,
                                      const std::string& folder, int page_size = kDefaultPageSize);

}  // namespace vmimport::source::vmware
