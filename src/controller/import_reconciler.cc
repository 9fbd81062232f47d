#include "controller/import_reconciler.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "api/names.h"
#include "controller/source_reconciler.h"
#include "core/strings.h"
#include "harvester/image.h"
#include "harvester/image_status.h"
#include "harvester/pvc.h"
#include "harvester/virtual_machine.h"

namespace vmimport::controller {

using api::ImportStatus;
using core::ErrorCode;
using core::MakeError;
using kube::Json;

const kube::Resource& ImportResource() {
  static const kube::Resource r{"migration.harvesterhci.io", "v1beta1", "virtualmachineimports",
                                true};
  return r;
}

const kube::Resource& ImageResource() {
  static const kube::Resource r{"harvesterhci.io", "v1beta1", "virtualmachineimages", true};
  return r;
}

namespace {

const kube::Resource kStorageClasses{"storage.k8s.io", "v1", "storageclasses", false};
const kube::Resource kNads{"k8s.cni.cncf.io", "v1", "network-attachment-definitions", true};
const kube::Resource kPvcs{"", "v1", "persistentvolumeclaims", true};
const kube::Resource kVms{"kubevirt.io", "v1", "virtualmachines", true};
const kube::Resource kVmis{"kubevirt.io", "v1", "virtualmachineinstances", true};

constexpr const char* kImageDisplayNameLabel = "harvesterhci.io/imageDisplayName";

ReconcileResult Requeue(std::chrono::milliseconds after) { return ReconcileResult{after}; }
ReconcileResult Done() { return ReconcileResult{}; }

std::optional<source::SourceKind> KindOf(const std::string& kind) {
  const std::string k = core::ToLower(kind);
  if (k == "vmwaresource") {
    return source::SourceKind::kVmware;
  }
  if (k == "openstacksource") {
    return source::SourceKind::kOpenstack;
  }
  if (k == "ovasource") {
    return source::SourceKind::kOva;
  }
  return std::nullopt;
}

//! diskName as the reference writes it for VMware: "<import>-<namespace>-disk-<i>.img".
std::string DiskName(const api::VirtualMachineImport& vm_import, size_t index) {
  return vm_import.name + "-" + vm_import.namespace_ + "-disk-" + std::to_string(index) + ".img";
}

std::string StreamName(const std::string& key, size_t index) {
  return key + "/disk-" + std::to_string(index);
}

bool HasFinalizer(const Json& object) {
  const Json& md = object["metadata"];
  if (!md.contains("finalizers") || !md["finalizers"].is_array()) {
    return false;
  }
  return std::find(md["finalizers"].begin(), md["finalizers"].end(), kImportFinalizer) !=
         md["finalizers"].end();
}

api::Condition MakeCondition(std::string_view type, const std::string& status,
                             const std::string& reason, const std::string& message) {
  return api::Condition{std::string(type), status, reason, message, "", ""};
}

//! `message` with every image-server token ("/disks/<hex>") replaced: Harvester's download
//! errors quote the disk URL, a capability that must not reach status, Events or logs.
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

bool DiskHas(const api::DiskInfo& disk, std::string_view type) {
  return api::IsConditionTrue(disk.disk_conditions, std::string(type));
}

//! The kube error of a failed source call, as a CamelCase reason.
std::string ReasonOf(const core::Error& error) {
  switch (error.code) {
    case ErrorCode::kNotFound: return "VirtualMachineNotFound";
    case ErrorCode::kInvalidArgument: return "AmbiguousOrInvalid";
    case ErrorCode::kUnauthenticated: return "InvalidCredentials";
    case ErrorCode::kCorruptData: return "CorruptSource";
    default: return ReadinessReason(error);
  }
}

}  // namespace

struct ImportReconciler::Running {
  // Shared with the image server's stream factories and open streams: a stream still opening or
  // reading when the import lets go keeps the VM (session, HTTP client) alive until it ends.
  std::shared_ptr<source::SourceVm> vm;
  std::string host;  // the source's host: the key of its stream slots
  model::VmDescription description;
  std::vector<std::string> tokens;  // published disks, by index
  std::vector<std::string> urls;    // their URLs: capabilities, never logged or in status
  bool exported = false;
};

ImportReconciler::ImportReconciler(kube::Client& client, kube::Informer& imports,
                                   kube::Informer& images,
                                   std::map<source::SourceKind, source::Importer*> importers,
                                   imageserver::ImageServer& image_server, WorkQueue& queue,
                                   kube::EventRecorder& events, const core::Clock& clock,
                                   core::Logger log, ImportReconcilerOptions options)
    : client_(client),
      imports_(imports),
      images_(images),
      importers_(std::move(importers)),
      image_server_(image_server),
      queue_(queue),
      events_(events),
      clock_(clock),
      log_(std::move(log)),
      options_(options),
      stream_slots_(options.max_streams_per_source) {}

ImportReconciler::~ImportReconciler() {
  std::stop_source none;
  std::vector<std::string> keys;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, r] : running_) {
      keys.push_back(key);
    }
  }
  for (const auto& key : keys) {
    Release(none.get_token(), key, false, "the controller stopped");
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
  }
  metrics_ = metrics;
}

size_t ImportReconciler::RunningImports() const {
  std::lock_guard lock(mu_);
  return running_.size();
}

// --- stream observer -------------------------------------------------------------------------

namespace {
//! "ns/name/disk-3" -> "ns/name".
std::string ImportKeyOfStream(const std::string& stream) {
  const auto slash = stream.rfind('/');
  return slash == std::string::npos ? stream : stream.substr(0, slash);
}

//! namespace, import and disk of a stream named "ns/name/disk-3".
core::Labels StreamLabels(const std::string& stream) {
  const auto parts = core::Split(stream, '/');
  if (parts.size() != 3) {
    return {{"disk", stream}};
  }
  return {{"namespace", std::string(parts[0])},
          {"import", std::string(parts[1])},
          {"disk", std::string(parts[2])}};
}
}  // namespace

core::Labels ImportReconciler::MetricLabels(const std::string& stream) const {
  core::Labels labels = StreamLabels(stream);
  std::lock_guard lock(mu_);
  auto it = source_hosts_.find(ImportKeyOfStream(stream));
  labels.emplace_back("source", it == source_hosts_.end() ? "" : it->second);
  return labels;
}

void ImportReconciler::OnStreamStarted(const imageserver::StreamInfo& info) {
  std::lock_guard lock(mu_);
  auto& s = streams_[info.disk_name];
  s.bytes = 0;
  s.total = info.total_bytes;
}

void ImportReconciler::OnProgress(const imageserver::StreamProgress& progress) {
  {
    std::lock_guard lock(mu_);
    auto& s = streams_[progress.info.disk_name];
    s.bytes = progress.bytes;
    s.total = progress.info.total_bytes;
    s.bytes_per_second = progress.bytes_per_second;
  }
  if (auto* m = metrics_.load()) {
    m->Set("vmimport_disk_bytes_done", MetricLabels(progress.info.disk_name),
           static_cast<double>(progress.bytes));
  }
  queue_.Add(ImportKeyOfStream(progress.info.disk_name));
}

void ImportReconciler::OnStreamFinished(const imageserver::StreamResult& result) {
  {
    std::lock_guard lock(mu_);
    auto& s = streams_[result.info.disk_name];
    s.bytes = result.bytes;
    s.bytes_per_second = result.bytes_per_second;
    if (result.checksums) {
      s.checksums = result.checksums;
    }
    if (result.outcome == imageserver::StreamOutcome::kCompleted) {
      s.permanent_error.reset();
    } else if (result.error && (result.error->code == ErrorCode::kCorruptData ||
                                result.error->code == ErrorCode::kUnsupported)) {
      s.permanent_error = result.error;
    }
    s.last_error = result.error ? result.error->ToString()
                                : std::string(imageserver::StreamOutcomeName(result.outcome));
  }
  if (auto* m = metrics_.load()) {
    const core::Labels labels = MetricLabels(result.info.disk_name);
    m->Add("vmimport_stream_bytes_total", labels, static_cast<double>(result.bytes));
    m->Set("vmimport_disk_bytes_done", labels, static_cast<double>(result.bytes));
    m->Add("vmimport_streams_total",
           {{"outcome", std::string(imageserver::StreamOutcomeName(result.outcome))}});
    if (result.outcome == imageserver::StreamOutcome::kCompleted) {
      m->Observe("vmimport_stream_throughput_bytes_per_second", {}, result.bytes_per_second);
    }
  }
  log_.Info("disk stream finished", {{"disk", result.info.disk_name},
                                     {"outcome", imageserver::StreamOutcomeName(result.outcome)},
                                     {"bytes", result.bytes},
                                     {"MBps", result.bytes_per_second / 1e6}});
  queue_.Add(ImportKeyOfStream(result.info.disk_name));
}

void ImportReconciler::FillProgress(const std::string& key, api::VirtualMachineImport& vm_import) {
  std::lock_guard lock(mu_);
  uint64_t done = 0;
  uint64_t total = 0;
  for (size_t i = 0; i < vm_import.status.disk_import_status.size(); ++i) {
    auto it = streams_.find(StreamName(key, i));
    if (it == streams_.end()) {
      continue;
    }
    auto& p = vm_import.status.disk_import_status[i].progress;
    const DiskStreamState& s = it->second;
    p.bytes_done = s.bytes;
    p.bytes_total = s.total;
    p.bytes_per_second = static_cast<uint64_t>(s.bytes_per_second);
    p.eta_seconds =
        s.bytes_per_second > 0 && s.total >= s.bytes
            ? static_cast<int64_t>(std::ceil(double(s.total - s.bytes) / s.bytes_per_second))
            : -1;
    if (s.checksums) {
      p.sha256 = s.checksums->sha256;
      p.sha512 = s.checksums->sha512;
    }
    done += std::min(s.bytes, s.total);
    total += s.total;
  }
  // status.progress: one figure for the printer column, over every disk streamed so far.
  if (total > 0) {
    vm_import.status.extra["progress"] = std::to_string(done * 100 / total) + "%";
  }
}

// --- helpers ---------------------------------------------------------------------------------

core::Status ImportReconciler::WriteStatus(std::stop_token stop, const Json& object,
                                           const api::VirtualMachineImport& vm_import) {
  Json patch = {{"status", api::StatusToJson(vm_import.status)}};
  auto r = client_.MergePatch(stop, ImportResource(), vm_import.namespace_, vm_import.name, patch,
                              "status");
  if (!r) {
    return MakeError(r.error().Wrap("status of " + kube::ObjectKeyOf(object)));
  }
  return {};
}

void ImportReconciler::RecordPhase(const Json& object, api::ImportStatus previous,
                                   api::ImportStatus next) {
  const std::string key = kube::ObjectKeyOf(object);
  const auto now = std::chrono::steady_clock::now();
  std::optional<double> spent;
  {
    std::lock_guard lock(mu_);
    auto it = phase_since_.find(key);
    if (it != phase_since_.end() && it->second.first == previous) {
      spent = std::chrono::duration<double>(now - it->second.second).count();
    }
    if (api::IsTerminal(next)) {
      phase_since_.erase(key);
    } else {
      phase_since_[key] = {next, now};
    }
  }
  auto* m = metrics_.load();
  if (m == nullptr) {
    return;
  }
  if (spent) {
    m->Observe("vmimport_import_phase_duration_seconds",
               {{"phase", std::string(api::ImportStatusName(previous))}}, *spent);
  }
  if (!api::IsTerminal(next)) {
    return;
  }
  m->Add("vmimport_imports_finished_total", {{"status", std::string(api::ImportStatusName(next))}});
  std::chrono::system_clock::time_point created;
  if (next == api::ImportStatus::kVirtualMachineRunning &&
      core::ParseRfc3339(object["metadata"].value("creationTimestamp", ""), created)) {
    m->Observe("vmimport_import_duration_seconds", {},
               std::chrono::duration<double>(clock_.WallNow() - created).count());
  }
}

core::Status ImportReconciler::Transition(std::stop_token stop, const Json& object,
                                          api::VirtualMachineImport& vm_import,
                                          api::ImportStatus next, const std::string& reason,
                                          const std::string& message) {
  const api::ImportStatus previous = vm_import.status.import_status;
  vm_import.status.import_status = next;
  if (auto st = WriteStatus(stop, object, vm_import); !st) {
    return st;
  }
  events_.Record(object, "Normal", reason, message);
  RecordPhase(object, previous, next);
  log_.Info(message, {{"import", kube::ObjectKeyOf(object)},
                      {"status", std::string(api::ImportStatusName(next))}});
  return {};
}

core::Status ImportReconciler::Fail(std::stop_token stop, const Json& object,
                                    api::VirtualMachineImport& vm_import, api::ImportStatus state,
                                    const std::string& reason, const std::string& message) {
  const api::ImportStatus previous = vm_import.status.import_status;
  vm_import.status.import_status = state;
  api::SetCondition(vm_import.status.import_conditions,
                    MakeCondition("Failed", "True", reason, message), clock_.WallNow());
  if (auto st = WriteStatus(stop, object, vm_import); !st) {
    return st;
  }
  RecordPhase(object, previous, state);
  events_.Record(object, "Warning", reason, message);
  log_.Error(message, {{"import", kube::ObjectKeyOf(object)},
                       {"status", std::string(api::ImportStatusName(state))},
                       {"reason", reason}});
  return {};
}

core::Result<Json> ImportReconciler::SourceObject(std::stop_token stop,
                                                  const api::VirtualMachineImport& vm_import,
                                                  source::SourceKind& kind) {
  const auto& ref = vm_import.spec.source_cluster;
  auto k = KindOf(ref.kind);
  if (!k) {
    return MakeError(ErrorCode::kInvalidArgument, "unsupported source kind \"" + ref.kind + "\"");
  }
  kind = *k;
  const std::string ns = ref.namespace_.empty() ? vm_import.namespace_ : ref.namespace_;
  auto obj = client_.Get(stop, SourceResource(kind), ns, ref.name);
  if (!obj) {
    return MakeError(obj.error().Wrap(std::string(source::SourceKindName(kind)) + " source " + ns +
                                      "/" + ref.name));
  }
  return *obj;
}

core::Result<ImportReconciler::Running*> ImportReconciler::OpenSource(
    std::stop_token stop, const std::string& key, const api::VirtualMachineImport& vm_import) {
  {
    std::lock_guard lock(mu_);
    if (auto it = running_.find(key); it != running_.end()) {
      return it->second.get();
    }
  }
  source::SourceKind kind{};
  auto source_obj = SourceObject(stop, vm_import, kind);
  if (!source_obj) {
    return MakeError(source_obj.error());
  }
  auto it = importers_.find(kind);
  if (it == importers_.end() || it->second == nullptr) {
    return MakeError(ErrorCode::kUnsupported, std::string("imports from ") +
                                                  source::SourceKindName(kind) +
                                                  " sources are not supported yet");
  }
  auto config = LoadSourceConfig(stop, client_, kind, *source_obj);
  if (!config) {
    return MakeError(config.error());
  }
  auto vm = it->second->Open(stop, *config,
                             {.vm_name = vm_import.spec.virtual_machine_name,
                              .folder = vm_import.spec.folder,
                              .owner = vm_import.uid});
  if (!vm) {
    return MakeError(vm.error());
  }
  auto running = std::make_unique<Running>();
  running->host = source::HostOfUrl(config->endpoint);
  running->description = (*vm)->Description();
  running->vm = std::move(*vm);
  std::lock_guard lock(mu_);
  source_hosts_[key] = running->host;
  auto [pos, inserted] = running_.emplace(key, std::move(running));
  return pos->second.get();
}

void ImportReconciler::Release(std::stop_token stop, const std::string& key, bool completed,
                               const std::string& reason) {
  std::unique_ptr<Running> running;
  {
    std::lock_guard lock(mu_);
    admitted_.erase(key);
    described_.erase(key);
    auto it = running_.find(key);
    if (it == running_.end()) {
      return;
    }
    running = std::move(it->second);
    running_.erase(it);
    if (completed) {
      described_[key] = running->description;  // for CreateVm
    }
  }
  for (const auto& token : running->tokens) {
    image_server_.Unpublish(token);
  }
  if (running->vm) {
    if (auto st = running->vm->FinishExport(stop, completed, reason); !st) {
      log_.Warn("ending the export failed", {{"import", key}, {"error", st.error().ToString()}});
    }
  }
}

// --- reconcile -------------------------------------------------------------------------------

core::Result<ReconcileResult> ImportReconciler::Reconcile(std::stop_token stop,
                                                          const std::string& key) {
  auto cached = imports_.Get(key);
  if (!cached) {
    Release(stop, key, false, "the import was deleted");
    return Done();
  }
  Json object = *cached;
  auto parsed = api::VirtualMachineImportFromJson(object);
  if (!parsed) {
    log_.Error("unreadable VirtualMachineImport",
               {{"import", key}, {"error", parsed.error().ToString()}});
    return Done();  // the CRD schema keeps this from happening; nothing to do until it changes
  }
  api::VirtualMachineImport& vm_import = *parsed;
  if (object["metadata"].contains("deletionTimestamp")) {
    return Finalize(stop, key, vm_import, object);
  }
  if (!api::IsTerminal(vm_import.status.import_status) && !HasFinalizer(object)) {
    Json finalizers = object["metadata"].value("finalizers", Json::array());
    finalizers.push_back(kImportFinalizer);
    auto r = client_.MergePatch(
        stop, ImportResource(), vm_import.namespace_, vm_import.name,
        {{"metadata",
          {{"finalizers", finalizers}, {"resourceVersion", vm_import.resource_version}}}});
    if (!r) {
      return MakeError(r.error().Wrap("adding the finalizer"));
    }
    object = *r;
    vm_import.resource_version = (*r)["metadata"].value("resourceVersion", "");
  }
  auto result = Step(stop, key, object, vm_import);
  if (!result && result.error().code == ErrorCode::kPermissionDenied) {
    // RBAC refused one of our API calls. Not the import's fault, and not final: an operator
    // grants the permission. Say so where they look (the Event also lands on `kubectl describe`
    // of the import; repeats only bump its count), keep everything, and retry.
    const std::string message = result.error().message +
                                " (grant it to the controller's ServiceAccount; the import "
                                "retries every " +
                                std::to_string(options_.forbidden_retry.count()) + " s)";
    log_.Error("forbidden by RBAC", {{"import", key}, {"error", message}});
    events_.Record(object, "Warning", "Forbidden", message);
    return Requeue(options_.forbidden_retry);
  }
  return result;
}

core::Result<ReconcileResult> ImportReconciler::Step(std::stop_token stop, const std::string& key,
                                                     const Json& object,
                                                     api::VirtualMachineImport& vm_import) {
  switch (vm_import.status.import_status) {
    case ImportStatus::kNew: return Validate(vm_import, object);
    case ImportStatus::kVirtualMachineImportValid: return Preflight(stop, key, vm_import, object);
    case ImportStatus::kSourceReady: return Export(stop, key, vm_import, object);
    case ImportStatus::kDisksExported: return SubmitImages(stop, key, vm_import, object);
    case ImportStatus::kDiskImagesSubmitted: return WatchImages(stop, key, vm_import, object);
    case ImportStatus::kDiskImagesReady: return CreateVm(stop, key, vm_import, object);
    case ImportStatus::kVirtualMachineCreated: return WaitRunning(stop, key, vm_import, object);
    case ImportStatus::kVirtualMachineRunning:
    case ImportStatus::kVirtualMachineImportInvalid:
    case ImportStatus::kDiskImagesFailed:
    case ImportStatus::kVmMigrationFailed:
    case ImportStatus::kUnrecognised: Release(stop, key, false, "the import ended"); return Done();
  }
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::Validate(api::VirtualMachineImport& vm_import,
                                                         const Json& object) {
  std::stop_source none;
  auto stop = none.get_token();
  const std::string ns = vm_import.namespace_;
  auto problems = api::ValidateImportSpec(vm_import.spec);
  auto target = api::SanitizeTargetName(vm_import.spec.virtual_machine_name);
  // A VM named by UUID (vSphere BIOS/instance UUID, OpenStack server id) gets the source VM's
  // name, known after preflight (the reference does this for OpenStack only).
  const bool by_uuid = api::LooksLikeUuid(vm_import.spec.virtual_machine_name);
  if (!target && !by_uuid) {
    // The seed's log lines: the error names the target, then the import is invalid.
    log_.Error("vm migration target " + vm_import.spec.virtual_machine_name + " in VM " +
               vm_import.name + " in namespace " + ns + " is not RFC 1123 compliant");
    problems.push_back(target.error().message);
  }
  if (!problems.empty()) {
    log_.Info("vm " + vm_import.name + " in namespace " + ns + " has an invalid spec",
              {{"import", kube::ObjectKeyOf(object)},
               {"reason", "InvalidSpec"},
               {"error", core::Join(problems, "; ")}});
    vm_import.status.import_status = ImportStatus::kVirtualMachineImportInvalid;
    api::SetCondition(vm_import.status.import_conditions,
                      MakeCondition("Invalid", "True", "InvalidSpec", core::Join(problems, "; ")),
                      clock_.WallNow());
    if (auto st = WriteStatus(stop, object, vm_import); !st) {
      return MakeError(st.error());
    }
    events_.Record(object, "Warning", "InvalidSpec", core::Join(problems, "; "));
    return Done();
  }
  if (target && !by_uuid) {
    vm_import.status.imported_virtual_machine_name = *target;
  }
  if (auto st = Transition(stop, object, vm_import, ImportStatus::kVirtualMachineImportValid,
                           "Valid", "the import spec is valid");
      !st) {
    return MakeError(st.error());
  }
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::Preflight(std::stop_token stop,
                                                          const std::string& key,
                                                          api::VirtualMachineImport& vm_import,
                                                          const Json& object) {
  source::SourceKind kind{};
  auto source_obj = SourceObject(stop, vm_import, kind);
  if (!source_obj) {
    if (source_obj.error().code == ErrorCode::kNotFound) {
      // As in one manifest holding Secret + source + imports: the source may come later.
      events_.Record(object, "Warning", "SourceNotFound", source_obj.error().message);
      log_.Warn(
          "the source of the import does not exist (yet)",
          {{"import", key}, {"reason", "SourceNotFound"}, {"error", source_obj.error().message}});
      return Requeue(options_.source_not_ready_requeue);
    }
    if (source_obj.error().code == ErrorCode::kInvalidArgument) {
      (void)Fail(stop, object, vm_import, ImportStatus::kVirtualMachineImportInvalid,
                 "InvalidSource", source_obj.error().message);
      return Done();
    }
    return MakeError(source_obj.error());
  }
  const std::string source_status =
      (*source_obj).value("status", Json::object()).value("status", "");
  if (source_status != kClusterReady) {
    // Say why, as the source's ClusterError condition does (its reason and message).
    std::string why;
    const auto source_conditions = api::ConditionsFromJson(
        (*source_obj).value("status", Json::object()).value("conditions", Json::array()));
    if (const auto* c = api::FindCondition(source_conditions, "ClusterError");
        c != nullptr && c->status == "True") {
      why = ": " + c->reason + ": " + c->message;
    }
    log_.Warn("The source cluster is not ready yet",
              {{"import", key},
               {"source", vm_import.spec.source_cluster.name},
               {"reason", "SourceNotReady"},
               {"error", why.empty() ? "" : why.substr(2)}});
    events_.Record(
        object, "Normal", "SourceNotReady",
        "waiting for source " + vm_import.spec.source_cluster.name + " to be ready" + why);
    return Requeue(options_.source_not_ready_requeue);
  }

  std::vector<std::string> problems;
  // Storage class: the named one, else the cluster's default must exist.
  if (!vm_import.spec.storage_class.empty()) {
    auto sc = client_.Get(stop, kStorageClasses, "", vm_import.spec.storage_class);
    if (!sc) {
      if (sc.error().code != ErrorCode::kNotFound) {
        return MakeError(sc.error());
      }
      problems.push_back("storage class " + vm_import.spec.storage_class + " not found");
    }
  }
  // Destination networks.
  std::set<std::string> seen_sources;
  for (const auto& m : vm_import.spec.network_mapping) {
    if (!seen_sources.insert(m.source_network).second) {
      problems.push_back("source network " + m.source_network +
                         " appears multiple times in VirtualMachineImport spec");
    }
    auto dest = api::ParseDestinationNetwork(m.destination_network, vm_import.namespace_);
    if (!dest) {
      problems.push_back(dest.error().message);
      continue;
    }
    auto nad = client_.Get(stop, kNads, dest->namespace_, dest->name);
    if (!nad) {
      if (nad.error().code != ErrorCode::kNotFound) {
        return MakeError(nad.error());
      }
      problems.push_back("destination network " + dest->namespace_ + "/" + dest->name +
                         " not found");
    }
  }
  if (!problems.empty()) {
    (void)Fail(stop, object, vm_import, ImportStatus::kVirtualMachineImportInvalid,
               "PreflightFailed", core::Join(problems, "; "));
    return Done();
  }
  // At most max_concurrent_imports hold a source VM at once; the others wait here, untouched.
  if (options_.max_concurrent_imports > 0) {
    std::lock_guard lock(mu_);
    // Admission and its count are one step: two workers cannot both take the last slot.
    std::set<std::string> holders = admitted_;
    for (const auto& [k, r] : running_) {
      holders.insert(k);
    }
    if (!holders.contains(key) && holders.size() >= options_.max_concurrent_imports) {
      events_.Record(object, "Normal", "WaitingForImportSlot",
                     "waiting: " + std::to_string(holders.size()) + " imports run, the limit is " +
                         std::to_string(options_.max_concurrent_imports));
      return Requeue(options_.poll);
    }
    admitted_.insert(key);
  }
  // Exactly one source VM.
  auto running = OpenSource(stop, key, vm_import);
  if (!running) {
    const auto& e = running.error();
    if (e.Terminal() || e.code == ErrorCode::kNotFound) {
      (void)Fail(stop, object, vm_import, ImportStatus::kVirtualMachineImportInvalid, ReasonOf(e),
                 e.message);
      return Done();
    }
    return MakeError(e);
  }
  const model::VmDescription& vm = (*running)->description;
  if (vm_import.status.imported_virtual_machine_name.empty()) {
    auto target = api::SanitizeTargetName(vm.name);
    if (!target) {
      log_.Error("vm migration target " + vm.name + " in VM " + vm_import.name + " in namespace " +
                 vm_import.namespace_ + " is not RFC 1123 compliant");
      Release(stop, key, false, "invalid target name");
      (void)Fail(stop, object, vm_import, ImportStatus::kVirtualMachineImportInvalid, "InvalidSpec",
                 target.error().message);
      return Done();
    }
    vm_import.status.imported_virtual_machine_name = *target;
  }
  // Never take over a VirtualMachine this import did not make: a VM of the target name already
  // there is refused before the source VM is touched.
  if (auto existing = client_.Get(stop, kVms, vm_import.namespace_,
                                  vm_import.status.imported_virtual_machine_name);
      existing || existing.error().code != ErrorCode::kNotFound) {
    if (!existing) {
      return MakeError(existing.error());
    }
    Release(stop, key, false, "the target VM exists");
    (void)Fail(stop, object, vm_import, ImportStatus::kVirtualMachineImportInvalid,
               "VirtualMachineExists",
               "VirtualMachine " + vm_import.namespace_ + "/" +
                   vm_import.status.imported_virtual_machine_name +
                   " already exists: delete it or import under another virtualMachineName");
    return Done();
  }
  if (vm.disks.empty()) {
    Release(stop, key, false, "the VM has no disks");
    (void)Fail(stop, object, vm_import, ImportStatus::kVirtualMachineImportInvalid, "NoDisks",
               "source VM " + vm.name + " has no disks to import");
    return Done();
  }
  // A mapped source network that no NIC of the VM is on maps nothing: the VM's NICs then go on
  // the pod network (the seed's bogus-network test). Say so, do not fail.
  for (const auto& m : vm_import.spec.network_mapping) {
    const bool used = std::any_of(vm.nics.begin(), vm.nics.end(), [&](const auto& nic) {
      return harvester::FindNetworkMapping(vm_import.spec, nic.network) == &m;
    });
    if (!used) {
      events_.Record(object, "Warning", "SourceNetworkNotFound",
                     "no NIC of " + vm.name + " is on source network " + m.source_network +
                         ": unmapped NICs go on the pod network");
    }
  }
  if (auto st = Transition(stop, object, vm_import, ImportStatus::kSourceReady, "SourceReady",
                           "found source VM " +
                               (vm.inventory_path.empty() ? vm.name : vm.inventory_path) +
                               " with " + std::to_string(vm.disks.size()) + " disks and " +
                               std::to_string(vm.nics.size()) + " NICs");
      !st) {
    return MakeError(st.error());
  }
  return Done();
}

core::Result<ImportReconciler::Running*> ImportReconciler::EnsurePublished(
    std::stop_token stop, const std::string& key, api::VirtualMachineImport& vm_import,
    const Json& object) {
  auto running = OpenSource(stop, key, vm_import);
  if (!running) {
    return MakeError(running.error());
  }
  Running& r = **running;
  auto on_action = [this, &object](std::string_view reason, std::string_view message) {
    events_.Record(object, "Normal", std::string(reason), std::string(message));
    log_.Info(std::string(message),
              {{"import", kube::ObjectKeyOf(object)}, {"action", std::string(reason)}});
  };
  if (!r.exported) {
    source::PowerOffRequest power{
        .force = vm_import.spec.ForcePowerOff(),
        .graceful_timeout = std::chrono::seconds(vm_import.spec.GracefulShutdownTimeoutSeconds())};
    if (auto st = r.vm->PowerOff(stop, power, on_action); !st) {
      events_.Record(object, "Warning", "PowerOffFailed", st.error().message);
      return MakeError(st.error());
    }
    api::SetCondition(vm_import.status.import_conditions,
                      MakeCondition(api::kConditionVmPoweredOff, "True", "PoweredOff", ""),
                      clock_.WallNow());
    if (auto st = r.vm->StartExport(stop, on_action); !st) {
      events_.Record(object, "Warning", "ExportFailed", st.error().message);
      return MakeError(st.error());
    }
    r.exported = true;
  }
  // Publish every disk: the bytes move when Harvester GETs the URL.
  const size_t count = r.description.disks.size();
  if (r.tokens.size() == count) {
    return &r;
  }
  for (const auto& token : r.tokens) {
    image_server_.Unpublish(token);
  }
  r.tokens.clear();
  r.urls.clear();
  for (size_t i = 0; i < count; ++i) {
    std::shared_ptr<source::SourceVm> vm = r.vm;
    const source::DiskStreamLimits limits{.bytes_per_second = options_.stream_bytes_per_second,
                                          .slots = &stream_slots_,
                                          .host = r.host};
    auto factory = [vm, i, limits](std::stop_token s) {
      return source::OpenDiskReader(s, vm, i, limits);
    };
    auto pub = image_server_.Publish(factory, {.name = StreamName(key, i)});
    if (!pub) {
      return MakeError(pub.error().Wrap("publishing disk " + std::to_string(i)));
    }
    r.tokens.push_back(pub->token);
    r.urls.push_back(pub->url);
  }
  return &r;
}

core::Result<ReconcileResult> ImportReconciler::ExportFailed(std::stop_token stop,
                                                             const std::string& key,
                                                             api::VirtualMachineImport& vm_import,
                                                             const Json& object,
                                                             const core::Error& error) {
  if (!error.Terminal()) {
    return MakeError(error);
  }
  Release(stop, key, false, "the export failed");
  (void)Fail(stop, object, vm_import, ImportStatus::kVmMigrationFailed, "ExportFailed",
             error.message);
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::Export(std::stop_token stop, const std::string& key,
                                                       api::VirtualMachineImport& vm_import,
                                                       const Json& object) {
  auto running = EnsurePublished(stop, key, vm_import, object);
  if (!running) {
    return ExportFailed(stop, key, vm_import, object, running.error());
  }
  const model::VmDescription& vm = (*running)->description;
  if (vm_import.status.disk_import_status.size() != vm.disks.size()) {
    vm_import.status.disk_import_status.clear();
    for (size_t i = 0; i < vm.disks.size(); ++i) {
      api::DiskInfo info;
      info.disk_name = DiskName(vm_import, i);
      info.disk_size = static_cast<int64_t>(vm.disks[i].capacity_bytes);
      info.bus_type = vm.disks[i].bus;
      vm_import.status.disk_import_status.push_back(std::move(info));
    }
  }
  api::SetCondition(vm_import.status.import_conditions,
                    MakeCondition(api::kConditionVmExported, "True", "Exported", ""),
                    clock_.WallNow());
  if (auto st =
          Transition(stop, object, vm_import, ImportStatus::kDisksExported, "DisksExported",
                     std::to_string(vm.disks.size()) + " disks published on the image server");
      !st) {
    return MakeError(st.error());
  }
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::SubmitImages(std::stop_token stop,
                                                             const std::string& key,
                                                             api::VirtualMachineImport& vm_import,
                                                             const Json& object) {
  // After a restart the disks are published again (the VM is off already: nothing is redone).
  auto running = EnsurePublished(stop, key, vm_import, object);
  if (!running) {
    return ExportFailed(stop, key, vm_import, object, running.error());
  }
  const std::vector<std::string> urls = (*running)->urls;
  if (urls.size() != vm_import.status.disk_import_status.size()) {
    return MakeError(ErrorCode::kInternal,
                     "the source VM has " + std::to_string(urls.size()) + " disks, the status " +
                         std::to_string(vm_import.status.disk_import_status.size()));
  }
  std::optional<harvester::StorageClassInfo> sc_info;
  if (!vm_import.spec.storage_class.empty()) {
    auto sc = client_.Get(stop, kStorageClasses, "", vm_import.spec.storage_class);
    if (!sc) {
      return MakeError(sc.error().Wrap("storage class " + vm_import.spec.storage_class));
    }
    harvester::StorageClassInfo info{
        vm_import.spec.storage_class, sc->value("provisioner", ""), {}};
    const Json parameters = sc->value("parameters", Json::object());
    for (const auto& [k, v] : parameters.items()) {
      if (v.is_string()) {
        info.parameters[k] = v.get<std::string>();
      }
    }
    sc_info = info;
  }
  for (size_t i = 0; i < urls.size(); ++i) {
    api::DiskInfo& disk = vm_import.status.disk_import_status[i];
    if (DiskHas(disk, api::kConditionImageSubmitted)) {
      continue;
    }
    const std::string display = harvester::ImageDisplayName(vm_import.name, disk.disk_name);
    // Idempotent: an image of this disk may exist from a reconcile whose status write was lost.
    auto existing =
        client_.List(stop, ImageResource(), vm_import.namespace_,
                     {.label_selector = std::string(kImageDisplayNameLabel) + "=" + display});
    if (!existing) {
      return MakeError(existing.error());
    }
    std::string image_name;
    const Json& items = (*existing)["items"];
    if (items.is_array() && items.size() > 1) {
      return MakeError(ErrorCode::kConflict, "found " + std::to_string(items.size()) +
                                                 " VirtualMachineImages labelled " + display +
                                                 ", expected one");
    }
    if (items.is_array() && items.size() == 1) {
      image_name = items[0]["metadata"].value("name", "");
    } else {
      auto image = harvester::BuildVirtualMachineImage(vm_import, disk.disk_name, urls[i],
                                                       sc_info ? &*sc_info : nullptr);
      if (!image) {
        return MakeError(image.error());
      }
      auto created = client_.Create(stop, ImageResource(), vm_import.namespace_, *image);
      if (!created) {
        return MakeError(
            created.error().Wrap("creating the VirtualMachineImage of " + disk.disk_name));
      }
      image_name = (*created)["metadata"].value("name", "");
      events_.Record(object, "Normal", "ImageCreated",
                     "VirtualMachineImage " + image_name + " created for " + disk.disk_name);
    }
    disk.virtual_machine_image = image_name;
    api::SetCondition(disk.disk_conditions,
                      MakeCondition(api::kConditionImageSubmitted, "True", "Submitted", ""),
                      clock_.WallNow());
  }
  if (auto st = Transition(stop, object, vm_import, ImportStatus::kDiskImagesSubmitted,
                           "DiskImagesSubmitted",
                           std::to_string(vm_import.status.disk_import_status.size()) +
                               " VirtualMachineImages submitted");
      !st) {
    return MakeError(st.error());
  }
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::WatchImages(std::stop_token stop,
                                                            const std::string& key,
                                                            api::VirtualMachineImport& vm_import,
                                                            const Json& object) {
  bool restarted = false;
  {
    std::lock_guard lock(mu_);
    restarted = !running_.contains(key);
  }
  if (restarted) {
    // The controller restarted while Harvester downloaded: the URLs the images hold died with the
    // old process. Disks already in Harvester stay; the others get a new image on new URLs.
    std::vector<size_t> redo;
    for (size_t i = 0; i < vm_import.status.disk_import_status.size(); ++i) {
      const auto& d = vm_import.status.disk_import_status[i];
      auto image = images_.Get(vm_import.namespace_ + "/" + d.virtual_machine_image);
      if (!image ||
          harvester::InterpretImageStatus(*image).phase != harvester::ImagePhase::kActive) {
        redo.push_back(i);
      }
    }
    if (!redo.empty()) {
      for (size_t i : redo) {
        auto& d = vm_import.status.disk_import_status[i];
        if (!d.virtual_machine_image.empty()) {
          auto del =
              client_.Delete(stop, ImageResource(), vm_import.namespace_, d.virtual_machine_image);
          if (!del && del.error().code != ErrorCode::kNotFound) {
            return MakeError(del.error());
          }
        }
        d.virtual_machine_image.clear();
        d.disk_conditions.clear();
      }
      if (auto st = Transition(stop, object, vm_import, ImportStatus::kDisksExported, "Resumed",
                               "resuming after a controller restart: " +
                                   std::to_string(redo.size()) + " disks are exported again");
          !st) {
        return MakeError(st.error());
      }
      return Done();
    }
  }
  FillProgress(key, vm_import);
  size_t ready = 0;
  for (size_t i = 0; i < vm_import.status.disk_import_status.size(); ++i) {
    api::DiskInfo& disk = vm_import.status.disk_import_status[i];
    auto image = images_.Get(vm_import.namespace_ + "/" + disk.virtual_machine_image);
    if (!image) {
      continue;  // the informer has not seen it yet
    }
    // Corrupt or unsupported source data fails the same way on every retry: fail now rather
    // than after Harvester's retries, which would read the whole source again each time.
    std::optional<core::Error> permanent;
    {
      std::lock_guard lock(mu_);
      auto it = streams_.find(StreamName(key, i));
      if (it != streams_.end()) {
        permanent = it->second.permanent_error;
      }
    }
    if (permanent) {
      Release(stop, key, false, "a disk cannot be read");
      (void)Fail(stop, object, vm_import, ImportStatus::kDiskImagesFailed,
                 permanent->code == ErrorCode::kCorruptData ? "CorruptDisk" : "UnsupportedDisk",
                 disk.disk_name + " cannot be imported: " + permanent->message);
      return Done();
    }
    const auto state = harvester::InterpretImageStatus(*image);
    switch (state.phase) {
      case harvester::ImagePhase::kActive:
        api::SetCondition(disk.disk_conditions,
                          MakeCondition(api::kConditionImageReady, "True", "Imported", ""),
                          clock_.WallNow());
        ++ready;
        break;
      case harvester::ImagePhase::kFailed: {
        api::SetCondition(disk.disk_conditions,
                          MakeCondition(api::kConditionImageFailed, "True", state.reason,
                                        RedactDiskTokens(state.message)),
                          clock_.WallNow());
        // Harvester only sees a short or cut download; our stream knows why (a digest mismatch,
        // a truncated source, an unreachable peer): say both.
        std::string cause;
        {
          std::lock_guard lock(mu_);
          auto it = streams_.find(StreamName(key, i));
          if (it != streams_.end() && !it->second.last_error.empty() &&
              it->second.last_error != std::string(imageserver::StreamOutcomeName(
                                           imageserver::StreamOutcome::kCompleted))) {
            cause = "; the source stream ended with: " + it->second.last_error;
          }
        }
        Release(stop, key, false, "a disk image failed");
        (void)Fail(stop, object, vm_import, ImportStatus::kDiskImagesFailed, "ImageFailed",
                   "VirtualMachineImage " + disk.virtual_machine_image + " of " + disk.disk_name +
                       " failed: " + RedactDiskTokens(state.message) + cause);
        return Done();
      }
      case harvester::ImagePhase::kPending:
      case harvester::ImagePhase::kProgress: break;
    }
  }
  if (ready < vm_import.status.disk_import_status.size()) {
    if (auto st = WriteStatus(stop, object, vm_import); !st) {
      return MakeError(st.error());
    }
    return Requeue(options_.poll);
  }
  Release(stop, key, true, "");
  vm_import.status.extra["progress"] = "100%";
  if (auto st = Transition(stop, object, vm_import, ImportStatus::kDiskImagesReady,
                           "DiskImagesReady", "every disk image is in Harvester");
      !st) {
    return MakeError(st.error());
  }
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::CreateVm(std::stop_token stop,
                                                         const std::string& key,
                                                         api::VirtualMachineImport& vm_import,
                                                         const Json& object) {
  // PVCs for backing images (CDI makes its own, named like the image).
  for (const auto& disk : vm_import.status.disk_import_status) {
    auto image = images_.Get(vm_import.namespace_ + "/" + disk.virtual_machine_image);
    if (!image) {
      return MakeError(ErrorCode::kUnavailable,
                       "VirtualMachineImage " + disk.virtual_machine_image + " not seen yet");
    }
    if (!harvester::ImageNeedsPvc(*image)) {
      continue;
    }
    auto pvc = harvester::BuildPvc(*image);
    if (!pvc) {
      return MakeError(pvc.error());
    }
    auto created = client_.Create(stop, kPvcs, vm_import.namespace_, *pvc);
    if (!created && created.error().code != ErrorCode::kAlreadyExists) {
      return MakeError(created.error().Wrap("creating the PVC of " + disk.disk_name));
    }
  }
  // The VM needs the source's description: from the open source, or described again after a
  // restart (the source VM is off and unchanged).
  model::VmDescription description;
  {
    std::lock_guard lock(mu_);
    if (auto it = running_.find(key); it != running_.end()) {
      description = it->second->description;
    } else if (auto d = described_.find(key); d != described_.end()) {
      description = d->second;
    }
  }
  if (description.disks.empty()) {
    auto running = OpenSource(stop, key, vm_import);
    if (!running && running.error().code == ErrorCode::kNotFound) {
      // Only after a restart: the disks are in Harvester, but the VM's CPUs, memory and NICs
      // come from the source, which is gone. Nothing is lost; say what brings it back.
      const std::string message = running.error().message +
                                  " (the disks are in Harvester; the VM's description comes "
                                  "from the source: bring it back and the import goes on)";
      log_.Warn("source needed to create the VM", {{"import", key}, {"error", message}});
      events_.Record(object, "Warning", "SourceNotFound", message);
      return Requeue(options_.source_not_ready_requeue);
    }
    if (!running) {
      return MakeError(running.error());
    }
    description = (*running)->description;
    Release(stop, key, false, "described only");
  }
  auto built = harvester::BuildVirtualMachine(vm_import, description);
  if (!built) {
    (void)Fail(stop, object, vm_import, ImportStatus::kVmMigrationFailed, "InvalidVirtualMachine",
               built.error().message);
    return Done();
  }
  for (const auto& w : built->warnings) {
    events_.Record(object, "Warning", "NotCarriedOver", w);
  }
  auto created = client_.Create(stop, kVms, vm_import.namespace_, built->object);
  if (!created && created.error().code != ErrorCode::kAlreadyExists) {
    return MakeError(created.error().Wrap("creating the VirtualMachine"));
  }
  vm_import.status.new_virtual_machine = vm_import.status.imported_virtual_machine_name;
  if (auto st = Transition(
          stop, object, vm_import, ImportStatus::kVirtualMachineCreated, "VirtualMachineCreated",
          "VirtualMachine " + vm_import.status.imported_virtual_machine_name + " created");
      !st) {
    return MakeError(st.error());
  }
  {
    std::lock_guard lock(mu_);
    described_.erase(key);
  }
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::WaitRunning(std::stop_token stop,
                                                            const std::string& /*key*/,
                                                            api::VirtualMachineImport& vm_import,
                                                            const Json& object) {
  auto vmi = client_.Get(stop, kVmis, vm_import.namespace_,
                         vm_import.status.imported_virtual_machine_name);
  if (!vmi) {
    if (vmi.error().code == ErrorCode::kNotFound) {
      return Requeue(options_.poll);
    }
    return MakeError(vmi.error());
  }
  if ((*vmi).value("status", Json::object()).value("phase", "") != "Running") {
    return Requeue(options_.poll);
  }
  // As the reference's tidyUpObjects: the images hold the VM's disks now, so they lose the
  // import's ownerReference; deleting the import must not let the garbage collector take them.
  for (const auto& disk : vm_import.status.disk_import_status) {
    auto image =
        client_.Get(stop, ImageResource(), vm_import.namespace_, disk.virtual_machine_image);
    if (!image) {
      return MakeError(image.error().Wrap("image " + disk.virtual_machine_image));
    }
    const Json refs = (*image)["metadata"].value("ownerReferences", Json::array());
    Json kept = Json::array();
    for (const Json& ref : refs) {
      if (ref.value("uid", "") != vm_import.uid) {
        kept.push_back(ref);
      }
    }
    if (kept.size() == refs.size()) {
      continue;
    }
    auto r =
        client_.MergePatch(stop, ImageResource(), vm_import.namespace_, disk.virtual_machine_image,
                           {{"metadata", {{"ownerReferences", kept}}}});
    if (!r) {
      return MakeError(r.error().Wrap("image " + disk.virtual_machine_image));
    }
  }
  if (auto st = Transition(
          stop, object, vm_import, ImportStatus::kVirtualMachineRunning, "VirtualMachineRunning",
          "VirtualMachine " + vm_import.status.imported_virtual_machine_name + " is running");
      !st) {
    return MakeError(st.error());
  }
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::Finalize(std::stop_token stop,
                                                         const std::string& key,
                                                         const api::VirtualMachineImport& vm_import,
                                                         const Json& object) {
  if (!HasFinalizer(object)) {
    Release(stop, key, false, "the import was deleted");
    return Done();
  }
  Release(stop, key, false, "the import was deleted");
  const bool finished = vm_import.status.import_status == ImportStatus::kVirtualMachineRunning ||
                        vm_import.status.import_status == ImportStatus::kVirtualMachineCreated;
  if (!finished) {
    // Remove what this import made; nothing more is created (the phase functions never run for a
    // deleted import).
    for (const auto& disk : vm_import.status.disk_import_status) {
      if (disk.virtual_machine_image.empty()) {
        continue;
      }
      auto pvc = client_.Delete(stop, kPvcs, vm_import.namespace_, disk.virtual_machine_image);
      if (!pvc && pvc.error().code != ErrorCode::kNotFound) {
        return MakeError(pvc.error());
      }
      auto image =
          client_.Delete(stop, ImageResource(), vm_import.namespace_, disk.virtual_machine_image);
      if (!image && image.error().code != ErrorCode::kNotFound) {
        return MakeError(image.error());
      }
    }
    events_.Record(object, "Normal", "Cancelled",
                   "import deleted before the end: its images and volumes were removed");
  }
  Json finalizers = Json::array();
  const Json current = object["metadata"].value("finalizers", Json::array());
  for (const auto& f : current) {
    if (f != kImportFinalizer) {
      finalizers.push_back(f);
    }
  }
  auto r = client_.MergePatch(
      stop, ImportResource(), vm_import.namespace_, vm_import.name,
      {{"metadata",
        {{"finalizers", finalizers}, {"resourceVersion", vm_import.resource_version}}}});
  if (!r && r.error().code != ErrorCode::kNotFound) {
    return MakeError(r.error().Wrap("removing the finalizer"));
  }
  log_.Info("import deleted", {{"import", key}});
  return Done();
}

}  // namespace vmimport::controller
