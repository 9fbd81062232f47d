#pragma once

// ImportPlan reconciler (issue 23): resolves a plan's selection once, then keeps at most
// spec.schedule.maxConcurrentImports of its VirtualMachineImports running, and sums them up in
// status. Follows the Runner contract (runner.h): idempotent, level-triggered, one status write
// per reconcile, conditional on the resourceVersion it was decided from.
//
//   new ─► selection resolved (status.selection, once: a VM added later is not added)
//       ─► Scheduled (before notBefore) ─► Running (imports created in selection order while
//          fewer than N run) ─► Succeeded | Failed
//   Invalid: a spec problem, an unsupported source, or a selection that matched nothing
//   WaitingForSource: the source object is missing or not clusterReady (retried every 15 s)
//
// Imports are named predictably (plan_logic.h ImportNameFor), labelled with the plan's name and
// owned by it; one of that name the plan does not own is never touched (ImportNameTaken in
// status.attention). How many run is counted from a live, label-selected List of the imports,
// not from the cache, so that an import created a moment ago is never missed and the limit
// holds. Every decision that stops the plan is said in status (phase, condition Ready with a
// reason), a Warning Event and a log line.

#include <chrono>
#include <map>
#include <string>

#include "controller/runner.h"
#include "core/clock.h"
#include "core/log.h"
#include "kube/api.h"
#include "source/importer.h"
#include "source/provider.h"

namespace vmimport::controller {

const kube::Resource& PlanResource();

struct PlanReconcilerOptions {
  std::chrono::seconds source_not_ready_requeue{15};
  std::chrono::seconds running_refresh{10};  //!< re-summing rate and ETA while imports run
};

class PlanReconciler final : public Reconciler {
 public:
  //! `importers` by source kind (a kind without one makes the plan Invalid). Every reference
  //! must outlive the reconciler. Thread-safe: the work queue gives one plan to one worker.
  PlanReconciler(kube::Api& api, kube::ObjectCache& plans,
                 std::map<source::SourceKind, source::Importer*> importers, kube::EventSink& events,
                 const core::Clock& clock, const core::Logger& log,
                 PlanReconcilerOptions options = {});

  // controller::Reconciler
  core::Result<ReconcileResult> Reconcile(std::stop_token stop, const std::string& key) override;

 private:
  struct Pass;
  core::Result<ReconcileResult> Resolve(std::stop_token stop, Pass& pass);
  core::Result<ReconcileResult> Run(std::stop_token stop, Pass& pass);
  //! Writes status when it changed (conditional); records the pass's Events after the write.
  core::Status Commit(std::stop_token stop, Pass& pass);
  void SetPhase(Pass& pass, const std::string& phase, const std::string& reason,
                const std::string& message, bool warning);

  kube::Api& api_;
  kube::ObjectCache& plans_;
  const std::map<source::SourceKind, source::Importer*> importers_;
  kube::EventSink& events_;
  const core::Clock& clock_;
  core::Logger log_;
  const PlanReconcilerOptions options_;
};

//! The plan ("namespace/name") an import belongs to, from its plan label; "" for none.
std::string PlanOfImport(const kube::Json& vm_import);

}  // namespace vmimport::controller
