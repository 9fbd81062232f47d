#pragma once

// Powering a source VM off before its disks are exported (ExportVm needs it off).
//
// The order follows what an administrator would do: a VM already off is left alone; with VMware
// Tools running the guest is asked to shut down (ShutdownGuest) and given graceful_timeout to
// do so; only then, or at once with `force`, is it powered off hard (PowerOffVM_Task).

#include <chrono>
#include <functional>
#include <stop_token>
#include <string_view>

#include "core/result.h"
#include "source/vmware/inventory.h"
#include "source/vmware/session.h"
#include "source/vmware/task.h"

namespace vmimport::source::vmware {

//! Reasons passed to PowerActionCallback, one per action taken (Event reasons later).
inline constexpr std::string_view kReasonAlreadyPoweredOff = "AlreadyPoweredOff";
inline constexpr std::string_view kReasonShutdownGuest = "ShutdownGuest";
inline constexpr std::string_view kReasonShutdownGuestFailed = "ShutdownGuestFailed";
inline constexpr std::string_view kReasonShutdownGuestTimedOut = "ShutdownGuestTimedOut";
inline constexpr std::string_view kReasonPowerOff = "PowerOff";

//! Called for every power action: `reason` is one of the kReason* constants, `message` a
//! sentence for a human naming the VM. Called on the PowerOff caller's thread.
using PowerActionCallback = std::function<void(std::string_view reason, std::string_view message)>;

struct PowerOffOptions {
  //! Skip the guest shutdown and power off at once.
  bool force = false;
  //! How long the guest may take to shut down before the hard power-off.
  std::chrono::milliseconds graceful_timeout{std::chrono::seconds(60)};
  //! How often runtime.powerState is read while the guest shuts down.
  std::chrono::milliseconds poll_interval{std::chrono::seconds(1)};
  //! Following PowerOffVM_Task; task.clock is used for the graceful deadline too.
  TaskWaitOptions task;
};

enum class PowerOffOutcome {
  kAlreadyOff,     //!< nothing was done
  kGuestShutdown,  //!< the guest shut itself down
  kPoweredOff,     //!< PowerOffVM_Task succeeded
};

//! Powers `vm` off as described above. A suspended VM is powered off hard (a guest that is not
//! running cannot shut down). Errors: those of RetrieveProperties and WaitForTask (e.g.
//! TaskInProgress → kConflict), kCancelled on stop.
core::Result<PowerOffOutcome> PowerOff(std::stop_token stop, Session& session, const VmRef& vm,
                                       const PowerOffOptions& options,
                                       const PowerActionCallback& on_action);

}  // namespace vmimport::source::vmware
