#include "api/virtual_machine_import.h"

#include <array>
#include <utility>

#include "api/json_reader.h"
#include "core/json.h"

namespace vmimport::api {

using nlohmann::json;

namespace {

struct StatusName {
  ImportStatus status;
  std::string_view name;
};

constexpr std::array<StatusName, 13> kStatusNames{{
    {ImportStatus::kNew, ""},
    {ImportStatus::kVirtualMachineImportValid, "virtualMachineImportValid"},
    {ImportStatus::kVirtualMachineImportInvalid, "virtualMachineImportInvalid"},
    {ImportStatus::kSourceReady, "sourceReady"},
    {ImportStatus::kPrecopy, kImportStatusPrecopy},
    {ImportStatus::kCutover, kImportStatusCutover},
    {ImportStatus::kDisksExported, "disksExported"},
    {ImportStatus::kDiskImagesSubmitted, "diskImageSubmitted"},
    {ImportStatus::kDiskImagesReady, "diskImagesReady"},
    {ImportStatus::kDiskImagesFailed, "diskImageFailed"},
    {ImportStatus::kVirtualMachineCreated, "virtualMachineCreated"},
    {ImportStatus::kVirtualMachineRunning, "virtualMachineRunning"},
    {ImportStatus::kVmMigrationFailed, "VMMigrationFailed"},
}};

// Writes `value` under `key` unless it is empty (the reference's omitempty, and our choice for
// fields nobody reads when empty).
void PutIfNotEmpty(json& out, const char* key, const std::string& value) {
  if (!value.empty()) {
    out[key] = value;
  }
}

// --- spec ---------------------------------------------------------------------------------

// A missing or null reference reads as empty.
core::Result<ObjectReference> ReadObjectReference(const json* j, const std::string& path) {
  ObjectReference ref;
  if (j == nullptr) {
    return ref;
  }
  // Unknown keys of an ObjectReference are not kept: corev1.ObjectReference is closed.
  ObjectReader r(*j, path);
  r.String("apiVersion", ref.api_version);
  r.String("kind", ref.kind);
  r.String("namespace", ref.namespace_);
  r.String("name", ref.name);
  r.String("uid", ref.uid);
  r.String("resourceVersion", ref.resource_version);
  r.String("fieldPath", ref.field_path);
  if (auto ok = r.Finish(); !ok) {
    return core::MakeError(ok.error());
  }
  return ref;
}

json ObjectReferenceToJson(const ObjectReference& ref) {
  json out = json::object();
  PutIfNotEmpty(out, "apiVersion", ref.api_version);
  PutIfNotEmpty(out, "kind", ref.kind);
  PutIfNotEmpty(out, "namespace", ref.namespace_);
  PutIfNotEmpty(out, "name", ref.name);
  PutIfNotEmpty(out, "uid", ref.uid);
  PutIfNotEmpty(out, "resourceVersion", ref.resource_version);
  PutIfNotEmpty(out, "fieldPath", ref.field_path);
  return out;
}

core::Result<NetworkMapping> ReadNetworkMapping(const json& j, const std::string& path) {
  if (auto ok = ExpectObject(j, path); !ok) {
    return core::MakeError(ok.error());
  }
  NetworkMapping m;
  ObjectReader r(j, path);
  r.String("sourceNetwork", m.source_network);
  r.String("destinationNetwork", m.destination_network);
  r.OptString("networkInterfaceModel", m.network_interface_model);
  if (auto ok = r.Finish(); !ok) {
    return core::MakeError(ok.error());
  }
  m.extra = r.Unknown();
  return m;
}

json NetworkMappingToJson(const NetworkMapping& m) {
  json out = {{"sourceNetwork", m.source_network}, {"destinationNetwork", m.destination_network}};
  if (m.network_interface_model) {
    out["networkInterfaceModel"] = *m.network_interface_model;
  }
  MergeUnknown(out, m.extra);
  return out;
}

// An array of objects under `key`, each read by `read(item, path)`.
template <typename T, typename ReadFn>
core::Status ReadList(ObjectReader& r, std::string_view key, std::vector<T>& out, ReadFn read) {
  const json* items = r.Child(key, json::value_t::array);
  if (items == nullptr) {
    return core::Ok();
  }
  for (size_t i = 0; i < items->size(); ++i) {
    const std::string path = r.PathOf(key) + "[" + std::to_string(i) + "]";
    if (auto ok = ExpectObject((*items)[i], path); !ok) {
      return ok;
    }
    ObjectReader item((*items)[i], path);
    T value;
    read(item, value);
    if (auto ok = item.Finish(); !ok) {
      return ok;
    }
    value.extra = item.Unknown();
    out.push_back(std::move(value));
  }
  return core::Ok();
}

template <typename T, typename WriteFn>
void WriteList(json& out, const char* key, const std::vector<T>& items, WriteFn write) {
  if (items.empty()) {
    return;
  }
  json list = json::array();
  for (const T& item : items) {
    json j = json::object();
    write(j, item);
    MergeUnknown(j, item.extra);
    list.push_back(std::move(j));
  }
  out[key] = std::move(list);
}

core::Status ReadOverrides(ObjectReader& r, VirtualMachineImportSpec& s) {
  if (auto ok = ReadList(r, "storageMapping", s.storage_mapping,
                         [](ObjectReader& i, StorageMapping& m) {
                           i.String("source", m.source);
                           i.String("storageClass", m.storage_class);
                         });
      !ok) {
    return ok;
  }
  if (auto ok = ReadList(r, "diskOverrides", s.disk_overrides,
                         [](ObjectReader& i, DiskOverride& d) {
                           i.Int32("index", d.index);
                           i.String("name", d.name);
                           i.String("storageClass", d.storage_class);
                           i.OptString("diskBusType", d.disk_bus_type);
                         });
      !ok) {
    return ok;
  }
  if (auto ok = ReadList(r, "nicOverrides", s.nic_overrides,
                         [](ObjectReader& i, NicOverride& n) {
                           i.Int32("index", n.index);
                           i.String("macAddress", n.mac_address);
                           i.String("networkInterfaceModel", n.network_interface_model);
                         });
      !ok) {
    return ok;
  }
  r.String("targetVirtualMachineName", s.target_virtual_machine_name);
  if (const json* cpu = r.Child("cpu", json::value_t::object)) {
    ObjectReader c(*cpu, r.PathOf("cpu"));
    CpuOverride o;
    c.Int32("sockets", o.sockets);
    c.Int32("cores", o.cores);
    c.Int32("threads", o.threads);
    if (auto ok = c.Finish(); !ok) {
      return ok;
    }
    o.extra = c.Unknown();
    s.cpu = std::move(o);
  }
  r.String("memory", s.memory);
  r.String("runStrategy", s.run_strategy);
  r.String("migrationMode", s.migration_mode);
  r.String("cutoverTime", s.cutover_time);
  r.Int32("downtimeBudgetSeconds", s.downtime_budget_seconds);
  r.Int32("precopyIntervalSeconds", s.precopy_interval_seconds);
  r.OptBool("warmFallbackToCold", s.warm_fallback_to_cold);
  return core::Ok();
}

void WriteOverrides(json& out, const VirtualMachineImportSpec& s) {
  WriteList(out, "storageMapping", s.storage_mapping, [](json& j, const StorageMapping& m) {
    j["source"] = m.source;
    j["storageClass"] = m.storage_class;
  });
  WriteList(out, "diskOverrides", s.disk_overrides, [](json& j, const DiskOverride& d) {
    if (d.index >= 0) {
      j["index"] = d.index;
    }
    PutIfNotEmpty(j, "name", d.name);
    PutIfNotEmpty(j, "storageClass", d.storage_class);
    if (d.disk_bus_type) {
      j["diskBusType"] = *d.disk_bus_type;
    }
  });
  WriteList(out, "nicOverrides", s.nic_overrides, [](json& j, const NicOverride& n) {
    if (n.index >= 0) {
      j["index"] = n.index;
    }
    PutIfNotEmpty(j, "macAddress", n.mac_address);
    PutIfNotEmpty(j, "networkInterfaceModel", n.network_interface_model);
  });
  PutIfNotEmpty(out, "targetVirtualMachineName", s.target_virtual_machine_name);
  if (s.cpu) {
    json cpu = json::object();
    for (const auto& [key, value] :
         {std::pair{"sockets", s.cpu->sockets}, std::pair{"cores", s.cpu->cores},
          std::pair{"threads", s.cpu->threads}}) {
      if (value != 0) {
        cpu[key] = value;
      }
    }
    MergeUnknown(cpu, s.cpu->extra);
    out["cpu"] = std::move(cpu);
  }
  PutIfNotEmpty(out, "memory", s.memory);
  PutIfNotEmpty(out, "runStrategy", s.run_strategy);
  PutIfNotEmpty(out, "migrationMode", s.migration_mode);
  PutIfNotEmpty(out, "cutoverTime", s.cutover_time);
  if (s.downtime_budget_seconds != 0) {
    out["downtimeBudgetSeconds"] = s.downtime_budget_seconds;
  }
  if (s.precopy_interval_seconds != 0) {
    out["precopyIntervalSeconds"] = s.precopy_interval_seconds;
  }
  if (s.warm_fallback_to_cold) {
    out["warmFallbackToCold"] = *s.warm_fallback_to_cold;
  }
}

// --- status -------------------------------------------------------------------------------

void ReadDiskProgress(ObjectReader& r, DiskProgress& p) {
  r.Uint64("bytesDone", p.bytes_done);
  r.Uint64("bytesTotal", p.bytes_total);
  r.Uint64("bytesPerSecond", p.bytes_per_second);
  r.Int64("etaSeconds", p.eta_seconds);
  r.String("sha256", p.sha256);
  r.String("sha512", p.sha512);
}

void WriteDiskProgress(json& out, const DiskProgress& p) {
  if (p.bytes_done > 0) {
    out["bytesDone"] = p.bytes_done;
  }
  if (p.bytes_total > 0) {
    out["bytesTotal"] = p.bytes_total;
  }
  if (p.bytes_per_second > 0) {
    out["bytesPerSecond"] = p.bytes_per_second;
  }
  if (p.eta_seconds >= 0) {
    out["etaSeconds"] = p.eta_seconds;
  }
  PutIfNotEmpty(out, "sha256", p.sha256);
  PutIfNotEmpty(out, "sha512", p.sha512);
}

core::Result<DiskInfo> ReadDiskInfo(const json& j, const std::string& path) {
  if (auto ok = ExpectObject(j, path); !ok) {
    return core::MakeError(ok.error());
  }
  DiskInfo d;
  ObjectReader r(j, path);
  r.String("diskName", d.disk_name);
  r.Int64("diskSize", d.disk_size);
  r.String("diskLocalPath", d.disk_local_path);
  r.String("diskRoute", d.disk_route);
  r.String("VirtualMachineImage", d.virtual_machine_image);
  r.String("dataVolume", d.data_volume);
  r.String("dataVolumeProgress", d.data_volume_progress);
  if (const json* c = r.Child("diskConditions", json::value_t::array)) {
    d.disk_conditions = ConditionsFromJson(*c);
  }
  r.String("busType", d.bus_type);
  r.String("storageClass", d.storage_class);
  ReadDiskProgress(r, d.progress);
  if (const json* v = r.Child("verification", json::value_t::array)) {
    for (size_t i = 0; i < v->size(); ++i) {
      const json& item = (*v)[i];
      if (!item.is_object()) {
        return core::MakeError(
            core::ErrorCode::kInvalidArgument,
            r.PathOf("verification") + "[" + std::to_string(i) + "]: not an object");
      }
      DiskVerification dv;
      ObjectReader vr(item, r.PathOf("verification") + "[" + std::to_string(i) + "]");
      vr.String("verifier", dv.verifier);
      vr.String("algorithm", dv.algorithm);
      vr.String("digest", dv.digest);
      vr.String("result", dv.result);
      vr.String("message", dv.message);
      if (auto ok = vr.Finish(); !ok) {
        return core::MakeError(ok.error());
      }
      d.verification.push_back(std::move(dv));
    }
  }
  if (auto ok = r.Finish(); !ok) {
    return core::MakeError(ok.error());
  }
  d.extra = r.Unknown();
  return d;
}

json DiskInfoToJson(const DiskInfo& d) {
  json out = json::object();
  PutIfNotEmpty(out, "diskName", d.disk_name);
  out["diskSize"] = d.disk_size;
  PutIfNotEmpty(out, "diskLocalPath", d.disk_local_path);
  PutIfNotEmpty(out, "diskRoute", d.disk_route);
  PutIfNotEmpty(out, "VirtualMachineImage", d.virtual_machine_image);
  PutIfNotEmpty(out, "dataVolume", d.data_volume);
  PutIfNotEmpty(out, "dataVolumeProgress", d.data_volume_progress);
  if (!d.disk_conditions.empty()) {
    out["diskConditions"] = ConditionsToJson(d.disk_conditions);
  }
  out["busType"] = d.bus_type;  // no omitempty in the reference: "" is written too
  PutIfNotEmpty(out, "storageClass", d.storage_class);
  WriteDiskProgress(out, d.progress);
  if (!d.verification.empty()) {
    json v = json::array();
    for (const auto& dv : d.verification) {
      json item = {{"verifier", dv.verifier}, {"result", dv.result}};
      PutIfNotEmpty(item, "algorithm", dv.algorithm);
      PutIfNotEmpty(item, "digest", dv.digest);
      PutIfNotEmpty(item, "message", dv.message);
      v.push_back(std::move(item));
    }
    out["verification"] = std::move(v);
  }
  MergeUnknown(out, d.extra);
  return out;
}

void ReadImportStatus(ObjectReader& r, VirtualMachineImportStatus& s) {
  std::string text;
  r.String("importStatus", text);
  if (auto parsed = ParseImportStatus(text)) {
    s.import_status = *parsed;
  } else {
    // A value from a newer (or older) controller: keep it rather than reset the state machine.
    s.import_status = ImportStatus::kUnrecognised;
    s.unrecognised_import_status = std::move(text);
  }
}

}  // namespace

std::string_view ImportStatusName(ImportStatus status) {
  for (const StatusName& s : kStatusNames) {
    if (s.status == status) {
      return s.name;
    }
  }
  return "";
}

std::optional<ImportStatus> ParseImportStatus(std::string_view text) {
  for (const StatusName& s : kStatusNames) {
    if (s.name == text) {
      return s.status;
    }
  }
  return std::nullopt;
}

bool IsFinished(ImportStatus status, bool starts_stopped) {
  return IsTerminal(status) || (starts_stopped && status == ImportStatus::kVirtualMachineCreated);
}

bool IsTerminal(ImportStatus status) {
  return status == ImportStatus::kVirtualMachineRunning ||
         status == ImportStatus::kVirtualMachineImportInvalid ||
         status == ImportStatus::kVmMigrationFailed;
}

std::optional<DiskTarget> ParseDiskTarget(std::string_view text) {
  if (text == kDiskTargetImage) {
    return DiskTarget::kImage;
  }
  if (text == kDiskTargetVolume) {
    return DiskTarget::kVolume;
  }
  return std::nullopt;
}

std::string_view DiskTargetName(DiskTarget target) {
  switch (target) {
    case DiskTarget::kImage: return kDiskTargetImage;
    case DiskTarget::kVolume: return kDiskTargetVolume;
  }
  return kDiskTargetImage;
}

DiskTarget VirtualMachineImportSpec::DiskTargetOrDefault() const {
  return disk_target ? ParseDiskTarget(*disk_target).value_or(DiskTarget::kImage)
                     : DiskTarget::kImage;
}

MigrationMode VirtualMachineImportSpec::MigrationModeOrDefault() const {
  return ParseMigrationMode(migration_mode).value_or(MigrationMode::kCold);
}

int32_t VirtualMachineImportSpec::PrecopyIntervalSeconds() const {
  return precopy_interval_seconds > 0 ? precopy_interval_seconds : kDefaultPrecopyIntervalSeconds;
}

std::string VirtualMachineImportSpec::NicModelOrDefault() const {
  // "" is in the CRD enum (wrangler adds it) and means "not set".
  if (default_network_interface_model && !default_network_interface_model->empty()) {
    return *default_network_interface_model;
  }
  return std::string(kDefaultNicModel);
}

std::string VirtualMachineImportSpec::DiskBusOrDefault() const {
  if (default_disk_bus_type && !default_disk_bus_type->empty()) {
    return *default_disk_bus_type;
  }
  return std::string(kDefaultDiskBus);
}

int32_t VirtualMachineImportSpec::GracefulShutdownTimeoutSeconds() const {
  return graceful_shutdown_timeout_seconds > 0 ? graceful_shutdown_timeout_seconds
                                               : kDefaultGracefulShutdownTimeoutSeconds;
}

core::Result<VirtualMachineImportSpec> SpecFromJson(const json& j) {
  VirtualMachineImportSpec s;
  if (j.is_null()) {
    return s;
  }
  if (auto ok = ExpectObject(j, "spec"); !ok) {
    return core::MakeError(ok.error());
  }
  ObjectReader r(j, "spec");
  auto source = ReadObjectReference(r.Child("sourceCluster", json::value_t::object),
                                    r.PathOf("sourceCluster"));
  if (!source) {
    return core::MakeError(source.error());
  }
  s.source_cluster = std::move(*source);
  r.String("virtualMachineName", s.virtual_machine_name);
  r.String("folder", s.folder);
  if (const json* maps = r.Child("networkMapping", json::value_t::array)) {
    for (size_t i = 0; i < maps->size(); ++i) {
      auto m = ReadNetworkMapping((*maps)[i],
                                  r.PathOf("networkMapping") + "[" + std::to_string(i) + "]");
      if (!m) {
        return core::MakeError(m.error());
      }
      s.network_mapping.push_back(std::move(*m));
    }
  }
  r.OptString("defaultNetworkInterfaceModel", s.default_network_interface_model);
  r.String("storageClass", s.storage_class);
  r.OptString("defaultDiskBusType", s.default_disk_bus_type);
  r.OptBool("forcePowerOff", s.force_power_off);
  r.Int32("gracefulShutdownTimeoutSeconds", s.graceful_shutdown_timeout_seconds);
  r.OptBool("skipPreflightChecks", s.skip_preflight_checks);
  r.OptString("diskTarget", s.disk_target);
  if (auto ok = ReadOverrides(r, s); !ok) {
    return core::MakeError(ok.error());
  }
  if (auto ok = r.Finish(); !ok) {
    return core::MakeError(ok.error());
  }
  s.extra = r.Unknown();
  return s;
}

json SpecToJson(const VirtualMachineImportSpec& s) {
  json out = json::object();
  out["sourceCluster"] = ObjectReferenceToJson(s.source_cluster);
  out["virtualMachineName"] = s.virtual_machine_name;
  PutIfNotEmpty(out, "folder", s.folder);
  if (!s.network_mapping.empty()) {
    json maps = json::array();
    for (const NetworkMapping& m : s.network_mapping) {
      maps.push_back(NetworkMappingToJson(m));
    }
    out["networkMapping"] = std::move(maps);
  }
  if (s.default_network_interface_model) {
    out["defaultNetworkInterfaceModel"] = *s.default_network_interface_model;
  }
  PutIfNotEmpty(out, "storageClass", s.storage_class);
  if (s.default_disk_bus_type) {
    out["defaultDiskBusType"] = *s.default_disk_bus_type;
  }
  if (s.force_power_off) {
    out["forcePowerOff"] = *s.force_power_off;
  }
  if (s.graceful_shutdown_timeout_seconds != 0) {
    out["gracefulShutdownTimeoutSeconds"] = s.graceful_shutdown_timeout_seconds;
  }
  // The reference's *bool without omitempty: an unset value is written as null.
  out["skipPreflightChecks"] =
      s.skip_preflight_checks ? json(*s.skip_preflight_checks) : json(nullptr);
  if (s.disk_target) {
    out["diskTarget"] = *s.disk_target;
  }
  WriteOverrides(out, s);
  MergeUnknown(out, s.extra);
  return out;
}

core::Result<VirtualMachineImportStatus> StatusFromJson(const json& j) {
  VirtualMachineImportStatus s;
  if (j.is_null()) {
    return s;
  }
  if (auto ok = ExpectObject(j, "status"); !ok) {
    return core::MakeError(ok.error());
  }
  ObjectReader r(j, "status");
  ReadImportStatus(r, s);
  if (const json* disks = r.Child("diskImportStatus", json::value_t::array)) {
    for (size_t i = 0; i < disks->size(); ++i) {
      auto d =
          ReadDiskInfo((*disks)[i], r.PathOf("diskImportStatus") + "[" + std::to_string(i) + "]");
      if (!d) {
        return core::MakeError(d.error());
      }
      s.disk_import_status.push_back(std::move(*d));
    }
  }
  if (const json* c = r.Child("importConditions", json::value_t::array)) {
    s.import_conditions = ConditionsFromJson(*c);
  }
  r.String("newVirtualMachine", s.new_virtual_machine);
  r.String("importedVirtualMachineName", s.imported_virtual_machine_name);
  if (const json* warm = r.Child("warm", json::value_t::object)) {
    auto w = WarmStatusFromJson(*warm, r.PathOf("warm"));
    if (!w) {
      return core::MakeError(w.error());
    }
    s.warm = std::move(*w);
  }
  if (auto ok = r.Finish(); !ok) {
    return core::MakeError(ok.error());
  }
  s.extra = r.Unknown();
  return s;
}

json StatusToJson(const VirtualMachineImportStatus& s) {
  json out = json::object();
  out["importStatus"] = s.import_status == ImportStatus::kUnrecognised
                            ? s.unrecognised_import_status
                            : std::string(ImportStatusName(s.import_status));
  if (!s.disk_import_status.empty()) {
    json disks = json::array();
    for (const DiskInfo& d : s.disk_import_status) {
      disks.push_back(DiskInfoToJson(d));
    }
    out["diskImportStatus"] = std::move(disks);
  }
  if (!s.import_conditions.empty()) {
    out["importConditions"] = ConditionsToJson(s.import_conditions);
  }
  PutIfNotEmpty(out, "newVirtualMachine", s.new_virtual_machine);
  PutIfNotEmpty(out, "importedVirtualMachineName", s.imported_virtual_machine_name);
  if (s.warm) {
    out["warm"] = WarmStatusToJson(*s.warm);
  }
  MergeUnknown(out, s.extra);
  // Messages and names may carry text from a source that is not UTF-8: the status is safe to
  // dump() and to show whatever the source sent.
  core::SanitizeJsonStrings(out);
  return out;
}

core::Result<VirtualMachineImport> VirtualMachineImportFromJson(const json& j) {
  if (auto ok = ExpectObject(j, "VirtualMachineImport"); !ok) {
    return core::MakeError(ok.error());
  }
  VirtualMachineImport v;
  ObjectReader r(j, "");
  r.Child("apiVersion", json::value_t::string);
  r.Child("kind", json::value_t::string);
  if (const json* meta = r.Child("metadata", json::value_t::object)) {
    v.metadata = *meta;
    ObjectReader m(*meta, "metadata");
    m.String("name", v.name);
    m.String("namespace", v.namespace_);
    m.String("uid", v.uid);
    m.String("resourceVersion", v.resource_version);
    if (auto ok = m.Finish(); !ok) {
      return core::MakeError(ok.error());
    }
  }
  const json* spec = r.Child("spec", json::value_t::object);
  const json* status = r.Child("status", json::value_t::object);
  if (auto ok = r.Finish(); !ok) {
    return core::MakeError(ok.error());
  }
  auto parsed_spec = SpecFromJson(spec != nullptr ? *spec : json());
  if (!parsed_spec) {
    return core::MakeError(parsed_spec.error());
  }
  auto parsed_status = StatusFromJson(status != nullptr ? *status : json());
  if (!parsed_status) {
    return core::MakeError(parsed_status.error());
  }
  v.spec = std::move(*parsed_spec);
  v.status = std::move(*parsed_status);
  v.extra = r.Unknown();
  return v;
}

json VirtualMachineImportToJson(const VirtualMachineImport& v) {
  json meta = v.metadata.is_object() ? v.metadata : json::object();
  PutIfNotEmpty(meta, "name", v.name);
  PutIfNotEmpty(meta, "namespace", v.namespace_);
  PutIfNotEmpty(meta, "uid", v.uid);
  PutIfNotEmpty(meta, "resourceVersion", v.resource_version);
  json out = {{"apiVersion", std::string(kMigrationApiVersion)},
              {"kind", std::string(kVirtualMachineImportKind)},
              {"metadata", std::move(meta)},
              {"spec", SpecToJson(v.spec)},
              {"status", StatusToJson(v.status)}};
  MergeUnknown(out, v.extra);
  return out;
}

}  // namespace vmimport::api
