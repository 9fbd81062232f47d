// Warm migration in the import reconciler (issue 22): what is wired so far is the preflight. A
// warm import (spec.migrationMode: warm, validated to need spec.diskTarget: volume) asks its
// source's change tracker (ImportReconcilerOptions::change_trackers) whether the VM can do
// incremental backup; a source without a tracker, or a VM that cannot, is refused with the
// reason (virtualMachineImportInvalid, reason WarmNotPossible), or imported cold when
// spec.warmFallbackToCold is true (a Warning Event WarmFallbackToCold says why, and
// status.migrationMode says cold). The precopy and cutover phases (warm/precopy.h, the writer
// Pod) are not in the reconciler yet, so a capable source is treated like an incapable one.

#include "controller/import_internal.h"
#include "controller/import_reconciler.h"
#include "controller/source_reconciler.h"

namespace vmimport::controller {

using api::ImportStatus;
using core::ErrorCode;
using core::MakeError;
using namespace import_detail;  // NOLINT(google-build-using-namespace): this reconciler's own

namespace {

//! status.migrationMode: cold or warm, fixed at preflight (only written for warm requests).
constexpr const char* kMigrationModeStatusKey = "migrationMode";

}  // namespace

core::Result<std::optional<ReconcileResult>> ImportReconciler::PreflightWarm(
    std::stop_token stop, Pass& pass, source::SourceKind kind, const Json& source_obj) {
  auto& vm_import = pass.vm_import;
  if (vm_import.spec.MigrationModeOrDefault() != api::MigrationMode::kWarm) {
    return std::nullopt;
  }
  std::string refusal;
  auto it = options_.change_trackers.find(kind);
  if (it == options_.change_trackers.end() || !it->second) {
    refusal = std::string(source::SourceKindName(kind)) +
              " sources cannot say what changed on a running VM (warm migration needs a "
              "change tracker: libvirt's incremental backup)";
  } else {
    auto config = LoadSourceConfig(stop, api_, kind, source_obj);
    if (!config) {
      return MakeError(config.error());
    }
    auto tracker = it->second(*config);
    if (auto capable = tracker->CheckCapable(vm_import.spec.virtual_machine_name); !capable) {
      if (!capable.error().Terminal() && capable.error().code != ErrorCode::kNotFound) {
        return MakeError(capable.error().Wrap("warm migration: can the source track changes"));
      }
      refusal = capable.error().message;
    } else {
      refusal =
          "the source can track changes, but the precopy and cutover phases are not in "
          "this controller yet";
    }
  }
  if (vm_import.spec.WarmFallbackToCold()) {
    vm_import.status.extra[kMigrationModeStatusKey] = std::string(api::kMigrationModeCold);
    pass.notes.push_back({"Warning", "WarmFallbackToCold",
                          "warm migration is not possible (" + refusal +
                              "): importing cold, as spec.warmFallbackToCold asks"});
    return std::nullopt;
  }
  Release(stop, pass.uid, false, "warm migration is not possible");
  Fail(pass, ImportStatus::kVirtualMachineImportInvalid, "WarmNotPossible",
       "warm migration is not possible: " + refusal +
           " (set spec.warmFallbackToCold: true to import cold instead)");
  return Done();
}

}  // namespace vmimport::controller
