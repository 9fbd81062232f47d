#include "source/tls.h"

namespace vmimport::source {

core::Result<http::TlsConfig> TlsFromSecret(const std::map<std::string, std::string>& secret) {
  http::TlsConfig tls;
  for (const char* key : kCaKeys) {
    if (auto it = secret.find(key); it != secret.end() && !it->second.empty()) {
      tls.ca_pem = it->second;
      break;
    }
  }
  if (auto it = secret.find(kInsecureSkipVerifyKey); it != secret.end()) {
    if (it->second == "true") {
      tls.insecure_skip_verify = true;
    } else if (it->second != "false" && !it->second.empty()) {
      return core::MakeError(
          core::ErrorCode::kInvalidArgument,
          std::string("secret key ") + kInsecureSkipVerifyKey + R"( must be "true" or "false")");
    }
  }
  return tls;
}

}  // namespace vmimport::source
