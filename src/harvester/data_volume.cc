#include "harvester/data_volume.h"

#include <algorithm>

#include "harvester/image.h"

namespace vmimport::harvester {

using nlohmann::json;

namespace {

json OwnerReference(const api::VirtualMachineImport& vm_import) {
  return json::array({{{"apiVersion", std::string(api::kMigrationApiVersion)},
                       {"kind", std::string(api::kVirtualMachineImportKind)},
                       {"name", vm_import.name},
                       {"uid", vm_import.uid}}});
}

std::string Cut(std::string_view s, size_t max) {
  std::string out(s.substr(0, std::min(s.size(), max)));
  while (!out.empty() && (out.back() == '-' || out.back() == '.')) {
    out.pop_back();
  }
  return out;
}

std::string ShortUid(std::string_view uid) { return std::string(uid.substr(0, 8)); }

const json& ObjectAt(const json& j, const char* key) {
  static const json kEmpty = json::object();
  return j.is_object() && j.contains(key) && j[key].is_object() ? j[key] : kEmpty;
}

std::string StringAt(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

}  // namespace

uint64_t VolumeSizeFor(uint64_t size) {
  return (size + kVolumeSizeAlignment - 1) / kVolumeSizeAlignment * kVolumeSizeAlignment;
}

std::string DataVolumeName(std::string_view vm_name, size_t index, std::string_view uid) {
  const std::string tail = "-disk-" + std::to_string(index) + "-" + ShortUid(uid);
  return Cut(vm_name, 63 - tail.size()) + tail;
}

std::string S3SecretName(std::string_view import_name, std::string_view uid) {
  const std::string tail = "-s3-" + ShortUid(uid);
  return Cut(import_name, 63 - tail.size()) + tail;
}

core::Result<json> BuildDataVolume(const api::VirtualMachineImport& vm_import,
                                   const DataVolumeRequest& request) {
  if (vm_import.name.empty() || vm_import.namespace_.empty() || vm_import.uid.empty() ||
      request.name.empty() || request.url.empty() || request.secret_name.empty() ||
      request.virtual_size == 0) {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           "datavolume: the import's name, namespace or uid, or the volume's "
                           "name, URL, Secret or size is missing");
  }
  json storage = {
      {"resources",
       {{"requests", {{"storage", std::to_string(VolumeSizeFor(request.virtual_size))}}}}}};
  if (!request.storage_class.empty()) {
    storage["storageClassName"] = request.storage_class;
  }
  if (!request.volume_mode.empty()) {
    storage["volumeMode"] = request.volume_mode;
  }
  if (!request.access_mode.empty()) {
    storage["accessModes"] = json::array({request.access_mode});
  }
  return json{
      {"apiVersion", std::string(kCdiApiVersion)},
      {"kind", std::string(kDataVolumeKind)},
      {"metadata",
       {{"name", request.name},
        {"namespace", vm_import.namespace_},
        {"labels",
         {{std::string(kLabelImported), "true"}, {std::string(kLabelImportUid), vm_import.uid}}},
        {"annotations", {{std::string(kAnnotationBindImmediate), "true"}}},
        {"ownerReferences", OwnerReference(vm_import)}}},
      {"spec",
       {{"source", {{"s3", {{"url", request.url}, {"secretRef", request.secret_name}}}}},
        {"storage", std::move(storage)}}},
  };
}

json BuildS3PlaceholderSecret(const api::VirtualMachineImport& vm_import, std::string_view name) {
  return {
      {"apiVersion", "v1"},
      {"kind", "Secret"},
      {"metadata",
       {{"name", std::string(name)},
        {"namespace", vm_import.namespace_},
        {"labels",
         {{std::string(kLabelImported), "true"}, {std::string(kLabelImportUid), vm_import.uid}}},
        {"ownerReferences", OwnerReference(vm_import)}}},
      {"type", "Opaque"},
      // Placeholders: CDI's S3 client refuses empty keys; the image server does not check the
      // signature (the unguessable token in the URL is the capability).
      {"stringData", {{"accessKeyId", "vm-import"}, {"secretKey", "unused"}}},
  };
}

DataVolumeState InterpretDataVolumeStatus(const json& data_volume) {
  DataVolumeState s;
  const json& status = ObjectAt(data_volume, "status");
  s.cdi_phase = StringAt(status, "phase");
  s.progress = StringAt(status, "progress");
  if (status.contains("restartCount") && status["restartCount"].is_number_integer()) {
    s.restarts = status["restartCount"].get<int32_t>();
  }
  if (status.contains("conditions") && status["conditions"].is_array()) {
    for (const json& c : status["conditions"]) {
      if (StringAt(c, "type") == "Running") {
        const std::string reason = StringAt(c, "reason");
        const std::string message = StringAt(c, "message");
        s.message = reason.empty() ? message : message.empty() ? reason : reason + ": " + message;
      }
    }
  }
  if (s.cdi_phase == "Succeeded") {
    s.phase = DataVolumePhase::kSucceeded;
  } else if (s.cdi_phase == "Failed") {
    s.phase = DataVolumePhase::kFailed;
  } else if (s.cdi_phase == "ImportInProgress" || s.cdi_phase == "ImportScheduled") {
    s.phase = DataVolumePhase::kRunning;
  }
  return s;
}

}  // namespace vmimport::harvester
