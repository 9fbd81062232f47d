#pragma once

// ImportPlan (migration.harvesterhci.io/v1beta1, our addition; issue 23): many imports from one
// source described by one object. The spec names a source, selects VMs (a folder, a name
// pattern, an explicit list), carries the fields every import gets (`template`: any
// VirtualMachineImport spec field but sourceCluster and virtualMachineName), and a schedule (at
// most N imports running at once, none started before a time). The plan reconciler resolves
// the selection once, records it in status, and creates one VirtualMachineImport per VM.
//
//   spec:
//     sourceCluster: {kind: VmwareSource, name: vcsim}       # namespace: the plan's
//     selector: {folder: team-a, namePattern: "web-*", names: [db-1, /DC0/vm/x/db-2],
//                tags: [prod, "tier/web"], metadata: {team: a}}
//     template: {storageClass: fast, networkMapping: [...], defaultDiskBusType: virtio}
//     schedule: {maxConcurrentImports: 5, maxConcurrentPerHost: 2, maxConcurrentPerDatastore: 3,
//                notBefore: "2026-12-05T22:00:00Z"}
//     bandwidthBytesPerSecond: 100000000    # shared by the plan's imports

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "api/virtual_machine_import.h"
#include "core/result.h"

namespace vmimport::api {

inline constexpr std::string_view kImportPlanKind = "ImportPlan";
//! The label every import of a plan carries, its value the plan's name.
inline constexpr std::string_view kPlanLabel = "migration.harvesterhci.io/import-plan";

struct PlanSelector {
  std::string folder;        //!< vSphere: under this folder of the datacenter (recursive)
  std::string name_pattern;  //!< a shell glob on the VM name (*, ?, [...]); empty: any
  //! Explicit VMs: a name, or (vSphere) an inventory path "/DC0/vm/a/web"; empty: any.
  std::vector<std::string> names;
  //! vSphere tags the VM must carry, each "tag" (any category) or "category/tag"; all of them.
  std::vector<std::string> tags;
  //! OpenStack: Nova metadata the server must carry, key -> exact value; all of them.
  std::map<std::string, std::string> metadata;
};

struct PlanSchedule {
  int32_t max_concurrent_imports = 0;  //!< 0: no limit
  //! At most this many of the plan's imports running per source host (vSphere: ESXi host); 0:
  //! no limit. A VM whose host is not known counts against no host.
  int32_t max_concurrent_per_host = 0;
  //! At most this many running per datastore any disk of the VM lives on; 0: no limit.
  int32_t max_concurrent_per_datastore = 0;
  std::string not_before;  //!< RFC 3339; empty: now
};

struct ImportPlanSpec {
  ObjectReference source_cluster;
  PlanSelector selector;
  nlohmann::json import_template = nlohmann::json::object();  //!< JSON key "template"
  PlanSchedule schedule;
  //! Any new value retries the plan's failed imports once (status.retriedFor records the last
  //! value acted on): each is deleted and, once gone, made again from the current template.
  std::string retry;
  //! A cap in bytes per second shared by every disk stream of the plan's imports (on top of the
  //! source's own caps); 0: none.
  double bandwidth_bytes_per_second = 0;
};

//! Reads spec; a known key of the wrong JSON type is kInvalidArgument naming its path.
[[nodiscard]] core::Result<ImportPlanSpec> ImportPlanSpecFromJson(const nlohmann::json& j);

//! Every problem of `spec` that needs no lookup ("<json path>: <what is wrong>"); empty when
//! valid. The template is read as an import spec and checked as ValidateImportSpec would.
std::vector<std::string> ValidatePlanSpec(const ImportPlanSpec& spec);

//! One VM of a resolved selection, as status.selection.vms[] records it.
struct PlannedVm {
  std::string name;            //!< the source VM's name
  std::string inventory_path;  //!< vSphere; empty for other sources
  std::string id;              //!< provider id (moref, server id)
  std::string import_name;     //!< the VirtualMachineImport made for it
  std::string vm_reference;    //!< its spec.virtualMachineName (a name, or a UUID when ambiguous)
  std::string folder;          //!< its spec.folder (vSphere)
  uint64_t disk_bytes = 0;     //!< the sum of its disks' capacities
  std::string host;            //!< the source host it runs on (vSphere); empty: not known
  std::vector<std::string> datastores;  //!< where its disks live (vSphere)
};

nlohmann::json PlannedVmToJson(const PlannedVm& vm);
PlannedVm PlannedVmFromJson(const nlohmann::json& j);

//! True when `name` matches the shell glob `pattern` (*, ?, [abc], [a-z], [!a]).
bool GlobMatch(std::string_view pattern, std::string_view name);

}  // namespace vmimport::api
