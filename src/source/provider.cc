#include "source/provider.h"

#include "core/strings.h"

namespace vmimport::source {

const char* SourceKindName(SourceKind kind) {
  switch (kind) {
    case SourceKind::kVmware: return "vmware";
    case SourceKind::kOpenstack: return "openstack";
    case SourceKind::kOva: return "ova";
    case SourceKind::kLibvirt: return "libvirt";
  }
  return "unknown";
}

std::optional<SourceKind> SourceKindOfObjectKind(std::string_view kind) {
  const std::string k = core::ToLower(std::string(kind));
  if (k == "vmwaresource") {
    return SourceKind::kVmware;
  }
  if (k == "openstacksource") {
    return SourceKind::kOpenstack;
  }
  if (k == "ovasource") {
    return SourceKind::kOva;
  }
  if (k == "libvirtsource") {
    return SourceKind::kLibvirt;
  }
  return std::nullopt;
}

std::string SecretName(const SourceConfig& config) {
  return config.secret_key.empty() ? "the secret" : "secret " + config.secret_key;
}

}  // namespace vmimport::source
