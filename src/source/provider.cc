#include "source/provider.h"

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

std::string SecretName(const SourceConfig& config) {
  return config.secret_key.empty() ? "the secret" : "secret " + config.secret_key;
}

}  // namespace vmimport::source
