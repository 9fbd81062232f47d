#pragma once

// Exporting a powered-off VM's disks through an NFC lease (VirtualMachine.ExportVm).
//
// ExportVm returns an HttpNfcLease; once it is ready its info.deviceUrl lists one HTTPS URL per
// disk, keyed "/vm-70/VirtualLsiLogicController0:0" (the VM's moref, the controller type, its
// bus number and the disk's unit number). A GET of a URL streams the disk as a streamOptimized
// VMDK. The lease expires after about five minutes without HttpNfcLeaseProgress, so a keep-alive
// thread reports progress while the disks stream; at the end the lease is completed, or aborted
// on failure so that vCenter releases the VM at once.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/result.h"
#include "disk/byte_source.h"
#include "http/client.h"
#include "source/http_stream.h"
#include "source/vmware/inventory.h"
#include "source/vmware/session.h"

namespace vmimport::source::vmware {

//! One entry of HttpNfcLeaseInfo.deviceUrl.
struct LeaseDeviceUrl {
  std::string key;         //!< "/vm-70/VirtualLsiLogicController0:0"
  std::string import_key;  //!< "/web/VirtualLsiLogicController0:0"
  std::string url;         //!< may name the host "*": the host the SDK was reached on
  std::string ssl_thumbprint;
  bool disk = false;
  std::optional<uint64_t> file_size;
};

struct LeaseInfo {
  std::vector<LeaseDeviceUrl> device_urls;
  uint64_t total_disk_capacity_kb = 0;
  int lease_timeout_seconds = 0;
};

//! Parses an HttpNfcLeaseInfo (the lease's "info" property).
LeaseInfo ParseLeaseInfo(pugi::xml_node info);

//! One HttpNfcLeaseManifestEntry: the digest of a file of the lease as vSphere sent it (for a
//! disk: the streamOptimized VMDK bytes of its download).
struct ManifestEntry {
  std::string key;        //!< the device URL's key
  std::string algorithm;  //!< "sha256", "sha1" (checksumType; sha1 when only <sha1> is given)
  std::string hex;        //!< lower-case
  uint64_t size = 0;
};

//! Parses the <returnval> entries of an HttpNfcLeaseGetManifestResponse. An entry with a
//! checksum and checksumType takes them; one with only <sha1> (hosts before 6.7) takes that.
//! Entries without any digest are left out.
std::vector<ManifestEntry> ParseManifest(pugi::xml_node response);

//! The HttpNfcLeaseSetManifestChecksumType body that asks `algorithm` for every key.
std::string ManifestChecksumTypeBody(const MoRef& lease, const std::vector<std::string>& keys,
                                     std::string_view algorithm);

//! A VirtualDisk of a VM, with the key its lease device URL carries.
struct VirtualDiskDevice {
  std::string device_key;  //!< "2000": model::DiskDescription::id as Inventory::Describe reports
  std::string lease_key;   //!< "/vm-70/VirtualLsiLogicController0:0"
  std::string label;       //!< "Hard disk 1"
  uint64_t capacity_bytes = 0;
};

//! The VirtualDisks of config.hardware.device of VM `vm_moref`, in device order (the order of
//! Inventory::Describe's disks).
std::vector<VirtualDiskDevice> ParseVirtualDisks(std::string_view vm_moref, pugi::xml_node devices);

//! A disk of an export lease.
struct ExportDisk {
  size_t index = 0;        //!< position in device order
  std::string device_key;  //!< matches model::DiskDescription::id
  std::string lease_key;
  std::string label;
  uint64_t capacity_bytes = 0;
  std::string url;  //!< "*" already replaced by the SDK host; holds the lease ticket: never log
};

//! Pairs every disk with its device URL: by key when every disk's key is among the URLs, else
//! by order when there are as many disk URLs as disks (vSphere lists them in device order).
//! Errors: kInternal naming the unmatched keys otherwise.
core::Result<std::vector<ExportDisk>> MapDeviceUrls(const std::vector<VirtualDiskDevice>& disks,
                                                    const std::vector<LeaseDeviceUrl>& urls,
                                                    std::string_view sdk_url);

//! Replaces a "*" host in a lease URL by the host (and port) of `sdk_url`.
std::string ResolveLeaseUrl(std::string_view url, std::string_view sdk_url);

struct ExportOptions {
  //! How often HttpNfcLeaseProgress is sent (vSphere expires a lease idle for ~5 minutes).
  std::chrono::milliseconds keep_alive_interval{std::chrono::seconds(30)};
  std::chrono::milliseconds ready_poll_interval{std::chrono::milliseconds(200)};
  std::chrono::milliseconds ready_timeout{std::chrono::minutes(5)};
  //! Buffering and stall timeout of the disk streams; OpenDisk sets the name, the status
  //! mapping and the position callback of each.
  HttpStreamOptions stream{.stall_timeout = std::chrono::seconds(60)};
};

//! An open export lease. Thread-safe: disks may be opened and read from several threads at once.
//! The session must outlive the lease.
class ExportLease {
 public:
  //! ExportVm on `vm` (which must be powered off), waits for the lease to be ready and maps its
  //! URLs to the VM's disks. Errors: kConflict for InvalidPowerState (the VM is on), the lease's
  //! own fault when it goes to state error, kDeadlineExceeded after options.ready_timeout,
  //! kInternal when URLs and disks do not match. A lease that was created is aborted on error.
  static core::Result<std::unique_ptr<ExportLease>> Start(std::stop_token stop, Session& session,
                                                          const VmRef& vm,
                                                          ExportOptions options = {});
  //! Aborts the lease unless Complete or Abort ended it.
  ~ExportLease();
  ExportLease(const ExportLease&) = delete;
  ExportLease& operator=(const ExportLease&) = delete;

  const MoRef& lease() const { return lease_; }
  //! The disks in device order.
  const std::vector<ExportDisk>& disks() const { return disks_; }

  //! A fresh GET of disk `index` (a streamOptimized VMDK), with the session cookie. Each call
  //! reads the disk from its start again. The stream is a disk::CheckedSource: it hashes the
  //! bytes as received (manifest_algorithm()) and, at its end, compares them with the lease's
  //! manifest entry for the disk (HttpNfcLeaseGetManifest, asked then: vSphere computes it
  //! while it sends); a mismatch is kCorruptData, no entry is unverifiable. The stream ends with an
  //! error, never short: a connection that drops early, or a body shorter than its Content-Length,
  //! is kUnavailable. Errors: kInvalidArgument for an index out of range, kGone once the lease was
  //! completed or aborted; before the body kNotFound for 404 (the lease ended or expired),
  //! kUnauthenticated for 401/403, kUnavailable for 5xx and transport errors, kCancelled on stop.
  core::Result<disk::ByteSourcePtr> OpenDisk(std::stop_token stop, size_t index);

  //! The most bytes any stream of disk `index` has returned.
  uint64_t BytesRead(size_t index) const;
  //! Progress reported to vCenter: bytes read over the bytes expected (Content-Length when a
  //! stream told it, else the capacity), 0..99 until Complete.
  int ProgressPercent() const;
  //! How many keep-alive HttpNfcLeaseProgress calls succeeded, and the last one's error.
  int keep_alive_calls() const { return keep_alive_calls_.load(); }
  core::Status KeepAliveStatus() const;

  //! The digest algorithm of the manifest: "sha256" when HttpNfcLeaseSetManifestChecksumType
  //! took it (vSphere 6.7 and later), else "sha1".
  const std::string& manifest_algorithm() const { return manifest_algorithm_; }
  //! HttpNfcLeaseGetManifest's entry for disk `index`; nullopt when the manifest has none.
  core::Result<std::optional<ManifestEntry>> GetManifestEntry(std::stop_token stop,
                                                              size_t index) const;

  //! HttpNfcLeaseComplete: every disk was read. Stops the keep-alive.
  core::Status Complete(std::stop_token stop);
  //! HttpNfcLeaseAbort with `reason` as the fault's message. Stops the keep-alive.
  core::Status Abort(std::stop_token stop, std::string_view reason);

 private:
  struct DiskProgress {
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> expected{0};
  };

  ExportLease(Session& session, MoRef lease, std::string vm_name, ExportOptions options);
  core::Status WaitReady(std::stop_token stop, const VmRef& vm);
  void SetManifestChecksumType(std::stop_token stop);
  void StartKeepAlive();
  void StopKeepAlive();
  bool MarkEnded();  // false when already ended

  Session& session_;
  const MoRef lease_;
  const std::string vm_name_;
  const ExportOptions options_;
  std::vector<ExportDisk> disks_;
  std::string manifest_algorithm_ = "sha1";
  std::vector<std::shared_ptr<DiskProgress>> progress_;  // shared with the streams
  std::atomic<bool> ended_{false};
  std::atomic<int> keep_alive_calls_{0};
  mutable std::mutex mu_;  // guards keep_alive_error_
  std::optional<core::Error> keep_alive_error_;
  std::jthread keep_alive_;  // last: stopped before the members it uses go away
};

}  // namespace vmimport::source::vmware
