#pragma once

// The OVA side of an import: source::Importer over an OVA file on an HTTP(S) server
// (OvaSource spec.url, basic auth and ca.crt from its Secret). Nothing is staged: the archive is
// read as a tar stream (ovf/tar.h), the OVF descriptor parsed into the model (ovf/envelope.h) and
// each disk streamed out of the archive with its manifest digest checked as its last byte
// passes (ovf/manifest.h).
//
// Open reads only the descriptor and the manifest:
//  - Servers that honour Range (answer 206; nginx, S3, Apache and ours do) are read in 256 KiB
//    windows: Open reads a header, jumps over the entry's data without downloading it, reads the
//    next header, and so on to the end of the archive. That costs one small request per entry,
//    wherever the OVF sits (also after the disks), finds a truncated archive at Open (an entry
//    that ends past the file's size), and records each disk's offset, so that OpenDisk(i) asks
//    for exactly that entry's bytes (Range: its header to its last byte).
//  - Servers that ignore Range (answer 200, e.g. python's http.server) are read front to back:
//    when the OVF comes first (the normal case, DSP0243 5.3) Open stops at the first disk's
//    header; when it comes after the disks Open has to read through them, discarding their bytes
//    (there is no other way to reach the descriptor), and OpenDisk(i) reads from the start of the
//    archive again, skipping the entries before disk i.
// PowerOff is a no-op (a file has no running VM); StartExport only enables OpenDisk.
//
// Timeouts: spec.httpTimeoutSeconds bounds each small request of Open and the time a stream may
// stall (no byte at all); a disk stream as a whole has no deadline (unlike the reference, where
// it covers the whole download, B10). A missing manifest is accepted (the reference refuses it,
// B10): StartExport's event says that the disks are not verified.

#include "source/importer.h"

namespace vmimport::source::ova {

class OvaImporter final : public Importer {
 public:
  //! Errors: those of OvaConnectionChecker, kCorruptData for an archive or OVF that does not
  //! parse, a manifest digest of the OVF that does not match, a disk file missing from the
  //! archive or the manifest, or a truncated archive (ranged reads); kUnsupported for
  //! compressed or chunked disk files; kInvalidArgument when the OVF holds several VMs and
  //! `request.vm_name` names none of them. The VM is named `request.vm_name` (the reference's
  //! virtualMachineName: the name to import as), the OVF's name when that is empty.
  // source::Importer
  core::Result<SourceVmPtr> Open(std::stop_token stop, const SourceConfig& config,
                                 const ImportRequest& request) override;
  //! The OVA's VM as its OVF describes it (the first VirtualSystem).
  core::Result<std::vector<model::VmDescription>> ListVms(std::stop_token stop,
                                                          const SourceConfig& config,
                                                          const std::string& folder) override;
};

}  // namespace vmimport::source::ova
