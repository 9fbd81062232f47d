#pragma once

#include "source/provider.h"

namespace vmimport::source::ova {

//! ConnectionChecker for OvaSource: the URL (http or https) must answer a HEAD with 2xx/3xx,
//! with basic auth when the Secret has username and password, TLS verified (ca.crt) unless the
//! Secret says insecureSkipVerify.
class OvaConnectionChecker final : public ConnectionChecker {
 public:
  // source::ConnectionChecker
  core::Status CheckConnection(std::stop_token stop, const SourceConfig& config) override;
};

}  // namespace vmimport::source::ova
