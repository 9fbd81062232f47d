#include "api/import_plan.h"

#include "api/names.h"
#include "core/clock.h"
#include "core/json.h"

namespace vmimport::api {
namespace {

using core::ErrorCode;
using core::MakeError;
using Json = nlohmann::json;

core::Status ExpectType(const Json& parent, const char* key, Json::value_t type,
                        const std::string& path) {
  const Json* v = core::JsonMember(parent, key);
  if (v == nullptr || v->is_null()) {
    return {};
  }
  const bool ok =
      type == Json::value_t::number_integer ? v->is_number_integer() : v->type() == type;
  if (!ok) {
    return MakeError(ErrorCode::kInvalidArgument, path + "." + key + ": wrong type");
  }
  return {};
}

}  // namespace

core::Result<ImportPlanSpec> ImportPlanSpecFromJson(const Json& j) {
  ImportPlanSpec spec;
  if (!j.is_object()) {
    return j.is_null() ? ImportPlanSpec{}
                       : core::Result<ImportPlanSpec>(
                             MakeError(ErrorCode::kInvalidArgument, "spec: must be an object"));
  }
  for (auto [key, type] :
       {std::pair{"sourceCluster", Json::value_t::object},
        std::pair{"selector", Json::value_t::object}, std::pair{"template", Json::value_t::object},
        std::pair{"schedule", Json::value_t::object}}) {
    if (auto st = ExpectType(j, key, type, "spec"); !st) {
      return MakeError(st.error());
    }
  }
  const Json& src = core::JsonObject(j, "sourceCluster");
  spec.source_cluster.api_version = core::JsonString(src, "apiVersion");
  spec.source_cluster.kind = core::JsonString(src, "kind");
  spec.source_cluster.namespace_ = core::JsonString(src, "namespace");
  spec.source_cluster.name = core::JsonString(src, "name");
  const Json& sel = core::JsonObject(j, "selector");
  if (auto st = ExpectType(sel, "names", Json::value_t::array, "spec.selector"); !st) {
    return MakeError(st.error());
  }
  spec.selector.folder = core::JsonString(sel, "folder");
  spec.selector.name_pattern = core::JsonString(sel, "namePattern");
  for (const Json& n : core::JsonArray(sel, "names")) {
    if (!n.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, "spec.selector.names: must be strings");
    }
    spec.selector.names.push_back(n.get<std::string>());
  }
  if (const Json* t = core::JsonMember(j, "template"); t != nullptr && t->is_object()) {
    spec.import_template = *t;
  }
  const Json& schedule = core::JsonObject(j, "schedule");
  if (auto st = ExpectType(schedule, "maxConcurrentImports", Json::value_t::number_integer,
                           "spec.schedule");
      !st) {
    return MakeError(st.error());
  }
  spec.schedule.max_concurrent_imports =
      static_cast<int32_t>(core::JsonInt(schedule, "maxConcurrentImports").value_or(0));
  spec.schedule.not_before = core::JsonString(schedule, "notBefore");
  spec.retry = core::JsonString(j, "retry");
  return spec;
}

std::vector<std::string> ValidatePlanSpec(const ImportPlanSpec& spec) {
  std::vector<std::string> problems;
  if (spec.source_cluster.name.empty()) {
    problems.emplace_back("spec.sourceCluster.name: required");
  }
  if (spec.source_cluster.kind.empty()) {
    problems.emplace_back("spec.sourceCluster.kind: required");
  }
  if (spec.selector.folder.empty() && spec.selector.name_pattern.empty() &&
      spec.selector.names.empty()) {
    problems.emplace_back(
        "spec.selector: give a folder, a namePattern or names (a plan never selects a whole "
        "source by accident)");
  }
  if (spec.schedule.max_concurrent_imports < 0) {
    problems.emplace_back("spec.schedule.maxConcurrentImports: must be 0 (no limit) or more");
  }
  if (!spec.schedule.not_before.empty()) {
    std::chrono::system_clock::time_point t;
    if (!core::ParseRfc3339(spec.schedule.not_before, t)) {
      problems.emplace_back("spec.schedule.notBefore: \"" + spec.schedule.not_before +
                            "\" is not an RFC 3339 time");
    }
  }
  for (const char* key : {"sourceCluster", "virtualMachineName"}) {
    if (spec.import_template.contains(key)) {
      problems.emplace_back(std::string("spec.template.") + key +
                            ": set by the plan for each VM, not in the template");
    }
  }
  Json probe = spec.import_template;
  probe.erase("sourceCluster");
  probe["virtualMachineName"] = "probe";
  probe["sourceCluster"] = {
      {"kind", spec.source_cluster.kind.empty() ? "VmwareSource" : spec.source_cluster.kind},
      {"name", "probe"}};
  auto import_spec = SpecFromJson(probe);
  if (!import_spec) {
    problems.push_back("spec.template: " + import_spec.error().message);
    return problems;
  }
  for (const std::string& p : ValidateImportSpec(*import_spec)) {
    if (p.rfind("spec.sourceCluster", 0) == 0 || p.rfind("spec.virtualMachineName", 0) == 0) {
      continue;
    }
    problems.push_back(p.rfind("spec.", 0) == 0 ? "spec.template." + p.substr(5) : p);
  }
  return problems;
}

Json PlannedVmToJson(const PlannedVm& vm) {
  Json j = {{"name", vm.name}, {"importName", vm.import_name}, {"diskBytes", vm.disk_bytes}};
  if (!vm.inventory_path.empty()) {
    j["inventoryPath"] = vm.inventory_path;
  }
  if (!vm.id.empty()) {
    j["id"] = vm.id;
  }
  if (vm.vm_reference != vm.name) {
    j["virtualMachineName"] = vm.vm_reference;
  }
  if (!vm.folder.empty()) {
    j["folder"] = vm.folder;
  }
  return j;
}

PlannedVm PlannedVmFromJson(const Json& j) {
  PlannedVm vm;
  vm.name = core::JsonString(j, "name");
  vm.inventory_path = core::JsonString(j, "inventoryPath");
  vm.id = core::JsonString(j, "id");
  vm.import_name = core::JsonString(j, "importName");
  vm.vm_reference = core::JsonString(j, "virtualMachineName", vm.name);
  vm.folder = core::JsonString(j, "folder");
  vm.disk_bytes = core::JsonUint(j, "diskBytes").value_or(0);
  return vm;
}

bool GlobMatch(std::string_view pattern, std::string_view name) {
  size_t p = 0;
  size_t n = 0;
  size_t star_p = std::string_view::npos;
  size_t star_n = 0;
  auto class_match = [&pattern](size_t& i, char c) {
    // pattern[i] == '['; on return i is past the closing ']'. An unclosed class is literal.
    const size_t close = pattern.find(']', i + 2);
    if (close == std::string_view::npos) {
      ++i;
      return c == '[';
    }
    size_t k = i + 1;
    const bool negate = pattern[k] == '!' || pattern[k] == '^';
    if (negate) {
      ++k;
    }
    bool hit = false;
    for (; k < close; ++k) {
      if (k + 2 < close && pattern[k + 1] == '-') {
        hit |= c >= pattern[k] && c <= pattern[k + 2];
        k += 2;
      } else {
        hit |= c == pattern[k];
      }
    }
    i = close + 1;
    return hit != negate;
  };
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star_p = p++;
      star_n = n;
      continue;
    }
    if (p < pattern.size()) {
      size_t next = p;
      bool ok = false;
      if (pattern[p] == '?') {
        ok = true;
        next = p + 1;
      } else if (pattern[p] == '[') {
        ok = class_match(next, name[n]);
      } else {
        ok = pattern[p] == name[n];
        next = p + 1;
      }
      if (ok) {
        p = next;
        ++n;
        continue;
      }
    }
    if (star_p == std::string_view::npos) {
      return false;
    }
    p = star_p + 1;
    n = ++star_n;
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

}  // namespace vmimport::api
