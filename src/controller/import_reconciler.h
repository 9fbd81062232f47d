#pragma once

// VirtualMachineImport: from a spec to a running KubeVirt VM, one level-triggered step per
// reconcile, with the reference's states (status.importStatus) and conditions:
//
//   ""  ─ validate spec and target name ─► virtualMachineImportValid | virtualMachineImportInvalid
//   virtualMachineImportValid ─ source clusterReady? (else requeue) ─ preflight: exactly one
//       source VM, disks > 0, storage class and destination NADs exist ─► sourceReady | Invalid
//   sourceReady ─ power off, export, publish every disk on the image server ─► disksExported
//   disksExported ─ one VirtualMachineImage per disk (url = our image server) ─► diskImageSubmitted
//   diskImageSubmitted ─ images Active (progress, rate, ETA and checksums in status meanwhile)
//       ─► diskImagesReady | diskImageFailed
//   diskImagesReady ─ PVCs (backing images), the KubeVirt VM ─► virtualMachineCreated
//   virtualMachineCreated ─ its VMI runs ─► virtualMachineRunning
//
// The reconcile never waits on a transfer: disks stream on the image server's threads when
// Harvester downloads them; their progress arrives through the StreamObserver and is written on
// the next reconcile. A finalizer lets a delete before the end remove what the import made
// (images, PVCs), cut the streams and abort the export; after success everything made stays.
// Every phase change and every action on the source VM is an Event on the import.

#include <atomic>
#include <chrono>
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
#include "kube/client.h"
#include "kube/events.h"
#include "kube/informer.h"
#include "source/importer.h"

namespace vmimport::controller {

inline constexpr const char* kImportFinalizer = "migration.harvesterhci.io/vm-import-cleanup";

const kube::Resource& ImportResource();
const kube::Resource& ImageResource();

struct ImportReconcilerOptions {
  std::chrono::seconds source_not_ready_requeue{10};
  std::chrono::seconds poll{5};  //!< re-check of a VM waiting to run
  //! Retry of an import whose step RBAC refused (403), after a Warning Event "Forbidden": the
  //! operator grants the permission and the import goes on.
  std::chrono::seconds forbidden_retry{30};
  //! Imports that may hold a source VM at once (preflight until the disks are in Harvester);
  //! more wait in virtualMachineImportValid. 0: no limit.
  size_t max_concurrent_imports = 0;
  //! Disk streams open at once per source host; a further GET waits for a slot. 0: no limit.
  size_t max_streams_per_source = 0;
  //! Cap on each stream's source bytes per second. 0: none.
  double stream_bytes_per_second = 0;
};

//! Per-disk stream figures from the image server, for status.
struct DiskStreamState {
  uint64_t bytes = 0;
  uint64_t total = 0;
  double bytes_per_second = 0;
  std::optional<disk::Checksums> checksums;  //!< of the last complete stream
  std::string last_error;
  //! The last stream's source error when retrying cannot help (corrupt or unsupported data);
  //! cleared by a completed stream.
  std::optional<core::Error> permanent_error;
};

class ImportReconciler final : public Reconciler, public imageserver::StreamObserver {
 public:
  //! `importers` maps each source kind to its provider (null: not supported yet). `queue` is the
  //! import queue: stream progress enqueues the import so that status shows it.
  ImportReconciler(kube::Client& client, kube::Informer& imports, kube::Informer& images,
                   std::map<source::SourceKind, source::Importer*> importers,
                   imageserver::ImageServer& image_server, WorkQueue& queue,
                   kube::EventRecorder& events, const core::Clock& clock, core::Logger log,
                   ImportReconcilerOptions options = {});
  ~ImportReconciler() override;

  // controller::Reconciler
  core::Result<ReconcileResult> Reconcile(std::stop_token stop, const std::string& key) override;

  // imageserver::StreamObserver
  void OnStreamStarted(const imageserver::StreamInfo& info) override;
  void OnProgress(const imageserver::StreamProgress& progress) override;
  void OnStreamFinished(const imageserver::StreamResult& result) override;

  //! Imports that hold a source VM open (tests, metrics).
  size_t RunningImports() const;

  //! Records import and stream figures into `metrics` from now on (may be null). Declares them.
  void SetMetrics(core::Metrics* metrics);

 private:
  struct Running;
  using Json = kube::Json;

  core::Result<ReconcileResult> Step(std::stop_token stop, const std::string& key,
                                     const Json& object, api::VirtualMachineImport& vm_import);
  core::Result<ReconcileResult> Validate(api::VirtualMachineImport& vm_import, const Json& object);
  core::Result<ReconcileResult> Preflight(std::stop_token stop, const std::string& key,
                                          api::VirtualMachineImport& vm_import, const Json& object);
  core::Result<ReconcileResult> Export(std::stop_token stop, const std::string& key,
                                       api::VirtualMachineImport& vm_import, const Json& object);
  core::Result<ReconcileResult> SubmitImages(std::stop_token stop, const std::string& key,
                                             api::VirtualMachineImport& vm_import,
                                             const Json& object);
  core::Result<ReconcileResult> WatchImages(std::stop_token stop, const std::string& key,
                                            api::VirtualMachineImport& vm_import,
                                            const Json& object);
  core::Result<ReconcileResult> CreateVm(std::stop_token stop, const std::string& key,
                                         api::VirtualMachineImport& vm_import, const Json& object);
  core::Result<ReconcileResult> WaitRunning(std::stop_token stop, const std::string& key,
                                            api::VirtualMachineImport& vm_import,
                                            const Json& object);
  core::Result<ReconcileResult> Finalize(std::stop_token stop, const std::string& key,
                                         const api::VirtualMachineImport& vm_import,
                                         const Json& object);

  //! The open source VM of `key`, opening (login, find, describe) it when needed.
  core::Result<Running*> OpenSource(std::stop_token stop, const std::string& key,
                                    const api::VirtualMachineImport& vm_import);
  //! The open source VM of `key` with the VM off, its export started and every disk published.
  core::Result<Running*> EnsurePublished(std::stop_token stop, const std::string& key,
                                         api::VirtualMachineImport& vm_import, const Json& object);
  //! EnsurePublished failed: a terminal error (no permission, unsupported, invalid) fails the
  //! import with its message instead of leaving it where it is; any other error is returned, to
  //! be retried with backoff.
  core::Result<ReconcileResult> ExportFailed(std::stop_token stop, const std::string& key,
                                             api::VirtualMachineImport& vm_import,
                                             const Json& object, const core::Error& error);
  //! Unpublishes the disks of `key` and ends its export (completed or aborted).
  void Release(std::stop_token stop, const std::string& key, bool completed,
               const std::string& reason);
  //! Writes status (merge patch of the status subresource) and records the phase Event.
  core::Status WriteStatus(std::stop_token stop, const Json& object,
                           const api::VirtualMachineImport& vm_import);
  //! Moves to `next`: status, Event, log line.
  core::Status Transition(std::stop_token stop, const Json& object,
                          api::VirtualMachineImport& vm_import, api::ImportStatus next,
                          const std::string& reason, const std::string& message);
  //! namespace, import, disk and source host of a stream, for its metrics.
  core::Labels MetricLabels(const std::string& stream) const;
  //! Phase durations and final states into the metrics.
  void RecordPhase(const Json& object, api::ImportStatus previous, api::ImportStatus next);
  core::Status Fail(std::stop_token stop, const Json& object, api::VirtualMachineImport& vm_import,
                    api::ImportStatus state, const std::string& reason, const std::string& message);
  core::Result<Json> SourceObject(std::stop_token stop, const api::VirtualMachineImport& vm_import,
                                  source::SourceKind& kind);
  void FillProgress(const std::string& key, api::VirtualMachineImport& vm_import);

  kube::Client& client_;
  kube::Informer& imports_;
  kube::Informer& images_;
  const std::map<source::SourceKind, source::Importer*> importers_;
  imageserver::ImageServer& image_server_;
  WorkQueue& queue_;
  kube::EventRecorder& events_;
  const core::Clock& clock_;
  core::Logger log_;
  const ImportReconcilerOptions options_;

  std::atomic<core::Metrics*> metrics_{nullptr};
  //! When each import entered its current phase (this process's view), for phase durations.
  std::map<std::string, std::pair<api::ImportStatus, std::chrono::steady_clock::time_point>>
      phase_since_;  // guarded by mu_
  source::StreamSlots stream_slots_;
  std::set<std::string> admitted_;  // imports let past the concurrency limit; guarded by mu_
  //! The source host of every import this process opened (metric labels); guarded by mu_.
  std::map<std::string, std::string> source_hosts_;
  mutable std::mutex mu_;  // guards running_, described_, streams_ and phase_since_
  std::map<std::string, std::unique_ptr<Running>> running_;  // by import key
  //! The source VM's description of an import whose disks are all in Harvester (its source is
  //! released by then), until its VM is created: the source object may be gone meanwhile.
  std::map<std::string, model::VmDescription> described_;  // by import key
  std::map<std::string, DiskStreamState> streams_;         // by disk stream name
};

}  // namespace vmimport::controller
