// The phases of an import (see import_reconciler.h): each reads what it needs, acts where it
// must (power off, publish, create images, PVCs, the VM), and decides the next status on the
// pass; Reconcile writes it once.

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "api/names.h"
#include "api/overrides.h"
#include "api/vm_description.h"
#include "controller/import_internal.h"
#include "controller/import_reconciler.h"
#include "controller/readiness.h"
#include "controller/source_reconciler.h"
#include "core/json.h"
#include "core/strings.h"
#include "harvester/backing_image.h"
#include "harvester/image.h"
#include "harvester/image_status.h"
#include "harvester/pvc.h"
#include "harvester/virtual_machine.h"

namespace vmimport::controller {

using api::ImportStatus;
using core::ErrorCode;
using core::MakeError;
using kube::Json;
using namespace import_detail;  // NOLINT(google-build-using-namespace): this reconciler's own

namespace {

const kube::Resource kStorageClasses{"storage.k8s.io", "v1", "storageclasses", false};
const kube::Resource kNads{"k8s.cni.cncf.io", "v1", "network-attachment-definitions", true};
// Objects of other projects are written with fieldValidation=Strict: a field their schema does not
// know is a bug of ours that the server would otherwise drop with only a warning.
const kube::Resource kPvcs{"", "v1", "persistentvolumeclaims", true,
                           kube::FieldValidation::kStrict};
const kube::Resource kVms{"kubevirt.io", "v1", "virtualmachines", true,
                          kube::FieldValidation::kStrict};
const kube::Resource kVmis{"kubevirt.io", "v1", "virtualmachineinstances", true};

//! A StorageClass's provisioner and string parameters (what decides an image's backend).
core::Result<harvester::StorageClassInfo> ReadStorageClass(kube::Api& api, std::stop_token stop,
                                                           const std::string& name) {
  auto sc = api.Get(stop, kStorageClasses, "", name);
  if (!sc) {
    return MakeError(sc.error().Wrap("storage class " + name));
  }
  harvester::StorageClassInfo info{name, core::JsonString(*sc, "provisioner"), {}};
  const Json parameters = sc->value("parameters", Json::object());
  if (parameters.is_object()) {
    for (const auto& [k, v] : parameters.items()) {
      if (v.is_string()) {
        info.parameters[k] = v.get<std::string>();
      }
    }
  }
  return info;
}

constexpr const char* kImageDisplayNameLabel = "harvesterhci.io/imageDisplayName";

//! diskName as the reference writes it for VMware: "<import>-<namespace>-disk-<i>.img".
std::string DiskName(const api::VirtualMachineImport& vm_import, size_t index) {
  return vm_import.name + "-" + vm_import.namespace_ + "-disk-" + std::to_string(index) + ".img";
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

//! Who the source VM is, across imports: its source host and the provider's id (vSphere moref,
//! Nova server id), else its UUIDs or name.
std::string SourceVmIdentity(const std::string& host, const model::VmDescription& vm) {
  std::string id = vm.id;
  if (id.empty()) {
    id = vm.instance_uuid;
  }
  if (id.empty()) {
    id = vm.bios_uuid;
  }
  if (id.empty()) {
    id = vm.name;
  }
  return host + "/" + id;
}

//! The description kept in status.sourceVirtualMachine, with the identity the import holds.
Json SourceVmStatus(const model::VmDescription& vm, const std::string& identity) {
  Json j = api::VmDescriptionToJson(vm);
  j["identity"] = identity;
  return j;
}

}  // namespace

// --- virtualMachineImportValid and before ------------------------------------------------------

core::Result<ReconcileResult> ImportReconciler::Validate(Pass& pass) {
  auto& vm_import = pass.vm_import;
  const std::string ns = vm_import.namespace_;
  auto problems = api::ValidateImportSpec(vm_import.spec);
  // spec.targetVirtualMachineName is taken as written (ValidateImportSpec checked it); only
  // without it is virtualMachineName lower-cased into the target name.
  const bool named = !vm_import.spec.target_virtual_machine_name.empty();
  auto target = named ? core::Result<std::string>(vm_import.spec.target_virtual_machine_name)
                      : api::SanitizeTargetName(vm_import.spec.virtual_machine_name);
  // A VM named by UUID (vSphere BIOS/instance UUID, OpenStack server id) gets the source VM's
  // name, known after preflight (the reference does this for OpenStack only).
  const bool by_uuid = !named && api::LooksLikeUuid(vm_import.spec.virtual_machine_name);
  if (!target && !by_uuid) {
    // The seed's log lines: the error names the target, then the import is invalid.
    log_.Error(core::SanitizeUtf8("vm migration target " + vm_import.spec.virtual_machine_name +
                                  " in VM " + vm_import.name + " in namespace " + ns +
                                  " is not RFC 1123 compliant"));
    // ValidateImportSpec names the target's problem already (once): not again here.
  }
  if (!problems.empty()) {
    const std::string message = core::SanitizeUtf8(core::Join(problems, "; "));
    log_.Info("vm " + vm_import.name + " in namespace " + ns + " has an invalid spec",
              {{"import", pass.key}, {"reason", "InvalidSpec"}, {"error", message}});
    vm_import.status.import_status = ImportStatus::kVirtualMachineImportInvalid;
    api::SetCondition(vm_import.status.import_conditions,
                      MakeCondition("Invalid", "True", "InvalidSpec", message), clock_.WallNow());
    pass.notes.push_back({"Warning", "InvalidSpec", message});
    return Done();
  }
  if (target && !by_uuid) {
    vm_import.status.imported_virtual_machine_name = *target;
  }
  Move(pass, ImportStatus::kVirtualMachineImportValid, "Valid", "the import spec is valid");
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::Preflight(std::stop_token stop, Pass& pass) {
  auto& vm_import = pass.vm_import;
  const std::string& key = pass.key;
  source::SourceKind kind{};
  auto source_obj = SourceObject(stop, vm_import, kind);
  if (!source_obj) {
    if (source_obj.error().code == ErrorCode::kNotFound) {
      // As in one manifest holding Secret + source + imports: the source may come later.
      events_.Record(pass.object, "Warning", "SourceNotFound", source_obj.error().message);
      log_.Warn(
          "the source of the import does not exist (yet)",
          {{"import", key}, {"reason", "SourceNotFound"}, {"error", source_obj.error().message}});
      return Requeue(options_.source_not_ready_requeue);
    }
    if (source_obj.error().code == ErrorCode::kInvalidArgument) {
      Fail(pass, ImportStatus::kVirtualMachineImportInvalid, "InvalidSource",
           source_obj.error().message);
      return Done();
    }
    return MakeError(source_obj.error());
  }
  const Json source_status = source_obj->value("status", Json::object());
  if (core::JsonString(source_status, "status") != kClusterReady) {
    // Say why, as the source's ClusterError condition does (its reason and message).
    std::string why;
    const Json conditions_json = source_status.is_object()
                                     ? source_status.value("conditions", Json::array())
                                     : Json::array();
    const auto source_conditions = api::ConditionsFromJson(conditions_json);
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
        pass.object, "Normal", "SourceNotReady",
        "waiting for source " + vm_import.spec.source_cluster.name + " to be ready" + why);
    return Requeue(options_.source_not_ready_requeue);
  }

  std::vector<std::string> problems;
  // Storage classes: every one the spec names (storageClass, storageMapping, diskOverrides) must
  // exist before the source is touched; none named: the cluster's default.
  for (const std::string& name : api::NamedStorageClasses(vm_import.spec)) {
    auto sc = api_.Get(stop, kStorageClasses, "", name);
    if (!sc) {
      if (sc.error().code != ErrorCode::kNotFound) {
        return MakeError(sc.error());
      }
      problems.push_back("storage class " + name + " not found");
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
    auto nad = api_.Get(stop, kNads, dest->namespace_, dest->name);
    if (!nad) {
      if (nad.error().code != ErrorCode::kNotFound) {
        return MakeError(nad.error());
      }
      problems.push_back("destination network " + dest->namespace_ + "/" + dest->name +
                         " not found");
    }
  }
  if (!problems.empty()) {
    Fail(pass, ImportStatus::kVirtualMachineImportInvalid, "PreflightFailed",
         core::Join(problems, "; "));
    return Done();
  }
  // At most max_concurrent_imports hold a source VM at once; the others wait here, untouched.
  if (options_.max_concurrent_imports > 0) {
    size_t holders = 0;
    bool admitted = false;
    {
      std::lock_guard lock(mu_);
      // Admission and its count are one step: two workers cannot both take the last slot.
      for (const auto& [uid, inc] : incarnations_) {
        if (inc->admitted || inc->running) {
          ++holders;
        }
      }
      Incarnation& inc = IncarnationLocked(key, pass.uid);
      admitted = inc.admitted || inc.running != nullptr;
      if (!admitted && holders < options_.max_concurrent_imports) {
        inc.admitted = true;
        admitted = true;
      }
    }
    if (!admitted) {
      events_.Record(pass.object, "Normal", "WaitingForImportSlot",
                     "waiting: " + std::to_string(holders) + " imports run, the limit is " +
                         std::to_string(options_.max_concurrent_imports));
      return Requeue(options_.poll);
    }
  }
  // Exactly one source VM.
  auto running = OpenSource(stop, pass);
  if (!running) {
    const auto& e = running.error();
    if (e.Terminal() || e.code == ErrorCode::kNotFound) {
      Release(stop, pass.uid, false, "preflight failed");
      Fail(pass, ImportStatus::kVirtualMachineImportInvalid, ReasonOf(e), e.message);
      return Done();
    }
    return MakeError(e);
  }
  const model::VmDescription vm = (*running)->description;
  const std::string identity = SourceVmIdentity((*running)->host, vm);
  // One import at a time per source VM, across namespaces and restarts: a second import of the
  // same VM waits, before anything is touched. (An OVA is only read: any number may read it.)
  std::string holder;
  const bool claims = kind != source::SourceKind::kOva;
  if (claims) {
    std::lock_guard lock(mu_);
    if (auto it = claims_.find(identity);
        it != claims_.end() && it->second != pass.uid && incarnations_.contains(it->second)) {
      holder = incarnations_[it->second]->key;
    }
  }
  if (claims && holder.empty()) {
    for (const Json& other : imports_.List()) {
      if (core::JsonString(core::JsonObject(other, "metadata"), "uid") == pass.uid) {
        continue;
      }
      const Json status = other.value("status", Json::object());
      if (!status.is_object()) {
        continue;
      }
      const auto phase = api::ParseImportStatus(core::JsonString(status, "importStatus"));
      const bool stopped = core::JsonString(core::JsonObject(other, "spec"), "runStrategy") ==
                           api::kRunStrategyStopped;
      if (!phase || api::IsFinished(*phase, stopped) || *phase == ImportStatus::kNew ||
          *phase == ImportStatus::kVirtualMachineImportValid) {
        continue;
      }
      const Json kept = status.value(kSourceVmStatusKey, Json::object());
      if (core::JsonString(kept, "identity") == identity) {
        holder = kube::ObjectKeyOf(other);
        break;
      }
    }
  }
  if (!holder.empty()) {
    Release(stop, pass.uid, false, "the source VM is being imported by another import");
    events_.Record(pass.object, "Warning", "SourceVmInUse",
                   "source VM " + (vm.inventory_path.empty() ? vm.name : vm.inventory_path) +
                       " is being imported by " + holder +
                       ": this import waits, untouched, until that one ends");
    return Requeue(options_.poll);
  }
  if (claims) {
    std::lock_guard lock(mu_);
    claims_[identity] = pass.uid;
    IncarnationLocked(key, pass.uid).claim = identity;
  }
  if (vm_import.status.imported_virtual_machine_name.empty()) {
    auto target = api::SanitizeTargetName(vm.name);
    if (!target) {
      log_.Error(core::SanitizeUtf8("vm migration target " + vm.name + " in VM " + vm_import.name +
                                    " in namespace " + vm_import.namespace_ +
                                    " is not RFC 1123 compliant"));
      Release(stop, pass.uid, false, "invalid target name");
      Fail(pass, ImportStatus::kVirtualMachineImportInvalid, "InvalidSpec", target.error().message);
      return Done();
    }
    vm_import.status.imported_virtual_machine_name = *target;
  }
  // Never take over a VirtualMachine this import did not make: a VM of the target name already
  // there is refused before the source VM is touched.
  if (auto existing = api_.Get(stop, kVms, vm_import.namespace_,
                               vm_import.status.imported_virtual_machine_name);
      existing || existing.error().code != ErrorCode::kNotFound) {
    if (!existing) {
      return MakeError(existing.error());
    }
    // A VirtualMachine on its way out (KubeVirt's finalizer runs while virt-controller stops its
    // VMI) is not a conflict: the user deleted it to import again. Wait, untouched, until it is
    // gone.
    if (core::JsonObject(*existing, "metadata").contains("deletionTimestamp")) {
      events_.Record(pass.object, "Normal", "WaitingForVmDeletion",
                     "VirtualMachine " + vm_import.namespace_ + "/" +
                         vm_import.status.imported_virtual_machine_name +
                         " is being deleted: this import goes on once it is gone");
      return Requeue(options_.poll);
    }
    Release(stop, pass.uid, false, "the target VM exists");
    Fail(pass, ImportStatus::kVirtualMachineImportInvalid, "VirtualMachineExists",
         "VirtualMachine " + vm_import.namespace_ + "/" +
             vm_import.status.imported_virtual_machine_name +
             " already exists: delete it or import under another virtualMachineName");
    return Done();
  }
  // Overrides that name a disk or NIC the VM does not have: refused before the source is touched.
  if (auto wrong = api::OverrideProblemsFor(vm_import.spec, vm); !wrong.empty()) {
    Release(stop, pass.uid, false, "an override names what the VM does not have");
    Fail(pass, ImportStatus::kVirtualMachineImportInvalid, "PreflightFailed",
         core::Join(wrong, "; "));
    return Done();
  }
  if (vm.disks.empty()) {
    Release(stop, pass.uid, false, "the VM has no disks");
    Fail(pass, ImportStatus::kVirtualMachineImportInvalid, "NoDisks",
         "source VM " + vm.name + " has no disks to import");
    return Done();
  }
  if (vm.nics.empty()) {
    pass.notes.push_back(
        {"Warning", "NoNetworkInterfaces",
         "source VM " + vm.name + " has no network interface: the VM gets one on the pod network"});
  }
  // A mapped source network that no NIC of the VM is on maps nothing: the VM's NICs then go on
  // the pod network (the seed's bogus-network test). Say so, do not fail.
  for (const auto& m : vm_import.spec.network_mapping) {
    const bool used = std::any_of(vm.nics.begin(), vm.nics.end(), [&](const auto& nic) {
      return harvester::FindNetworkMapping(vm_import.spec, nic.network) == &m;
    });
    if (!used) {
      pass.notes.push_back({"Warning", "SourceNetworkNotFound",
                            "no NIC of " + vm.name + " is on source network " + m.source_network +
                                ": unmapped NICs go on the pod network"});
    }
  }
  // A storage mapping that matches no disk maps nothing: say so, do not fail.
  for (const std::string& unused : api::UnusedStorageMappings(vm_import.spec, vm)) {
    pass.notes.push_back({"Warning", "StorageMappingUnused", unused});
  }
  // Every override taken, in one Event (and one log line).
  if (auto taken = api::DescribeOverrides(vm_import.spec, vm); !taken.empty()) {
    const std::string message = "overrides: " + core::Join(taken, "; ");
    pass.notes.push_back({"Normal", "Overrides", message});  // logged with the Event
  }
  // The readiness verdict, before the source is touched: what the VM will boot with and what
  // will not carry over (controller/readiness.h).
  const Readiness readiness = AssessReadiness(vm, vm_import.spec);
  pass.notes.push_back(
      {readiness.Verdict() == "ready" ? "Normal" : "Warning", "Readiness", readiness.Summary()});
  log_.Info("readiness verdict",
            {{"import", key}, {"verdict", readiness.Verdict()}, {"detail", readiness.Summary()}});
  // Warm (spec.migrationMode): refused here, before the source is touched, unless it can be.
  auto warm = PreflightWarm(stop, pass, kind, *source_obj);
  if (!warm) {
    return MakeError(warm.error());
  }
  if (*warm) {
    return **warm;
  }
  vm_import.status.extra[kSourceVmStatusKey] = SourceVmStatus(vm, claims ? identity : "");
  Move(pass, ImportStatus::kSourceReady, "SourceReady",
       "found source VM " + (vm.inventory_path.empty() ? vm.name : vm.inventory_path) + " with " +
           std::to_string(vm.disks.size()) + " disks and " + std::to_string(vm.nics.size()) +
           " NICs");
  return Done();
}

// --- sourceReady, disksExported: the export ------------------------------------------------

core::Result<ImportReconciler::Running*> ImportReconciler::EnsurePublished(std::stop_token stop,
                                                                           Pass& pass) {
  auto opened = OpenSource(stop, pass);
  if (!opened) {
    return MakeError(opened.error());
  }
  Running& r = **opened;
  {
    std::unique_lock lock(mu_);
    if (!r.exported) {
      if (!r.task_started) {
        // Power off and start the export on a task of this import's own: a graceful shutdown
        // waits minutes, an OpenStack upload to Glance hours; no worker waits for either.
        r.task_started = true;
        r.task_done = false;
        r.task_error.reset();
        const source::PowerOffRequest power{
            .force = pass.vm_import.spec.ForcePowerOff(),
            .graceful_timeout =
                std::chrono::seconds(pass.vm_import.spec.GracefulShutdownTimeoutSeconds())};
        r.task = std::jthread([this, vm = r.vm, uid = pass.uid, key = pass.key,
                               object = pass.object, power](std::stop_token task_stop) {
          auto on_action = [this, &object, &key](std::string_view reason,
                                                 std::string_view message) {
            events_.Record(object, "Normal", std::string(reason), std::string(message));
            log_.Info(std::string(message), {{"import", key}, {"action", std::string(reason)}});
          };
          core::Status st = vm->PowerOff(task_stop, power, on_action);
          std::string what = "PowerOffFailed";
          if (st) {
            what = "ExportFailed";
            st = vm->StartExport(task_stop, on_action);
          }
          if (!st && st.error().code != ErrorCode::kCancelled) {
            events_.Record(object, "Warning", what, st.error().message);
          }
          {
            std::lock_guard done_lock(mu_);
            auto it = incarnations_.find(uid);
            if (it != incarnations_.end() && it->second->running && it->second->running->vm == vm) {
              it->second->running->task_done = true;
              if (!st) {
                it->second->running->task_error = st.error();
              }
            }
          }
          queue_.Add(key);
        });
        return static_cast<Running*>(nullptr);
      }
      if (!r.task_done) {
        return static_cast<Running*>(nullptr);
      }
      if (r.task_error) {
        core::Error e = *r.task_error;
        r.task_started = false;  // the next reconcile tries again, unless this is terminal
        lock.unlock();
        if (r.task.joinable()) {
          r.task.join();
        }
        return MakeError(std::move(e));
      }
      r.exported = true;
      // What StartExport learnt (OpenStack: Glance's digest of the exported image).
      r.description = r.vm->Description();
      lock.unlock();
      if (r.task.joinable()) {
        r.task.join();
      }
    }
  }
  api::SetCondition(pass.vm_import.status.import_conditions,
                    MakeCondition(api::kConditionVmPoweredOff, "True", "PoweredOff", ""),
                    clock_.WallNow());
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
    // A digest only a consumer could check (a raw Glance image's SHA-512, Harvester's
    // spec.checksum) is checked here when no consumer will: volume mode (CDI's importer checks
    // nothing) and images on the CDI backend (it ignores spec.checksum).
    const bool volume = TargetOf(pass.vm_import) == api::DiskTarget::kVolume;
    bool check_served_digest = volume;
    if (!volume && i < pass.vm_import.status.disk_import_status.size()) {
      const std::string class_name = DiskStorageClass(pass.vm_import, i);
      if (!class_name.empty()) {
        auto info = ReadStorageClass(api_, stop, class_name);
        if (!info) {
          return MakeError(info.error().Wrap("publishing disk " + std::to_string(i)));
        }
        check_served_digest = harvester::ImageBackendFor(*info) == "cdi";
      }
    }
    const source::DiskStreamOptions limits{.bytes_per_second = options_.stream_bytes_per_second,
                                           .slots = &stream_slots_,
                                           .host = r.host,
                                           .shared = r.bandwidth,
                                           .check_served_digest = check_served_digest};
    auto factory = [vm, i, limits](std::stop_token s) {
      return source::OpenDiskReader(s, vm, i, limits);
    };
    // Volume mode: CDI's importer decodes gzip as it streams, so zeros stay off the wire.
    const auto encoding = volume ? imageserver::Encoding::kSparseGzip : imageserver::Encoding::kRaw;
    // When Longhorn checks the source's digest (spec.checksum), a served SHA-512 would only
    // repeat that comparison: the image server computes none (issue 16: only compared hashes).
    const bool longhorn_checks_source = !check_served_digest && i < r.description.disks.size() &&
                                        SpecChecksumFor(r.description.disks[i]).has_value();
    auto pub =
        image_server_.Publish(factory, {.name = StreamName(pass.uid, i),
                                        .encoding = encoding,
                                        .consumer_checks_source_digest = longhorn_checks_source});
    if (!pub) {
      return MakeError(pub.error().Wrap("publishing disk " + std::to_string(i)));
    }
    r.tokens.push_back(pub->token);
    r.urls.push_back(pub->url);
  }
  return &r;
}

core::Result<ReconcileResult> ImportReconciler::ExportFailed(std::stop_token stop, Pass& pass,
                                                             const core::Error& error) {
  if (!error.Terminal()) {
    return MakeError(error);
  }
  Release(stop, pass.uid, false, "the export failed");
  Fail(pass, ImportStatus::kVmMigrationFailed, "ExportFailed", error.message);
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::Export(std::stop_token stop, Pass& pass) {
  auto running = EnsurePublished(stop, pass);
  if (!running) {
    return ExportFailed(stop, pass, running.error());
  }
  if (*running == nullptr) {
    return Requeue(options_.poll);  // the export task enqueues the import when it ends
  }
  auto& vm_import = pass.vm_import;
  const model::VmDescription& vm = (*running)->description;
  if (vm_import.status.disk_import_status.size() != vm.disks.size()) {
    vm_import.status.disk_import_status.clear();
    // Each disk's bus and StorageClass as the rules choose them (what the user wrote wins):
    // decided once, here, and read from status by everything that makes the disk.
    const DevicePlan devices = ChooseDevices(vm, vm_import.spec);
    for (size_t i = 0; i < vm.disks.size(); ++i) {
      api::DiskInfo info;
      info.disk_name = DiskName(vm_import, i);
      info.disk_size = static_cast<int64_t>(vm.disks[i].capacity_bytes);
      info.bus_type = devices.disks[i].value;
      info.storage_class = devices.storage[i].storage_class;
      vm_import.status.disk_import_status.push_back(std::move(info));
    }
    vm_import.status.extra[kDiskTargetStatusKey] =
        std::string(api::DiskTargetName(TargetOf(vm_import)));
  }
  api::SetCondition(vm_import.status.import_conditions,
                    MakeCondition(api::kConditionVmExported, "True", "Exported", ""),
                    clock_.WallNow());
  Move(pass, ImportStatus::kDisksExported, "DisksExported",
       std::to_string(vm.disks.size()) + " disks published on the image server");
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::SubmitImages(std::stop_token stop, Pass& pass) {
  auto& vm_import = pass.vm_import;
  // After a restart the disks are published again (the VM is off already: nothing is redone).
  auto running = EnsurePublished(stop, pass);
  if (!running) {
    return ExportFailed(stop, pass, running.error());
  }
  if (*running == nullptr) {
    return Requeue(options_.poll);
  }
  const std::vector<std::string> urls = (*running)->urls;
  if (urls.size() != vm_import.status.disk_import_status.size()) {
    return MakeError(ErrorCode::kInternal,
                     "the source VM has " + std::to_string(urls.size()) + " disks, the status " +
                         std::to_string(vm_import.status.disk_import_status.size()));
  }
  // Each disk's StorageClass as Export decided it (a status from before storageClass was kept:
  // spec.storageClass), read once per class.
  std::map<std::string, harvester::StorageClassInfo> classes;
  auto class_info = [&](const std::string& name) -> core::Result<harvester::StorageClassInfo> {
    if (auto it = classes.find(name); it != classes.end()) {
      return it->second;
    }
    auto info = ReadStorageClass(api_, stop, name);
    if (info) {
      classes[name] = *info;
    }
    return info;
  };
  size_t created_count = 0;
  for (size_t i = 0; i < urls.size(); ++i) {
    api::DiskInfo& disk = vm_import.status.disk_import_status[i];
    if (DiskHas(disk, api::kConditionImageSubmitted)) {
      continue;
    }
    const std::string class_name =
        disk.storage_class.empty() ? vm_import.spec.storage_class : disk.storage_class;
    std::optional<harvester::StorageClassInfo> sc_info;
    if (!class_name.empty()) {
      auto info = class_info(class_name);
      if (!info) {
        return MakeError(info.error());
      }
      sc_info = std::move(*info);
    }
    const std::string display = harvester::ImageDisplayName(vm_import.name, disk.disk_name);
    // Idempotent: an image of this disk may exist from a reconcile whose status write was lost.
    auto existing =
        api_.List(stop, ImageResource(), vm_import.namespace_,
                  {.label_selector = std::string(kImageDisplayNameLabel) + "=" + display});
    if (!existing) {
      return MakeError(existing.error());
    }
    std::string image_name;
    const Json items = existing->value("items", Json::array());
    // An image this incarnation made counts (a status write was lost); so does one no import
    // owns any more (left by an earlier, finished import of the same name: the seed's "delete
    // the VM and recreate the import"). One another import owns is never taken.
    Json mine = Json::array();
    Json orphans = Json::array();
    std::string foreign;
    for (const Json& item : items) {
      bool owned_by_import = false;
      bool ours = false;
      for (const Json& ref :
           core::JsonArray(core::JsonObject(item, "metadata"), "ownerReferences")) {
        if (core::JsonString(ref, "kind") != "VirtualMachineImport") {
          continue;
        }
        owned_by_import = true;
        ours |= core::JsonString(ref, "uid") == pass.uid;
        if (core::JsonString(ref, "uid") != pass.uid) {
          foreign = core::JsonString(ref, "name");
        }
      }
      if (ours) {
        mine.push_back(item);
      } else if (!owned_by_import) {
        orphans.push_back(item);
      }
    }
    if (mine.empty() && !foreign.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "a VirtualMachineImage labelled " + display +
                                                        " belongs to another import (" + foreign +
                                                        "): not taken over");
    }
    if (mine.empty() && !orphans.empty()) {
      mine.push_back(orphans[0]);
    }
    if (mine.size() > 1) {
      return MakeError(ErrorCode::kConflict, "found " + std::to_string(mine.size()) +
                                                 " VirtualMachineImages labelled " + display +
                                                 ", expected one");
    }
    if (mine.size() == 1) {
      image_name = core::JsonString(core::JsonObject(mine[0], "metadata"), "name");
    } else {
      // A raw Glance image's SHA-512 is the SHA-512 of exactly what we serve: Longhorn
      // verifies it itself (spec.checksum); anything else is checked on our side.
      std::optional<std::string> sha512;
      if (i < (*running)->description.disks.size()) {
        sha512 = SpecChecksumFor((*running)->description.disks[i]);
      }
      auto image = harvester::BuildVirtualMachineImage(
          vm_import, disk.disk_name, urls[i], sc_info ? &*sc_info : nullptr,
          sha512 ? std::optional<std::string_view>(*sha512) : std::nullopt);
      if (!image) {
        return MakeError(image.error());
      }
      auto created = api_.Create(stop, ImageResource(), vm_import.namespace_, *image);
      if (!created) {
        return MakeError(
            created.error().Wrap("creating the VirtualMachineImage of " + disk.disk_name));
      }
      image_name = core::JsonString(core::JsonObject(*created, "metadata"), "name");
      pass.notes.push_back(
          {"Normal", "ImageCreated",
           "VirtualMachineImage " + image_name + " created for " + disk.disk_name});
      ++created_count;
    }
    disk.virtual_machine_image = image_name;
    api::SetCondition(disk.disk_conditions,
                      MakeCondition(api::kConditionImageSubmitted, "True", "Submitted", ""),
                      clock_.WallNow());
  }
  Move(pass, ImportStatus::kDiskImagesSubmitted, "DiskImagesSubmitted",
       std::to_string(vm_import.status.disk_import_status.size()) +
           " VirtualMachineImages submitted");
  return Done();
}

// --- diskImageSubmitted: Harvester downloads ---------------------------------------------------

core::Result<ReconcileResult> ImportReconciler::WatchImages(std::stop_token stop, Pass& pass) {
  auto& vm_import = pass.vm_import;
  bool restarted = false;
  {
    std::lock_guard lock(mu_);
    auto it = incarnations_.find(pass.uid);
    restarted =
        it == incarnations_.end() || !it->second->running || it->second->running->tokens.empty();
  }
  if (restarted) {
    // The controller restarted while Harvester downloaded: the URLs the images hold died with the
    // old process. Disks already in Harvester stay; the others get a new image on new URLs.
    // Decided on a fresh read of the import (Reconcile replaced a cache read older than our own
    // write) and of each image: a stale read must not delete a good image.
    std::vector<size_t> redo;
    for (size_t i = 0; i < vm_import.status.disk_import_status.size(); ++i) {
      const auto& d = vm_import.status.disk_import_status[i];
      if (d.virtual_machine_image.empty()) {
        redo.push_back(i);
        continue;
      }
      auto image = api_.Get(stop, ImageResource(), vm_import.namespace_, d.virtual_machine_image);
      if (!image && image.error().code != ErrorCode::kNotFound) {
        return MakeError(image.error());
      }
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
              api_.Delete(stop, ImageResource(), vm_import.namespace_, d.virtual_machine_image);
          if (!del && del.error().code != ErrorCode::kNotFound) {
            return MakeError(del.error());
          }
        }
        d.virtual_machine_image.clear();
        d.disk_conditions.clear();
      }
      Move(pass, ImportStatus::kDisksExported, "Resumed",
           "resuming after a controller restart: " + std::to_string(redo.size()) +
               " disks are exported again");
      return Done();
    }
  }
  FillProgress(pass);
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
    std::string last_error;
    {
      std::lock_guard lock(mu_);
      if (auto it = incarnations_.find(pass.uid); it != incarnations_.end()) {
        if (auto s = it->second->streams.find(i); s != it->second->streams.end()) {
          permanent = s->second.permanent_error;
          last_error = s->second.last_error;
        }
      }
    }
    if (permanent) {
      Release(stop, pass.uid, false, "a disk cannot be read");
      Fail(pass, ImportStatus::kDiskImagesFailed,
           permanent->code == ErrorCode::kCorruptData ? "CorruptDisk" : "UnsupportedDisk",
           disk.disk_name + " cannot be imported: " + RedactDiskTokens(permanent->message));
      return Done();
    }
    const auto state = harvester::InterpretImageStatus(*image);
    switch (state.phase) {
      case harvester::ImagePhase::kActive: {
        auto verified = VerifyDisk(stop, pass, i, *image);
        if (!verified) {
          return MakeError(verified.error());
        }
        if (Failed(vm_import.status.import_status)) {
          Release(stop, pass.uid, false, "a disk's checksum differs");
          return Done();
        }
        if (!*verified) {
          break;  // the stream's own figures are not in yet
        }
        api::SetCondition(disk.disk_conditions,
                          MakeCondition(api::kConditionImageReady, "True", "Imported", ""),
                          clock_.WallNow());
        ++ready;
        break;
      }
      case harvester::ImagePhase::kFailed: {
        api::SetCondition(disk.disk_conditions,
                          MakeCondition(api::kConditionImageFailed, "True", state.reason,
                                        RedactDiskTokens(state.message)),
                          clock_.WallNow());
        // Harvester only sees a short or cut download; our stream knows why (a digest mismatch,
        // a truncated source, an unreachable peer), and the source may say more (the VM gone).
        std::string cause;
        if (!last_error.empty() &&
            last_error != imageserver::StreamOutcomeName(imageserver::StreamOutcome::kCompleted)) {
          cause = "; the source stream ended with: " + RedactDiskTokens(last_error);
        }
        Release(stop, pass.uid, false, "a disk image failed");
        cause += ProbeSource(stop, pass);
        Fail(pass, ImportStatus::kDiskImagesFailed, "ImageFailed",
             "VirtualMachineImage " + disk.virtual_machine_image + " of " + disk.disk_name +
                 " failed: " + RedactDiskTokens(state.message) + cause);
        return Done();
      }
      case harvester::ImagePhase::kPending:
      case harvester::ImagePhase::kProgress: break;
    }
  }
  if (ready < vm_import.status.disk_import_status.size()) {
    return Requeue(options_.poll);
  }
  Release(stop, pass.uid, true, "");
  vm_import.status.extra["progress"] = "100%";
  // Say what was verified, per disk, and by whom.
  const auto [all, said] = VerificationSummary(vm_import.status);
  api::SetCondition(vm_import.status.import_conditions,
                    MakeCondition("DisksVerified", all ? "True" : "False",
                                  all ? "Verified" : "Unverifiable", said),
                    clock_.WallNow());
  pass.notes.push_back({"Normal", all ? "DisksVerified" : "DisksUnverifiable", said});
  Move(pass, ImportStatus::kDiskImagesReady, "DiskImagesReady", "every disk image is in Harvester");
  return Done();
}

// --- diskImagesReady, virtualMachineCreated: the VM ------------------------------------------

core::Result<ReconcileResult> ImportReconciler::CreateVm(std::stop_token stop, Pass& pass) {
  auto& vm_import = pass.vm_import;
  // PVCs for backing images (CDI makes its own, named like the image).
  for (const auto& disk : vm_import.status.disk_import_status) {
    if (!disk.data_volume.empty() || IsWarm(vm_import)) {
      continue;  // volume mode: the DataVolume's PVC is CDI's; warm: the writer's PVC
    }
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
    auto created = api_.Create(stop, kPvcs, vm_import.namespace_, *pvc);
    if (!created && created.error().code != ErrorCode::kAlreadyExists) {
      return MakeError(created.error().Wrap("creating the PVC of " + disk.disk_name));
    }
  }
  // The VM needs the source's description: from the open source, as kept after the source was
  // released, from status (after a restart: the source may be gone), or described again.
  std::optional<model::VmDescription> description;
  {
    std::lock_guard lock(mu_);
    if (auto it = incarnations_.find(pass.uid); it != incarnations_.end()) {
      if (it->second->running) {
        description = it->second->running->description;
      } else if (it->second->described) {
        description = it->second->described;
      }
    }
  }
  if (!description) {
    if (auto kept = vm_import.status.extra.find(kSourceVmStatusKey);
        kept != vm_import.status.extra.end()) {
      auto parsed = api::VmDescriptionFromJson(*kept);
      if (parsed && !parsed->disks.empty()) {
        description = std::move(*parsed);
      } else if (!parsed) {
        log_.Warn("status.sourceVirtualMachine unreadable: describing the source again",
                  {{"import", pass.key}, {"error", parsed.error().message}});
      }
    }
  }
  if (!description) {
    auto running = OpenSource(stop, pass);
    if (!running && running.error().code == ErrorCode::kNotFound) {
      // Only for an import from before status.sourceVirtualMachine, after a restart: the disks
      // are in Harvester, but the VM's CPUs, memory and NICs come from the source, which is gone.
      const std::string message = running.error().message +
                                  " (the disks are in Harvester; the VM's description comes "
                                  "from the source: bring it back and the import goes on)";
      log_.Warn("source needed to create the VM", {{"import", pass.key}, {"error", message}});
      events_.Record(pass.object, "Warning", "SourceNotFound", message);
      return Requeue(options_.source_not_ready_requeue);
    }
    if (!running) {
      return MakeError(running.error());
    }
    description = (*running)->description;
    Release(stop, pass.uid, false, "described only");
  }
  // NIC models (and the bus of a disk whose status has none) as the device rules choose them.
  const DevicePlan devices = ChooseDevices(*description, vm_import.spec);
  auto built = harvester::BuildVirtualMachine(vm_import, ApplyDevicePlan(*description, devices));
  if (!built) {
    Fail(pass, ImportStatus::kVmMigrationFailed, "InvalidVirtualMachine", built.error().message);
    return Done();
  }
  built->object["metadata"]["annotations"][kImportUidAnnotation] = pass.uid;
  for (const auto& w : built->warnings) {
    pass.notes.push_back({"Warning", "NotCarriedOver", w});
  }
  auto created = api_.Create(stop, kVms, vm_import.namespace_, built->object);
  if (!created && created.error().code == ErrorCode::kAlreadyExists) {
    // Ours when a status write was lost after the create; anyone else's is never taken over.
    auto existing =
        api_.Get(stop, kVms, vm_import.namespace_, vm_import.status.imported_virtual_machine_name);
    if (!existing) {
      return MakeError(existing.error().Wrap("reading the existing VirtualMachine"));
    }
    const Json annotations =
        core::JsonObject(*existing, "metadata").value("annotations", Json::object());
    if (core::JsonString(annotations, kImportUidAnnotation) != pass.uid) {
      Fail(pass, ImportStatus::kVmMigrationFailed, "VirtualMachineExists",
           "VirtualMachine " + vm_import.namespace_ + "/" +
               vm_import.status.imported_virtual_machine_name +
               " exists and was not made by this import: its disks are removed; import under "
               "another virtualMachineName");
      return Done();
    }
  } else if (!created) {
    return MakeError(created.error().Wrap("creating the VirtualMachine"));
  }
  vm_import.status.new_virtual_machine = vm_import.status.imported_virtual_machine_name;
  if (vm_import.spec.StartsStopped()) {
    // Nothing will run: the import ends here, successfully (api::IsFinished).
    if (auto st = ReleaseImages(stop, pass); !st) {
      return MakeError(st.error());
    }
    pass.forget = true;
    Move(pass, ImportStatus::kVirtualMachineCreated, "VirtualMachineCreated",
         "VirtualMachine " + vm_import.status.imported_virtual_machine_name +
             " created and left stopped (spec.runStrategy stopped): the import is complete; "
             "start the VM with virtctl start");
    return Done();
  }
  Move(pass, ImportStatus::kVirtualMachineCreated, "VirtualMachineCreated",
       "VirtualMachine " + vm_import.status.imported_virtual_machine_name + " created");
  return Done();
}

namespace {

// VirtualMachine.status.printableStatus values (KubeVirt's) that mean the VM will not run until
// something changes; "Starting", "Provisioning", "WaitingForVolumeBinding" and the like are not.
bool IsErrorPrintableStatus(const std::string& s) {
  return s == "CrashLoopBackOff" || s == "ErrorUnschedulable" || s == "ErrImagePull" ||
         s == "ImagePullBackOff" || s == "ErrorPvcNotFound" || s == "ErrorDataVolumeNotFound" ||
         s == "DataVolumeError";
}

}  // namespace

// Why the created VM is not running, "" while it is only starting. KubeVirt's VM controller
// replaces a Failed VMI within a second (crash-loop backoff), so the Failed VMI itself is seldom
// seen: the VM's status.startFailure (consecutiveFailCount) and printableStatus are what last.
core::Result<std::string> ImportReconciler::NotRunningWhy(
    std::stop_token stop, const api::VirtualMachineImport& vm_import, const Json& vmi_status) {
  const std::string& name = vm_import.status.imported_virtual_machine_name;
  std::string why;
  if (core::JsonString(vmi_status, "phase") == "Failed") {
    const std::string reason = core::JsonString(vmi_status, "reason");
    why = "its VirtualMachineInstance is Failed" + (reason.empty() ? "" : " (" + reason + ")");
  }
  auto vm = api_.Get(stop, kVms, vm_import.namespace_, name);
  if (!vm) {
    if (vm.error().code == ErrorCode::kNotFound) {
      return why;
    }
    return core::MakeError(vm.error());
  }
  const Json status = vm->value("status", Json::object());
  const std::string printable = core::JsonString(status, "printableStatus");
  const Json failure = core::JsonObject(status, "startFailure");
  const int64_t fails = failure.value("consecutiveFailCount", int64_t{0});
  if (fails > 0 || IsErrorPrintableStatus(printable)) {
    why += std::string(why.empty() ? "it" : "; it") + " is " +
           (printable.empty() ? "not running" : printable) +
           (fails > 0 ? " after " + std::to_string(fails) + " failed start" +
                            (fails == 1 ? "" : "s") + " in a row"
                      : "");
  }
  return why;
}

// The reference's tidyUpObjects: the images hold the VM's disks now, so they lose the import's
// ownerReference; deleting the import must not let the garbage collector take them. Volume mode:
// the same for the DataVolumes (their PVCs are CDI's, owned by the DataVolume).
core::Status ImportReconciler::ReleaseImages(std::stop_token stop, Pass& pass) {
  const auto& vm_import = pass.vm_import;
  if (IsWarm(vm_import)) {
    return core::Ok();  // the warm PVCs never had the import as owner
  }
  for (const auto& disk : vm_import.status.disk_import_status) {
    const bool volume = !disk.data_volume.empty();
    const kube::Resource& resource = volume ? DataVolumeResource() : ImageResource();
    const std::string& name = volume ? disk.data_volume : disk.virtual_machine_image;
    auto image = api_.Get(stop, resource, vm_import.namespace_, name);
    if (!image) {
      return MakeError(image.error().Wrap(resource.plural + " " + name));
    }
    const Json refs = core::JsonObject(*image, "metadata").value("ownerReferences", Json::array());
    Json kept = Json::array();
    for (const Json& ref : refs) {
      if (core::JsonString(ref, "uid") != vm_import.uid) {
        kept.push_back(ref);
      }
    }
    if (kept.size() == refs.size()) {
      continue;
    }
    auto r = api_.MergePatch(stop, resource, vm_import.namespace_, name,
                             {{"metadata", {{"ownerReferences", kept}}}});
    if (!r) {
      return MakeError(r.error().Wrap(resource.plural + " " + name));
    }
  }
  return core::Ok();
}

core::Result<ReconcileResult> ImportReconciler::WaitRunning(std::stop_token stop, Pass& pass) {
  auto& vm_import = pass.vm_import;
  auto vmi =
      api_.Get(stop, kVmis, vm_import.namespace_, vm_import.status.imported_virtual_machine_name);
  if (!vmi && vmi.error().code != ErrorCode::kNotFound) {
    return MakeError(vmi.error());
  }
  const Json vmi_status = vmi ? vmi->value("status", Json::object()) : Json::object();
  if (core::JsonString(vmi_status, "phase") != "Running") {
    auto why = NotRunningWhy(stop, vm_import, vmi_status);
    if (!why) {
      return MakeError(why.error());
    }
    if (why->empty()) {
      return Requeue(options_.poll);
    }
    // The disks and the VirtualMachine are right, the guest is not running: nothing is removed
    // (the data is good, the spec may only need a different bus), the import stays in
    // virtualMachineCreated and says why, and moves on if the VirtualMachine runs later.
    const std::string& vm = vm_import.status.imported_virtual_machine_name;
    const std::string message =
        "VirtualMachine " + vm_import.namespace_ + "/" + vm + " does not run: " + *why +
        ". The VirtualMachine and its disks are kept; `kubectl describe vmi " + vm +
        "` and its Events say why (a guest without drivers for its disk bus does not find its "
        "root disk: change the VirtualMachine's disk bus and start it again); the import "
        "completes once it runs";
    const api::Condition* was = api::FindCondition(vm_import.status.import_conditions,
                                                   std::string(api::kConditionVmRunning));
    const bool news = was == nullptr || was->status != "False";  // an Event once, not per count
    api::SetCondition(
        vm_import.status.import_conditions,
        MakeCondition(api::kConditionVmRunning, "False", "VirtualMachineFailed", message),
        clock_.WallNow());
    if (news) {
      pass.notes.push_back({"Warning", "VirtualMachineFailed", message});
    }
    return Requeue(std::max<std::chrono::milliseconds>(options_.poll, kFailedVmiPoll));
  }
  if (api::FindCondition(vm_import.status.import_conditions,
                         std::string(api::kConditionVmRunning)) != nullptr) {
    api::SetCondition(vm_import.status.import_conditions,
                      MakeCondition(api::kConditionVmRunning, "True", "Running", ""),
                      clock_.WallNow());
  }
  // Deleting the import must not let the garbage collector take the VM's disks.
  if (auto st = ReleaseImages(stop, pass); !st) {
    return MakeError(st.error());
  }
  if (IsWarm(vm_import) && vm_import.status.warm && !vm_import.status.warm->source_off_at.empty()) {
    // The measured downtime: the source off to the target running (seen by this reconcile).
    auto& w = *vm_import.status.warm;
    std::chrono::system_clock::time_point off;
    const auto now = clock_.WallNow();
    if (w.target_running_at.empty() && core::ParseRfc3339(w.source_off_at, off)) {
      w.target_running_at = core::FormatRfc3339Micro(now);
      w.downtime_seconds = std::chrono::duration<double>(now - off).count();
      char text[160];
      std::snprintf(text, sizeof(text),
                    "warm migration: the VM was off for %.1f s (source off to target running)",
                    *w.downtime_seconds);
      pass.notes.push_back({"Normal", "WarmDowntime", text});
    }
  }
  pass.forget = true;
  Move(pass, ImportStatus::kVirtualMachineRunning, "VirtualMachineRunning",
       "VirtualMachine " + vm_import.status.imported_virtual_machine_name + " is running");
  return Done();
}

}  // namespace vmimport::controller
