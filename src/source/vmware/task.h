#pragma once

// vSphere Tasks: methods named *_Task return a Task at once and do their work afterwards. A task
// is followed to its end by reading info.state until it is success or error.

#include <chrono>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "core/result.h"
#include "source/vmware/soap.h"

namespace vmimport::source::vmware {

class Session;

enum class TaskState { kQueued, kRunning, kSuccess, kError, kUnknown };

struct TaskInfo {
  TaskState state = TaskState::kUnknown;
  int progress = -1;               //!< percent; -1 when not reported
  std::string description_id;      //!< "VirtualMachine.powerOff"
  std::optional<SoapFault> error;  //!< when state is kError
};

//! Parses a TaskInfo (<val xsi:type="TaskInfo">, the "info" property of a Task).
TaskInfo ParseTaskInfo(pugi::xml_node info);

struct TaskWaitOptions {
  std::chrono::milliseconds poll_interval{500};
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};
  const core::Clock* clock = nullptr;  //!< for the deadline; nullptr: the system clock
};

//! Polls `task` until it ends. `what` names the operation in errors ("PowerOffVM_Task on
//! /DC0/vm/web"). Errors: the task's fault as FaultError (e.g. kConflict for InvalidPowerState,
//! with the task's message), kDeadlineExceeded after options.timeout, kCancelled on stop, and
//! those of RetrieveProperties.
core::Status WaitForTask(std::stop_token stop, Session& session, const MoRef& task,
                         std::string_view what, const TaskWaitOptions& options = {});

//! Sleeps `duration`, waking early on stop; false when stopped.
bool SleepFor(std::stop_token stop, std::chrono::milliseconds duration);

}  // namespace vmimport::source::vmware
