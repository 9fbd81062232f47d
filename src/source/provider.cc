#include "source/provider.h"

namespace vmimport::source {

const char* SourceKindName(SourceKind kind) {
  switch (kind) {
    case SourceKind::kVmware: return "vmware";
    case SourceKind::kOpenstack: return "openstack";
    case SourceKind::kOva: return "ova";
  }
  return "unknown";
}

}  // namespace vmimport::source
