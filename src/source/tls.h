#pragma once

// TLS settings of a source from its Secret. Verification is on by default; it is skipped only
// when the Secret says so explicitly with insecureSkipVerify: "true".

#include <map>
#include <string>

#include "core/result.h"
#include "http/client.h"

namespace vmimport::source {

//! Secret keys that may hold a PEM CA bundle, in order of preference: the reference's
//! `caCert` (vSphere), `ca_cert` (OpenStack) and `ca.crt` (OVA) are all accepted.
inline constexpr const char* kCaKeys[] = {"caCert", "ca_cert", "ca.crt"};
inline constexpr const char* kInsecureSkipVerifyKey = "insecureSkipVerify";

//! Errors: kInvalidArgument when insecureSkipVerify is neither "true" nor "false".
core::Result<http::TlsConfig> TlsFromSecret(const std::map<std::string, std::string>& secret);

}  // namespace vmimport::source
