#include "api/import_plan.h"

#include <algorithm>

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
  for (auto [key, type] :
       {std::pair{"names", Json::value_t::array}, std::pair{"tags", Json::value_t::array},
        std::pair{"metadata", Json::value_t::object}}) {
    if (auto st = ExpectType(sel, key, type, "spec.selector"); !st) {
      return MakeError(st.error());
    }
  }
  spec.selector.folder = core::JsonString(sel, "folder");
  spec.selector.name_pattern = core::JsonString(sel, "namePattern");
  for (const Json& n : core::JsonArray(sel, "names")) {
    if (!n.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, "spec.selector.names: must be strings");
    }
    spec.selector.names.push_back(n.get<std::string>());
  }
  for (const Json& t : core::JsonArray(sel, "tags")) {
    if (!t.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, "spec.selector.tags: must be strings");
    }
    spec.selector.tags.push_back(t.get<std::string>());
  }
  for (const auto& [key, value] : core::JsonObject(sel, "metadata").items()) {
    if (!value.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "spec.selector.metadata." + key + ": must be a string");
    }
    spec.selector.metadata[key] = value.get<std::string>();
  }
  if (const Json* t = core::JsonMember(j, "template"); t != nullptr && t->is_object()) {
    spec.import_template = *t;
  }
  const Json& schedule = core::JsonObject(j, "schedule");
  for (const char* key :
       {"maxConcurrentImports", "maxConcurrentPerHost", "maxConcurrentPerDatastore"}) {
    if (auto st = ExpectType(schedule, key, Json::value_t::number_integer, "spec.schedule"); !st) {
      return MakeError(st.error());
    }
  }
  auto limit = [&schedule](const char* key) {
    return static_cast<int32_t>(
        std::clamp<int64_t>(core::JsonInt(schedule, key).value_or(0), -1, 1'000'000));
  };
  spec.schedule.max_concurrent_imports = limit("maxConcurrentImports");
  spec.schedule.max_concurrent_per_host = limit("maxConcurrentPerHost");
  spec.schedule.max_concurrent_per_datastore = limit("maxConcurrentPerDatastore");
  spec.schedule.not_before = core::JsonString(schedule, "notBefore");
  spec.retry = core::JsonString(j, "retry");
  if (const Json* bw = core::JsonMember(j, "bandwidthBytesPerSecond");
      bw != nullptr && !bw->is_null()) {
    if (!bw->is_number()) {
      return MakeError(ErrorCode::kInvalidArgument, "spec.bandwidthBytesPerSecond: wrong type");
    }
    spec.bandwidth_bytes_per_second = bw->get<double>();
  }
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
      spec.selector.names.empty() && spec.selector.tags.empty() && spec.selector.metadata.empty()) {
    problems.emplace_back(
        "spec.selector: give a folder, a namePattern, names, tags or metadata (a plan never "
        "selects a whole source by accident)");
  }
  for (const std::string& tag : spec.selector.tags) {
    if (tag.empty() || tag.front() == '/' || tag.back() == '/') {
      problems.push_back("spec.selector.tags: \"" + tag + R"(" is not "tag" or "category/tag")");
    }
  }
  for (auto [key, value] :
       {std::pair{"maxConcurrentImports", spec.schedule.max_concurrent_imports},
        std::pair{"maxConcurrentPerHost", spec.schedule.max_concurrent_per_host},
        std::pair{"maxConcurrentPerDatastore", spec.schedule.max_concurrent_per_datastore}}) {
    if (value < 0) {
      problems.push_back(std::string("spec.schedule.") + key + ": must be 0 (no limit) or more");
    }
  }
  if (spec.bandwidth_bytes_per_second < 0) {
    problems.emplace_back("spec.bandwidthBytesPerSecond: must be 0 (no cap) or more");
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
  if (!vm.host.empty()) {
    j["host"] = vm.host;
  }
  if (!vm.datastores.empty()) {
    j["datastores"] = vm.datastores;
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
  vm.host = core::JsonString(j, "host");
  for (const Json& ds : core::JsonArray(j, "datastores")) {
    if (ds.is_string()) {
      vm.datastores.push_back(ds.get<std::string>());
    }
  }
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
