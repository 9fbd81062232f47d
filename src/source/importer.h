#pragma once

// What the import reconciler needs from a source, independent of its protocol: find exactly one
// VM, describe it, power it off, and stream its disks. Implementations live in source/<name>/;
// app/ registers them by hand. The controller never sees a provider type.
//
// Lifetime: one SourceVm per running import, kept by the controller from preflight until the
// disks are in Harvester (or the import fails or is deleted). After a controller restart a new
// SourceVm is opened for the same VM: everything here must be safe to do again.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "disk/byte_source.h"
#include "disk/disk_reader.h"
#include "model/vm.h"
#include "source/bandwidth.h"
#include "source/provider.h"

namespace vmimport::source {

//! Which VM of the source to import.
struct ImportRequest {
  std::string vm_name;  //!< a name (vSphere, OpenStack, OVA) or a UUID (vSphere BIOS/instance
                        //!< UUID, OpenStack server id)
  std::string folder;   //!< vSphere: spec.folder, searched recursively; empty: the datacenter
  //! A stable id of the import (its uid). vSphere: the session carries it in its userAgent, and
  //! sessions of an earlier process for the same import (killed before it could log out) are
  //! ended on Open, which also ends the export lease they held.
  std::string owner;
};

struct PowerOffRequest {
  bool force = false;  //!< skip the graceful shutdown
  std::chrono::seconds graceful_timeout{60};
};

//! Called for every action taken on the source VM (reason in CamelCase, e.g. "ShutdownGuest",
//! "PowerOff", "AlreadyPoweredOff", "ExportStarted"), so that the controller records an Event.
using SourceActionCallback = std::function<void(std::string_view reason, std::string_view message)>;

//! One VM of a source, found and described. PowerOff, StartExport and FinishExport are called
//! from one thread at a time; OpenDisk from many at once (one per consumer GET).
class SourceVm {
 public:
  virtual ~SourceVm() = default;

  //! What was found: hardware, firmware, disks (in the order they are exported), NICs.
  virtual const model::VmDescription& Description() const = 0;

  //! Powers the VM off (gracefully unless forced, then hard); a VM already off is left alone.
  //! Errors: the source's, with a message that says what failed.
  virtual core::Status PowerOff(std::stop_token stop, const PowerOffRequest& request,
                                const SourceActionCallback& on_action) = 0;

  //! Makes the disks readable (vSphere: an NFC export lease). Idempotent. The VM must be off.
  virtual core::Status StartExport(std::stop_token stop, const SourceActionCallback& on_action) = 0;

  //! A fresh stream of disk `index` from its first byte, in the source's format (the disk path
  //! detects it). Errors: kInvalidArgument for a bad index, kConflict
  //! before StartExport, kGone after FinishExport, the transport's otherwise.
  virtual core::Result<disk::ByteSourcePtr> OpenDisk(std::stop_token stop, size_t index) = 0;

  //! Ends the export: `completed` (every disk is in Harvester) or aborted with `reason`. No-op
  //! when no export runs. Also releases the session.
  virtual core::Status FinishExport(std::stop_token stop, bool completed,
                                    std::string_view reason) = 0;
};
using SourceVmPtr = std::unique_ptr<SourceVm>;

//! Counts the disk streams open per source host (a vCenter/ESXi, a Glance, an OVA server) and
//! makes a further stream wait for a free slot, so that many imports do not overload one host.
//! Thread-safe.
class StreamSlots {
 public:
  explicit StreamSlots(size_t per_host) : per_host_(per_host) {}
  //! Waits for a slot of `host`; false when `stop` was requested first. per_host 0: no limit.
  bool Acquire(std::stop_token stop, const std::string& host);
  void Release(const std::string& host);
  size_t InUseForTest(const std::string& host) const;

 private:
  const size_t per_host_;
  mutable std::mutex mu_;  // guards in_use_
  std::condition_variable_any cv_;
  std::map<std::string, size_t> in_use_;
};

//! How one disk stream is read: its limits (rate, slots, shared caps) and what it checks.
struct DiskStreamOptions {
  double bytes_per_second = 0;   //!< cap on the source bytes read; 0: none
  StreamSlots* slots = nullptr;  //!< per-host stream slots; null: none
  std::string host;              //!< the slot key: the source's host
  //! Shared caps (issue 23): the source's, its host's, the plan's; the stream reads through
  //! every one of them (each null entry is skipped).
  std::vector<std::shared_ptr<SharedBandwidth>> shared;
  //! Check here a digest the source declares over exactly the bytes served
  //! (model::SourceDigest::covers_served_bytes, e.g. a raw Glance image's SHA-512). Providers
  //! leave such a digest to the consumer (Longhorn checks Harvester's spec.checksum); set this
  //! when no consumer will (volume mode: CDI checks nothing), so it is compared as bytes pass
  //! like any other source digest, and a mismatch fails the stream as kCorruptData.
  bool check_served_digest = false;
};

//! "host" (or "host:port") of a URL; the whole text when it has no "//".
std::string HostOfUrl(std::string_view url);

//! Disk `index` of `vm` decoded to raw bytes (the format detected from its first bytes; a raw
//! disk is as long as its capacity in the description): what the image server streams. Errors:
//! OpenDisk's and the decoder's.
//! `limits` hold the stream to a slot of its host (waited for first; freed with the reader) and
//! cap its rate.
[[nodiscard]] core::Result<disk::DiskReaderPtr> OpenDiskReader(
    std::stop_token stop, SourceVm& vm, size_t index, const DiskStreamOptions& limits = {});
//! The same, and the reader shares the ownership of `vm`: a stream that is still being opened
//! or read when its import lets go of the VM (the import failed, was deleted, or unpublished
//! the disk) keeps the VM, its session and HTTP client alive until it ends.
[[nodiscard]] core::Result<disk::DiskReaderPtr> OpenDiskReader(
    std::stop_token stop, std::shared_ptr<SourceVm> vm, size_t index,
    const DiskStreamOptions& limits = {});

//! Opens VMs of one kind of source. Thread-safe.
class Importer {
 public:
  virtual ~Importer() = default;
  //! Logs in and finds exactly one VM. Errors: kNotFound (no such VM, folder, datacenter) and
  //! kInvalidArgument when the name matches several VMs (the message lists them), plus those of
  //! ConnectionChecker::CheckConnection.
  virtual core::Result<SourceVmPtr> Open(std::stop_token stop, const SourceConfig& config,
                                         const ImportRequest& request) = 0;
  //! Every VM of the source (vSphere: of the datacenter, under `folder` when given), described,
  //! nothing changed: what a user needs to write an import. kUnsupported by default.
  virtual core::Result<std::vector<model::VmDescription>> ListVms(std::stop_token stop,
                                                                  const SourceConfig& config,
                                                                  const std::string& folder);
  //! The tags of every VM of the source that has any: provider id (vSphere moref value) ->
  //! "category/tag" each, with a constant number of calls whatever the VM count. Errors:
  //! kUnsupported by default (a source without tags), the source's otherwise.
  virtual core::Result<std::map<std::string, std::vector<std::string>>> ListVmTags(
      std::stop_token stop, const SourceConfig& config);
};

}  // namespace vmimport::source
