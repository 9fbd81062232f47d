#pragma once

// A small, generic Kubernetes API client: any group/version/resource, objects as JSON.
// Errors carry the API's Status reason (NotFound, AlreadyExists, Conflict, Invalid with its field
// causes, Forbidden, Unauthorized, TooManyRequests...), mapped onto core::ErrorCode.
// Thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "core/result.h"
#include "http/client.h"
#include "kube/api.h"
#include "kube/config.h"

namespace vmimport::kube {

using core::Result;
using core::Status;

//! A failed API call: the HTTP code and the Status object's fields.
struct ApiStatus {
  long code = 0;
  std::string reason;  //!< NotFound, AlreadyExists, Conflict, Invalid, Forbidden, Gone, ...
  std::string message;
  std::vector<std::string> causes;  //!< "field: message" for Invalid
  std::optional<std::chrono::seconds> retry_after;
};

//! One event of a watch stream: ADDED, MODIFIED, DELETED, BOOKMARK (object carries only
//! metadata.resourceVersion) or ERROR (object is a Status).
struct WatchEvent {
  std::string type;
  Json object;
};

//! A `Warning` header of an API answer (RFC 7234 form `299 - "text"`): an unknown or duplicate
//! field the server dropped, a deprecated API version, a value it will refuse in a later release.
struct ApiWarning {
  std::string method;
  std::string path;
  std::string text;  //!< the warning's text, unquoted
};

//! Called for every warning, on the thread that made the call.
using WarningHandler = std::function<void(const ApiWarning& warning)>;

//! Receives watch events in order; return false to end the watch.
using WatchHandler = std::function<bool(const WatchEvent& event)>;

class Client final : public Api {
 public:
  static Result<std::unique_ptr<Client>> Create(Config config);

  // kube::Api
  Result<Json> Get(std::stop_token stop, const Resource& r, const std::string& ns,
                   const std::string& name) override;
  //! One page; follow metadata.continue for more.
  Result<Json> List(std::stop_token stop, const Resource& r, const std::string& ns,
                    const ListOptions& options = {}) override;
  //! Creates `object` (metadata.generateName honoured). Returns the stored object.
  Result<Json> Create(std::stop_token stop, const Resource& r, const std::string& ns,
                      const Json& object) override;
  //! PUT of the whole object; metadata.resourceVersion makes it conditional (409 on change).
  Result<Json> Update(std::stop_token stop, const Resource& r, const std::string& ns,
                      const Json& object) override;
  //! PUT to the status subresource.
  Result<Json> UpdateStatus(std::stop_token stop, const Resource& r, const std::string& ns,
                            const Json& object) override;
  //! JSON merge patch (RFC 7386), optionally of a subresource ("status").
  Result<Json> MergePatch(std::stop_token stop, const Resource& r, const std::string& ns,
                          const std::string& name, const Json& patch,
                          const std::string& subresource = "") override;
  Status Delete(std::stop_token stop, const Resource& r, const std::string& ns,
                const std::string& name, const DeleteOptions& options = {}) override;

  //! Watches from options.resource_version (with bookmarks) until the server ends the stream
  //! (after `timeout`), `on_event` returns false, or `stop`. Returns ok in those cases; an ERROR
  //! event or a 410 answer becomes kGone ("too old resource version": list again);
  //! transport failures are errors (resume from the last resourceVersion seen).
  core::Status Watch(std::stop_token stop, const Resource& r, const std::string& ns,
                     const ListOptions& options, std::chrono::seconds timeout,
                     const WatchHandler& on_event);

  //! The raw request used by all of the above (path begins with /api or /apis).
  Result<Json> Call(std::stop_token stop, const std::string& method, const std::string& path,
                    const std::string& content_type, const std::string& body,
                    const std::string& accept = "application/json");

  const Config& config() const { return config_; }

  //! Where warnings go; by default nowhere but WarningCount(). Set it before the client is
  //! shared between threads (not synchronised with calls in flight).
  void SetWarningHandler(WarningHandler handler) { warning_handler_ = std::move(handler); }
  //! Warnings received since the client was made.
  uint64_t WarningCount() const { return warnings_.load(); }

 private:
  Client(Config config, std::unique_ptr<http::Client> http);
  Result<std::string> Token() const;

  void Warned(const std::string& method, const std::string& path, const http::Response& resp);

  Config config_;
  std::unique_ptr<http::Client> http_;
  WarningHandler warning_handler_;
  std::atomic<uint64_t> warnings_{0};
};

//! The text of a `Warning` header value (`299 - "text"`, or `299 - "text" "date"`), unquoted;
//! a value not in that form comes back whole.
std::string ParseWarningHeader(std::string_view value);

//! The ApiStatus of an error returned by Client, if it came from the API server.
std::optional<ApiStatus> ParseApiStatus(long http_code, const std::string& body);
//! Maps an API answer to an error code: 404→kNotFound, 409 AlreadyExists→kAlreadyExists,
//! 409→kConflict, 422→kInvalidArgument, 401→kUnauthenticated, 403→kPermissionDenied,
//! 410→kGone (reason Expired or Gone), 429/5xx→kUnavailable, 504→kDeadlineExceeded.
core::ErrorCode ErrorCodeFor(const ApiStatus& status);
//! True when the error is the API's NotFound.
inline bool IsNotFound(const core::Error& e) { return e.code == core::ErrorCode::kNotFound; }

}  // namespace vmimport::kube
