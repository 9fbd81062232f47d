#include "source/libvirt/importer.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <thread>

#include "core/strings.h"
#include "disk/qcow2.h"
#include "source/libvirt/bounded_call.h"
#include "source/libvirt/connection.h"
#include "source/libvirt/domain_xml.h"
#include "source/libvirt/volume_stream.h"

namespace vmimport::source::libvirt {

using core::ErrorCode;
using core::MakeError;

namespace {

// Where one disk's bytes are: its volume, found by path or by pool and name.
struct VolumeRef {
  std::string path;  // the volume's path (virStorageVolGetPath)
  std::string format;
  uint64_t capacity_bytes = 0;
  uint64_t physical_bytes = 0;
};

struct Described {
  model::VmDescription vm;
  std::vector<VolumeRef> volumes;     // one per vm.disks entry
  std::vector<std::string> refusals;  // why disks cannot be streamed
};

bool LooksLikeUuid(std::string_view s) {
  if (s.size() != 36 && s.size() != 32) {
    return false;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool dash = s.size() == 36 && (i == 8 || i == 13 || i == 18 || i == 23);
    if (dash ? c != '-' : !std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

model::PowerState PowerOf(virDomainPtr dom) {
  int state = 0;
  int reason = 0;
  if (virDomainGetState(dom, &state, &reason, 0) < 0) {
    virResetLastError();
    return model::PowerState::kUnknown;
  }
  switch (state) {
    case VIR_DOMAIN_SHUTOFF:
    case VIR_DOMAIN_CRASHED: return model::PowerState::kOff;
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED: return model::PowerState::kSuspended;
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
    case VIR_DOMAIN_SHUTDOWN: return model::PowerState::kOn;
    default: return model::PowerState::kUnknown;
  }
}

core::Result<VolumePtr> LookupVolume(virConnectPtr conn, const DiskSource& src) {
  if (src.type == "volume") {
    PoolPtr pool(virStoragePoolLookupByName(conn, src.pool.c_str()));
    if (!pool) {
      return MakeError(LastError("storage pool '" + src.pool + "' of disk " + src.target));
    }
    VolumePtr vol(virStorageVolLookupByName(pool.get(), src.volume.c_str()));
    if (!vol) {
      return MakeError(LastError("volume '" + src.volume + "' of pool '" + src.pool + "' (disk " +
                                 src.target + ")"));
    }
    return vol;
  }
  VolumePtr vol(virStorageVolLookupByPath(conn, src.path.c_str()));
  if (!vol) {
    core::Error e = LastError("disk " + src.target);
    if (e.code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kUnsupported,
                       "disk " + src.target + " (" + src.path +
                           ") is in no storage pool, so libvirt cannot stream it: define a pool "
                           "for its directory (virsh pool-define-as NAME dir --target DIR)");
    }
    return MakeError(std::move(e));
  }
  return vol;
}

// Fills capacity and format of each disk from its volume; a disk that cannot be streamed adds a
// refusal.
core::Status ResolveDisks(virConnectPtr conn, const DomainXml& xml, Described& out) {
  for (size_t i = 0; i < xml.disks.size(); ++i) {
    const DiskSource& src = xml.disks[i];
    VolumeRef ref;
    if (!src.refusal.empty()) {
      out.refusals.push_back(src.refusal);
      out.volumes.push_back(ref);
      continue;
    }
    auto vol = LookupVolume(conn, src);
    if (!vol) {
      if (vol.error().code != ErrorCode::kUnsupported && vol.error().code != ErrorCode::kNotFound) {
        return MakeError(vol.error());
      }
      out.refusals.push_back(vol.error().message);
      out.volumes.push_back(ref);
      continue;
    }
    ref.path = TakeString(virStorageVolGetPath(vol->get()));
    auto vx = ParseVolumeXml(TakeString(virStorageVolGetXMLDesc(vol->get(), 0)));
    if (!vx) {
      return MakeError(vx.error().Wrap("disk " + src.target));
    }
    virStorageVolInfo info{};
    if (virStorageVolGetInfoFlags(vol->get(), &info, VIR_STORAGE_VOL_GET_PHYSICAL) < 0) {
      return MakeError(LastError("size of disk " + src.target));
    }
    ref.format = vx->format.empty() ? src.driver_format : vx->format;
    ref.capacity_bytes = vx->capacity_bytes;
    ref.physical_bytes = info.allocation;  // with VIR_STORAGE_VOL_GET_PHYSICAL: the file's size
    if (ref.format != "raw" && ref.format != "qcow2") {
      out.refusals.push_back("disk " + src.target + " (" + ref.path + ") is of format '" +
                             ref.format + "': only raw and qcow2 volumes are imported");
    } else if (!vx->backing_path.empty() || src.has_backing_store) {
      out.refusals.push_back(
          "disk " + src.target + " (" + ref.path + ") is a qcow2 overlay with a backing chain (" +
          (vx->backing_path.empty() ? std::string("see the domain XML") : vx->backing_path) +
          "): it is not streamed flattened; flatten it first (virsh blockpull, or qemu-img "
          "convert into a new volume)");
    }
    out.vm.disks[i].capacity_bytes = ref.capacity_bytes;
    out.vm.disks[i].location = ref.path;
    if (PoolPtr pool(virStoragePoolLookupByVolume(vol->get())); pool) {
      const char* pool_name = virStoragePoolGetName(pool.get());
      out.vm.disks[i].storage = pool_name != nullptr ? pool_name : "";
    } else {
      virResetLastError();  // the pool is only a label for spec.storageMapping: not an error
    }
    out.vm.disks[i].name = src.target + " (" + ref.format + ")";
    out.volumes.push_back(ref);
  }
  return {};
}

core::Result<Described> Describe(virConnectPtr conn, virDomainPtr dom) {
  auto xml = ParseDomainXml(TakeString(virDomainGetXMLDesc(dom, 0)));
  if (!xml) {
    return MakeError(xml.error());
  }
  Described out;
  out.vm = xml->vm;
  out.vm.power_state = PowerOf(dom);
  out.vm.inventory_path = out.vm.name;
  if (auto r = ResolveDisks(conn, *xml, out); !r) {
    return MakeError(r.error());
  }
  return out;
}

core::Result<DomainPtr> FindDomain(virConnectPtr conn, const std::string& name_or_uuid) {
  DomainPtr by_name(virDomainLookupByName(conn, name_or_uuid.c_str()));
  virResetLastError();
  DomainPtr by_uuid;
  if (LooksLikeUuid(name_or_uuid)) {
    by_uuid.reset(virDomainLookupByUUIDString(conn, name_or_uuid.c_str()));
    virResetLastError();
  }
  if (by_name && by_uuid) {
    const std::string a = virDomainGetName(by_name.get());
    const std::string b = virDomainGetName(by_uuid.get());
    if (a != b) {
      return MakeError(ErrorCode::kInvalidArgument, "libvirt: '" + name_or_uuid +
                                                        "' is ambiguous: the name of domain '" + a +
                                                        "' and the UUID of domain '" + b + "'");
    }
  }
  if (by_name) {
    return by_name;
  }
  if (by_uuid) {
    return by_uuid;
  }
  return MakeError(ErrorCode::kNotFound,
                   "libvirt: no domain named or with UUID '" + name_or_uuid + "'");
}

bool SleepFor(std::stop_token stop, std::chrono::milliseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
    if (stop.stop_requested()) {
      return false;
    }
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(100), std::chrono::duration_cast<std::chrono::milliseconds>(
                                            end - std::chrono::steady_clock::now())));
  }
  return !stop.stop_requested();
}

class LibvirtSourceVm final : public SourceVm {
 public:
  LibvirtSourceVm(SourceConfig config, ConnectPtr conn, Described described, LibvirtOptions options)
      : config_(std::move(config)),
        conn_(std::move(conn)),
        described_(std::move(described)),
        options_(options) {}

  // source::SourceVm
  const model::VmDescription& Description() const override { return described_.vm; }

  core::Status PowerOff(std::stop_token stop, const PowerOffRequest& request,
                        const SourceActionCallback& on_action) override {
    auto dom = Domain();
    if (!dom) {
      return MakeError(dom.error());
    }
    const std::string what = "domain " + described_.vm.name;
    const model::PowerState power = PowerOf(dom->get());
    if (power == model::PowerState::kOff) {
      on_action("AlreadyPoweredOff", what + " is already shut off");
      return {};
    }
    if (!request.force && power == model::PowerState::kOn) {
      if (virDomainShutdown(dom->get()) < 0) {
        const core::Error e = LastError("shutdown of " + what);
        on_action("ShutdownGuestFailed", e.message);
      } else {
        on_action("ShutdownGuest", "ACPI shutdown sent to " + what + "; waiting up to " +
                                       std::to_string(request.graceful_timeout.count()) + " s");
        const auto deadline = std::chrono::steady_clock::now() + request.graceful_timeout;
        while (std::chrono::steady_clock::now() < deadline) {
          if (PowerOf(dom->get()) == model::PowerState::kOff) {
            return {};
          }
          if (!SleepFor(stop, options_.poll_interval)) {
            return disk::CancelledError();
          }
        }
        if (PowerOf(dom->get()) == model::PowerState::kOff) {
          return {};
        }
        on_action("ShutdownGuestTimedOut", "the guest of " + what + " did not shut down within " +
                                               std::to_string(request.graceful_timeout.count()) +
                                               " s");
      }
    }
    if (virDomainDestroy(dom->get()) < 0) {
      core::Error e = LastError("destroy of " + what);
      if (PowerOf(dom->get()) == model::PowerState::kOff) {
        return {};  // it stopped by itself meanwhile
      }
      return MakeError(std::move(e));
    }
    on_action("PowerOff", what + " destroyed (powered off hard)");
    return {};
  }

  core::Status StartExport(std::stop_token /*stop*/,
                           const SourceActionCallback& on_action) override {
    auto dom = Domain();
    if (!dom) {
      return MakeError(dom.error());
    }
    if (PowerOf(dom->get()) != model::PowerState::kOff) {
      return MakeError(ErrorCode::kConflict,
                       "libvirt: domain " + described_.vm.name + " is not shut off");
    }
    if (!exporting_.exchange(true)) {
      on_action("ExportStarted", "the " + std::to_string(described_.volumes.size()) +
                                     " volume(s) of domain " + described_.vm.name +
                                     " stream over the libvirt connection (libvirt declares no "
                                     "digest: unverifiable from the source)");
    }
    finished_ = false;
    return {};
  }

  core::Result<disk::ByteSourcePtr> OpenDisk(std::stop_token stop, size_t index) override {
    if (index >= described_.volumes.size()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "libvirt: no disk " + std::to_string(index) + " in " + described_.vm.name);
    }
    if (finished_) {
      return MakeError(ErrorCode::kGone, "libvirt: the export of " + described_.vm.name + " ended");
    }
    if (!exporting_) {
      return MakeError(ErrorCode::kConflict, "libvirt: the export has not started");
    }
    const VolumeRef& ref = described_.volumes[index];
    auto conn = Connect(stop, config_, options_.connect);
    if (!conn) {
      return MakeError(conn.error());
    }
    VolumePtr vol(virStorageVolLookupByPath(conn->get(), ref.path.c_str()));
    if (!vol) {
      return MakeError(LastError("volume " + ref.path));
    }
    auto volume = std::make_shared<OpenVolume>();
    volume->conn = std::move(*conn);
    volume->vol = std::move(vol);
    volume->name = described_.vm.name + " " + ref.path;
    volume->host = HostOfUrl(config_.endpoint);
    volume->chunk_bytes = options_.download_chunk_bytes;
    volume->call_timeout = options_.download_call_timeout;
    if (ref.format == "raw") {
      volume->size_bytes = ref.capacity_bytes;
      return disk::ByteSourcePtr(std::make_unique<VolumeByteSource>(std::move(volume)));
    }
    volume->size_bytes = ref.physical_bytes;
    auto range = std::make_unique<VolumeRangeSource>(std::move(volume));
    auto reader = disk::OpenQcow2(stop, std::move(range));
    if (!reader) {
      return MakeError(reader.error());
    }
    if ((*reader)->VirtualSize() != ref.capacity_bytes) {
      return MakeError(ErrorCode::kCorruptData, "libvirt: " + ref.path + ": qcow2 virtual size " +
                                                    std::to_string((*reader)->VirtualSize()) +
                                                    " differs from the volume's capacity " +
                                                    std::to_string(ref.capacity_bytes));
    }
    return disk::ByteSourcePtr(std::make_unique<DecodedVolumeSource>(std::move(*reader)));
  }

  core::Status FinishExport(std::stop_token /*stop*/, bool /*completed*/,
                            std::string_view /*reason*/) override {
    exporting_ = false;
    finished_ = true;
    return {};
  }

 private:
  core::Result<DomainPtr> Domain() {
    DomainPtr dom(virDomainLookupByUUIDString(conn_.get(), described_.vm.bios_uuid.c_str()));
    if (!dom) {
      core::Error e = LastError("domain " + described_.vm.name);
      if (e.code == ErrorCode::kNotFound) {
        e.message = "the source VM " + described_.vm.name + " no longer exists on the source";
      }
      return MakeError(std::move(e));
    }
    return dom;
  }

  const SourceConfig config_;
  ConnectPtr conn_;
  const Described described_;
  const LibvirtOptions options_;
  std::atomic<bool> exporting_{false};
  std::atomic<bool> finished_{false};
};

}  // namespace

core::Status LibvirtConnectionChecker::CheckConnection(std::stop_token stop,
                                                       const SourceConfig& config) {
  const std::string host = HostOfUrl(config.endpoint);
  auto ok = RunBounded<bool>(stop, options_.check_timeout, host, "readiness check of " + host,
                             [config, options = options_, host]() -> core::Result<bool> {
                               auto conn = Connect({}, config, options.connect);
                               if (!conn) {
                                 return MakeError(conn.error());
                               }
                               unsigned long version =
                                   0;  // NOLINT(google-runtime-int): libvirt's type
                               if (virConnectGetLibVersion(conn->get(), &version) < 0) {
                                 return MakeError(LastError("version of " + host));
                               }
                               return true;
                             });
  if (!ok) {
    return MakeError(ok.error());
  }
  return {};
}

core::Result<SourceVmPtr> LibvirtImporter::Open(std::stop_token stop, const SourceConfig& config,
                                                const ImportRequest& request) {
  auto conn = Connect(stop, config, options_.connect);
  if (!conn) {
    return MakeError(conn.error());
  }
  auto dom = FindDomain(conn->get(), request.vm_name);
  if (!dom) {
    return MakeError(dom.error());
  }
  auto described = Describe(conn->get(), dom->get());
  if (!described) {
    return MakeError(described.error());
  }
  if (!described->refusals.empty()) {
    return MakeError(ErrorCode::kUnsupported, "libvirt: domain " + described->vm.name + ": " +
                                                  core::Join(described->refusals, "; "));
  }
  return SourceVmPtr(
      std::make_unique<LibvirtSourceVm>(config, std::move(*conn), std::move(*described), options_));
}

core::Result<std::vector<model::VmDescription>> LibvirtImporter::ListVms(
    std::stop_token stop, const SourceConfig& config, const std::string& /*folder*/) {
  auto conn = Connect(stop, config, options_.connect);
  if (!conn) {
    return MakeError(conn.error());
  }
  virDomainPtr* doms = nullptr;
  const int n = virConnectListAllDomains(conn->get(), &doms, 0);
  if (n < 0) {
    return MakeError(LastError("list of domains"));
  }
  std::vector<DomainPtr> owned;
  owned.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    owned.emplace_back(doms[i]);  // NOLINT(cppcoreguidelines-pro-bounds-pointer-arithmetic)
  }
  // libvirt's array, allocated with malloc:
  // NOLINTNEXTLINE(cppcoreguidelines-no-malloc,cppcoreguidelines-owning-memory)
  std::free(doms);
  std::vector<model::VmDescription> out;
  for (const DomainPtr& d : owned) {
    auto described = Describe(conn->get(), d.get());
    if (!described) {
      return MakeError(described.error());
    }
    for (size_t i = 0; i < described->vm.disks.size(); ++i) {
      if (described->volumes[i].path.empty()) {
        described->vm.disks[i].location = "(cannot be streamed)";
      }
    }
    out.push_back(std::move(described->vm));
  }
  return out;
}

}  // namespace vmimport::source::libvirt
