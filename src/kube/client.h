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

//! How much of a text answer (GetText, PodLog) is kept in memory.
struct TextLimit {
  size_t max_bytes = size_t{10} << 20;
  //! Keep the last max_bytes (a log's newest lines; the whole body is read and the rest dropped
  //! as it arrives), else the first (the transfer ends there).
  bool keep_tail = true;
};

//! A text answer, possibly cut to a TextLimit.
struct TextBody {
  //! The body, or the part of it kept; a tail cut starts at the first whole line (unless the
  //! kept part has no line break). Bytes as sent: not checked for UTF-8.
  std::string text;
  uint64_t total_bytes = 0;  //!< what the server sent (as far as it was read)
  bool truncated = false;    //!< text is less than the whole body
};

//! GET /api/v1/namespaces/NS/pods/NAME/log (what `kubectl logs` reads): the query parameters.
struct PodLogOptions {
  //! The container; may stay empty for a Pod of one container (the server refuses it otherwise).
  std::string container;
  //! The previous instance of the container (the one that exited before the last restart),
  //! `kubectl logs --previous`.
  bool previous = false;
  std::optional<int64_t> tail_lines;   //!< server side: only the last N lines
  std::optional<int64_t> limit_bytes;  //!< server side: stop after N bytes (from the start)
  TextLimit keep;                      //!< client side: what of the answer is kept
};

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

  //! A GET whose answer is text, not JSON (path begins with /api or /apis; a subresource such
  //! as pods/log): the body, cut to `limit`. The body is streamed, so memory stays near
  //! 2 x limit.max_bytes whatever the server sends. Errors as Call: the API's Status of a non-2xx
  //! answer mapped by ErrorCodeFor (kNotFound, kPermissionDenied, kInvalidArgument,
  //! kUnavailable...), transport errors as http::Client's (kUnavailable, kDeadlineExceeded after
  //! 60 s or a 60 s stall, kCancelled on `stop`). Thread-safe; may be repeated (reads only).
  Result<TextBody> GetText(std::stop_token stop, const std::string& path, const TextLimit& limit);

  //! The log of one container of Pod `ns`/`name`, through the API server (which proxies it from
  //! the kubelet's /containerLogs: the caller needs `get` on `pods/log` in `ns`). Errors as
  //! GetText; what the API server answers includes: kNotFound (no such Pod), kPermissionDenied
  //! (RBAC), kInvalidArgument (400: no such container, a container name missing for a Pod of
  //! several, or `previous` when the container never restarted), kUnavailable (5xx: the API
  //! server could not reach the kubelet). Thread-safe; may be repeated.
  Result<TextBody> PodLog(std::stop_token stop, const std::string& ns, const std::string& name,
                          const PodLogOptions& options);

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
  //! A request to `path` with the client's Accept, User-Agent and credentials.
  Result<http::Request> NewRequest(const std::string& method, const std::string& path,
                                   const std::string& accept) const;

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
