#include "controller/plan_reconciler.h"

#include <algorithm>
#include <set>

#include "api/conditions.h"
#include "api/import_plan.h"
#include "controller/import_reconciler.h"
#include "controller/plan_logic.h"
#include "controller/source_reconciler.h"
#include "core/json.h"
#include "core/strings.h"

namespace vmimport::controller {
namespace {

using core::ErrorCode;
using core::MakeError;
using kube::Json;

std::string SelectorText(const api::PlanSelector& s) {
  std::vector<std::string> parts;
  if (!s.folder.empty()) {
    parts.push_back("folder " + s.folder);
  }
  if (!s.name_pattern.empty()) {
    parts.push_back("namePattern " + s.name_pattern);
  }
  if (!s.names.empty()) {
    parts.push_back("names " + core::Join(s.names, ", "));
  }
  if (!s.tags.empty()) {
    parts.push_back("tags " + core::Join(s.tags, ", "));
  }
  for (const auto& [key, value] : s.metadata) {
    parts.push_back("metadata " + key + "=" + value);
  }
  return core::Join(parts, ", ");
}

// status.selection is written once, when the selection is resolved.
bool HasSelection(const Json& status) {
  const Json* selection = core::JsonMember(status, "selection");
  return selection != nullptr && selection->is_object();
}

// status.waiting lists at most this many VMs (summary.notStarted counts them all).
constexpr size_t kMaxWaitingListed = 50;

std::chrono::milliseconds Ms(std::chrono::seconds s) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(s);
}

}  // namespace

const kube::Resource& PlanResource() {
  static const kube::Resource r{"migration.harvesterhci.io", "v1beta1", "importplans", true};
  return r;
}

std::string PlanOfImport(const Json& vm_import) {
  const Json& md = core::JsonObject(vm_import, "metadata");
  const std::string plan = core::JsonString(core::JsonObject(md, "labels"), api::kPlanLabel);
  if (plan.empty()) {
    return "";
  }
  return core::JsonString(md, "namespace") + "/" + plan;
}

struct PlanReconciler::Pass {
  Json object;
  std::string ns;
  std::string name;
  std::string key;
  api::ImportPlanSpec spec;
  Json read_status;
  Json status;
  core::Logger log;
  struct Note {
    std::string type;
    std::string reason;
    std::string message;
  };
  std::vector<Note> notes;
};

PlanReconciler::PlanReconciler(kube::Api& api, kube::ObjectCache& plans,
                               std::map<source::SourceKind, source::Importer*> importers,
                               kube::EventSink& events, const core::Clock& clock,
                               const core::Logger& log, PlanReconcilerOptions options)
    : api_(api),
      plans_(plans),
      importers_(std::move(importers)),
      events_(events),
      clock_(clock),
      log_(log.With({{"controller", "import-plan"}})),
      options_(options) {}

void PlanReconciler::SetPhase(Pass& pass, const std::string& phase, const std::string& reason,
                              const std::string& message, bool warning) {
  const std::string old_phase = core::JsonString(pass.status, "phase");
  pass.status["phase"] = phase;
  auto conditions = api::ConditionsFromJson(core::JsonArray(pass.status, "conditions"));
  const api::Condition* before = api::FindCondition(conditions, "Ready");
  const std::string old_reason = before != nullptr ? before->reason : "";
  const bool ready = phase == kPlanRunning || phase == kPlanSucceeded || phase == kPlanScheduled;
  api::SetCondition(conditions,
                    {"Ready", ready ? "True" : "False", reason, core::SanitizeUtf8(message)},
                    clock_.WallNow());
  pass.status["conditions"] = api::ConditionsToJson(conditions);
  // An Event when the phase or its reason moves, not for every new count in the message.
  if (old_phase != phase || old_reason != reason) {
    pass.notes.push_back({warning ? "Warning" : "Normal", reason, message});
  }
}

core::Result<ReconcileResult> PlanReconciler::Reconcile(std::stop_token stop,
                                                        const std::string& key) {
  auto cached = plans_.Get(key);
  if (!cached) {
    return ReconcileResult{};  // deleted: its imports are owned by it (garbage collected)
  }
  Pass pass;
  pass.object = *cached;
  const Json& md = core::JsonObject(pass.object, "metadata");
  if (core::JsonMember(md, "deletionTimestamp") != nullptr) {
    return ReconcileResult{};
  }
  pass.ns = core::JsonString(md, "namespace");
  pass.name = core::JsonString(md, "name");
  pass.key = key;
  pass.log = log_.With({{"plan", key}});
  pass.read_status = core::JsonObject(pass.object, "status");
  pass.status = pass.read_status.is_object() ? pass.read_status : Json::object();
  pass.status["observedGeneration"] = core::JsonInt(md, "generation").value_or(0);

  auto spec = api::ImportPlanSpecFromJson(core::JsonObject(pass.object, "spec"));
  std::vector<std::string> problems;
  if (!spec) {
    problems.push_back(spec.error().message);
  } else {
    pass.spec = *spec;
    problems = api::ValidatePlanSpec(pass.spec);
  }
  if (!problems.empty() && !HasSelection(pass.status)) {
    SetPhase(pass, kPlanInvalid, "InvalidSpec", core::Join(problems, "; "), true);
    if (auto st = Commit(stop, pass); !st) {
      return MakeError(st.error());
    }
    return ReconcileResult{};
  }
  // An Invalid plan without a selection is decided again only when its spec changes.
  if (!HasSelection(pass.status) && core::JsonString(pass.read_status, "phase") == kPlanInvalid &&
      core::JsonInt(pass.read_status, "observedGeneration") == core::JsonInt(md, "generation")) {
    return ReconcileResult{};
  }
  core::Result<ReconcileResult> result =
      HasSelection(pass.status) ? Run(stop, pass) : Resolve(stop, pass);
  if (!result && result.error().code == ErrorCode::kCancelled) {
    return result;
  }
  if (auto st = Commit(stop, pass); !st) {
    return MakeError(st.error());
  }
  return result;
}

core::Result<ReconcileResult> PlanReconciler::Resolve(std::stop_token stop, Pass& pass) {
  const api::ObjectReference& ref = pass.spec.source_cluster;
  auto kind = source::SourceKindOfObjectKind(ref.kind);
  auto importer = kind ? importers_.find(*kind) : importers_.end();
  if (!kind || importer == importers_.end() || importer->second == nullptr) {
    SetPhase(pass, kPlanInvalid, "UnsupportedSource",
             "spec.sourceCluster.kind " + ref.kind + " has no provider in this build", true);
    return ReconcileResult{};
  }
  const std::string source_ns = ref.namespace_.empty() ? pass.ns : ref.namespace_;
  auto source_obj = api_.Get(stop, SourceResource(*kind), source_ns, ref.name);
  if (!source_obj) {
    if (source_obj.error().code != ErrorCode::kNotFound) {
      return MakeError(source_obj.error().Wrap("get source " + source_ns + "/" + ref.name));
    }
    SetPhase(pass, kPlanWaitingForSource, "SourceNotFound",
             ref.kind + " " + source_ns + "/" + ref.name + " does not exist", true);
    return ReconcileResult{.requeue_after = Ms(options_.source_not_ready_requeue)};
  }
  const std::string readiness = core::JsonString(core::JsonObject(*source_obj, "status"), "status");
  if (readiness != kClusterReady) {
    SetPhase(pass, kPlanWaitingForSource, "SourceNotReady",
             ref.kind + " " + source_ns + "/" + ref.name + " is " +
                 (readiness.empty() ? "not checked yet" : readiness),
             false);
    return ReconcileResult{.requeue_after = Ms(options_.source_not_ready_requeue)};
  }
  auto config = LoadSourceConfig(stop, api_, *kind, *source_obj);
  if (!config) {
    SetPhase(pass, kPlanWaitingForSource, "SourceNotReady", config.error().message, true);
    return ReconcileResult{.requeue_after = Ms(options_.source_not_ready_requeue)};
  }
  const auto started = clock_.Now();
  auto listing = importer->second->ListVms(stop, *config, pass.spec.selector.folder);
  if (!listing) {
    if (listing.error().code == ErrorCode::kCancelled) {
      return MakeError(listing.error());
    }
    if (listing.error().Terminal() || listing.error().code == ErrorCode::kNotFound) {
      SetPhase(pass, kPlanInvalid, "SelectionFailed", listing.error().message, true);
      return ReconcileResult{};
    }
    SetPhase(pass, kPlanWaitingForSource, "SelectionFailed", listing.error().message, true);
    return ReconcileResult{.requeue_after = Ms(options_.source_not_ready_requeue)};
  }
  const std::string prefix =
      "/" + std::string(core::TrimSpace(config->datacenter)) + "/vm";  // vSphere paths
  VmTags tags;
  if (!pass.spec.selector.tags.empty()) {
    auto listed_tags = importer->second->ListVmTags(stop, *config);
    if (!listed_tags) {
      if (listed_tags.error().code == ErrorCode::kCancelled) {
        return MakeError(listed_tags.error());
      }
      const bool terminal = listed_tags.error().Terminal();
      SetPhase(pass, terminal ? kPlanInvalid : kPlanWaitingForSource, "SelectionFailed",
               "spec.selector.tags: " + listed_tags.error().message, true);
      return terminal ? ReconcileResult{}
                      : ReconcileResult{.requeue_after = Ms(options_.source_not_ready_requeue)};
    }
    tags = std::move(*listed_tags);
  }
  Selection selection = SelectVms(pass.name, pass.spec.selector, *listing, prefix, tags);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now() - started);
  pass.log.Info("selection resolved", {{"listed", listing->size()},
                                       {"selected", selection.vms.size()},
                                       {"not_found", selection.not_found.size()},
                                       {"ms", took.count()}});
  if (selection.vms.empty()) {
    std::string message = "the selector (" + SelectorText(pass.spec.selector) +
                          ") matched none of the " + std::to_string(listing->size()) + " VMs of " +
                          ref.kind + " " + source_ns + "/" + ref.name;
    if (!selection.not_found.empty()) {
      message += "; not found: " + core::Join(selection.not_found, ", ");
    }
    SetPhase(pass, kPlanInvalid, "NoVmsSelected", message, true);
    return ReconcileResult{};
  }
  Json vms = Json::array();
  std::vector<std::string> names;
  for (const auto& vm : selection.vms) {
    vms.push_back(api::PlannedVmToJson(vm));
    names.push_back(vm.name);
  }
  pass.status["selection"] = {{"resolvedAt", core::FormatRfc3339(clock_.WallNow())},
                              {"sourceVms", listing->size()},
                              {"vms", vms},
                              {"notFound", selection.not_found}};
  pass.notes.push_back({"Normal", "SelectionResolved",
                        "selected " + std::to_string(selection.vms.size()) + " of " +
                            std::to_string(listing->size()) + " VMs: " + core::Join(names, ", ")});
  if (!selection.not_found.empty()) {
    pass.notes.push_back(
        {"Warning", "VmNotFound", "not on the source: " + core::Join(selection.not_found, ", ")});
  }
  return Run(stop, pass);
}

core::Result<ReconcileResult> PlanReconciler::Run(std::stop_token stop, Pass& pass) {
  std::vector<api::PlannedVm> selection;
  for (const Json& j : core::JsonArray(core::JsonObject(pass.status, "selection"), "vms")) {
    selection.push_back(api::PlannedVmFromJson(j));
  }
  const std::string uid = core::JsonString(core::JsonObject(pass.object, "metadata"), "uid");
  // Live and label-selected: an import created by the previous pass must count (the cache may
  // not have it yet), or the limit would not hold.
  auto listed = api_.List(stop, ImportResource(), pass.ns,
                          {.label_selector = std::string(api::kPlanLabel) + "=" + pass.name});
  if (!listed) {
    return MakeError(listed.error().Wrap("list the imports of plan " + pass.key));
  }
  std::map<std::string, Json> owned;
  for (const Json& item : core::JsonArray(*listed, "items")) {
    const Json& md = core::JsonObject(item, "metadata");
    for (const Json& ref : core::JsonArray(md, "ownerReferences")) {
      if (core::JsonString(ref, "uid") == uid) {
        owned[core::JsonString(md, "name")] = item;
      }
    }
  }
  // Retry (spec.retry moved since status.retriedFor): the failed imports are deleted; once
  // they are gone they are made again below, from the template as it is now.
  std::set<std::string> deleting;
  if (!pass.spec.retry.empty() && pass.spec.retry != core::JsonString(pass.status, "retriedFor")) {
    std::vector<std::string> again;
    for (const auto& [name, item] : owned) {
      const auto parsed = api::ParseImportStatus(
          core::JsonString(core::JsonObject(item, "status"), "importStatus"));
      if (!parsed || !api::IsTerminal(*parsed) ||
          *parsed == api::ImportStatus::kVirtualMachineRunning) {
        continue;
      }
      const std::string import_uid = core::JsonString(core::JsonObject(item, "metadata"), "uid");
      auto gone = api_.Delete(stop, ImportResource(), pass.ns, name,
                              {.propagation_policy = "Background", .precondition_uid = import_uid});
      if (!gone && gone.error().code != ErrorCode::kNotFound) {
        return MakeError(gone.error().Wrap("delete failed import " + name + " to retry it"));
      }
      again.push_back(name);
      deleting.insert(name);
    }
    pass.status["retriedFor"] = pass.spec.retry;
    pass.log.Info("retrying failed imports",
                  {{"retry", pass.spec.retry}, {"imports", core::Join(again, ",")}});
    pass.notes.push_back({"Normal", "RetryingFailedImports",
                          again.empty() ? "spec.retry " + pass.spec.retry + ": no failed import"
                                        : "spec.retry " + pass.spec.retry + ": importing again " +
                                              core::Join(again, ", ")});
  }
  // An import being deleted is neither counted nor made again until it is gone.
  for (auto it = owned.begin(); it != owned.end();) {
    if (core::JsonMember(core::JsonObject(it->second, "metadata"), "deletionTimestamp") !=
            nullptr ||
        deleting.contains(it->first)) {
      deleting.insert(it->first);
      it = owned.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<Attention> extra_attention;
  for (const Json& missing :
       core::JsonArray(core::JsonObject(pass.status, "selection"), "notFound")) {
    if (missing.is_string()) {
      extra_attention.push_back(
          {missing.get<std::string>(), "", "VmNotFound", "no VM of this name on the source"});
    }
  }

  std::chrono::system_clock::time_point not_before{};
  const bool scheduled = !pass.spec.schedule.not_before.empty() &&
                         core::ParseRfc3339(pass.spec.schedule.not_before, not_before) &&
                         clock_.WallNow() < not_before;
  Json waiting = Json::array();
  if (!scheduled) {
    std::set<std::string> existing = deleting;
    std::set<std::string> active;
    for (const auto& [name, item] : owned) {
      existing.insert(name);
      if (ImportIsActive(core::JsonString(core::JsonObject(item, "status"), "importStatus"))) {
        active.insert(name);
      }
    }
    const ScheduleDecision decision = Schedule(selection, pass.spec.schedule, existing, active);
    for (const api::PlannedVm& vm : selection) {
      if (std::find(decision.start.begin(), decision.start.end(), vm.import_name) ==
          decision.start.end()) {
        auto why = decision.waiting.find(vm.import_name);
        if (why != decision.waiting.end() && waiting.size() < kMaxWaitingListed) {
          waiting.push_back({{"vm", vm.name},
                             {"importName", vm.import_name},
                             {"reason", "waiting: " + why->second}});
        }
        continue;
      }
      auto made =
          api_.Create(stop, ImportResource(), pass.ns, ImportObjectFor(pass.object, pass.spec, vm));
      if (!made) {
        if (made.error().code == ErrorCode::kAlreadyExists) {
          extra_attention.push_back({vm.name, vm.import_name, "ImportNameTaken",
                                     "a VirtualMachineImport " + vm.import_name +
                                         " exists and does not belong to this plan"});
          continue;
        }
        if (made.error().code == ErrorCode::kInvalidArgument) {
          extra_attention.push_back(
              {vm.name, vm.import_name, "ImportRejected", made.error().message});
          continue;
        }
        return MakeError(made.error().Wrap("create import " + vm.import_name));
      }
      owned[vm.import_name] = *made;
      pass.log.Info("import created",
                    {{"vm", vm.name}, {"import", vm.import_name}, {"host", vm.host}});
      pass.notes.push_back({"Normal", "ImportCreated",
                            "VirtualMachineImport " + vm.import_name + " for VM " +
                                (vm.inventory_path.empty() ? vm.name : vm.inventory_path) +
                                (vm.host.empty() ? "" : " on host " + vm.host)});
    }
  }
  pass.status["waiting"] = waiting;
  PlanSummary summary = Summarize(selection, owned);
  summary.attention.insert(summary.attention.end(), extra_attention.begin(), extra_attention.end());
  pass.status["summary"] = SummaryToJson(summary);
  Json attention = Json::array();
  for (const Attention& a : summary.attention) {
    Json entry = {{"vm", a.vm}, {"reason", a.reason}, {"message", a.message}};
    if (!a.import_name.empty()) {
      entry["importName"] = a.import_name;
    }
    attention.push_back(entry);
  }
  pass.status["attention"] = attention;
  const int ended = summary.succeeded + summary.failed;
  if (scheduled) {
    SetPhase(pass, kPlanScheduled, "NotBefore", "imports start at " + pass.spec.schedule.not_before,
             false);
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(not_before - clock_.WallNow());
    return ReconcileResult{.requeue_after =
                               std::clamp(wait, std::chrono::milliseconds(100),
                                          std::chrono::milliseconds(std::chrono::hours(1)))};
  }
  const int blocked =
      static_cast<int>(std::count_if(extra_attention.begin(), extra_attention.end(),
                                     [](const Attention& a) { return !a.import_name.empty(); }));
  if (ended + blocked >= summary.total) {
    if (summary.failed + blocked == 0) {
      SetPhase(pass, kPlanSucceeded, "AllVmsRunning",
               std::to_string(summary.succeeded) + " VMs run in Harvester", false);
    } else {
      SetPhase(pass, kPlanFailed, "SomeImportsFailed",
               std::to_string(summary.failed + blocked) + " of " + std::to_string(summary.total) +
                   " VMs need attention (status.attention)",
               true);
    }
    return ReconcileResult{};
  }
  SetPhase(pass, kPlanRunning, "ImportsRunning",
           std::to_string(summary.running) + " running, " + std::to_string(summary.not_started) +
               " waiting, " + std::to_string(ended) + " done",
           false);
  return ReconcileResult{.requeue_after = Ms(options_.running_refresh)};
}

core::Status PlanReconciler::Commit(std::stop_token stop, Pass& pass) {
  if (pass.status != pass.read_status) {
    Json body = pass.object;  // carries the resourceVersion the pass decided from
    body["status"] = pass.status;
    auto written = api_.UpdateStatus(stop, PlanResource(), pass.ns, body);
    if (!written) {
      // A conflict is the cache being behind our own last write: decided again on fresh data.
      if (written.error().code == ErrorCode::kConflict) {
        pass.log.Debug("status write conflict; deciding again");
      } else {
        pass.log.Warn("status write failed; retrying", {{"error", written.error().message}});
      }
      return MakeError(written.error().Wrap("update status of plan " + pass.key));
    }
  }
  for (const auto& note : pass.notes) {
    events_.Record(pass.object, note.type, note.reason, note.message);
    if (note.type == "Warning") {
      pass.log.Warn("plan needs attention", {{"reason", note.reason}, {"message", note.message}});
    } else {
      pass.log.Info("plan event", {{"reason", note.reason}, {"message", note.message}});
    }
  }
  return {};
}

}  // namespace vmimport::controller
