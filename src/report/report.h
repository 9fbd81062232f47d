#pragma once

// The facts of a migration report (issue 23, `kubectl vmimport report`): what happened to each
// import, as one JSON document the HTML page (report/html.h) is drawn from and that scripts can
// read. Pure: it reads the objects the caller fetched (imports, plans, their Events, the created
// VirtualMachines) and never talks to the cluster. Thread-safe (no shared state).
//
// Where each fact comes from:
//  - phase timeline: status.phaseTransitions (one {phase, time} per change of importStatus; an
//    import made by a controller older than that field has no timeline, and says so);
//  - bytes and throughput: status.diskImportStatus[] (bytesDone, diskSize), over the time from
//    the first disk publication (disksExported) to diskImagesReady;
//  - downtime: the VMPoweredOff condition (when the import powered the source off) to the
//    virtualMachineRunning transition; unknown when the source was off already;
//  - digests and who verified them: status.diskImportStatus[].sha256/sha512/verification[];
//  - hardware: status.sourceVirtualMachine (the source, as preflight read it) against the created
//    KubeVirt VirtualMachine (CPU, memory, firmware, disks with bus and class, NICs with MAC and
//    network);
//  - warnings: Warning Events, failure conditions, verifications that did not pass, a plan's
//    "attention" list.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace vmimport::report {

using Json = nlohmann::json;

//! One import with what the report reads next to it.
struct ImportInput {         // NOLINT(bugprone-exception-escape): nlohmann::json members
  Json vm_import;            //!< the VirtualMachineImport as the API returned it
  Json virtual_machine;      //!< the created KubeVirt VirtualMachine; null if none
  std::vector<Json> events;  //!< core/v1 Events whose involvedObject is the import
};

struct PlanInput {           // NOLINT(bugprone-exception-escape): nlohmann::json members
  Json plan;                 //!< the ImportPlan
  std::vector<Json> events;  //!< its Events
  std::vector<std::string> import_names;  //!< its imports, in the order to show them
};

struct Input {
  std::vector<PlanInput> plans;
  std::vector<ImportInput> imports;  //!< every import shown (a plan's too), each once
  std::string generated_at;          //!< RFC 3339; also the end of phases still running
};

//! The report document:
//!   {generatedAt, plans: [{name, namespace, phase, reason, message, summary, startedAt,
//!    endedAt, durationSeconds, bytesPerSecond, imports: [names], attention, events}],
//!    imports: [{name, namespace, plan, phase, sourceVm, targetVm, createdAt, timeline:
//!    {start, end, seconds, ongoing, phases: [{phase, start, end, seconds, offsetSeconds}]},
//!    bytesDone, bytesTotal, transferSeconds, throughputBytesPerSecond, downtime, disks,
//!    hardware: {source, target}, warnings, events}]}
//! Missing or wrongly typed fields of the inputs read as absent; never throws.
Json BuildReport(const Input& input);

//! The timeline of one import (the `timeline` member above), from its status.phaseTransitions,
//! metadata.creationTimestamp and `now` (RFC 3339) for a phase still running.
Json BuildTimeline(const Json& vm_import, const std::string& now);

//! Seconds between two RFC 3339 times (fractions honoured); nullopt if either does not parse.
std::optional<double> SecondsBetween(const std::string& from, const std::string& to);

}  // namespace vmimport::report
