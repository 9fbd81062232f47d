#include "controller/routing.h"

#include "core/json.h"
#include "kube/informer.h"

namespace vmimport::controller {

using core::JsonArray;
using core::JsonObject;
using core::JsonString;
using kube::Json;

std::vector<std::string> ImportsOwningImage(const Json& image) {
  std::vector<std::string> keys;
  const Json& md = JsonObject(image, "metadata");
  for (const Json& ref : JsonArray(md, "ownerReferences")) {
    if (JsonString(ref, "kind") == "VirtualMachineImport" && !JsonString(ref, "name").empty()) {
      keys.push_back(JsonString(md, "namespace") + "/" + JsonString(ref, "name"));
    }
  }
  return keys;
}

bool SourceReadinessChanged(const Json& old_source, const Json& source) {
  return JsonString(JsonObject(old_source, "status"), "status") !=
         JsonString(JsonObject(source, "status"), "status");
}

std::vector<std::string> ImportsNamingSource(const std::vector<Json>& imports, const Json& source) {
  std::vector<std::string> keys;
  const Json& md = JsonObject(source, "metadata");
  for (const Json& imp : imports) {
    const Json& ref = JsonObject(JsonObject(imp, "spec"), "sourceCluster");
    std::string ns = JsonString(ref, "namespace");
    if (ns.empty()) {
      ns = JsonString(JsonObject(imp, "metadata"), "namespace");
    }
    if (JsonString(ref, "name") == JsonString(md, "name") && ns == JsonString(md, "namespace")) {
      keys.push_back(kube::ObjectKeyOf(imp));
    }
  }
  return keys;
}

bool GenerationChanged(const Json& old_object, const Json& object) {
  return core::JsonInt(JsonObject(old_object, "metadata"), "generation") !=
         core::JsonInt(JsonObject(object, "metadata"), "generation");
}

}  // namespace vmimport::controller
