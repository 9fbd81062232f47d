#include "controller/import_reconciler.h"

#include <algorithm>
#include <cctype>

#include "api/import_plan.h"
#include "api/vm_description.h"
#include "controller/import_internal.h"
#include "controller/plan_reconciler.h"
#include "controller/source_reconciler.h"
#include "core/json.h"
#include "core/strings.h"

namespace vmimport::controller {

using api::ImportStatus;
using core::ErrorCode;
using core::MakeError;
using kube::Json;
using namespace import_detail;  // NOLINT(google-build-using-namespace): this reconciler's own

const kube::Resource& ImportResource() {
  static const kube::Resource r{"migration.harvesterhci.io", "v1beta1", "virtualmachineimports",
                                true};
  return r;
}

const kube::Resource& ImageResource() {
  static const kube::Resource r{"harvesterhci.io", "v1beta1", "virtualmachineimages", true,
                                kube::FieldValidation::kStrict};
  return r;
}

namespace import_detail {

std::string StreamName(const std::string& uid, size_t index) {
  return uid + "/disk-" + std::to_string(index);
}

std::optional<std::pair<std::string, size_t>> ParseStreamName(const std::string& name) {
  const auto at = name.rfind("/disk-");
  if (at == std::string::npos || at == 0) {
    return std::nullopt;
  }
  const std::string digits = name.substr(at + 6);
  if (digits.empty() || digits.size() > 6 || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) != 0;
      })) {
    return std::nullopt;
  }
  return std::pair{name.substr(0, at), static_cast<size_t>(std::stoul(digits))};
}

std::string RedactDiskTokens(std::string message) {
  static constexpr std::string_view kPath = "/disks/";
  for (size_t at = message.find(kPath); at != std::string::npos;
       at = message.find(kPath, at + kPath.size())) {
    const size_t begin = at + kPath.size();
    size_t end = begin;
    while (end < message.size() && std::isxdigit(static_cast<unsigned char>(message[end])) != 0) {
      ++end;
    }
    if (end > begin) {
      message.replace(begin, end - begin, "<token>");
    }
  }
  return message;
}

}  // namespace import_detail

namespace {

bool HasFinalizer(const Json& object) {
  const Json& md = core::JsonObject(object, "metadata");
  auto it = md.find("finalizers");
  if (it == md.end() || !it->is_array()) {
    return false;
  }
  return std::find(it->begin(), it->end(), kImportFinalizer) != it->end();
}

int64_t GenerationOf(const Json& object) {
  const Json& md = core::JsonObject(object, "metadata");
  auto it = md.find("generation");
  return it != md.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

int64_t ObservedGeneration(const api::VirtualMachineImportStatus& status) {
  auto it = status.extra.find(kObservedGenerationKey);
  return it != status.extra.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

//! A terminal error of a phase, as a condition reason.
std::string ReasonOfTerminal(const core::Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidArgument: return "Rejected";
    case ErrorCode::kCorruptData: return "CorruptSource";
    case ErrorCode::kUnsupported: return "Unsupported";
    default: return "Failed";
  }
}

}  // namespace

ImportReconciler::ImportReconciler(kube::Api& api, kube::ObjectCache& imports,
                                   kube::ObjectCache& images,
                                   std::map<source::SourceKind, source::Importer*> importers,
                                   imageserver::ImageServer& image_server, WorkQueue& queue,
                                   kube::EventSink& events, const core::Clock& clock,
                                   core::Logger log, ImportReconcilerOptions options)
    : api_(api),
      imports_(imports),
      images_(images),
      importers_(std::move(importers)),
      image_server_(image_server),
      queue_(queue),
      events_(events),
      clock_(clock),
      log_(std::move(log)),
      options_(std::move(options)),
      stream_slots_(options_.max_streams_per_source) {}  // options_ is declared before it

ImportReconciler::~ImportReconciler() {
  std::stop_source none;
  std::vector<std::string> uids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [uid, inc] : incarnations_) {
      uids.push_back(uid);
    }
  }
  for (const auto& uid : uids) {
    Release(none.get_token(), uid, false, "the controller stopped");
  }
}

void ImportReconciler::SetMetrics(core::Metrics* metrics) {
  if (metrics != nullptr) {
    using T = core::Metrics::Type;
    metrics->Declare("vmimport_import_duration_seconds", T::kHistogram,
                     "Time from an import's creation to its VM running.");
    metrics->Declare("vmimport_import_phase_duration_seconds", T::kHistogram,
                     "Time an import spent in a phase (importStatus), as this process saw it.");
    metrics->Declare("vmimport_imports_finished_total", T::kCounter,
                     "Imports that reached a final state, by state.");
    metrics->Declare("vmimport_stream_bytes_total", T::kCounter,
                     "Raw disk bytes sent by the image server, by namespace, import and disk.");
    metrics->Declare("vmimport_stream_throughput_bytes_per_second", T::kHistogram,
                     "Average rate of each finished disk stream.", core::ThroughputBuckets());
    metrics->Declare(
        "vmimport_streams_total", T::kCounter,
        "Finished disk streams, by outcome (completed, clientGone, sourceError, ...).");
    metrics->Declare("vmimport_disk_bytes_done", T::kGauge,
                     "Bytes of a disk stream sent so far, by namespace, import and disk.");
    metrics->Declare("vmimport_status_write_failures_total", T::kCounter,
                     "Status writes of imports that failed (retried), by reason (conflict, ...).");
  }
  metrics_ = metrics;
}

size_t ImportReconciler::RunningImports() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(
      std::count_if(incarnations_.begin(), incarnations_.end(),
                    [](const auto& kv) { return kv.second->running != nullptr; }));
}

size_t ImportReconciler::TrackedImportsForTest() const {
  std::lock_guard lock(mu_);
  return incarnations_.size();
}

ImportReconciler::Incarnation& ImportReconciler::IncarnationLocked(const std::string& key,
                                                                   const std::string& uid) {
  auto& slot = incarnations_[uid];
  if (!slot) {
    slot = std::make_unique<Incarnation>();
    slot->key = key;
    slot->uid = uid;
  }
  uid_of_key_[key] = uid;
  return *slot;
}

// --- holding and letting go of the source ------------------------------------------------------

void ImportReconciler::Release(std::stop_token stop, const std::string& uid, bool completed,
                               const std::string& reason) {
  std::unique_ptr<Running> running;
  std::string key;
  {
    std::lock_guard lock(mu_);
    auto it = incarnations_.find(uid);
    if (it == incarnations_.end()) {
      return;
    }
    Incarnation& inc = *it->second;
    key = inc.key;
    inc.admitted = false;
    if (!inc.running) {
      return;
    }
    running = std::move(inc.running);
    if (completed) {
      inc.described = running->description;  // for CreateVm
    }
  }
  for (const auto& token : running->tokens) {
    image_server_.Unpublish(token);
  }
  // The export task first: the SourceVm is used by one thread at a time.
  if (running->task.joinable()) {
    running->task.request_stop();
    running->task.join();
  }
  if (running->vm) {
    if (auto st = running->vm->FinishExport(stop, completed, reason); !st) {
      log_.Warn("ending the export failed", {{"import", key}, {"error", st.error().ToString()}});
    }
  }
}

void ImportReconciler::Forget(std::stop_token stop, const std::string& uid,
                              const std::string& reason) {
  Release(stop, uid, false, reason);
  std::lock_guard lock(mu_);
  auto it = incarnations_.find(uid);
  if (it == incarnations_.end()) {
    return;
  }
  if (!it->second->claim.empty()) {
    if (auto c = claims_.find(it->second->claim); c != claims_.end() && c->second == uid) {
      claims_.erase(c);
    }
  }
  if (auto k = uid_of_key_.find(it->second->key); k != uid_of_key_.end() && k->second == uid) {
    uid_of_key_.erase(k);
  }
  incarnations_.erase(it);
}

core::Result<Json> ImportReconciler::SourceObject(std::stop_token stop,
                                                  const api::VirtualMachineImport& vm_import,
                                                  source::SourceKind& kind) {
  const auto& ref = vm_import.spec.source_cluster;
  auto k = source::SourceKindOfObjectKind(ref.kind);
  if (!k) {
    return MakeError(ErrorCode::kInvalidArgument, "unsupported source kind \"" + ref.kind + "\"");
  }
  kind = *k;
  const std::string ns = ref.namespace_.empty() ? vm_import.namespace_ : ref.namespace_;
  auto obj = api_.Get(stop, SourceResource(kind), ns, ref.name);
  if (!obj) {
    return MakeError(obj.error().Wrap(std::string(source::SourceKindName(kind)) + " source " + ns +
                                      "/" + ref.name));
  }
  return *obj;
}

std::vector<std::shared_ptr<source::SharedBandwidth>> ImportReconciler::SharedCapsFor(
    std::stop_token stop, const Pass& pass, const Json& source_obj,
    const source::SourceConfig& config, const model::VmDescription& vm) {
  std::vector<std::shared_ptr<source::SharedBandwidth>> caps;
  const Json& smd = core::JsonObject(source_obj, "metadata");
  const std::string source_key = core::JsonString(source_obj, "kind") + "/" +
                                 core::JsonString(smd, "namespace") + "/" +
                                 core::JsonString(smd, "name");
  caps.push_back(options_.bandwidth->For(source_key, config.bandwidth_bytes_per_second));
  if (!vm.host.empty()) {
    caps.push_back(options_.bandwidth->For(source_key + "/host/" + vm.host,
                                           config.bandwidth_per_host_bytes_per_second));
  }
  const Json& md = core::JsonObject(pass.object, "metadata");
  for (const Json& ref : core::JsonArray(md, "ownerReferences")) {
    if (core::JsonString(ref, "kind") != api::kImportPlanKind) {
      continue;
    }
    const std::string ns = core::JsonString(md, "namespace");
    const std::string plan = core::JsonString(ref, "name");
    auto obj = api_.Get(stop, PlanResource(), ns, plan);
    if (!obj) {
      log_.Warn("plan not readable: its bandwidth cap is not applied",
                {{"import", pass.key}, {"plan", plan}, {"error", obj.error().message}});
      continue;
    }
    const Json* cap = core::JsonMember(core::JsonObject(*obj, "spec"), "bandwidthBytesPerSecond");
    const double rate = cap != nullptr && cap->is_number() ? cap->get<double>() : 0;
    caps.push_back(
        options_.bandwidth->For(std::string(api::kImportPlanKind) + "/" + ns + "/" + plan, rate));
  }
  std::erase(caps, nullptr);
  return caps;
}

core::Result<ImportReconciler::Running*> ImportReconciler::OpenSource(std::stop_token stop,
                                                                      Pass& pass) {
  {
    std::lock_guard lock(mu_);
    Incarnation& inc = IncarnationLocked(pass.key, pass.uid);
    if (inc.running) {
      return inc.running.get();
    }
  }
  source::SourceKind kind{};
  auto source_obj = SourceObject(stop, pass.vm_import, kind);
  if (!source_obj) {
    return MakeError(source_obj.error());
  }
  auto it = importers_.find(kind);
  if (it == importers_.end() || it->second == nullptr) {
    return MakeError(ErrorCode::kUnsupported, std::string("imports from ") +
                                                  source::SourceKindName(kind) +
                                                  " sources are not supported yet");
  }
  auto config = LoadSourceConfig(stop, api_, kind, *source_obj);
  if (!config) {
    return MakeError(config.error());
  }
  auto vm = it->second->Open(stop, *config,
                             {.vm_name = pass.vm_import.spec.virtual_machine_name,
                              .folder = pass.vm_import.spec.folder,
                              .owner = pass.uid});
  if (!vm) {
    return MakeError(vm.error());
  }
  auto running = std::make_unique<Running>();
  running->host = source::HostOfUrl(config->endpoint);
  running->description = (*vm)->Description();
  if (options_.bandwidth != nullptr) {
    running->bandwidth = SharedCapsFor(stop, pass, *source_obj, *config, running->description);
  }
  running->vm = std::move(*vm);
  std::lock_guard lock(mu_);
  Incarnation& inc = IncarnationLocked(pass.key, pass.uid);
  inc.source_host = running->host;
  if (!inc.running) {
    inc.running = std::move(running);
  }
  return inc.running.get();
}

std::string ImportReconciler::ProbeSource(std::stop_token stop, const Pass& pass) {
  source::SourceKind kind{};
  auto source_obj = SourceObject(stop, pass.vm_import, kind);
  if (!source_obj) {
    return source_obj.error().code == ErrorCode::kNotFound
               ? "; the source object " + pass.vm_import.spec.source_cluster.name +
                     " no longer exists"
               : "";
  }
  auto it = importers_.find(kind);
  if (it == importers_.end() || it->second == nullptr) {
    return "";
  }
  auto config = LoadSourceConfig(stop, api_, kind, *source_obj);
  if (!config) {
    return "";
  }
  auto vm = it->second->Open(stop, *config,
                             {.vm_name = pass.vm_import.spec.virtual_machine_name,
                              .folder = pass.vm_import.spec.folder,
                              .owner = pass.uid});
  if (!vm && vm.error().code == ErrorCode::kNotFound) {
    return "; the source VM " + pass.vm_import.spec.virtual_machine_name +
           " no longer exists on the source (" + vm.error().message + ")";
  }
  if (vm) {
    (void)(*vm)->FinishExport(stop, false, "probe only");  // logs out
  }
  return "";
}

// --- deciding and writing --------------------------------------------------------------------

namespace import_detail {
void NotePhaseTransition(api::VirtualMachineImportStatus& status,
                         std::chrono::system_clock::time_point now) {
  const std::string phase(api::ImportStatusName(status.import_status));
  Json& list = status.extra[kPhaseTransitionsKey];
  if (!list.is_array()) {
    list = Json::array();
  }
  if (!list.empty() && list.back().is_object() && core::JsonString(list.back(), "phase") == phase) {
    return;  // a write retried after a failure: the phase began at the first attempt
  }
  list.push_back({{"phase", phase}, {"time", core::FormatRfc3339Micro(now)}});
}
}  // namespace import_detail

void ImportReconciler::Move(Pass& pass, ImportStatus next, const std::string& reason,
                            const std::string& message) {
  pass.vm_import.status.import_status = next;
  pass.notes.push_back({"Normal", reason, core::SanitizeUtf8(message)});
}

void ImportReconciler::Fail(Pass& pass, ImportStatus state, const std::string& reason,
                            const std::string& message) {
  const std::string clean = core::SanitizeUtf8(message);
  pass.vm_import.status.import_status = state;
  api::SetCondition(pass.vm_import.status.import_conditions,
                    MakeCondition("Failed", "True", reason, clean), clock_.WallNow());
  pass.notes.push_back({"Warning", reason, clean});
}

core::Status ImportReconciler::Commit(std::stop_token stop, Pass& pass) {
  api::VirtualMachineImportStatus& status = pass.vm_import.status;
  status.extra[kObservedGenerationKey] = GenerationOf(pass.object);
  if (status.import_status != pass.initial) {
    NotePhaseTransition(status, clock_.WallNow());
  }
  const Json next = api::StatusToJson(status);
  if (next != pass.read_status) {
    // A PUT of the status subresource carrying the resourceVersion the decision was made from:
    // a newer object (a stale cache, another writer) answers 409 and nothing is overwritten.
    Json body = pass.object;
    body["status"] = next;
    auto written = api_.UpdateStatus(stop, ImportResource(), pass.vm_import.namespace_, body);
    if (!written) {
      const bool conflict = written.error().code == ErrorCode::kConflict;
      if (auto* m = metrics_.load()) {
        m->Add("vmimport_status_write_failures_total",
               {{"reason",
                 conflict ? "conflict" : std::string(core::ErrorCodeName(written.error().code))}});
      }
      std::vector<std::string> lost;
      for (const auto& n : pass.notes) {
        lost.push_back(n.reason);
      }
      log_.Warn(conflict ? "import changed meanwhile: deciding again on a fresh read"
                         : "status write failed: retrying with backoff",
                {{"import", pass.key},
                 {"status", std::string(api::ImportStatusName(status.import_status))},
                 {"pending", core::Join(lost, ",")},
                 {"error", written.error().message}});
      return MakeError(written.error().Wrap("status of " + pass.key));
    }
    pass.object = *written;
    pass.vm_import.resource_version =
        core::JsonString(core::JsonObject(pass.object, "metadata"), "resourceVersion");
    pass.read_status = next;
    std::lock_guard lock(mu_);
    if (auto it = incarnations_.find(pass.uid); it != incarnations_.end()) {
      it->second->written_rv = pass.vm_import.resource_version;
    }
  }
  for (const auto& n : pass.notes) {
    events_.Record(pass.object, n.type, n.reason, n.message);
    const std::string status_name(api::ImportStatusName(status.import_status));
    if (n.type == "Warning") {
      log_.Error(n.message, {{"import", pass.key}, {"status", status_name}, {"reason", n.reason}});
    } else {
      log_.Info(n.message, {{"import", pass.key}, {"status", status_name}, {"reason", n.reason}});
    }
  }
  pass.notes.clear();
  if (status.import_status != pass.initial) {
    RecordPhase(pass, pass.initial, status.import_status);
    pass.initial = status.import_status;
  }
  if (pass.forget) {
    Forget(stop, pass.uid, "the import ended");
  }
  return {};
}

void ImportReconciler::RecordPhase(Pass& pass, ImportStatus previous, ImportStatus next) {
  const auto now = std::chrono::steady_clock::now();
  std::optional<double> spent;
  {
    std::lock_guard lock(mu_);
    Incarnation& inc = IncarnationLocked(pass.key, pass.uid);
    if (inc.phase_since && inc.phase_since->first == previous) {
      spent = std::chrono::duration<double>(now - inc.phase_since->second).count();
    }
    inc.phase_since = {next, now};
  }
  auto* m = metrics_.load();
  if (m == nullptr) {
    return;
  }
  if (spent) {
    m->Observe("vmimport_import_phase_duration_seconds",
               {{"phase", std::string(api::ImportStatusName(previous))}}, *spent);
  }
  if (!api::IsFinished(next, pass.vm_import.spec.StartsStopped())) {
    return;
  }
  m->Add("vmimport_imports_finished_total", {{"status", std::string(api::ImportStatusName(next))}});
  std::chrono::system_clock::time_point created;
  if ((next == ImportStatus::kVirtualMachineRunning ||
       next == ImportStatus::kVirtualMachineCreated) &&
      core::ParseRfc3339(
          core::JsonString(core::JsonObject(pass.object, "metadata"), "creationTimestamp"),
          created)) {
    m->Observe("vmimport_import_duration_seconds", {},
               std::chrono::duration<double>(clock_.WallNow() - created).count());
  }
}

// --- reconcile -------------------------------------------------------------------------------

core::Result<ReconcileResult> ImportReconciler::Reconcile(std::stop_token stop,
                                                          const std::string& key) {
  auto cached = imports_.Get(key);
  if (!cached) {
    std::string uid;
    {
      std::lock_guard lock(mu_);
      if (auto it = uid_of_key_.find(key); it != uid_of_key_.end()) {
        uid = it->second;
      }
    }
    if (!uid.empty()) {
      Forget(stop, uid, "the import was deleted");
    }
    return Done();
  }
  Pass pass;
  pass.key = key;
  pass.object = std::move(*cached);
  pass.uid = core::JsonString(core::JsonObject(pass.object, "metadata"), "uid");
  // State of an earlier import of the same name is never inherited; a cache read older than
  // our own last write is replaced by a fresh one (a stale read must not look like a restart).
  bool stale = false;
  std::string previous_uid;
  {
    std::lock_guard lock(mu_);
    if (auto it = uid_of_key_.find(key); it != uid_of_key_.end() && it->second != pass.uid) {
      previous_uid = it->second;
    }
    if (auto it = incarnations_.find(pass.uid); it != incarnations_.end()) {
      stale = !it->second->written_rv.empty() &&
              it->second->written_rv !=
                  core::JsonString(core::JsonObject(pass.object, "metadata"), "resourceVersion");
    }
  }
  if (!previous_uid.empty()) {
    Forget(stop, previous_uid, "the import was deleted and created again");
  }
  if (stale) {
    auto fresh = api_.Get(stop, ImportResource(),
                          core::JsonString(core::JsonObject(pass.object, "metadata"), "namespace"),
                          core::JsonString(core::JsonObject(pass.object, "metadata"), "name"));
    if (!fresh) {
      if (fresh.error().code == ErrorCode::kNotFound) {
        Forget(stop, pass.uid, "the import was deleted");
        return Done();
      }
      return MakeError(fresh.error().Wrap("reading " + key));
    }
    if (core::JsonString(core::JsonObject(*fresh, "metadata"), "uid") != pass.uid) {
      Forget(stop, pass.uid, "the import was deleted and created again");
      return Requeue(std::chrono::milliseconds(0));
    }
    pass.object = std::move(*fresh);
  }
  auto parsed = api::VirtualMachineImportFromJson(pass.object);
  if (!parsed) {
    // The CRD schema keeps this from happening; say it where the user looks, and wait for an edit.
    log_.Error("unreadable VirtualMachineImport",
               {{"import", key}, {"error", parsed.error().ToString()}});
    events_.Record(pass.object, "Warning", "Unreadable", parsed.error().message);
    return Done();
  }
  pass.vm_import = std::move(*parsed);
  pass.read_status = api::StatusToJson(pass.vm_import.status);
  pass.initial = pass.vm_import.status.import_status;
  if (core::JsonObject(pass.object, "metadata").contains("deletionTimestamp")) {
    return Finalize(stop, pass);
  }
  if (!api::IsFinished(pass.vm_import.status.import_status, pass.vm_import.spec.StartsStopped()) &&
      !HasFinalizer(pass.object)) {
    Json finalizers = core::JsonObject(pass.object, "metadata").value("finalizers", Json::array());
    if (!finalizers.is_array()) {
      finalizers = Json::array();
    }
    finalizers.push_back(kImportFinalizer);
    auto r = api_.MergePatch(
        stop, ImportResource(), pass.vm_import.namespace_, pass.vm_import.name,
        {{"metadata",
          {{"finalizers", finalizers}, {"resourceVersion", pass.vm_import.resource_version}}}});
    if (!r) {
      return MakeError(r.error().Wrap("adding the finalizer"));
    }
    pass.object = *r;
    pass.vm_import.resource_version =
        core::JsonString(core::JsonObject(*r, "metadata"), "resourceVersion");
    std::lock_guard lock(mu_);
    IncarnationLocked(key, pass.uid).written_rv = pass.vm_import.resource_version;
  }
  // An invalid import whose spec was edited is validated again (as the reference cannot).
  if (pass.vm_import.status.import_status == ImportStatus::kVirtualMachineImportInvalid &&
      GenerationOf(pass.object) != ObservedGeneration(pass.vm_import.status)) {
    Forget(stop, pass.uid, "the spec changed");
    api::VirtualMachineImportStatus fresh;
    fresh.extra = Json::object();
    pass.vm_import.status = std::move(fresh);
    pass.notes.push_back({"Normal", "SpecChanged",
                          "the spec changed (generation " +
                              std::to_string(GenerationOf(pass.object)) +
                              "): the import is validated again"});
  }

  const ImportStatus before = pass.vm_import.status.import_status;
  auto result = Step(stop, pass);
  if (!result && result.error().code == ErrorCode::kPermissionDenied) {
    // RBAC refused one of our API calls. Not the import's fault, and not final: an operator
    // grants the permission. Say so where they look (the Event also lands on `kubectl describe`
    // of the import; repeats only bump its count), keep everything, and retry.
    const std::string message = result.error().message +
                                " (grant it to the controller's ServiceAccount; the import "
                                "retries every " +
                                std::to_string(options_.forbidden_retry.count()) + " s)";
    log_.Error("forbidden by RBAC", {{"import", key}, {"error", message}});
    events_.Record(pass.object, "Warning", "Forbidden", message);
    return Requeue(options_.forbidden_retry);
  }
  if (!result && result.error().Terminal()) {
    // Retrying cannot help (the API server refused an object we made, the source's data is
    // corrupt or unsupported): the import fails, said in status, an Event and the log, and what
    // it holds is let go once that is written.
    const bool early =
        before == ImportStatus::kNew || before == ImportStatus::kVirtualMachineImportValid;
    Fail(pass,
         early ? ImportStatus::kVirtualMachineImportInvalid : ImportStatus::kVmMigrationFailed,
         ReasonOfTerminal(result.error()), RedactDiskTokens(result.error().message));
    result = Done();
  }
  if (auto st = Commit(stop, pass); !st) {
    return MakeError(st.error());
  }
  if (!Failed(before) && Failed(pass.vm_import.status.import_status)) {
    // Just failed: the next pass lets go of the source and removes what the import made
    // (level-triggered: retried until done).
    return Requeue(std::chrono::milliseconds(1));
  }
  return result;
}

core::Result<ReconcileResult> ImportReconciler::Step(std::stop_token stop, Pass& pass) {
  switch (pass.vm_import.status.import_status) {
    case ImportStatus::kNew: return Validate(pass);
    case ImportStatus::kVirtualMachineImportValid: return Preflight(stop, pass);
    case ImportStatus::kSourceReady:
      return IsWarm(pass.vm_import) ? StartPrecopy(stop, pass) : Export(stop, pass);
    case ImportStatus::kDisksExported:
      return TargetOf(pass.vm_import) == api::DiskTarget::kVolume ? SubmitVolumes(stop, pass)
                                                                  : SubmitImages(stop, pass);
    case ImportStatus::kDiskImagesSubmitted:
      return TargetOf(pass.vm_import) == api::DiskTarget::kVolume ? WatchVolumes(stop, pass)
                                                                  : WatchImages(stop, pass);
    case ImportStatus::kDiskImagesReady: return CreateVm(stop, pass);
    case ImportStatus::kVirtualMachineCreated:
      if (pass.vm_import.spec.StartsStopped()) {
        pass.forget = true;  // finished: CreateVm released the images
        return Done();
      }
      return WaitRunning(stop, pass);
    case ImportStatus::kVirtualMachineImportInvalid:
    case ImportStatus::kDiskImagesFailed:
    case ImportStatus::kVmMigrationFailed: return CleanUpFailed(stop, pass);
    case ImportStatus::kPrecopy: return Precopy(stop, pass);
    case ImportStatus::kCutover: return Cutover(stop, pass);
    case ImportStatus::kVirtualMachineRunning:
    case ImportStatus::kUnrecognised: pass.forget = true; return Done();
  }
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::CleanUpFailed(std::stop_token stop, Pass& pass) {
  Release(stop, pass.uid, false, "the import failed");
  auto& status = pass.vm_import.status;
  const bool keep =
      core::JsonString(
          core::JsonObject(pass.object, "metadata").value("annotations", Json::object()),
          kKeepFailedDisksAnnotation) == "true";
  const bool done = api::FindCondition(status.import_conditions, kDisksRemovedCondition) != nullptr;
  if (IsWarm(pass.vm_import) && !done) {
    if (auto ok = RemoveWarm(stop, pass, keep); !ok) {
      return MakeError(ok.error());
    }
  }
  std::vector<std::string> made;
  const bool volumes = TargetOf(pass.vm_import) == api::DiskTarget::kVolume;
  for (const auto& disk : status.disk_import_status) {
    if (!disk.virtual_machine_image.empty()) {
      made.push_back(disk.virtual_machine_image);
    }
    if (!disk.data_volume.empty()) {
      made.push_back(disk.data_volume);
    }
  }
  if (done || (made.empty() && !volumes)) {
    pass.forget = true;
    return Done();
  }
  if (keep) {
    api::SetCondition(
        status.import_conditions,
        MakeCondition(kDisksRemovedCondition, "False", "Kept",
                      "kept for inspection (" + std::string(kKeepFailedDisksAnnotation) + ")"),
        clock_.WallNow());
    pass.notes.push_back(
        {"Normal", "DisksKept",
         "the import failed; its " + std::to_string(made.size()) +
             " VirtualMachineImages and volumes are kept as annotated: " + core::Join(made, ", ")});
    pass.forget = true;
    return Done();
  }
  if (volumes) {
    std::vector<std::string> removed;
    if (auto ok = RemoveVolumes(stop, pass, removed); !ok) {
      return MakeError(ok.error().Wrap("removing the DataVolumes of a failed import"));
    }
    made = removed;
    if (made.empty()) {
      pass.forget = true;
      return Done();
    }
  }
  for (const auto& name : volumes ? std::vector<std::string>{} : made) {
    const std::string ns = pass.vm_import.namespace_;
    auto pvc = api_.Delete(stop, {"", "v1", "persistentvolumeclaims", true}, ns, name);
    if (!pvc && pvc.error().code != ErrorCode::kNotFound) {
      return MakeError(pvc.error().Wrap("removing the volume " + name + " of a failed import"));
    }
    auto image = api_.Delete(stop, ImageResource(), ns, name);
    if (!image && image.error().code != ErrorCode::kNotFound) {
      return MakeError(image.error().Wrap("removing the image " + name + " of a failed import"));
    }
  }
  api::SetCondition(status.import_conditions,
                    MakeCondition(kDisksRemovedCondition, "True", "CleanedUp",
                                  "removed " + core::Join(made, ", ")),
                    clock_.WallNow());
  pass.notes.push_back({"Normal", "CleanedUp",
                        "the import failed: removed the " + std::to_string(made.size()) +
                            " VirtualMachineImages and volumes it made (" + core::Join(made, ", ") +
                            "); annotate the import " + std::string(kKeepFailedDisksAnnotation) +
                            "=\"true\" to keep them next time"});
  pass.forget = true;
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::Finalize(std::stop_token stop, Pass& pass) {
  Release(stop, pass.uid, false, "the import was deleted");
  if (!HasFinalizer(pass.object)) {
    Forget(stop, pass.uid, "the import was deleted");
    return Done();
  }
  const auto& vm_import = pass.vm_import;
  const bool finished = vm_import.status.import_status == ImportStatus::kVirtualMachineRunning ||
                        vm_import.status.import_status == ImportStatus::kVirtualMachineCreated;
  if (!finished && IsWarm(vm_import)) {
    // Cancel of a warm import: the source keeps running, without our checkpoints.
    if (auto ok = RemoveWarm(stop, pass, false); !ok) {
      return MakeError(ok.error());
    }
  }
  if (!finished) {
    // Remove what this import made; nothing more is created (the phase functions never run for a
    // deleted import).
    for (const auto& disk : vm_import.status.disk_import_status) {
      if (disk.virtual_machine_image.empty()) {
        continue;
      }
      auto pvc = api_.Delete(stop, {"", "v1", "persistentvolumeclaims", true}, vm_import.namespace_,
                             disk.virtual_machine_image);
      if (!pvc && pvc.error().code != ErrorCode::kNotFound) {
        return MakeError(pvc.error());
      }
      auto image =
          api_.Delete(stop, ImageResource(), vm_import.namespace_, disk.virtual_machine_image);
      if (!image && image.error().code != ErrorCode::kNotFound) {
        return MakeError(image.error());
      }
    }
    if (TargetOf(vm_import) == api::DiskTarget::kVolume) {
      std::vector<std::string> removed;
      if (auto ok = RemoveVolumes(stop, pass, removed); !ok) {
        return MakeError(ok.error());
      }
    }
    events_.Record(pass.object, "Normal", "Cancelled",
                   "import deleted before the end: its images and volumes were removed");
  }
  Json finalizers = Json::array();
  const Json current = core::JsonObject(pass.object, "metadata").value("finalizers", Json::array());
  for (const auto& f : current) {
    if (f != kImportFinalizer) {
      finalizers.push_back(f);
    }
  }
  auto r = api_.MergePatch(
      stop, ImportResource(), vm_import.namespace_, vm_import.name,
      {{"metadata",
        {{"finalizers", finalizers}, {"resourceVersion", vm_import.resource_version}}}});
  if (!r && r.error().code != ErrorCode::kNotFound) {
    return MakeError(r.error().Wrap("removing the finalizer"));
  }
  Forget(stop, pass.uid, "the import was deleted");
  log_.Info("import deleted", {{"import", pass.key}});
  return Done();
}

}  // namespace vmimport::controller
