// Volume mode (spec.diskTarget: volume): one CDI DataVolume per disk instead of a
// VirtualMachineImage. The disk streams from the image server as a sparse gzip body
// (imageserver Encoding::kSparseGzip) that CDI's importer decodes while it writes the PVC;
// harvester/data_volume.h says why the DataVolume's source is S3 and not HTTP (no scratch).
//
//   disksExported ─ a placeholder-credentials Secret, one DataVolume per disk ─► diskImageSubmitted
//   diskImageSubmitted ─ every DataVolume Succeeded (our bytes and CDI's own progress in status
//       meanwhile), source digests checked as the disk streamed ─► diskImagesReady
//
// The rest is shared with image mode: the VM names each DataVolume (`dataVolume` volumes), the
// DataVolumes lose the import's ownerReference once the VM runs, and cancel, delete and failure
// remove them (RemoveVolumes), as they remove images.

#include <map>
#include <set>

#include "api/names.h"
#include "controller/import_internal.h"
#include "controller/import_reconciler.h"
#include "core/json.h"
#include "core/strings.h"
#include "harvester/data_volume.h"

namespace vmimport::controller {

using api::ImportStatus;
using core::ErrorCode;
using core::MakeError;
using kube::Json;
using namespace import_detail;  // NOLINT(google-build-using-namespace): this reconciler's own

const kube::Resource& DataVolumeResource() {
  static const kube::Resource r{"cdi.kubevirt.io", "v1beta1", "datavolumes", true,
                                kube::FieldValidation::kStrict};
  return r;
}

namespace {

const kube::Resource kSecrets{"", "v1", "secrets", true, kube::FieldValidation::kStrict};
const kube::Resource kPvcs{"", "v1", "persistentvolumeclaims", true};
const kube::Resource kStorageProfiles{"cdi.kubevirt.io", "v1beta1", "storageprofiles", false};

bool Deleting(const Json& object) {
  return core::JsonObject(object, "metadata").contains("deletionTimestamp");
}

bool MadeBy(const Json& object, const std::string& uid) {
  const Json labels = core::JsonObject(object, "metadata").value("labels", Json::object());
  return core::JsonString(labels, std::string(harvester::kLabelImportUid)) == uid;
}

struct ClaimProperties {
  std::string volume_mode;
  std::string access_mode;
  std::string from;  // where they came from, for the Event
};

}  // namespace

namespace import_detail {

api::DiskTarget TargetOf(const api::VirtualMachineImport& vm_import) {
  if (auto it = vm_import.status.extra.find(kDiskTargetStatusKey);
      it != vm_import.status.extra.end() && it->is_string()) {
    if (auto t = api::ParseDiskTarget(it->get<std::string>())) {
      return *t;
    }
  }
  return vm_import.spec.DiskTargetOrDefault();
}

std::string DiskStorageClass(const api::VirtualMachineImport& vm_import, size_t index) {
  // Decided once before anything was made (diskOverrides, storageMapping, spec.storageClass:
  // ChooseDevices) and written per disk; a status written before that field existed has none.
  const auto& disks = vm_import.status.disk_import_status;
  if (index < disks.size() && !disks[index].storage_class.empty()) {
    return disks[index].storage_class;
  }
  return vm_import.spec.storage_class;
}

std::pair<bool, std::string> VerificationSummary(const api::VirtualMachineImportStatus& status) {
  std::vector<std::string> said;
  bool all = true;
  for (size_t i = 0; i < status.disk_import_status.size(); ++i) {
    std::vector<std::string> by;
    for (const auto& v : status.disk_import_status[i].verification) {
      if (v.result == "verified") {
        by.push_back(v.verifier + " " + v.algorithm);
      }
    }
    all &= !by.empty();
    said.push_back("disk-" + std::to_string(i) + ": " +
                   (by.empty() ? std::string("unverifiable") : core::Join(by, ", ")));
  }
  return {all, core::Join(said, "; ")};
}

}  // namespace import_detail

core::Result<ReconcileResult> ImportReconciler::SubmitVolumes(std::stop_token stop, Pass& pass) {
  auto& vm_import = pass.vm_import;
  auto running = EnsurePublished(stop, pass);
  if (!running) {
    return ExportFailed(stop, pass, running.error());
  }
  if (*running == nullptr) {
    return Requeue(options_.poll);
  }
  const std::vector<std::string> urls = (*running)->urls;
  const model::VmDescription description = (*running)->description;
  if (urls.size() != vm_import.status.disk_import_status.size() ||
      description.disks.size() != urls.size()) {
    return MakeError(ErrorCode::kInternal,
                     "the source VM has " + std::to_string(urls.size()) + " disks, the status " +
                         std::to_string(vm_import.status.disk_import_status.size()));
  }
  const std::string secret_name = harvester::S3SecretName(vm_import.name, pass.uid);
  if (auto s = api_.Create(stop, kSecrets, vm_import.namespace_,
                           harvester::BuildS3PlaceholderSecret(vm_import, secret_name));
      !s && s.error().code != ErrorCode::kAlreadyExists) {
    return MakeError(
        s.error().Wrap("creating the Secret " + secret_name + " CDI's S3 client needs"));
  }
  std::map<std::string, ClaimProperties> by_class;
  size_t waiting = 0;
  for (size_t i = 0; i < urls.size(); ++i) {
    api::DiskInfo& disk = vm_import.status.disk_import_status[i];
    if (api::IsConditionTrue(disk.disk_conditions, std::string(api::kConditionImageSubmitted))) {
      continue;
    }
    const std::string name =
        harvester::DataVolumeName(vm_import.status.imported_virtual_machine_name, i, pass.uid);
    // Idempotent: a DataVolume of this disk may exist from a reconcile whose status write was
    // lost (ours: take it), or be on its way out after a controller restart (wait: CDI would
    // refuse a new one while the old PVC of the same name is there).
    auto existing = api_.Get(stop, DataVolumeResource(), vm_import.namespace_, name);
    if (!existing && existing.error().code != ErrorCode::kNotFound) {
      return MakeError(existing.error());
    }
    auto pvc = api_.Get(stop, kPvcs, vm_import.namespace_, name);
    if (!pvc && pvc.error().code != ErrorCode::kNotFound) {
      return MakeError(pvc.error());
    }
    if ((existing && Deleting(*existing)) || (!existing && pvc && Deleting(*pvc))) {
      ++waiting;
      continue;
    }
    if ((existing && !MadeBy(*existing, pass.uid)) || (!existing && pvc)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "a DataVolume or PersistentVolumeClaim " + vm_import.namespace_ + "/" +
                           name + " exists and was not made by this import: not taken over");
    }
    if (!existing) {
      const std::string storage_class = DiskStorageClass(vm_import, i);
      auto props = by_class.find(storage_class);
      if (props == by_class.end()) {
        ClaimProperties p{"Filesystem", "ReadWriteOnce", "the Kubernetes defaults"};
        if (storage_class.empty()) {
          p = {"", "", "CDI's StorageProfile of the default class"};
        } else if (auto profile = api_.Get(stop, kStorageProfiles, "", storage_class); profile) {
          // What CDI itself would pick for the class: the profile's first claim property set.
          const Json sets =
              core::JsonArray(core::JsonObject(*profile, "status"), "claimPropertySets");
          if (!sets.empty()) {
            const Json modes = core::JsonArray(sets[0], "accessModes");
            p = {core::JsonString(sets[0], "volumeMode", "Filesystem"),
                 modes.empty() || !modes[0].is_string() ? "ReadWriteOnce"
                                                        : modes[0].get<std::string>(),
                 "CDI's StorageProfile " + storage_class};
          }
        } else if (profile.error().code != ErrorCode::kNotFound) {
          return MakeError(profile.error().Wrap("reading the StorageProfile " + storage_class));
        }
        props = by_class.emplace(storage_class, p).first;
      }
      auto dv = harvester::BuildDataVolume(vm_import,
                                           {.name = name,
                                            .url = urls[i],
                                            .secret_name = secret_name,
                                            .storage_class = storage_class,
                                            .virtual_size = description.disks[i].capacity_bytes,
                                            .volume_mode = props->second.volume_mode,
                                            .access_mode = props->second.access_mode});
      if (!dv) {
        return MakeError(dv.error());
      }
      auto created = api_.Create(stop, DataVolumeResource(), vm_import.namespace_, *dv);
      if (!created && created.error().code != ErrorCode::kAlreadyExists) {
        return MakeError(created.error().Wrap("creating the DataVolume of " + disk.disk_name));
      }
      pass.notes.push_back(
          {"Normal", "DataVolumeCreated",
           "DataVolume " + name + " created for " + disk.disk_name + " (" +
               std::to_string(harvester::VolumeSizeFor(description.disks[i].capacity_bytes)) +
               " bytes, class " + (storage_class.empty() ? "default" : storage_class) + ", " +
               (props->second.volume_mode.empty()
                    ? std::string("modes")
                    : props->second.volume_mode + " " + props->second.access_mode) +
               " from " + props->second.from + ")"});
    }
    disk.data_volume = name;
    api::SetCondition(disk.disk_conditions,
                      MakeCondition(api::kConditionImageSubmitted, "True", "Submitted", ""),
                      clock_.WallNow());
  }
  if (waiting > 0) {
    return Requeue(options_.poll);
  }
  Move(pass, ImportStatus::kDiskImagesSubmitted, "DataVolumesSubmitted",
       std::to_string(vm_import.status.disk_import_status.size()) + " DataVolumes submitted");
  return Done();
}

core::Result<ReconcileResult> ImportReconciler::WatchVolumes(std::stop_token stop, Pass& pass) {
  auto& vm_import = pass.vm_import;
  bool restarted = false;
  {
    std::lock_guard lock(mu_);
    auto it = incarnations_.find(pass.uid);
    restarted =
        it == incarnations_.end() || !it->second->running || it->second->running->tokens.empty();
  }
  std::vector<std::optional<Json>> volumes;
  for (const auto& disk : vm_import.status.disk_import_status) {
    auto dv = api_.Get(stop, DataVolumeResource(), vm_import.namespace_, disk.data_volume);
    if (!dv && dv.error().code != ErrorCode::kNotFound) {
      return MakeError(dv.error());
    }
    volumes.push_back(dv ? std::optional<Json>(std::move(*dv)) : std::nullopt);
  }
  if (restarted) {
    // The controller restarted while CDI imported: the URLs the DataVolumes hold died with the old
    // process (a source cannot be read again at the same URL). Volumes CDI finished stay; the
    // others are deleted and made again on new URLs once they are gone.
    std::vector<size_t> redo;
    for (size_t i = 0; i < volumes.size(); ++i) {
      if (!volumes[i] || harvester::InterpretDataVolumeStatus(*volumes[i]).phase !=
                             harvester::DataVolumePhase::kSucceeded) {
        redo.push_back(i);
      }
    }
    if (!redo.empty()) {
      for (size_t i : redo) {
        auto& d = vm_import.status.disk_import_status[i];
        for (const auto* r : {&DataVolumeResource(), &kPvcs}) {
          auto del = api_.Delete(stop, *r, vm_import.namespace_, d.data_volume);
          if (!del && del.error().code != ErrorCode::kNotFound) {
            return MakeError(del.error());
          }
        }
        d.data_volume.clear();
        d.data_volume_progress.clear();
        d.disk_conditions.clear();
      }
      Move(pass, ImportStatus::kDisksExported, "Resumed",
           "resuming after a controller restart: " + std::to_string(redo.size()) +
               " disks are exported again into new DataVolumes");
      return Done();
    }
  }
  FillProgress(pass);
  size_t ready = 0;
  for (size_t i = 0; i < volumes.size(); ++i) {
    api::DiskInfo& disk = vm_import.status.disk_import_status[i];
    if (!volumes[i]) {
      Release(stop, pass.uid, false, "a DataVolume is gone");
      Fail(pass, ImportStatus::kDiskImagesFailed, "DataVolumeDeleted",
           "DataVolume " + disk.data_volume + " of " + disk.disk_name +
               " was deleted before its import finished");
      return Done();
    }
    std::optional<DiskStreamState> stream;
    {
      std::lock_guard lock(mu_);
      if (auto it = incarnations_.find(pass.uid); it != incarnations_.end()) {
        if (auto s = it->second->streams.find(i); s != it->second->streams.end()) {
          stream = s->second;
        }
      }
    }
    if (stream && stream->permanent_error) {
      Release(stop, pass.uid, false, "a disk cannot be read");
      Fail(pass, ImportStatus::kDiskImagesFailed,
           stream->permanent_error->code == ErrorCode::kCorruptData ? "CorruptDisk"
                                                                    : "UnsupportedDisk",
           disk.disk_name +
               " cannot be imported: " + RedactDiskTokens(stream->permanent_error->message));
      return Done();
    }
    const auto state = harvester::InterpretDataVolumeStatus(*volumes[i]);
    disk.data_volume_progress = state.progress;
    switch (state.phase) {
      case harvester::DataVolumePhase::kSucceeded: {
        if (disk.verification.empty()) {
          if (stream && !stream->completed) {
            break;  // CDI says done before our stream's end was recorded: wait for it
          }
          std::vector<api::DiskVerification> out;
          if (stream) {
            for (const auto& d : stream->source_digests) {
              out.push_back({d.verifier, d.algorithm, d.hex, "verified",
                             "over the " + std::to_string(d.bytes) + " bytes the source sent"});
            }
          }
          out.push_back({"cdi", "", "", "unverifiable",
                         stream ? "CDI reports no digest of what it wrote into the volume"
                                : "the disk streamed before a controller restart"});
          disk.verification = std::move(out);
        }
        api::SetCondition(disk.disk_conditions,
                          MakeCondition(api::kConditionImageReady, "True", "Imported", ""),
                          clock_.WallNow());
        ++ready;
        break;
      }
      case harvester::DataVolumePhase::kFailed: {
        std::string cause;
        if (stream && !stream->last_error.empty() &&
            stream->last_error !=
                imageserver::StreamOutcomeName(imageserver::StreamOutcome::kCompleted)) {
          cause = "; the source stream ended with: " + RedactDiskTokens(stream->last_error);
        }
        api::SetCondition(disk.disk_conditions,
                          MakeCondition(api::kConditionImageFailed, "True", "DataVolumeFailed",
                                        RedactDiskTokens(state.message)),
                          clock_.WallNow());
        Release(stop, pass.uid, false, "a DataVolume failed");
        cause += ProbeSource(stop, pass);
        Fail(pass, ImportStatus::kDiskImagesFailed, "DataVolumeFailed",
             "DataVolume " + disk.data_volume + " of " + disk.disk_name +
                 " failed: " + RedactDiskTokens(state.message) + cause);
        return Done();
      }
      case harvester::DataVolumePhase::kPending:
      case harvester::DataVolumePhase::kRunning: break;
    }
  }
  if (ready < volumes.size()) {
    return Requeue(options_.poll);
  }
  Release(stop, pass.uid, true, "");
  // The importer Pods are done: CDI's S3 client needs the placeholder Secret no more.
  if (auto del = api_.Delete(stop, kSecrets, vm_import.namespace_,
                             harvester::S3SecretName(vm_import.name, pass.uid));
      !del && del.error().code != ErrorCode::kNotFound) {
    log_.Warn(
        "removing the S3 placeholder Secret failed (the garbage collector removes it with "
        "the import)",
        {{"import", pass.key}, {"error", del.error().message}});
  }
  vm_import.status.extra["progress"] = "100%";
  const auto [all, said] = VerificationSummary(vm_import.status);
  // Volume mode has no store-side digest (Longhorn's SHA-512 is image mode's): say what was not
  // checked.
  const std::string message =
      said + "; the volumes' bytes are not verified after CDI wrote them (CDI reports no digest)";
  api::SetCondition(vm_import.status.import_conditions,
                    MakeCondition("DisksVerified", all ? "True" : "False",
                                  all ? "Verified" : "Unverifiable", message),
                    clock_.WallNow());
  pass.notes.push_back({"Normal", all ? "DisksVerified" : "DisksUnverifiable", message});
  Move(pass, ImportStatus::kDiskImagesReady, "DiskImagesReady", "every disk is in its DataVolume");
  return Done();
}

core::Status ImportReconciler::RemoveVolumes(std::stop_token stop, const Pass& pass,
                                             std::vector<std::string>& removed) {
  const std::string& ns = pass.vm_import.namespace_;
  // By label as well as from status: a DataVolume whose status write was lost is found too.
  std::set<std::string> names;
  for (const auto& disk : pass.vm_import.status.disk_import_status) {
    if (!disk.data_volume.empty()) {
      names.insert(disk.data_volume);
    }
  }
  auto listed =
      api_.List(stop, DataVolumeResource(), ns,
                {.label_selector = std::string(harvester::kLabelImportUid) + "=" + pass.uid});
  if (!listed && listed.error().code != ErrorCode::kNotFound) {
    return MakeError(listed.error().Wrap("listing the import's DataVolumes"));
  }
  if (listed) {
    for (const Json& item : core::JsonArray(*listed, "items")) {
      names.insert(core::JsonString(core::JsonObject(item, "metadata"), "name"));
    }
  }
  for (const auto& name : names) {
    // The PVC is the DataVolume's (CDI's ownerReference): deleted by name as well, so that
    // nothing waits for the garbage collector.
    for (const auto* r : {&DataVolumeResource(), &kPvcs}) {
      auto del = api_.Delete(stop, *r, ns, name);
      if (!del && del.error().code != ErrorCode::kNotFound) {
        return MakeError(del.error().Wrap("removing " + r->plural + " " + name));
      }
    }
    removed.push_back(name);
  }
  if (api::DiskTarget::kVolume == TargetOf(pass.vm_import)) {
    auto del =
        api_.Delete(stop, kSecrets, ns, harvester::S3SecretName(pass.vm_import.name, pass.uid));
    if (!del && del.error().code != ErrorCode::kNotFound) {
      return MakeError(del.error().Wrap("removing the S3 placeholder Secret"));
    }
  }
  return core::Ok();
}

}  // namespace vmimport::controller
