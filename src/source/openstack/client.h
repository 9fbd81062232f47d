#pragma once

// A Keystone v3 session and the REST calls to Nova, Cinder, Glance and Neutron made through it.
//
// Login is a password authentication scoped to a project (POST /v3/auth/tokens); the token comes
// back in the X-Subject-Token header and the body carries the service catalog, from which the
// public endpoint of every service in the configured region is taken. The token is renewed
// before it expires and once more when a service answers 401. Tokens and passwords never appear
// in errors or logs.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "http/client.h"
#include "source/provider.h"

namespace vmimport::source::openstack {

using Json = nlohmann::json;

//! The services the importer talks to.
enum class Service { kCompute, kBlockStorage, kImage, kNetwork };

//! "nova", "cinder", "glance", "neutron": the prefix of every error a service call returns.
const char* ServiceName(Service service);

//! One endpoint of the catalog.
struct CatalogEndpoint {
  std::string type;       //!< service type: "compute", "volumev3", "block-storage", ...
  std::string interface;  //!< "public", "internal", "admin"
  std::string region;     //!< region_id (or the older "region")
  std::string url;
};

//! What a successful POST /v3/auth/tokens says besides the token itself.
struct TokenInfo {
  std::string project_id;
  std::chrono::system_clock::time_point expires_at{};
  std::vector<CatalogEndpoint> catalog;
};

//! Parses the body of POST /v3/auth/tokens. Errors: kCorruptData when it is not a token.
core::Result<TokenInfo> ParseTokenResponse(std::string_view body);

//! The URL of `service`'s `interface` endpoint in `region` (any region when empty). Accepted
//! types: compute; volumev3, block-storage, then volume; image; network. Errors: kNotFound naming
//! the regions the catalog has for that service (none: the service is missing).
core::Result<std::string> FindEndpoint(const std::vector<CatalogEndpoint>& catalog, Service service,
                                       std::string_view region,
                                       std::string_view interface = "public");

//! The Keystone v3 URL for spec.endpoint: "/v3" is appended unless the path ends in it.
std::string IdentityV3Url(std::string_view endpoint);

//! An API error as a core::Error: 401 kUnauthenticated, 403 kPermissionDenied, 404 kNotFound,
//! 409 kConflict, 400 kInvalidArgument, 413/429/5xx kUnavailable, others kInternal. The message is
//! "<service>: <what>: http <status>: <the API's own message when the body has one>".
core::Error ApiError(std::string_view service, std::string_view what, long status,
                     std::string_view body);

//! The credentials of an OpenstackSource Secret.
struct Credentials {
  std::string username;
  std::string password;
  std::string project_name;
  std::string domain_name;
};

//! Reads username, password, project_name and domain_name (default "Default") from the Secret.
//! Errors: kInvalidArgument naming the missing key.
//! `secret_name` ("secret ns/name", see source::SecretName) names the Secret in the error.
core::Result<Credentials> CredentialsFromSecret(const std::map<std::string, std::string>& secret,
                                                std::string_view secret_name = "the secret");

struct SessionOptions {
  //! Renew the token when it expires within this margin.
  std::chrono::seconds renew_margin{120};
  std::chrono::milliseconds request_timeout{std::chrono::seconds(60)};
};

//! A logged-in session. Thread-safe.
class Session {
 public:
  //! Checks the config, builds the TLS client, logs in and resolves the compute, block-storage
  //! and image endpoints (network is optional). Errors: those of ConnectionChecker.
  static core::Result<std::unique_ptr<Session>> Login(std::stop_token stop,
                                                      const SourceConfig& config,
                                                      SessionOptions options = {});

  //! Calls `service`: `path` is relative to its endpoint ("/servers/..."). Re-authenticates once
  //! on 401. A 2xx answer is returned with its body parsed (null when empty); any other status
  //! is an ApiError naming `what`.
  core::Result<Json> Call(std::stop_token stop, Service service, std::string_view method,
                          std::string_view path, std::string_view what, const Json* body = nullptr,
                          const http::Headers& extra_headers = {});

  //! The raw response (for callers that read headers or handle statuses themselves).
  core::Result<http::Response> Raw(std::stop_token stop, Service service, std::string_view method,
                                   std::string_view path, const Json* body = nullptr,
                                   const http::Headers& extra_headers = {});

  //! A valid token (renewed when it is about to expire). Never log it.
  core::Result<std::string> Token(std::stop_token stop);
  //! Drops the token so that the next call logs in again (for tests of re-authentication).
  void InvalidateTokenForTest();
  //! How many times the session logged in.
  int logins() const;
  //! How many service requests (Raw and Call, each attempt counted; logins not) it sent.
  uint64_t requests() const { return requests_.load(); }

  //! The endpoint URL of `service` ("" when the catalog has none: only network may be missing).
  const std::string& Endpoint(Service service) const;
  const std::string& project_id() const { return project_id_; }
  http::Client& http() { return *http_; }

 private:
  Session(std::unique_ptr<http::Client> http, std::string identity_url, Credentials credentials,
          std::string region, SessionOptions options)
      : http_(std::move(http)),
        identity_url_(std::move(identity_url)),
        credentials_(std::move(credentials)),
        region_(std::move(region)),
        options_(options) {}
  // Logs in; mu_ held.
  core::Status Authenticate(std::stop_token stop);

  std::unique_ptr<http::Client> http_;
  const std::string identity_url_;
  const Credentials credentials_;
  const std::string region_;
  const SessionOptions options_;
  std::string project_id_;                    // set once by Login
  std::map<Service, std::string> endpoints_;  // set once by Login
  mutable std::mutex mu_;                     // guards token_, expires_at_, logins_
  std::string token_;
  std::chrono::system_clock::time_point expires_at_{};
  int logins_ = 0;
  std::atomic<uint64_t> requests_{0};
};

}  // namespace vmimport::source::openstack
