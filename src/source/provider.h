#pragma once

// What the controller needs from a source (vSphere, OpenStack, OVA), independent of its protocol.
// Implementations live in source/<name>/; app/ registers them by hand.

#include <chrono>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include "core/result.h"

namespace vmimport::source {

enum class SourceKind { kVmware, kOpenstack, kOva, kLibvirt };

//! "vmware", "openstack", "ova", "libvirt".
const char* SourceKindName(SourceKind kind);
//! The kind of a source object's Kubernetes `kind` ("VmwareSource", "OpenstackSource",
//! "OvaSource", "LibvirtSource"; any case); nullopt for any other.
std::optional<SourceKind> SourceKindOfObjectKind(std::string_view kind);

//! A source object's spec and its Secret's data, in neutral form.
struct SourceConfig {
  SourceKind kind = SourceKind::kVmware;
  std::string endpoint;    //!< vSphere SDK URL, Keystone URL, OVA URL, or libvirt URI
  std::string datacenter;  //!< vSphere: spec.dc
  std::string region;      //!< OpenStack: spec.region
  std::map<std::string, std::string> secret;  //!< decoded Secret data; never logged
  //! "namespace/name" of the Secret `secret` came from ("" when there is none): named in errors
  //! about its content, so that an operator knows which Secret to fix.
  std::string secret_key;
  std::chrono::seconds http_timeout{600};  //!< OVA: spec.httpTimeoutSeconds (0 = none)
  //! OpenStack: spec.uploadImageRetryCount / spec.uploadImageRetryDelay (seconds); <= 0 means
  //! the reference's defaults, 30 polls 10 s apart.
  int upload_image_retry_count = 0;
  int upload_image_retry_delay_seconds = 0;
  //! spec.bandwidthBytesPerSecond (issue 23): a cap on the bytes read from this source at once,
  //! shared by every disk stream of every import of it (source/bandwidth.h); 0: none.
  double bandwidth_bytes_per_second = 0;
  //! spec.bandwidthPerHostBytesPerSecond: a cap of the same kind for each source host (vSphere:
  //! the ESXi host a VM runs on; OpenStack: its compute host when the API says it); 0: none.
  double bandwidth_per_host_bytes_per_second = 0;
};

//! What to call the Secret of `config` in an error: "secret <namespace>/<name>", or "the secret"
//! when the config does not say which.
std::string SecretName(const SourceConfig& config);

//! Checks that a source can be used: reachable, TLS verified, credentials accepted, and the
//! named datacenter / region / file exists. Errors say which of these failed:
//! kUnavailable (unreachable or TLS; the message contains "tls:" for TLS), kUnauthenticated
//! (credentials), kNotFound (datacenter, region, file), kInvalidArgument (the spec or Secret is
//! malformed), kDeadlineExceeded (time-out). Thread-safe.
class ConnectionChecker {
 public:
  virtual ~ConnectionChecker() = default;
  virtual core::Status CheckConnection(std::stop_token stop, const SourceConfig& config) = 0;
};

}  // namespace vmimport::source
