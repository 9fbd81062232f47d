#include "controller/routing.h"

#include "kube/informer.h"

namespace vmimport::controller {

using kube::Json;

namespace {

const Json& Member(const Json& object, const char* key) {
  static const Json kNull;
  if (!object.is_object()) {
    return kNull;
  }
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string Str(const Json& object, const char* key) {
  const Json& v = Member(object, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

}  // namespace

std::vector<std::string> ImportsOwningImage(const Json& image) {
  std::vector<std::string> keys;
  const Json& md = Member(image, "metadata");
  const Json& refs = Member(md, "ownerReferences");
  if (!refs.is_array()) {
    return keys;
  }
  for (const Json& ref : refs) {
    if (Str(ref, "kind") == "VirtualMachineImport" && !Str(ref, "name").empty()) {
      keys.push_back(Str(md, "namespace") + "/" + Str(ref, "name"));
    }
  }
  return keys;
}

bool SourceReadinessChanged(const Json& old_source, const Json& source) {
  return Str(Member(old_source, "status"), "status") != Str(Member(source, "status"), "status");
}

std::vector<std::string> ImportsNamingSource(const std::vector<Json>& imports, const Json& source) {
  std::vector<std::string> keys;
  const Json& md = Member(source, "metadata");
  for (const Json& imp : imports) {
    const Json& ref = Member(Member(imp, "spec"), "sourceCluster");
    std::string ns = Str(ref, "namespace");
    if (ns.empty()) {
      ns = Str(Member(imp, "metadata"), "namespace");
    }
    if (Str(ref, "name") == Str(md, "name") && ns == Str(md, "namespace")) {
      keys.push_back(kube::ObjectKeyOf(imp));
    }
  }
  return keys;
}

bool GenerationChanged(const Json& old_object, const Json& object) {
  const Json& a = Member(Member(old_object, "metadata"), "generation");
  const Json& b = Member(Member(object, "metadata"), "generation");
  return a != b;
}

}  // namespace vmimport::controller
