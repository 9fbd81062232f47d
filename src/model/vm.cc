#include "model/vm.h"

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

}  // namespace vmimport::model
