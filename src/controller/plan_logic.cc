#include "controller/plan_logic.h"

#include <algorithm>
#include <cstdio>

#include "api/conditions.h"
#include "api/virtual_machine_import.h"
#include "core/json.h"
#include "core/strings.h"

namespace vmimport::controller {
namespace {

using kube::Json;

uint32_t Fnv1a(const std::string& s) {
  uint32_t h = 2166136261U;
  for (const char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 16777619U;
  }
  return h;
}

std::string Sanitize(const std::string& text) {
  std::string out;
  for (const char raw : core::ToLower(text)) {
    const bool ok = (raw >= 'a' && raw <= 'z') || (raw >= '0' && raw <= '9');
    if (ok) {
      out.push_back(raw);
    } else if (!out.empty() && out.back() != '-') {
      out.push_back('-');
    }
  }
  while (!out.empty() && out.back() == '-') {
    out.pop_back();
  }
  return out;
}

// The folder of `path` ("/DC0/vm/a/b/web") under `prefix` ("/DC0/vm"): "a/b"; "" at the top or
// when the path is not under the prefix.
std::string FolderOf(const std::string& path, const std::string& prefix) {
  if (path.empty() || path.rfind(prefix + "/", 0) != 0) {
    return "";
  }
  const size_t last = path.rfind('/');
  if (last <= prefix.size()) {
    return "";
  }
  return path.substr(prefix.size() + 1, last - prefix.size() - 1);
}

uint64_t DiskBytes(const model::VmDescription& vm) {
  uint64_t total = 0;
  for (const auto& d : vm.disks) {
    total += d.capacity_bytes;
  }
  return total;
}

// The Failed condition of an import, or its last condition that is True.
std::pair<std::string, std::string> FailureOf(const Json& status) {
  const auto conditions = api::ConditionsFromJson(core::JsonArray(status, "importConditions"));
  if (const api::Condition* failed = api::FindCondition(conditions, "Failed")) {
    return {failed->reason, failed->message};
  }
  return {"", ""};
}

}  // namespace

std::string ImportNameFor(const std::string& plan_name, const std::string& vm_name,
                          const std::string& identity, const std::vector<std::string>& taken) {
  std::string base = Sanitize(plan_name + "-" + vm_name);
  const bool clash = std::find(taken.begin(), taken.end(), base) != taken.end();
  if (base.size() <= 63 && !clash && !base.empty()) {
    return base;
  }
  char suffix[16];
  std::snprintf(suffix, sizeof(suffix), "-%08x", Fnv1a(identity));
  base = base.substr(0, 63 - 9);
  while (!base.empty() && base.back() == '-') {
    base.pop_back();
  }
  return base + suffix;
}

bool HasTags(const std::vector<std::string>& wanted, const std::vector<std::string>& vm_tags) {
  return std::all_of(wanted.begin(), wanted.end(), [&vm_tags](const std::string& want) {
    const bool qualified = want.find('/') != std::string::npos;
    return std::any_of(vm_tags.begin(), vm_tags.end(), [&](const std::string& have) {
      if (qualified) {
        return have == want;
      }
      const size_t slash = have.find('/');
      return (slash == std::string::npos ? have : have.substr(slash + 1)) == want;
    });
  });
}

Selection SelectVms(const std::string& plan_name, const api::PlanSelector& selector,
                    const std::vector<model::VmDescription>& listing,
                    const std::string& vm_folder_prefix, const VmTags& tags) {
  Selection out;
  std::vector<bool> named(selector.names.size(), false);
  std::vector<std::string> taken;
  for (const model::VmDescription& vm : listing) {
    if (!selector.name_pattern.empty() && !api::GlobMatch(selector.name_pattern, vm.name)) {
      continue;
    }
    if (!selector.tags.empty()) {
      auto it = tags.find(vm.id);
      if (it == tags.end() || !HasTags(selector.tags, it->second)) {
        continue;
      }
    }
    const bool metadata_ok =
        std::all_of(selector.metadata.begin(), selector.metadata.end(), [&vm](const auto& kv) {
          auto it = vm.metadata.find(kv.first);
          return it != vm.metadata.end() && it->second == kv.second;
        });
    if (!metadata_ok) {
      continue;
    }
    if (!selector.names.empty()) {
      bool hit = false;
      for (size_t i = 0; i < selector.names.size(); ++i) {
        if (selector.names[i] == vm.name ||
            (!vm.inventory_path.empty() && selector.names[i] == vm.inventory_path)) {
          named[i] = true;
          hit = true;
        }
      }
      if (!hit) {
        continue;
      }
    }
    api::PlannedVm p;
    p.name = vm.name;
    p.inventory_path = vm.inventory_path;
    p.id = vm.id;
    p.disk_bytes = DiskBytes(vm);
    p.host = vm.host;
    p.datastores = vm.Datastores();
    p.folder = FolderOf(vm.inventory_path, vm_folder_prefix);
    // The name must find exactly this VM under its folder (searched recursively).
    const std::string under = vm_folder_prefix + (p.folder.empty() ? "" : "/" + p.folder) + "/";
    const auto same_name = std::count_if(listing.begin(), listing.end(), [&](const auto& other) {
      return other.name == vm.name &&
             (other.inventory_path.empty() || other.inventory_path.rfind(under, 0) == 0);
    });
    p.vm_reference = vm.name;
    if (same_name > 1) {
      p.vm_reference = !vm.instance_uuid.empty() ? vm.instance_uuid
                       : !vm.bios_uuid.empty()   ? vm.bios_uuid
                                                 : vm.id;
    }
    p.import_name = ImportNameFor(plan_name, vm.name,
                                  vm.inventory_path.empty() ? vm.id : vm.inventory_path, taken);
    taken.push_back(p.import_name);
    out.vms.push_back(std::move(p));
  }
  for (size_t i = 0; i < selector.names.size(); ++i) {
    if (!named[i]) {
      out.not_found.push_back(selector.names[i]);
    }
  }
  return out;
}

Json ImportObjectFor(const Json& plan, const api::ImportPlanSpec& spec, const api::PlannedVm& vm) {
  const Json& md = core::JsonObject(plan, "metadata");
  const std::string ns = core::JsonString(md, "namespace");
  Json import_spec = spec.import_template;
  Json source = {
      {"kind", spec.source_cluster.kind},
      {"name", spec.source_cluster.name},
      {"namespace", spec.source_cluster.namespace_.empty() ? ns : spec.source_cluster.namespace_}};
  if (!spec.source_cluster.api_version.empty()) {
    source["apiVersion"] = spec.source_cluster.api_version;
  }
  import_spec["sourceCluster"] = source;
  import_spec["virtualMachineName"] = vm.vm_reference;
  if (!vm.folder.empty()) {
    import_spec["folder"] = vm.folder;
  } else {
    import_spec.erase("folder");
  }
  return Json{{"apiVersion", api::kMigrationApiVersion},
              {"kind", api::kVirtualMachineImportKind},
              {"metadata",
               {{"name", vm.import_name},
                {"namespace", ns},
                {"labels", {{std::string(api::kPlanLabel), core::JsonString(md, "name")}}},
                {"ownerReferences", Json::array({{{"apiVersion", api::kMigrationApiVersion},
                                                  {"kind", api::kImportPlanKind},
                                                  {"name", core::JsonString(md, "name")},
                                                  {"uid", core::JsonString(md, "uid")},
                                                  {"controller", true}}})}}},
              {"spec", import_spec}};
}

ScheduleDecision Schedule(const std::vector<api::PlannedVm>& selection,
                          const api::PlanSchedule& schedule, const std::set<std::string>& existing,
                          const std::set<std::string>& active) {
  ScheduleDecision out;
  int running = 0;
  std::map<std::string, int> per_host;
  std::map<std::string, int> per_datastore;
  auto count = [&](const api::PlannedVm& vm) {
    ++running;
    if (!vm.host.empty()) {
      ++per_host[vm.host];
    }
    for (const std::string& ds : vm.datastores) {
      ++per_datastore[ds];
    }
  };
  for (const api::PlannedVm& vm : selection) {
    if (active.contains(vm.import_name)) {
      count(vm);
    }
  }
  const int wave = schedule.max_concurrent_imports;
  const int host_limit = schedule.max_concurrent_per_host;
  const int ds_limit = schedule.max_concurrent_per_datastore;
  for (const api::PlannedVm& vm : selection) {
    if (existing.contains(vm.import_name)) {
      continue;
    }
    if (wave > 0 && running >= wave) {
      out.waiting[vm.import_name] = "wave limit " + std::to_string(wave) + " reached";
      continue;
    }
    if (host_limit > 0 && !vm.host.empty() && per_host[vm.host] >= host_limit) {
      out.waiting[vm.import_name] =
          "host " + vm.host + " at its limit " + std::to_string(host_limit);
      continue;
    }
    auto full = std::find_if(vm.datastores.begin(), vm.datastores.end(),
                             [&](const std::string& ds) { return per_datastore[ds] >= ds_limit; });
    if (ds_limit > 0 && full != vm.datastores.end()) {
      out.waiting[vm.import_name] =
          "datastore " + *full + " at its limit " + std::to_string(ds_limit);
      continue;
    }
    count(vm);
    out.start.push_back(vm.import_name);
  }
  return out;
}

bool ImportIsActive(const std::string& import_status) {
  auto parsed = api::ParseImportStatus(import_status);
  return !parsed || !api::IsTerminal(*parsed);
}

PlanSummary Summarize(const std::vector<api::PlannedVm>& selection,
                      const std::map<std::string, Json>& imports) {
  PlanSummary s;
  s.total = static_cast<int>(selection.size());
  for (const api::PlannedVm& vm : selection) {
    auto it = imports.find(vm.import_name);
    if (it == imports.end()) {
      ++s.not_started;
      s.bytes_total += vm.disk_bytes;
      continue;
    }
    const Json& status = core::JsonObject(it->second, "status");
    const std::string phase = core::JsonString(status, "importStatus");
    ++s.by_phase[phase.empty() ? "pending" : phase];
    uint64_t done = 0;
    uint64_t total = 0;
    uint64_t rate = 0;
    for (const Json& d : core::JsonArray(status, "diskImportStatus")) {
      const uint64_t disk_total =
          core::JsonUint(d, "bytesTotal").value_or(core::JsonUint(d, "diskSize").value_or(0));
      total += disk_total;
      done += std::min(core::JsonUint(d, "bytesDone").value_or(0), disk_total);
      rate += core::JsonUint(d, "bytesPerSecond").value_or(0);
    }
    total = std::max(total, vm.disk_bytes);
    const auto parsed = api::ParseImportStatus(phase);
    if (parsed == api::ImportStatus::kVirtualMachineRunning) {
      ++s.succeeded;
      done = total;  // every disk is in Harvester
    } else if (parsed && api::IsTerminal(*parsed)) {
      ++s.failed;
      auto [reason, message] = FailureOf(status);
      s.attention.push_back(Attention{vm.name, vm.import_name, reason.empty() ? phase : reason,
                                      message.empty() ? "the import ended in " + phase : message});
    } else {
      ++s.running;
      s.bytes_per_second += rate;
      if (parsed == api::ImportStatus::kDiskImagesFailed) {
        auto [reason, message] = FailureOf(status);
        s.attention.push_back(
            Attention{vm.name, vm.import_name, reason.empty() ? phase : reason, message});
      }
    }
    s.bytes_done += done;
    s.bytes_total += total;
  }
  if (s.bytes_per_second > 0) {
    s.eta_seconds = static_cast<int64_t>((s.bytes_total - std::min(s.bytes_done, s.bytes_total)) /
                                         s.bytes_per_second);
  }
  return s;
}

Json SummaryToJson(const PlanSummary& s) {
  Json by_phase = Json::object();
  for (const auto& [phase, n] : s.by_phase) {
    by_phase[phase] = n;
  }
  Json j = {{"total", s.total},
            {"notStarted", s.not_started},
            {"running", s.running},
            {"succeeded", s.succeeded},
            {"failed", s.failed},
            {"byPhase", by_phase},
            {"bytesDone", s.bytes_done},
            {"bytesTotal", s.bytes_total},
            {"bytesPerSecond", s.bytes_per_second}};
  if (s.bytes_total > 0) {
    j["progress"] = std::to_string(s.bytes_done * 100 / s.bytes_total) + "%";
  }
  if (s.eta_seconds >= 0) {
    j["etaSeconds"] = s.eta_seconds;
  }
  return j;
}

}  // namespace vmimport::controller
