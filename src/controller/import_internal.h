#pragma once

// Private to the import reconciler's files (import_reconciler.cc, import_phases.cc,
// import_streams.cc): the per-incarnation state, one reconcile's decisions, and small helpers.

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api/conditions.h"
#include "controller/import_reconciler.h"
#include "warm/precopy.h"

namespace vmimport::controller {

//! A source VM this process holds open for one import: from preflight until the disks are in
//! Harvester (or the import fails or is deleted).
struct ImportReconciler::Running {
  // Shared with the image server's stream factories and open streams: a stream still opening or
  // reading when the import lets go keeps the VM (session, HTTP client) alive until it ends.
  std::shared_ptr<source::SourceVm> vm;
  std::string host;  // the source's host: the key of its stream slots
  // The shared caps the streams read through: the source's, its host's, the plan's (issue 23).
  std::vector<std::shared_ptr<source::SharedBandwidth>> bandwidth;
  model::VmDescription description;
  std::vector<std::string> tokens;  // published disks, by index
  std::vector<std::string> urls;    // their URLs: capabilities, never logged or in status
  bool exported = false;            // the export task succeeded
  // The export task (power off, then start the export) runs on its own thread; its outcome is
  // read by the next reconcile. Guarded by the reconciler's mu_.
  bool task_started = false;
  bool task_done = false;
  std::optional<core::Error> task_error;
  std::jthread task;  // joined before the export is finished or the VM dropped
  // Warm (import_warm.cc): the source's change tracker and the task running one precopy round
  // or the cutover; its outcome is read by the next reconcile. Guarded by the reconciler's mu_.
  std::shared_ptr<warm::ChangeTracker> tracker;
  bool warm_started = false;
  bool warm_done = false;
  std::optional<core::Result<warm::RoundRecord>> warm_result;
  std::optional<std::chrono::system_clock::time_point> source_off_at;  // cutover: guest shut down
};

//! Everything this process knows of one incarnation (uid) of one import.
struct ImportReconciler::Incarnation {
  std::string key;  // namespace/name
  std::string uid;
  std::unique_ptr<Running> running;
  //! The description of a released source, until the VM is created.
  std::optional<model::VmDescription> described;
  std::map<size_t, DiskStreamState> streams;  // by disk index
  std::optional<std::pair<api::ImportStatus, std::chrono::steady_clock::time_point>> phase_since;
  std::string source_host;
  bool admitted = false;   // let past the concurrency limit
  std::string claim;       // the source VM identity this import holds
  std::string written_rv;  // resourceVersion of our last write: an older cache read is stale
  //! Since when each disk waits for Longhorn's checksum of a ready image (bounded wait).
  std::map<size_t, std::chrono::steady_clock::time_point> checksum_wait_since;
};

//! One reconcile of one import: what the phase decided, written once by Commit.
struct ImportReconciler::Pass {
  struct Note {
    std::string type;  // Normal, Warning
    std::string reason;
    std::string message;
  };
  std::string key;
  std::string uid;
  Json object;  // as read: cache, or the API when the cache lagged behind our own write
  api::VirtualMachineImport vm_import;
  Json read_status;  // the status as read: Commit writes only a change
  api::ImportStatus initial = api::ImportStatus::kNew;
  std::vector<Note> notes;  // Events and log lines, after the write
  bool forget = false;      // terminal: drop the incarnation once written
};

namespace import_detail {

inline constexpr const char* kSourceVmStatusKey = "sourceVirtualMachine";
inline constexpr const char* kObservedGenerationKey = "observedGeneration";
//! status.phaseTransitions[]: {"phase": importStatus, "time": RFC 3339 with microseconds}, one
//! entry appended each time importStatus changes (issue 23: the report's timeline). Additive; an
//! import made by an older controller simply has fewer entries.
inline constexpr const char* kPhaseTransitionsKey = "phaseTransitions";
inline constexpr const char* kDisksRemovedCondition = "DisksRemoved";
//! How often a Failed VirtualMachineInstance is looked at again (the user may fix and restart it).
inline constexpr std::chrono::milliseconds kFailedVmiPoll{10000};

//! status.diskTarget: "image" or "volume", fixed when the disks are exported (a later edit of
//! spec.diskTarget does not move disks half-way).
inline constexpr const char* kDiskTargetStatusKey = "diskTarget";

//! Whether the import goes warm (status.migrationMode: warm, set by a capable preflight).
bool IsWarm(const api::VirtualMachineImport& vm_import);

//! Where the import's disks go: status.diskTarget once set, else spec.diskTarget.
api::DiskTarget TargetOf(const api::VirtualMachineImport& vm_import);
//! The storage class of disk `index` (empty: the cluster's default): status.diskImportStatus[i]
//! .storageClass as ChooseDevices decided it, else spec.storageClass.
std::string DiskStorageClass(const api::VirtualMachineImport& vm_import, size_t index);
//! Harvester's spec.checksum for `disk`: the source's own SHA-512 of exactly the bytes the image
//! server serves (a raw Glance image's os_hash_value), when Longhorn accepts it as one; nullopt
//! otherwise. Longhorn then checks the file it stores against it.
std::optional<std::string> SpecChecksumFor(const model::DiskDescription& disk);
//! Whether every disk has a "verified" entry, and "disk-0: vsphere-manifest sha256; disk-1: ...".
std::pair<bool, std::string> VerificationSummary(const api::VirtualMachineImportStatus& status);

//! Appends {phase: status.importStatus, time: now} to status.phaseTransitions unless its last
//! entry is that phase already (safe to repeat for one transition).
void NotePhaseTransition(api::VirtualMachineImportStatus& status,
                         std::chrono::system_clock::time_point now);

//! virtualMachineImportInvalid, diskImageFailed, VMMigrationFailed.
inline bool Failed(api::ImportStatus s) {
  return s == api::ImportStatus::kVirtualMachineImportInvalid ||
         s == api::ImportStatus::kDiskImagesFailed || s == api::ImportStatus::kVmMigrationFailed;
}

inline ReconcileResult Requeue(std::chrono::milliseconds after) { return ReconcileResult{after}; }
inline ReconcileResult Done() { return ReconcileResult{}; }

inline api::Condition MakeCondition(std::string_view type, const std::string& status,
                                    const std::string& reason, const std::string& message) {
  return api::Condition{std::string(type), status, reason, message, "", ""};
}

//! The image server's name of disk `index` of incarnation `uid`: "<uid>/disk-<index>".
std::string StreamName(const std::string& uid, size_t index);
//! uid and disk index of a stream name; nullopt for a name of another form.
std::optional<std::pair<std::string, size_t>> ParseStreamName(const std::string& name);
//! `message` with every image-server token ("/disks/<hex>") replaced.
std::string RedactDiskTokens(std::string message);
}  // namespace import_detail
}  // namespace vmimport::controller
