#pragma once

// The libvirt side of an import (LibvirtSource): source::ConnectionChecker and source::Importer
// over libvirt's client library (connection.h).
//
// Open finds the domain by UUID or by name (a name that is also another domain's UUID is
// ambiguous and refused), reads its XML (domain_xml.h) and resolves every disk to its storage
// volume: a file or block device by path (virStorageVolLookupByPath: it must be in a storage
// pool), a type='volume' disk by pool and volume. Refused at Open, before anything is touched
// (kUnsupported, naming the disk): a LUN, a network disk, an empty drive, a file in no storage
// pool, a volume of a format we do not decode (only raw and qcow2), and a qcow2 volume with a
// backing chain (streaming it flattened would need the chain's volumes too: not done; the
// message says to flatten it, e.g. `virsh blockpull`, or to import the base).
//
// PowerOff: a domain already shut off is left alone; otherwise ACPI shutdown (virDomainShutdown)
// and up to graceful_timeout for the guest to stop, then virDomainDestroy; `force` destroys at
// once. StartExport checks the domain is shut off. OpenDisk opens a connection of its own and
// downloads the volume (volume_stream.h); qcow2 is decoded here, so every disk reaches the image
// server as raw bytes of its capacity. libvirt gives no digest of a volume: every disk is
// unverifiable from the source (Longhorn's check on the Harvester side still applies).

#include <chrono>

#include "source/importer.h"
#include "source/libvirt/connection.h"
#include "source/provider.h"

namespace vmimport::source::libvirt {

struct LibvirtOptions {
  //! How often the domain state is read while the guest shuts down.
  std::chrono::milliseconds poll_interval{std::chrono::seconds(1)};
  //! The open's deadline and libvirt's keepalive (connection.h).
  ConnectOptions connect;
  //! The whole readiness check (open and a call); past it: kUnavailable "... timed out ...".
  std::chrono::milliseconds check_timeout{std::chrono::seconds(45)};
  //! Each download asks for at most this many bytes (volume_stream.h: bounds the memory).
  uint64_t download_chunk_bytes = 16ULL << 20;
  //! Deadline of a download's start and end (round trips; the keepalive bounds them too).
  std::chrono::milliseconds download_call_timeout{std::chrono::seconds(60)};
};

//! Ready when libvirtd accepts the connection (TLS verified, SASL credentials) and answers,
//! within check_timeout.
class LibvirtConnectionChecker final : public ConnectionChecker {
 public:
  explicit LibvirtConnectionChecker(LibvirtOptions options = {}) : options_(options) {}
  // source::ConnectionChecker
  core::Status CheckConnection(std::stop_token stop, const SourceConfig& config) override;

 private:
  const LibvirtOptions options_;
};

class LibvirtImporter final : public Importer {
 public:
  explicit LibvirtImporter(LibvirtOptions options = {}) : options_(options) {}
  //! Errors: Connect's; kNotFound (no such domain); kInvalidArgument (ambiguous name);
  //! kUnsupported (a disk that cannot be streamed, see above).
  // source::Importer
  core::Result<SourceVmPtr> Open(std::stop_token stop, const SourceConfig& config,
                                 const ImportRequest& request) override;
  //! Every domain of the connection, described (a disk that cannot be streamed is listed with
  //! its reason in its location).
  core::Result<std::vector<model::VmDescription>> ListVms(std::stop_token stop,
                                                          const SourceConfig& config,
                                                          const std::string& folder) override;

 private:
  const LibvirtOptions options_;
};

}  // namespace vmimport::source::libvirt
