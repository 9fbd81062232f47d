// Warm migration in the import reconciler (issue 22): what is wired so far is the preflight. A
// warm import (spec.migrationMode: warm, validated to need spec.diskTarget: volume) asks its
// source's change tracker (ImportReconcilerOptions::change_trackers) whether the VM can do
// incremental backup; a source without a tracker, or a VM that cannot, is refused with the
// reason (virtualMachineImportInvalid, reason WarmNotPossible), or imported cold when
// spec.warmFallbackToCold is true (a Warning Event WarmFallbackToCold says why, and
// status.migrationMode says cold). A capable source goes on warm:
//
//   sourceReady ─ disks in status (the source keeps running) ─► precopy
//   precopy ─ one blank PVC per disk (its virtual size, the disk's storage class, labelled with
//       the import's uid), a Secret with the writer's token, the writer Pod (controller image,
//       host network, 127.0.0.1:port, the PVCs mounted); then rounds (warm::NextRound) on the
//       import's task, each recorded in status.warm before the next; warm::DecideCutover
//       ─► cutover
//   cutover ─ on the task: graceful shutdown (as cold; status.warm.sourceOffAt), then the source
//       held for the last round (libvirt: started paused), the last round, RemoveAll, the source
//       off for good; the writer Pod removed ─► diskImagesReady (the VM on the PVCs, as cold)
//   virtualMachineRunning: status.warm.downtimeSeconds (sourceOffAt to running) and an Event.
//
// Resume: the rounds in status are all that counts; a round not recorded is done again.

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string_view>

#include "controller/device_choice.h"
#include "controller/import_internal.h"
#include "controller/import_reconciler.h"
#include "controller/source_reconciler.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/strings.h"
#include "harvester/data_volume.h"
#include "imageserver/token.h"
#include "warm/writer_client.h"

namespace vmimport::controller {

using api::ImportStatus;
using core::ErrorCode;
using core::MakeError;
using namespace import_detail;  // NOLINT(google-build-using-namespace): this reconciler's own

namespace {

//! status.migrationMode: cold or warm, fixed at preflight (only written for warm requests).
constexpr const char* kMigrationModeStatusKey = "migrationMode";

//! The cutover's steps other than the last round, as the task reports them (RoundRecord::number).
constexpr int kSourceOffStep = -1;       //!< the source is off (RoundRecord::started: when)
constexpr int kSourceReleasedStep = -2;  //!< the checkpoints are gone, the source off for good

const kube::Resource kPods{"", "v1", "pods", true};
const kube::Resource kSecrets{"", "v1", "secrets", true};
const kube::Resource kPvcs{"", "v1", "persistentvolumeclaims", true};

std::string Cut63(std::string s) {
  s.resize(std::min<size_t>(s.size(), 63));
  while (!s.empty() && (s.back() == '-' || s.back() == '.')) {
    s.pop_back();
  }
  return s;
}

//! "<import>-writer-<uid's first 8>": the writer Pod and its token's Secret.
std::string WriterName(const api::VirtualMachineImport& vm_import, const std::string& uid) {
  return Cut63(vm_import.name.substr(0, 40) + "-writer-" + uid.substr(0, 8));
}

uint16_t WriterPort(uint16_t configured, const std::string& uid) {
  if (configured != 0) {
    return configured;
  }
  return static_cast<uint16_t>(20000 + std::hash<std::string>{}(uid) % 10000);
}

kube::Json OwnerRefs(const api::VirtualMachineImport& vm_import, const std::string& uid) {
  return kube::Json::array({{{"apiVersion", std::string(api::kMigrationApiVersion)},
                             {"kind", std::string(api::kVirtualMachineImportKind)},
                             {"name", vm_import.name},
                             {"uid", uid}}});
}

std::vector<warm::RoundRecord> Recorded(const api::WarmStatus& warm) {
  std::vector<warm::RoundRecord> out;
  for (const auto& r : warm.rounds) {
    warm::RoundRecord rec;
    rec.number = r.round;
    core::ParseRfc3339(r.started, rec.started);
    rec.bytes_changed = r.bytes_changed;
    rec.bytes_moved = r.bytes_moved;
    rec.seconds = r.seconds;
    out.push_back(rec);
  }
  return out;
}

api::PrecopyRoundStatus ToStatus(const warm::RoundRecord& r) {
  api::PrecopyRoundStatus out;
  out.round = r.number;
  out.started = core::FormatRfc3339(r.started);
  out.bytes_changed = r.bytes_changed;
  out.bytes_moved = r.bytes_moved;
  out.seconds = r.seconds;
  return out;
}

//! One round (warm::NextRound) into the writer at 127.0.0.1:`port`, on a connection of its own.
core::Result<warm::RoundRecord> CopyNextRound(std::stop_token stop, warm::ChangeTracker& tracker,
                                              const std::string& vm, const std::string& uid,
                                              const std::vector<warm::RoundRecord>& recorded,
                                              uint16_t port, const std::string& token,
                                              const core::Clock& clock) {
  auto client = warm::WriterClient::Connect("127.0.0.1", port, token, std::chrono::seconds(60));
  if (!client) {
    return MakeError(client.error().Wrap("connecting to the writer"));
  }
  return warm::NextRound(stop, tracker, vm, uid, recorded, **client, clock);
}

}  // namespace

namespace import_detail {

bool IsWarm(const api::VirtualMachineImport& vm_import) {
  auto it = vm_import.status.extra.find(kMigrationModeStatusKey);
  return it != vm_import.status.extra.end() && it->is_string() &&
         it->get<std::string>() == api::kMigrationModeWarm;
}

}  // namespace import_detail

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
      vm_import.status.extra[kMigrationModeStatusKey] = std::string(api::kMigrationModeWarm);
      return std::nullopt;
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

core::Result<std::shared_ptr<warm::ChangeTracker>> ImportReconciler::TrackerFor(
    std::stop_token stop, Pass& pass) {
  auto opened = OpenSource(stop, pass);
  if (!opened) {
    return MakeError(opened.error());
  }
  {
    std::lock_guard lock(mu_);
    if ((*opened)->tracker) {
      return (*opened)->tracker;
    }
  }
  source::SourceKind kind{};
  auto source_obj = SourceObject(stop, pass.vm_import, kind);
  if (!source_obj) {
    return MakeError(source_obj.error());
  }
  auto it = options_.change_trackers.find(kind);
  if (it == options_.change_trackers.end() || !it->second) {
    return MakeError(ErrorCode::kUnsupported, "warm migration: the source has no change tracker");
  }
  auto config = LoadSourceConfig(stop, api_, kind, *source_obj);
  if (!config) {
    return MakeError(config.error());
  }
  std::shared_ptr<warm::ChangeTracker> tracker = it->second(*config);
  std::lock_guard lock(mu_);
  (*opened)->tracker = tracker;
  return tracker;
}

core::Result<ReconcileResult> ImportReconciler::StartPrecopy(std::stop_token stop, Pass& pass) {
  auto opened = OpenSource(stop, pass);
  if (!opened) {
    return ExportFailed(stop, pass, opened.error());
  }
  auto& vm_import = pass.vm_import;
  const model::VmDescription& vm = (*opened)->description;
  if (vm_import.status.disk_import_status.size() != vm.disks.size()) {
    vm_import.status.disk_import_status.clear();
    const DevicePlan devices = ChooseDevices(vm, vm_import.spec);
    for (size_t i = 0; i < vm.disks.size(); ++i) {
      api::DiskInfo info;
      info.disk_name =
          vm_import.name + "-" + vm_import.namespace_ + "-disk-" + std::to_string(i) + ".img";
      info.disk_size = static_cast<int64_t>(vm.disks[i].capacity_bytes);
      info.bus_type = devices.disks[i].value;
      info.storage_class = devices.storage[i].storage_class;
      vm_import.status.disk_import_status.push_back(std::move(info));
    }
    vm_import.status.extra[kDiskTargetStatusKey] = std::string(api::kDiskTargetVolume);
  }
  if (!vm_import.status.warm) {
    api::WarmStatus w;
    for (size_t i = 0; i < vm.disks.size(); ++i) {
      w.volumes.push_back(
          harvester::DataVolumeName(vm_import.status.imported_virtual_machine_name, i, pass.uid));
    }
    w.writer_pod = WriterName(vm_import, pass.uid);
    w.writer_port = WriterPort(options_.writer_port, pass.uid);
    vm_import.status.warm = std::move(w);
  }
  Move(pass, ImportStatus::kPrecopy, "PrecopyStarted",
       "warm migration: copying " + std::to_string(vm.disks.size()) +
           " disks while the source runs, into the volumes " +
           core::Join(vm_import.status.warm->volumes, ", "));
  return Done();
}

core::Result<bool> ImportReconciler::EnsureWriter(std::stop_token stop, Pass& pass) {
  auto& vm_import = pass.vm_import;
  const api::WarmStatus& w = *vm_import.status.warm;
  const std::string name = w.writer_pod;
  Json labels = {{std::string(harvester::kLabelImportUid), pass.uid}};
  Json volumes = Json::array();
  Json mounts = Json::array();
  Json args = {"writer", "--listen", "127.0.0.1:" + std::to_string(w.writer_port)};
  for (size_t i = 0; i < w.volumes.size(); ++i) {
    const uint64_t size = harvester::VolumeSizeFor(
        static_cast<uint64_t>(vm_import.status.disk_import_status[i].disk_size));
    Json pvc = {{"apiVersion", "v1"},
                {"kind", "PersistentVolumeClaim"},
                {"metadata",
                 {{"name", w.volumes[i]}, {"namespace", vm_import.namespace_}, {"labels", labels}}},
                {"spec",
                 {{"accessModes", {"ReadWriteOnce"}},
                  {"volumeMode", "Filesystem"},
                  {"resources", {{"requests", {{"storage", std::to_string(size)}}}}}}}};
    // No ownerReference: the VM keeps these volumes after the import is gone; cancel and
    // failure remove them by name (RemoveWarm).
    if (const std::string sc = DiskStorageClass(vm_import, i); !sc.empty()) {
      pvc["spec"]["storageClassName"] = sc;
    }
    if (auto c = api_.Create(stop, kPvcs, vm_import.namespace_, pvc);
        !c && c.error().code != ErrorCode::kAlreadyExists) {
      return MakeError(c.error().Wrap("creating the PVC " + w.volumes[i]));
    }
    const std::string vol = "disk-" + std::to_string(i);
    volumes.push_back({{"name", vol}, {"persistentVolumeClaim", {{"claimName", w.volumes[i]}}}});
    mounts.push_back({{"name", vol}, {"mountPath", "/volumes/" + vol}});
    args.push_back("--disk");
    args.push_back("/volumes/" + vol +
                   "/disk.img:" + std::to_string(vm_import.status.disk_import_status[i].disk_size));
  }
  auto secret = api_.Get(stop, kSecrets, vm_import.namespace_, name);
  if (!secret && secret.error().code == ErrorCode::kNotFound) {
    auto token = imageserver::NewToken();
    if (!token) {
      return MakeError(token.error());
    }
    Json s = {{"apiVersion", "v1"},
              {"kind", "Secret"},
              {"metadata",
               {{"name", name},
                {"namespace", vm_import.namespace_},
                {"labels", labels},
                {"ownerReferences", OwnerRefs(vm_import, pass.uid)}}},
              {"stringData", {{"token", *token}}}};
    if (auto c = api_.Create(stop, kSecrets, vm_import.namespace_, s);
        !c && c.error().code != ErrorCode::kAlreadyExists) {
      return MakeError(c.error().Wrap("creating the writer's Secret " + name));
    }
  } else if (!secret) {
    return MakeError(secret.error());
  }
  auto pod = api_.Get(stop, kPods, vm_import.namespace_, name);
  if (!pod && pod.error().code != ErrorCode::kNotFound) {
    return MakeError(pod.error());
  }
  if (!pod) {
    const Json container = {
        {"name", "writer"},
        {"image", options_.writer_image},
        {"imagePullPolicy", "IfNotPresent"},
        {"args", args},
        {"env",
         {{{"name", "VMIMPORT_WRITER_TOKEN"},
           {"valueFrom", {{"secretKeyRef", {{"name", name}, {"key", "token"}}}}}}}},
        {"volumeMounts", mounts},
        {"securityContext", {{"allowPrivilegeEscalation", false}}}};
    Json p = {
        {"apiVersion", "v1"},
        {"kind", "Pod"},
        {"metadata",
         {{"name", name},
          {"namespace", vm_import.namespace_},
          {"labels", labels},
          {"ownerReferences", OwnerRefs(vm_import, pass.uid)}}},
        {"spec",
         {{"hostNetwork", true},
          {"restartPolicy", "Always"},
          {"securityContext", {{"runAsUser", 65532}, {"runAsGroup", 65532}, {"fsGroup", 65532}}},
          {"containers", {container}},
          {"volumes", volumes}}}};
    if (auto c = api_.Create(stop, kPods, vm_import.namespace_, p);
        !c && c.error().code != ErrorCode::kAlreadyExists) {
      return MakeError(c.error().Wrap("creating the writer Pod " + name));
    }
    pass.notes.push_back(
        {"Normal", "WriterPodCreated",
         "writer Pod " + name + " created for " + std::to_string(w.volumes.size()) + " volumes"});
    return false;
  }
  return core::JsonString(core::JsonObject(*pod, "status"), "phase") == "Running";
}

ImportReconciler::WarmPass ImportReconciler::BeginWarmPass(std::stop_token stop, Pass& pass,
                                                           std::string_view failed_reason,
                                                           std::string_view failed_suffix) {
  WarmPass wp;
  auto tracker = TrackerFor(stop, pass);
  if (!tracker) {
    wp.early = ExportFailed(stop, pass, tracker.error());
    return wp;
  }
  auto opened = OpenSource(stop, pass);
  if (!opened) {
    wp.early = MakeError(opened.error());
    return wp;
  }
  wp.tracker = std::move(*tracker);
  wp.running = *opened;
  std::optional<core::Result<warm::RoundRecord>> outcome;
  if (!TakeWarmOutcome(*wp.running, outcome)) {
    wp.early = Requeue(options_.poll);  // the task enqueues the import when the step ends
    return wp;
  }
  if (outcome && !*outcome) {
    const core::Error& e = outcome->error();
    if (e.code == ErrorCode::kGone) {
      wp.early = BeginAgainAtRoundZero(pass, e);
      return wp;
    }
    pass.notes.push_back(
        {"Warning", std::string(failed_reason), e.message + std::string(failed_suffix)});
    wp.early = e.Terminal() ? ExportFailed(stop, pass, e) : MakeError(e);
    return wp;
  }
  if (outcome) {
    wp.ended = **outcome;
  }
  return wp;
}

core::Result<ReconcileResult> ImportReconciler::Precopy(std::stop_token stop, Pass& pass) {
  auto& vm_import = pass.vm_import;
  if (!vm_import.status.warm) {
    return MakeError(ErrorCode::kInternal, "precopy without status.warm");
  }
  auto ready = EnsureWriter(stop, pass);
  if (!ready) {
    return MakeError(ready.error());
  }
  if (!*ready) {
    vm_import.status.warm->waiting_for = "the writer Pod to run";
    return Requeue(options_.poll);
  }
  WarmPass wp = BeginWarmPass(stop, pass, "PrecopyRoundFailed", " (retried)");
  if (wp.early) {
    return std::move(*wp.early);
  }
  Running& r = *wp.running;
  api::WarmStatus& w = *vm_import.status.warm;
  if (wp.ended) {
    const warm::RoundRecord& rec = *wp.ended;
    if (rec.number == static_cast<int>(w.rounds.size())) {
      w.rounds.push_back(ToStatus(rec));
      char text[200];
      std::snprintf(text, sizeof(text),
                    "precopy round %d: %llu bytes changed, %llu moved in %.2f s", rec.number,
                    static_cast<unsigned long long>(rec.bytes_changed),
                    static_cast<unsigned long long>(rec.bytes_moved), rec.seconds);
      pass.notes.push_back({"Normal", "PrecopyRound", text});
    }
  }
  const auto recorded = Recorded(w);
  w.estimated_downtime_seconds =
      warm::EstimateDowntimeSeconds(recorded, options_.warm_fixed_cost_seconds);
  warm::CutoverPolicy policy;
  if (!vm_import.spec.cutover_time.empty()) {
    std::chrono::system_clock::time_point t;
    if (core::ParseRfc3339(vm_import.spec.cutover_time, t)) {
      policy.cutover_time = t;
    }
  }
  if (vm_import.spec.downtime_budget_seconds > 0) {
    policy.downtime_budget_seconds = vm_import.spec.downtime_budget_seconds;
  }
  const auto now = clock_.WallNow();
  const warm::CutoverDecision decision =
      warm::DecideCutover(policy, now, recorded, w.estimated_downtime_seconds);
  if (decision.cut_over) {
    w.waiting_for.clear();
    w.next_round_at.clear();
    w.cutover_reason = decision.why;
    Move(pass, ImportStatus::kCutover, "CutoverStarted",
         "cutover after " + std::to_string(w.rounds.size()) + " precopy rounds: " + decision.why);
    return Done();
  }
  w.waiting_for = decision.why;
  auto next = now;
  if (!recorded.empty()) {
    next = recorded.back().started + std::chrono::seconds(vm_import.spec.PrecopyIntervalSeconds());
  }
  if (now < next) {
    w.next_round_at = core::FormatRfc3339(next);
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now);
    return Requeue(std::min<std::chrono::milliseconds>(wait, std::chrono::seconds(60)));
  }
  w.next_round_at.clear();
  const uint16_t port = w.writer_port;
  auto token = WriterToken(stop, pass);
  if (!token) {
    return MakeError(token.error());
  }
  StartWarmStep(r, pass,
                [this, t = wp.tracker, vm = vm_import.spec.virtual_machine_name, uid = pass.uid,
                 port, token = *token, recorded](std::stop_token task_stop) {
                  return CopyNextRound(task_stop, *t, vm, uid, recorded, port, token, clock_);
                });
  return Requeue(options_.poll);
}

core::Result<ReconcileResult> ImportReconciler::Cutover(std::stop_token stop, Pass& pass) {
  // Three steps, each on the import's task and each recorded before the next, so that a
  // controller killed anywhere resumes at the step it was in (each step is safe to repeat):
  //   1. the source powered off (as cold)                      → status.warm.sourceOffAt
  //   2. the source held (libvirt: started paused), the last round on the volumes
  //                                                            → the round, status.warm.finalRound
  //   3. the checkpoints removed, the source off for good      → diskImagesReady
  // The checkpoints go only after the last round is recorded: a restart between the round and
  // its record repeats the round from checkpoint n-1, which must still be there.
  auto& vm_import = pass.vm_import;
  if (!vm_import.status.warm) {
    return MakeError(ErrorCode::kInternal, "cutover without status.warm");
  }
  // (A base checkpoint gone in the last round: precopy again, whose last round is a whole copy.)
  WarmPass wp = BeginWarmPass(stop, pass, "CutoverStepFailed", "");
  if (wp.early) {
    return std::move(*wp.early);
  }
  Running& r = *wp.running;
  api::WarmStatus& w = *vm_import.status.warm;
  if (wp.ended) {
    const warm::RoundRecord& rec = *wp.ended;
    if (rec.number == kSourceOffStep) {
      w.source_off_at = core::FormatRfc3339Micro(rec.started);
      pass.notes.push_back({"Normal", "SourceOff", "cutover: the source VM is off"});
      return Requeue(std::chrono::milliseconds(1));  // the next step at once
    }
    if (rec.number >= 0 && !w.final_round && rec.number == static_cast<int>(w.rounds.size())) {
      w.rounds.push_back(ToStatus(rec));
      w.final_round = rec.number;
      char text[200];
      std::snprintf(text, sizeof(text), "cutover's last round %d: %llu bytes moved in %.2f s",
                    rec.number, static_cast<unsigned long long>(rec.bytes_moved), rec.seconds);
      pass.notes.push_back({"Normal", "CutoverRound", text});
      return Requeue(std::chrono::milliseconds(1));  // the next step at once
    }
    if (rec.number == kSourceReleasedStep && w.final_round) {
      // The writer goes (its volumes stay): the VM takes them.
      if (auto d = api_.Delete(stop, kPods, vm_import.namespace_, w.writer_pod);
          !d && d.error().code != ErrorCode::kNotFound) {
        return MakeError(d.error());
      }
      for (size_t i = 0; i < vm_import.status.disk_import_status.size(); ++i) {
        // The VM claims each PVC by this name (harvester/virtual_machine.h).
        vm_import.status.disk_import_status[i].virtual_machine_image = w.volumes[i];
      }
      Release(stop, pass.uid, true, "warm cutover done");
      Move(pass, ImportStatus::kDiskImagesReady, "CutoverCopied",
           "the last round is on the volumes; the source keeps no checkpoint of this import");
      return Done();
    }
  }
  const bool off = !w.source_off_at.empty();
  const bool copied = w.final_round.has_value();
  const auto recorded = Recorded(w);
  const source::PowerOffRequest power{
      .force = vm_import.spec.ForcePowerOff(),
      .graceful_timeout = std::chrono::seconds(vm_import.spec.GracefulShutdownTimeoutSeconds())};
  const uint16_t port = w.writer_port;
  std::string token;
  if (off && !copied) {
    auto t = WriterToken(stop, pass);
    if (!t) {
      return MakeError(t.error());
    }
    token = std::move(*t);
  }
  StartWarmStep(
      r, pass,
      [this, t = wp.tracker, source_vm = r.vm, off, copied, power,
       vm = vm_import.spec.virtual_machine_name, uid = pass.uid, key = pass.key,
       object = pass.object, port, token,
       recorded](std::stop_token task_stop) -> core::Result<warm::RoundRecord> {
        core::Result<warm::RoundRecord> result = warm::RoundRecord{};
        if (!off) {
          auto on_action = [this, &object, &key](std::string_view reason,
                                                 std::string_view message) {
            events_.Record(object, "Normal", std::string(reason), std::string(message));
            log_.Info(std::string(message), {{"import", key}, {"action", std::string(reason)}});
          };
          if (auto st = source_vm->PowerOff(task_stop, power, on_action); !st) {
            result = MakeError(st.error().Wrap("cutover: powering the source off"));
          } else {
            warm::RoundRecord rec;
            rec.number = kSourceOffStep;
            rec.started = clock_.WallNow();
            result = rec;
          }
        } else if (copied) {
          if (auto all = t->RemoveAll(vm, uid); !all) {
            result = MakeError(all.error().Wrap("cutover: removing the checkpoints"));
          } else if (auto rel = t->ReleaseAfterFinalRound(vm); !rel) {
            result = MakeError(rel.error().Wrap("cutover: turning the source off"));
          } else {
            warm::RoundRecord rec;
            rec.number = kSourceReleasedStep;
            result = rec;
          }
        } else if (auto held = t->HoldForFinalRound(vm); !held) {
          result = MakeError(held.error().Wrap("cutover: holding the source for the last round"));
        } else {
          result = CopyNextRound(task_stop, *t, vm, uid, recorded, port, token, clock_);
        }
        return result;
      });
  return Requeue(options_.poll);
}

core::Result<std::string> ImportReconciler::WriterToken(std::stop_token stop, const Pass& pass) {
  const auto& vm_import = pass.vm_import;
  auto secret = api_.Get(stop, kSecrets, vm_import.namespace_, vm_import.status.warm->writer_pod);
  if (!secret) {
    return MakeError(secret.error().Wrap("reading the writer's token"));
  }
  std::string token = core::JsonString(core::JsonObject(*secret, "stringData"), "token");
  if (token.empty()) {
    token = core::Base64Decode(core::JsonString(core::JsonObject(*secret, "data"), "token"))
                .value_or("");
  }
  return token;
}

bool ImportReconciler::TakeWarmOutcome(Running& r,
                                       std::optional<core::Result<warm::RoundRecord>>& outcome) {
  std::unique_lock lock(mu_);
  if (!r.warm_started) {
    return true;
  }
  if (!r.warm_done) {
    return false;
  }
  outcome = std::move(r.warm_result);
  r.warm_started = false;
  r.warm_done = false;
  r.warm_result.reset();
  lock.unlock();
  if (r.task.joinable()) {
    r.task.join();
  }
  return true;
}

void ImportReconciler::StartWarmStep(
    Running& r, const Pass& pass,
    std::function<core::Result<warm::RoundRecord>(std::stop_token)> step) {
  std::lock_guard lock(mu_);
  r.warm_started = true;
  r.warm_done = false;
  r.task = std::jthread(
      [this, step = std::move(step), uid = pass.uid, key = pass.key](std::stop_token task_stop) {
        core::Result<warm::RoundRecord> result = step(task_stop);
        {
          std::lock_guard done_lock(mu_);
          auto it = incarnations_.find(uid);
          if (it != incarnations_.end() && it->second->running) {
            it->second->running->warm_done = true;
            it->second->running->warm_result = std::move(result);
          }
        }
        queue_.Add(key);
      });
}

//! The base of the next round is gone from the source (somebody removed our checkpoint): what
//! changed since is unknown, so the rounds recorded no longer count and the next round is round
//! 0, a whole copy of every disk (absolute writes over the same volumes). In the cutover that
//! whole copy is the last round.
ReconcileResult ImportReconciler::BeginAgainAtRoundZero(Pass& pass, const core::Error& e) {
  api::WarmStatus& w = *pass.vm_import.status.warm;
  const size_t lost = w.rounds.size();
  w.rounds.clear();
  w.final_round.reset();
  w.estimated_downtime_seconds.reset();
  w.next_round_at.clear();
  w.waiting_for = "round 0 (the whole disks) again: the source lost our checkpoint";
  pass.notes.push_back({"Warning", "PrecopyRestarted",
                        e.message + ": the " + std::to_string(lost) +
                            " rounds recorded no longer count; copying the whole disks again "
                            "(round 0)"});
  return Requeue(std::chrono::milliseconds(1));
}

core::Status ImportReconciler::RemoveWarm(std::stop_token stop, Pass& pass, bool keep_volumes) {
  const auto& vm_import = pass.vm_import;
  if (!vm_import.status.warm) {
    return core::Ok();
  }
  const api::WarmStatus& w = *vm_import.status.warm;
  if (vm_import.status.import_status == ImportStatus::kPrecopy ||
      vm_import.status.import_status == ImportStatus::kCutover) {
    source::SourceKind kind{};
    auto source_obj = SourceObject(stop, vm_import, kind);
    if (source_obj) {
      auto it = options_.change_trackers.find(kind);
      auto config = LoadSourceConfig(stop, api_, kind, *source_obj);
      if (it != options_.change_trackers.end() && it->second && config) {
        if (auto all =
                it->second(*config)->RemoveAll(vm_import.spec.virtual_machine_name, pass.uid);
            !all) {
          return MakeError(all.error().Wrap("removing this import's checkpoints from the source"));
        }
      }
    }
  }
  for (const auto* res : {&kPods, &kSecrets}) {
    if (auto d = api_.Delete(stop, *res, vm_import.namespace_, w.writer_pod);
        !d && d.error().code != ErrorCode::kNotFound) {
      return MakeError(d.error());
    }
  }
  if (!keep_volumes) {
    for (const auto& v : w.volumes) {
      if (auto d = api_.Delete(stop, kPvcs, vm_import.namespace_, v);
          !d && d.error().code != ErrorCode::kNotFound) {
        return MakeError(d.error());
      }
    }
  }
  return core::Ok();
}
}  // namespace vmimport::controller
