#pragma once

// The decisions of the ImportPlan reconciler as pure functions over plain data and objects:
// which VMs a selector picks, what each import is called and looks like, and what the plan's
// status sums up. No Kubernetes or source calls here (plan_reconciler.h makes them), so every
// rule has a hermetic unit test.

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "api/import_plan.h"
#include "api/vm_description.h"  // model::VmDescription
#include "kube/api.h"

namespace vmimport::controller {

//! The plan's phases (status.phase).
inline constexpr const char* kPlanInvalid = "Invalid";                    // nothing will run
inline constexpr const char* kPlanWaitingForSource = "WaitingForSource";  // source not ready
inline constexpr const char* kPlanScheduled = "Scheduled";                // before notBefore
inline constexpr const char* kPlanRunning = "Running";
inline constexpr const char* kPlanSucceeded = "Succeeded";  // every VM running in Harvester
inline constexpr const char* kPlanFailed = "Failed";        // all ended, some did not make it

struct Selection {
  std::vector<api::PlannedVm> vms;     //!< in inventory order
  std::vector<std::string> not_found;  //!< selector.names that matched no VM
};

//! vSphere tags by VM id (moref value), each "category/tag" (source::Importer::TagsOf).
using VmTags = std::map<std::string, std::vector<std::string>>;

//! True when `vm_tags` ("category/tag") hold every tag of `wanted` ("tag" matches that tag name
//! in any category; "category/tag" exactly).
bool HasTags(const std::vector<std::string>& wanted, const std::vector<std::string>& vm_tags);

//! Picks the VMs of `listing` (the source's VMs under selector.folder) that `selector` names:
//! every condition given must hold (namePattern glob on the name; names: the name or the
//! inventory path; tags: HasTags over `tags`; metadata: every key with exactly that value). Each
//! gets its import name (ImportNameFor, unique in the plan), the VM reference its import uses (the
//! name; the instance/BIOS UUID or provider id when the name is not unique under its folder: an
//! import never has to guess) and, for vSphere, the folder relative to `vm_folder_prefix`
//! ("/DC0/vm").
Selection SelectVms(const std::string& plan_name, const api::PlanSelector& selector,
                    const std::vector<model::VmDescription>& listing,
                    const std::string& vm_folder_prefix, const VmTags& tags = {});

//! Why a VM of the plan has no import yet, or that it may start.
struct ScheduleDecision {
  std::vector<std::string> start;  //!< import names to create now, in selection order
  //! import name -> why it waits ("wave limit 5 reached", "host H0 at its limit 2",
  //! "datastore ds1 at its limit 3"), for every VM neither started nor startable now.
  std::map<std::string, std::string> waiting;
};

//! Which VMs of `selection` start now under `schedule`'s limits. `existing`: import names that
//! exist (not startable again); `active`: those of them that count against the limits (not
//! ended). VMs are taken in selection order; one held back by its host or a datastore does not
//! hold back a later VM on another host (the wave limit does: it is the plan's total).
ScheduleDecision Schedule(const std::vector<api::PlannedVm>& selection,
                          const api::PlanSchedule& schedule, const std::set<std::string>& existing,
                          const std::set<std::string>& active);

//! "<plan>-<vm>" lower-cased, every character outside [a-z0-9-] turned into '-', repeats and
//! the ends trimmed. When that is longer than 63 characters or already in `taken`, it is cut
//! and ends with "-" and 8 hex digits of a hash of `identity` (the inventory path or id), so
//! that two VMs never share an import and the same VM always gets the same name.
std::string ImportNameFor(const std::string& plan_name, const std::string& vm_name,
                          const std::string& identity, const std::vector<std::string>& taken);

//! The VirtualMachineImport the plan makes for `vm`: the template's spec fields, the plan's
//! source (its namespace defaulted to the plan's), the VM reference and folder; labelled with
//! the plan's name and owned (controller reference) by the plan.
kube::Json ImportObjectFor(const kube::Json& plan, const api::ImportPlanSpec& spec,
                           const api::PlannedVm& vm);

//! One VM of the plan that needs a person, with why.
struct Attention {
  std::string vm;
  std::string import_name;
  std::string reason;  //!< CamelCase: the import's Failed reason, ImportNameTaken, VmNotFound
  std::string message;
};

//! What status.summary says.
struct PlanSummary {
  int total = 0;
  int not_started = 0;                  //!< no import yet (waiting for a slot or for notBefore)
  int running = 0;                      //!< an import exists and has not ended
  int succeeded = 0;                    //!< virtualMachineRunning
  int failed = 0;                       //!< virtualMachineImportInvalid, VMMigrationFailed
  std::map<std::string, int> by_phase;  //!< importStatus ("" as "pending") -> imports
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;
  uint64_t bytes_per_second = 0;  //!< the running imports' rates summed
  int64_t eta_seconds = -1;       //!< -1: unknown (nothing streams)
  std::vector<Attention> attention;
};

//! Sums the plan's imports (`imports` by name, only those the plan owns) over its selection.
PlanSummary Summarize(const std::vector<api::PlannedVm>& selection,
                      const std::map<std::string, kube::Json>& imports);

//! True when an import in this importStatus counts against maxConcurrentImports.
bool ImportIsActive(const std::string& import_status);

kube::Json SummaryToJson(const PlanSummary& summary);

}  // namespace vmimport::controller
