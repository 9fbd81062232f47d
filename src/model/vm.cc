#include "model/vm.h"

#include <algorithm>

namespace vmimport::model {

const char* FirmwareName(Firmware f) {
  switch (f) {
    case Firmware::kBios: return "bios";
    case Firmware::kEfi: return "efi";
  }
  return "bios";
}

const char* PowerStateName(PowerState p) {
  switch (p) {
    case PowerState::kOn: return "poweredOn";
    case PowerState::kOff: return "poweredOff";
    case PowerState::kSuspended: return "suspended";
    case PowerState::kUnknown: return "unknown";
  }
  return "unknown";
}

std::vector<std::string> VmDescription::Datastores() const {
  std::vector<std::string> out;
  for (const DiskDescription& d : disks) {
    if (!d.storage.empty() && std::find(out.begin(), out.end(), d.storage) == out.end()) {
      out.push_back(d.storage);
    }
  }
  return out;
}

}  // namespace vmimport::model
