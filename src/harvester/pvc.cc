#include "harvester/pvc.h"

#include <algorithm>
#include <cstdint>
#include <string>

namespace vmimport::harvester {

using nlohmann::json;

namespace {

std::string StringAt(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_string()) {
    return {};
  }
  return object[key].get<std::string>();
}

int64_t IntAt(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_number_integer()) {
    return 0;
  }
  return object[key].get<int64_t>();
}

const json& ObjectAt(const json& object, const char* key) {
  static const json kEmpty = json::object();
  if (!object.is_object() || !object.contains(key) || !object[key].is_object()) {
    return kEmpty;
  }
  return object[key];
}

}  // namespace

core::Result<json> BuildPvc(const json& image) {
  const json& meta = ObjectAt(image, "metadata");
  const json& status = ObjectAt(image, "status");
  const std::string name = StringAt(meta, "name");
  const std::string ns = StringAt(meta, "namespace");
  if (name.empty() || ns.empty()) {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           "pvc: the virtualmachineimage has no name or namespace");
  }
  const std::string storage_class = StringAt(status, "storageClassName");
  const int64_t size = std::max(IntAt(status, "virtualSize"), IntAt(status, "size"));
  if (storage_class.empty() || size <= 0) {
    return core::MakeError(core::ErrorCode::kUnavailable,
                           "pvc: virtualmachineimage " + ns + "/" + name +
                               " has no storage class or size in its status yet");
  }
  return json{
      {"apiVersion", "v1"},
      {"kind", "PersistentVolumeClaim"},
      {"metadata",
       {{"name", name},
        {"namespace", ns},
        {"annotations", {{std::string(kAnnotationImageId), ns + "/" + name}}}}},
      {"spec",
       {{"accessModes", json::array({"ReadWriteMany"})},
        {"volumeMode", "Block"},
        {"storageClassName", storage_class},
        // A plain number of bytes is a valid Quantity, as the reference writes it.
        {"resources", {{"requests", {{"storage", std::to_string(size)}}}}}}},
  };
}

}  // namespace vmimport::harvester
