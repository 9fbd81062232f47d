#include "source/vmware/power.h"

#include "source/vmware/properties.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;
using core::MakeError;

struct PowerState {
  std::string power;  // poweredOn | poweredOff | suspended
  bool tools_running = false;
};

core::Result<PowerState> ReadPowerState(std::stop_token stop, Session& session, const VmRef& vm) {
  auto props =
      RetrieveProperties(stop, session, vm.ref, {"runtime.powerState", "guest.toolsRunningStatus"});
  if (!props) {
    return MakeError(props.error());
  }
  PowerState s;
  s.power = props->Text("runtime.powerState");
  s.tools_running = props->Text("guest.toolsRunningStatus") == "guestToolsRunning";
  if (s.power.empty()) {
    return MakeError(ErrorCode::kInternal,
                     "vsphere: " + vm.ref.value + " reports no runtime.powerState");
  }
  return s;
}

std::string Name(const VmRef& vm) {
  if (!vm.inventory_path.empty()) {
    return vm.inventory_path;
  }
  if (!vm.name.empty()) {
    return vm.name;
  }
  return vm.ref.value;
}

void Report(const PowerActionCallback& on_action, std::string_view reason,
            const std::string& message) {
  if (on_action) {
    on_action(reason, message);
  }
}

}  // namespace

core::Result<PowerOffOutcome> PowerOff(std::stop_token stop, Session& session, const VmRef& vm,
                                       const PowerOffOptions& options,
                                       const PowerActionCallback& on_action) {
  const std::string name = Name(vm);
  const std::string context = "vsphere: power off " + name;
  auto state = ReadPowerState(stop, session, vm);
  if (!state) {
    return MakeError(state.error().Wrap(context));
  }
  if (state->power == "poweredOff") {
    Report(on_action, kReasonAlreadyPoweredOff, "VM " + name + " is already powered off");
    return PowerOffOutcome::kAlreadyOff;
  }

  if (!options.force && state->power == "poweredOn" && state->tools_running) {
    auto shutdown = session.soap().Call(stop, "ShutdownGuest", vm.ref.Xml("_this"));
    if (shutdown) {
      Report(on_action, kReasonShutdownGuest,
             "asked the guest of VM " + name + " to shut down (VMware Tools running)");
      const core::SystemClock system_clock;
      const core::Clock& clock = options.task.clock != nullptr ? *options.task.clock : system_clock;
      const auto deadline = clock.Now() + options.graceful_timeout;
      while (true) {
        state = ReadPowerState(stop, session, vm);
        if (!state) {
          return MakeError(state.error().Wrap(context));
        }
        if (state->power == "poweredOff") {
          return PowerOffOutcome::kGuestShutdown;
        }
        if (clock.Now() >= deadline) {
          Report(on_action, kReasonShutdownGuestTimedOut,
                 "the guest of VM " + name + " did not shut down within " +
                     std::to_string(options.graceful_timeout.count() / 1000) +
                     " s; powering it off");
          break;
        }
        if (!SleepFor(stop, options.poll_interval)) {
          return MakeError(ErrorCode::kCancelled, context + ": cancelled");
        }
      }
    } else if (shutdown.error().code == ErrorCode::kCancelled) {
      return MakeError(shutdown.error());
    } else {
      // ToolsUnavailable, or the VM went off meanwhile (InvalidPowerState): look again below.
      Report(on_action, kReasonShutdownGuestFailed,
             "the guest of VM " + name + " could not be asked to shut down (" +
                 shutdown.error().message + "); powering it off");
      state = ReadPowerState(stop, session, vm);
      if (!state) {
        return MakeError(state.error().Wrap(context));
      }
      if (state->power == "poweredOff") {
        return PowerOffOutcome::kGuestShutdown;
      }
    }
  }

  auto task = session.soap().Call(stop, "PowerOffVM_Task", vm.ref.Xml("_this"));
  if (!task) {
    return MakeError(task.error().Wrap(context));
  }
  const pugi::xml_node rv = task->ReturnVal();
  const MoRef task_ref{rv.attribute("type").as_string(), rv.child_value()};
  Report(
      on_action, kReasonPowerOff,
      "powering off VM " + name + (options.force ? " (forced)" : "") + ": task " + task_ref.value);
  if (auto done = WaitForTask(stop, session, task_ref, "PowerOffVM_Task on " + name, options.task);
      !done) {
    // Off by other means while the task ran (InvalidPowerState): the goal is reached.
    if (done.error().code == ErrorCode::kConflict) {
      if (auto now = ReadPowerState(stop, session, vm); now && now->power == "poweredOff") {
        return PowerOffOutcome::kPoweredOff;
      }
    }
    return MakeError(done.error());
  }
  return PowerOffOutcome::kPoweredOff;
}

}  // namespace vmimport::source::vmware
