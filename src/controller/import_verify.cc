// Verified integrity (issue 16): once Harvester says a disk's image is ready, the disk is checked
// against every digest someone other than us computed: the source's (vSphere's NFC manifest,
// the OVA manifest, Glance's os_hash_value; checked by the disk path as bytes passed) and the
// store's (Longhorn's SHA-512 of the file it stored, compared with the SHA-512 of what the image
// server served, or with the source's own SHA-512 when that is the image's spec.checksum: then
// the image server computes none). Status says, per disk, what was compared, by whom, and the
// result.

#include "controller/import_internal.h"
#include "controller/import_reconciler.h"
#include "core/json.h"
#include "core/strings.h"
#include "harvester/backing_image.h"
#include "harvester/image.h"

namespace vmimport::controller {

using api::DiskVerification;
using api::ImportStatus;
using core::ErrorCode;
using core::MakeError;
using kube::Json;
using namespace import_detail;  // NOLINT(google-build-using-namespace): this reconciler's own

namespace {

const kube::Resource kBackingImages{std::string(harvester::kBackingImageGroup),
                                    std::string(harvester::kBackingImageVersion),
                                    std::string(harvester::kBackingImagePlural), true};

//! How long a ready image's BackingImage may go without Longhorn's checksum before the disk is
//! said unverifiable (Longhorn sets it with the ready file; this only bounds a lost write).
constexpr std::chrono::seconds kLonghornChecksumWait{60};

}  // namespace

std::optional<std::string> import_detail::SpecChecksumFor(const model::DiskDescription& disk) {
  const auto& digest = disk.source_digest;
  if (digest && digest->covers_served_bytes && digest->algorithm == "sha512" &&
      harvester::IsLonghornChecksum(digest->hex)) {
    return digest->hex;
  }
  return std::nullopt;
}

core::Result<bool> ImportReconciler::VerifyDisk(std::stop_token stop, Pass& pass, size_t index,
                                                const Json& image) {
  api::DiskInfo& disk = pass.vm_import.status.disk_import_status[index];
  if (!disk.verification.empty()) {
    return true;  // decided on an earlier pass
  }
  std::optional<DiskStreamState> stream;
  std::optional<model::SourceDigest> declared;
  {
    std::lock_guard lock(mu_);
    if (auto it = incarnations_.find(pass.uid); it != incarnations_.end()) {
      if (auto s = it->second->streams.find(index); s != it->second->streams.end()) {
        stream = s->second;
      }
      if (it->second->running && index < it->second->running->description.disks.size()) {
        declared = it->second->running->description.disks[index].source_digest;
      }
    }
  }
  if (stream && !stream->completed) {
    return false;  // this process streams the disk: its figures arrive with the stream's end
  }
  bool made_by_us = false;
  for (const Json& ref : core::JsonArray(core::JsonObject(image, "metadata"), "ownerReferences")) {
    made_by_us |= core::JsonString(ref, "uid") == pass.uid;
  }
  if (!made_by_us && !stream && disk.progress.sha512.empty()) {
    // An image an earlier, finished import of the same name made (the seed's "delete the VM and
    // recreate the import"): nothing streamed now, nothing new to compare.
    disk.verification = {{"longhorn", "sha512", "", "unverifiable",
                          "adopted VirtualMachineImage " + disk.virtual_machine_image +
                              " made by an earlier import of the same name: no bytes moved now"}};
    return true;
  }
  std::vector<DiskVerification> out;
  if (stream) {
    for (const auto& d : stream->source_digests) {
      out.push_back({d.verifier, d.algorithm, d.hex, "verified",
                     "over the " + std::to_string(d.bytes) + " bytes the source sent"});
    }
  }
  const Json& spec = core::JsonObject(image, "spec");
  const std::string spec_checksum = core::JsonString(spec, "checksum");
  const std::string backend = core::JsonString(spec, "backend", "backingimage");
  // The served SHA-512: from this process's stream, else as an earlier process wrote it into
  // status (a controller restarted after the disk streamed).
  std::string served = stream && stream->checksums ? stream->checksums->sha512 : std::string();
  if (served.empty()) {
    served = disk.progress.sha512;
  }
  const bool from_openstack =
      core::EqualsIgnoreCase(pass.vm_import.spec.source_cluster.kind, "OpenstackSource");
  if (from_openstack && !declared && spec_checksum.empty() &&
      std::none_of(out.begin(), out.end(), [](const auto& v) { return v.verifier == "glance"; })) {
    out.push_back(
        {"glance", "", "", "unverifiable", "Glance has no os_hash_value for the exported image"});
  }
  // libvirt declares no digest of a storage volume: said once per disk, Longhorn's check below
  // still applies.
  if (core::EqualsIgnoreCase(pass.vm_import.spec.source_cluster.kind, "LibvirtSource") &&
      std::none_of(out.begin(), out.end(), [](const auto& v) { return v.verifier == "libvirt"; })) {
    out.push_back(
        {"libvirt", "", "", "unverifiable", "libvirt declares no digest of a storage volume"});
  }
  if (backend == "cdi") {
    out.push_back(
        {"cdi", "", "", "unverifiable", "the CDI image backend does not verify what it stored"});
    disk.verification = std::move(out);
    return true;
  }
  // Longhorn: the BackingImage Harvester made for this image, under the names Harvester uses.
  std::optional<Json> backing_image;
  for (const auto& name : harvester::BackingImageNames(image)) {
    auto bi = api_.Get(stop, kBackingImages, std::string(harvester::kLonghornNamespace), name);
    if (bi) {
      backing_image = std::move(*bi);
      break;
    }
    if (bi.error().code != ErrorCode::kNotFound) {
      return MakeError(bi.error().Wrap("reading the BackingImage of " + disk.disk_name));
    }
  }
  if (!backing_image) {
    out.push_back({"longhorn", "sha512", "", "unverifiable",
                   "no BackingImage found for VirtualMachineImage " + disk.virtual_machine_image});
    disk.verification = std::move(out);
    return true;
  }
  const auto stored = harvester::ReadBackingImageChecksum(*backing_image);
  // What Longhorn's SHA-512 must equal: the served one, or, when the image server computed none
  // because Longhorn checks the source's own digest (spec.checksum: a raw Glance image), that.
  const bool against_source = served.empty() && harvester::IsLonghornChecksum(spec_checksum);
  const std::string expected = against_source ? spec_checksum : served;
  if (stored.sha512.empty() && !expected.empty() && stored.failed_message.empty()) {
    // Longhorn has not computed it yet: wait, but not for ever.
    bool waited_enough = false;
    {
      std::lock_guard lock(mu_);
      auto& inc = IncarnationLocked(pass.key, pass.uid);
      const auto now = clock_.Now();
      const auto since = inc.checksum_wait_since.try_emplace(index, now).first->second;
      waited_enough = now - since >= kLonghornChecksumWait;
    }
    if (!waited_enough) {
      return false;
    }
  }
  switch (harvester::CompareStoredChecksum(expected, stored)) {
    case harvester::StoredVerdict::kVerified:
      out.push_back({"longhorn", "sha512", stored.sha512, "verified",
                     against_source ? "the file Longhorn stored has the SHA-512 the source "
                                      "declared (spec.checksum); the image server computed none"
                                    : "the file Longhorn stored has the SHA-512 of what the "
                                      "image server served"});
      if (!spec_checksum.empty() && spec_checksum == stored.sha512) {
        out.push_back({"glance", "sha512", spec_checksum, "verified",
                       "Glance's os_hash_value, checked by Longhorn against the stored file"});
      }
      break;
    case harvester::StoredVerdict::kMismatch: {
      const std::string message = disk.disk_name + ": Longhorn stored a file whose SHA-512 is " +
                                  stored.sha512 +
                                  (against_source ? ", the source declared (spec.checksum) "
                                                  : ", the image server served ") +
                                  expected;
      out.push_back({"longhorn", "sha512", stored.sha512, "mismatch", message});
      disk.verification = std::move(out);
      Fail(pass, ImportStatus::kDiskImagesFailed, "DiskChecksumMismatch", message);
      return true;
    }
    case harvester::StoredVerdict::kUnverifiable:
      out.push_back({"longhorn", "sha512", stored.sha512, "unverifiable",
                     served.empty() ? "the image server did not compute the served SHA-512 "
                                      "(--disk-checksums=none, or the disk streamed before a "
                                      "controller restart)"
                                    : "the BackingImage has no checksum after " +
                                          std::to_string(kLonghornChecksumWait.count()) + " s"});
      break;
  }
  disk.verification = std::move(out);
  return true;
}

}  // namespace vmimport::controller
