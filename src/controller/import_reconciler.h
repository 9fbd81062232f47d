#pragma once

// VirtualMachineImport: from a spec to a running KubeVirt VM, one level-triggered step per
// reconcile, with the reference's states (status.importStatus) and conditions:
//
//   ""  ─ validate spec and target name ─► virtualMachineImportValid | virtualMachineImportInvalid
//   virtualMachineImportValid ─ source clusterReady? (else requeue) ─ preflight: exactly one
//       source VM, not held by another import, disks > 0, every named storage class and
//       destination NAD exists, every diskOverrides/nicOverrides entry names a disk/NIC the VM
//       has, no VM of the target name ─► sourceReady | Invalid
//   sourceReady ─ power off and start the export (off the workers), publish every disk on the
//       image server ─► disksExported
//   disksExported ─ one VirtualMachineImage per disk (url = our image server) ─► diskImageSubmitted
//   diskImageSubmitted ─ images Active (progress, rate, ETA and checksums in status meanwhile)
//       ─► diskImagesReady | diskImageFailed
//   diskImagesReady ─ PVCs (backing images), the KubeVirt VM ─► virtualMachineCreated
//   (volume mode, spec.diskTarget: volume: one CDI DataVolume per disk instead of an image, see
//   import_volumes.cc)
//   virtualMachineCreated ─ its VMI runs ─► virtualMachineRunning
//   With spec.runStrategy stopped the VM is created Halted and virtualMachineCreated is the
//   import's successful end (api::IsFinished): the images lose the import's ownerReference as the
//   VM is created, and nothing waits for a VMI.
//
// The outcome contract of one reconcile (docs/adr/0004-import-outcome-contract.md):
//  - A phase only decides: it changes the status in memory and notes Events; Reconcile writes
//    the status once, conditionally on the resourceVersion it was computed from (a conflict
//    re-reads and decides again), and records the Events only once the write succeeded.
//  - Every failure is recorded or retried: a terminal error (the API server's 400/422 on an
//    object we make, corrupt or unsupported data, an invalid source) fails the import with a
//    reason, a Warning Event and a log line, ends the export and frees its slot; any other
//    error is retried with backoff and logged. A failed import removes the images and PVCs it
//    made (annotation migration.harvesterhci.io/keep-failed-disks: "true" keeps them).
//  - No worker waits on a transfer or a source: powering off and starting the export (an
//    OpenStack upload to Glance takes hours) run on a task of the import's own; the disks
//    stream on the image server's threads when Harvester downloads them.
//  - In-memory state belongs to one incarnation of one import (its uid) and is dropped when the
//    import finishes, fails or is deleted; a recreated import of the same name starts clean.
//  - What the VM needs from the source (its description) is kept in status.sourceVirtualMachine,
//    so that a restarted controller creates the VM even when the source is gone.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "api/virtual_machine_import.h"
#include "controller/runner.h"
#include "controller/work_queue.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "imageserver/image_server.h"
#include "kube/api.h"
#include "source/importer.h"
#include "warm/change_tracker.h"
#include "warm/precopy.h"

namespace vmimport::controller {

inline constexpr const char* kImportFinalizer = "migration.harvesterhci.io/vm-import-cleanup";
//! On an import: "true" keeps the images and PVCs of a failed import for an operator to inspect.
inline constexpr const char* kKeepFailedDisksAnnotation =
    "migration.harvesterhci.io/keep-failed-disks";
//! On the VirtualMachine: the uid of the import that made it.
inline constexpr const char* kImportUidAnnotation = "migration.harvesterhci.io/import-uid";

const kube::Resource& ImportResource();
const kube::Resource& ImageResource();
const kube::Resource& DataVolumeResource();

struct ImportReconcilerOptions {
  std::chrono::seconds source_not_ready_requeue{10};
  std::chrono::seconds poll{5};  //!< re-check of a VM waiting to run, a running export task
  //! Retry of an import whose step RBAC refused (403), after a Warning Event "Forbidden": the
  //! operator grants the permission and the import goes on.
  std::chrono::seconds forbidden_retry{30};
  //! Imports that may hold a source VM at once (preflight until the disks are in Harvester);
  //! more wait in virtualMachineImportValid. 0: no limit.
  size_t max_concurrent_imports = 0;
  //! The per-source shared caps (spec.bandwidthBytesPerSecond, issue 23); null: caps are ignored.
  //! Owned by main(): it outlives the leader terms, and /metrics reads it.
  source::BandwidthRegistry* bandwidth = nullptr;
  //! Disk streams open at once per source host; a further GET waits for a slot. 0: no limit.
  size_t max_streams_per_source = 0;
  //! Cap on each stream's source bytes per second. 0: none.
  double stream_bytes_per_second = 0;
  //! Warm migration (issue 22): the change tracker of a source, by kind. A kind without one has
  //! its warm imports refused in preflight (or imported cold with spec.warmFallbackToCold).
  std::map<source::SourceKind,
           std::function<std::unique_ptr<warm::ChangeTracker>(const source::SourceConfig&)>>
      change_trackers;
  //! The writer Pod's image (the controller's own) and the port it listens on, on the host
  //! network at 127.0.0.1 (0: 20000 + a hash of the import's uid, below 30000).
  std::string writer_image = "vm-import-controller:latest";
  uint16_t writer_port = 0;
  //! The cutover's cost besides the last round (shutdown, VM start), for the estimate.
  double warm_fixed_cost_seconds = 20;
};

//! Per-disk stream figures from the image server, for status.
struct DiskStreamState {
  uint64_t bytes = 0;
  uint64_t total = 0;
  double bytes_per_second = 0;
  std::optional<disk::Checksums> checksums;  //!< of the last complete stream
  //! Source digests the last complete stream matched (vSphere manifest, OVA manifest, Glance).
  std::vector<disk::VerifiedDigest> source_digests;
  bool completed = false;  //!< a stream of the whole disk completed
  std::string last_error;
  //! The last stream's source error when retrying cannot help (corrupt or unsupported data);
  //! cleared by a completed stream.
  std::optional<core::Error> permanent_error;
};

class ImportReconciler final : public Reconciler, public imageserver::StreamObserver {
 public:
  //! `importers` maps each source kind to its provider (null: not supported yet). `queue` is the
  //! import queue: stream progress and finished export tasks enqueue the import. Every reference
  //! must outlive the reconciler.
  ImportReconciler(kube::Api& api, kube::ObjectCache& imports, kube::ObjectCache& images,
                   std::map<source::SourceKind, source::Importer*> importers,
                   imageserver::ImageServer& image_server, WorkQueue& queue,
                   kube::EventSink& events, const core::Clock& clock, core::Logger log,
                   ImportReconcilerOptions options = {});
  //! Aborts every export this process holds (their tasks stopped and joined first).
  ~ImportReconciler() override;
  ImportReconciler(const ImportReconciler&) = delete;
  ImportReconciler& operator=(const ImportReconciler&) = delete;

  // controller::Reconciler
  core::Result<ReconcileResult> Reconcile(std::stop_token stop, const std::string& key) override;

  // imageserver::StreamObserver
  void OnStreamStarted(const imageserver::StreamInfo& info) override;
  void OnProgress(const imageserver::StreamProgress& progress) override;
  void OnStreamFinished(const imageserver::StreamResult& result) override;

  //! Imports that hold a source VM open (tests, metrics).
  size_t RunningImports() const;
  //! Incarnations this process keeps state for (tests: none is left behind).
  size_t TrackedImportsForTest() const;

  //! Records import and stream figures into `metrics` from now on (may be null). Declares them.
  void SetMetrics(core::Metrics* metrics);

 private:
  struct Running;
  struct Incarnation;
  struct Pass;
  using Json = kube::Json;

  // Phases: each decides on `pass` (status, Events); Reconcile writes the result.
  core::Result<ReconcileResult> Step(std::stop_token stop, Pass& pass);
  core::Result<ReconcileResult> Validate(Pass& pass);
  core::Result<ReconcileResult> Preflight(std::stop_token stop, Pass& pass);
  //! Warm imports (import_warm.cc): whether the source can track changes. Returns nullopt to go
  //! on (cold, or warm and capable, or fallen back to cold), else the pass's result (refused).
  core::Result<std::optional<ReconcileResult>> PreflightWarm(std::stop_token stop, Pass& pass,
                                                             source::SourceKind kind,
                                                             const Json& source_obj);
  //! Warm, sourceReady: disks in status, then precopy (the source keeps running).
  core::Result<ReconcileResult> StartPrecopy(std::stop_token stop, Pass& pass);
  //! precopy: volumes and writer Pod, then one round at a time on the import's task, each
  //! recorded in status.warm before the next; cutover once warm::DecideCutover says so.
  core::Result<ReconcileResult> Precopy(std::stop_token stop, Pass& pass);
  //! cutover: on the task, graceful shutdown, the last round, RemoveAll; then the writer Pod
  //! goes and the VM is made on the volumes (diskImagesReady).
  core::Result<ReconcileResult> Cutover(std::stop_token stop, Pass& pass);
  //! The writer's PVCs, Secret and Pod; true once the Pod runs. Repeatable.
  core::Result<bool> EnsureWriter(std::stop_token stop, Pass& pass);
  //! Cancel or failure of a warm import: RemoveAll on the source (left running), the writer Pod,
  //! its Secret and, unless `keep_volumes`, the volumes. Safe to repeat.
  core::Status RemoveWarm(std::stop_token stop, Pass& pass, bool keep_volumes);
  //! The source's change tracker of the pass's import (made once per Running).
  core::Result<std::shared_ptr<warm::ChangeTracker>> TrackerFor(std::stop_token stop, Pass& pass);
  //! A round found its base checkpoint gone from the source (Gone): the recorded rounds no
  //! longer count, the next round is round 0 again (a Warning Event PrecopyRestarted says why).
  ReconcileResult BeginAgainAtRoundZero(Pass& pass, const core::Error& e);
  //! The writer's token, from its Secret (stringData or data). Errors: the API's.
  core::Result<std::string> WriterToken(std::stop_token stop, const Pass& pass);
  //! The outcome of the warm step `r`'s task ran, once it ended (the task is joined then); nullopt
  //! in `outcome` when no step was started. False while the step still runs.
  bool TakeWarmOutcome(Running& r, std::optional<core::Result<warm::RoundRecord>>& outcome);
  //! What precopy and cutover begin with: the source's change tracker and Running, and the
  //! record of the warm step that ended since the last pass (nullopt: none ran). `early` is set
  //! when the pass ends there: the step still runs (requeue), no tracker (the export failed),
  //! the base checkpoint is gone (BeginAgainAtRoundZero), or the step failed (a Warning Event
  //! `failed_reason`; retried unless terminal).
  struct WarmPass {
    std::optional<core::Result<ReconcileResult>> early;
    std::shared_ptr<warm::ChangeTracker> tracker;
    Running* running = nullptr;
    std::optional<warm::RoundRecord> ended;
  };
  WarmPass BeginWarmPass(std::stop_token stop, Pass& pass, std::string_view failed_reason,
                         std::string_view failed_suffix);
  //! Runs one warm step (`step`) on `r`'s task; its outcome is kept for TakeWarmOutcome and the
  //! import enqueued when it ends. The caller holds no lock.
  void StartWarmStep(Running& r, const Pass& pass,
                     std::function<core::Result<warm::RoundRecord>(std::stop_token)> step);
  core::Result<ReconcileResult> Export(std::stop_token stop, Pass& pass);
  core::Result<ReconcileResult> SubmitImages(std::stop_token stop, Pass& pass);
  core::Result<ReconcileResult> WatchImages(std::stop_token stop, Pass& pass);
  // Volume mode (import_volumes.cc).
  core::Result<ReconcileResult> SubmitVolumes(std::stop_token stop, Pass& pass);
  core::Result<ReconcileResult> WatchVolumes(std::stop_token stop, Pass& pass);
  //! Deletes the import's DataVolumes (from status and by label), their PVCs and the S3
  //! placeholder Secret; names the DataVolumes removed. Safe to repeat.
  core::Status RemoveVolumes(std::stop_token stop, const Pass& pass,
                             std::vector<std::string>& removed);
  core::Result<ReconcileResult> CreateVm(std::stop_token stop, Pass& pass);
  core::Result<ReconcileResult> WaitRunning(std::stop_token stop, Pass& pass);
  //! Why the import's VM does not run ("" while it is only starting): a Failed VMI
  //! (`vmi_status`, {} when there is none) and the VM's startFailure / printableStatus. Errors:
  //! reading the VM (but NotFound, which is "").
  core::Result<std::string> NotRunningWhy(std::stop_token stop,
                                          const api::VirtualMachineImport& vm_import,
                                          const Json& vmi_status);
  //! The reference's tidyUpObjects: the images hold the VM's disks now, so they lose the import's
  //! ownerReference. Repeatable.
  core::Status ReleaseImages(std::stop_token stop, Pass& pass);
  //! Checks disk `index` (whose image is Active) against every digest someone else computed,
  //! into its status; false while the stream's own figures are not in yet. A Longhorn digest
  //! that differs fails the pass (DiskChecksumMismatch).
  core::Result<bool> VerifyDisk(std::stop_token stop, Pass& pass, size_t index, const Json& image);
  //! A failed or invalid import: ends what it holds and removes the images and PVCs it made.
  core::Result<ReconcileResult> CleanUpFailed(std::stop_token stop, Pass& pass);
  core::Result<ReconcileResult> Finalize(std::stop_token stop, Pass& pass);

  //! The open source VM of the pass's import, opening (login, find, describe) it when needed.
  core::Result<Running*> OpenSource(std::stop_token stop, Pass& pass);
  //! The shared bandwidth caps (issue 23) the import's streams read through: its source's
  //! (spec.bandwidthBytesPerSecond), its source host's (spec.bandwidthPerHostBytesPerSecond,
  //! keyed by `vm`'s host), and its plan's (ImportPlan spec.bandwidthBytesPerSecond, read once
  //! here; a plan that cannot be read leaves that cap out, logged). Caps of 0 are left out.
  std::vector<std::shared_ptr<source::SharedBandwidth>> SharedCapsFor(
      std::stop_token stop, const Pass& pass, const kube::Json& source_obj,
      const source::SourceConfig& config, const model::VmDescription& vm);
  //! The open source VM with the VM off, its export started and every disk published; nullptr
  //! while the export task (power off, start export) still runs: it enqueues the import when
  //! done.
  core::Result<Running*> EnsurePublished(std::stop_token stop, Pass& pass);
  //! EnsurePublished failed: a terminal error fails the import with its message; any other is
  //! returned, to be retried with backoff.
  core::Result<ReconcileResult> ExportFailed(std::stop_token stop, Pass& pass,
                                             const core::Error& error);
  //! Unpublishes the disks of incarnation `uid`, stops its export task and ends its export
  //! (completed or aborted). `keep_description` keeps the description for CreateVm.
  void Release(std::stop_token stop, const std::string& uid, bool completed,
               const std::string& reason);
  //! Releases and forgets everything this process keeps for `uid`.
  void Forget(std::stop_token stop, const std::string& uid, const std::string& reason);
  //! The source VM's current state in a failure message: "; the source VM X no longer exists".
  std::string ProbeSource(std::stop_token stop, const Pass& pass);

  //! Moves the pass to `next`, with a Normal Event and a log line once written.
  void Move(Pass& pass, api::ImportStatus next, const std::string& reason,
            const std::string& message);
  //! Fails the pass in `state` with a Failed condition, a Warning Event and an error log line.
  void Fail(Pass& pass, api::ImportStatus state, const std::string& reason,
            const std::string& message);
  //! Writes the pass's status if it changed (conditionally on its resourceVersion), then its
  //! Events, log lines and metrics.
  core::Status Commit(std::stop_token stop, Pass& pass);

  core::Result<Json> SourceObject(std::stop_token stop, const api::VirtualMachineImport& vm_import,
                                  source::SourceKind& kind);
  void FillProgress(Pass& pass);
  //! namespace, import, disk and source host of a stream, for its metrics.
  core::Labels MetricLabels(const std::string& stream) const;
  //! Phase durations and final states into the metrics.
  void RecordPhase(Pass& pass, api::ImportStatus previous, api::ImportStatus next);
  //! The incarnation of `uid`, created for `key` when missing. mu_ must be held.
  Incarnation& IncarnationLocked(const std::string& key, const std::string& uid);

  kube::Api& api_;
  kube::ObjectCache& imports_;
  kube::ObjectCache& images_;
  const std::map<source::SourceKind, source::Importer*> importers_;
  imageserver::ImageServer& image_server_;
  WorkQueue& queue_;
  kube::EventSink& events_;
  const core::Clock& clock_;
  core::Logger log_;
  const ImportReconcilerOptions options_;

  std::atomic<core::Metrics*> metrics_{nullptr};
  source::StreamSlots stream_slots_;
  mutable std::mutex mu_;  // guards incarnations_, uid_of_key_ and claims_
  std::map<std::string, std::unique_ptr<Incarnation>> incarnations_;  // by import uid
  std::map<std::string, std::string> uid_of_key_;  // "namespace/name" -> uid of its incarnation
  std::map<std::string, std::string> claims_;      // source VM identity -> uid holding it
};

}  // namespace vmimport::controller
