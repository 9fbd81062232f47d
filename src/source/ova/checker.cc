#include "source/ova/checker.h"

#include "core/strings.h"
#include "http/client.h"
#include "source/tls.h"

namespace vmimport::source::ova {

using core::ErrorCode;
using core::MakeError;

core::Status OvaConnectionChecker::CheckConnection(std::stop_token stop,
                                                   const SourceConfig& config) {
  const std::string scheme = core::ToLower(config.endpoint.substr(0, config.endpoint.find("://")));
  if (config.endpoint.find("://") == std::string::npos || (scheme != "http" && scheme != "https")) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "unsupported URL scheme \"" + scheme + "\": must be 'http' or 'https'");
  }
  auto tls = TlsFromSecret(config.secret);
  if (!tls) {
    return MakeError(tls.error());
  }
  auto client = http::Client::Create(*tls);
  if (!client) {
    return MakeError(client.error());
  }
  http::Request req{.method = "HEAD", .url = config.endpoint};
  if (config.http_timeout.count() > 0) {
    req.timeout = config.http_timeout;
  }
  const auto user = config.secret.find("username");
  const auto password = config.secret.find("password");
  if (user != config.secret.end() && password != config.secret.end()) {
    req.headers.emplace_back("Authorization",
                             "Basic " + core::Base64Encode(user->second + ":" + password->second));
  }
  auto resp = (*client)->Do(std::move(stop), req);
  if (!resp) {
    return MakeError(resp.error().Wrap("ova"));
  }
  if (resp->status == 401 || resp->status == 403) {
    return MakeError(
        ErrorCode::kUnauthenticated,
        "ova: HEAD answered " + std::to_string(resp->status) + ": credentials refused");
  }
  if (resp->status == 404 || resp->status == 410) {
    return MakeError(ErrorCode::kNotFound,
                     "ova: HEAD answered " + std::to_string(resp->status) + ": no such file");
  }
  if (resp->status < 200 || resp->status >= 400) {
    return MakeError(ErrorCode::kUnavailable, "ova: HEAD answered " + std::to_string(resp->status));
  }
  return {};
}

}  // namespace vmimport::source::ova
