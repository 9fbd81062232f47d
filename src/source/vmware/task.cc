#include "source/vmware/task.h"

#include <condition_variable>
#include <mutex>

#include "source/vmware/properties.h"
#include "source/vmware/session.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;
using core::MakeError;

}  // namespace

TaskInfo ParseTaskInfo(pugi::xml_node info) {
  // <val xsi:type="TaskInfo">
  //   <key>task-101</key><task type="Task">task-101</task>
  //   <descriptionId>VirtualMachine.powerOff</descriptionId>
  //   <entity type="VirtualMachine">vm-42</entity><entityName>web</entityName>
  //   <state>error</state>            queued | running | success | error
  //   <progress>40</progress>         while running, optional
  //   <error>                         a LocalizedMethodFault, when state is error
  //     <fault xsi:type="InvalidPowerState"><existingState>poweredOff</existingState></fault>
  //     <localizedMessage>The attempted operation cannot be performed ...</localizedMessage>
  //   </error>
  // </val>
  TaskInfo t;
  const std::string_view state = info.child_value("state");
  t.state = state == "queued"    ? TaskState::kQueued
            : state == "running" ? TaskState::kRunning
            : state == "success" ? TaskState::kSuccess
            : state == "error"   ? TaskState::kError
                                 : TaskState::kUnknown;
  if (const pugi::xml_node p = info.child("progress"); p) {
    t.progress = p.text().as_int(-1);
  }
  t.description_id = info.child_value("descriptionId");
  if (const pugi::xml_node e = info.child("error"); e) {
    t.error = ParseMethodFault(e.child("fault"), e.child_value("localizedMessage"));
  } else if (t.state == TaskState::kError) {
    t.error = SoapFault{.type = "SoapFault", .message = "the task failed without a fault"};
  }
  return t;
}

bool SleepFor(std::stop_token stop, std::chrono::milliseconds duration) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  return !cv.wait_for(lock, stop, duration, [] { return false; }) && !stop.stop_requested();
}

core::Status WaitForTask(std::stop_token stop, Session& session, const MoRef& task,
                         std::string_view what, const TaskWaitOptions& options) {
  const core::SystemClock system_clock;
  const core::Clock& clock = options.clock != nullptr ? *options.clock : system_clock;
  const auto deadline = clock.Now() + options.timeout;
  const std::string context = "vsphere " + std::string(what);
  while (true) {
    auto props = RetrieveProperties(stop, session, task, {"info"});
    if (!props) {
      return MakeError(props.error().Wrap(context));
    }
    const TaskInfo info = ParseTaskInfo((*props)["info"]);
    switch (info.state) {
      case TaskState::kSuccess: return {};
      case TaskState::kError: return MakeError(FaultError(context, *info.error));
      case TaskState::kQueued:
      case TaskState::kRunning: break;
      case TaskState::kUnknown:
        return MakeError(ErrorCode::kInternal,
                         context + ": task " + task.value + " has no known state");
    }
    if (clock.Now() >= deadline) {
      return MakeError(ErrorCode::kDeadlineExceeded,
                       context + ": task " + task.value + " did not end within " +
                           std::to_string(options.timeout.count()) + " ms" +
                           (info.progress >= 0 ? " (at " + std::to_string(info.progress) + "%)"
                                               : std::string()));
    }
    if (!SleepFor(stop, options.poll_interval)) {
      return MakeError(ErrorCode::kCancelled, context + ": cancelled");
    }
  }
}

}  // namespace vmimport::source::vmware
