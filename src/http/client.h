#pragma once

// A small HTTP(S) client over libcurl: TLS verified by default (system store, a CA bundle in
// memory or a file), optional client certificates, timeouts, streaming bodies and cancellation
// through std::stop_token. Thread-safe: requests may run on many threads at once; connections are
// kept alive and reused through a pool of curl handles.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace vmimport::http {

using core::Result;

struct TlsConfig {
  std::string ca_pem;           //!< trusted CAs (PEM); with ca_file empty too, the system store
  std::string ca_file;          //!< trusted CAs from a file
  std::string client_cert_pem;  //!< client certificate (PEM), or the file below
  std::string client_key_pem;   //!< its private key (PEM), or the file below
  std::string client_cert_file;
  std::string client_key_file;
  bool insecure_skip_verify = false;  //!< only when the user asked for it explicitly
};

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method = "GET";
  std::string url;
  Headers headers;
  std::string body;
  //! Whole-transfer limit; zero means none (for long streams, rely on stall_timeout).
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  //! Abort when fewer than 1 byte/s moved for this long; zero disables.
  std::chrono::seconds stall_timeout{std::chrono::seconds(60)};
  //! Curl's receive buffer for this transfer (CURLOPT_BUFFERSIZE), clamped to [1 KiB, 10 MiB];
  //! zero: curl's default (16 KiB). A larger one reads a fast plain-HTTP body in fewer, larger
  //! recv calls (TLS still yields one record, at most 16 KiB, per read); body callbacks still
  //! get at most 16 KiB each. Costs its size in memory per handle while in use.
  size_t receive_buffer_bytes = 0;
};

struct Response {
  long status = 0;
  Headers headers;  //!< names lower-cased, in arrival order
  std::string body;

  //! The first header named `name` (case-insensitive).
  std::optional<std::string> Header(std::string_view name) const;
  //! Every header named `name` (for Set-Cookie).
  std::vector<std::string> AllHeaders(std::string_view name) const;
};

//! Receives body bytes as they arrive; return false to abort the transfer (kCancelled).
using BodyCallback = std::function<bool(std::string_view chunk)>;
//! Called once with status and headers before the first body byte; return false to abort.
using HeadCallback = std::function<bool(const Response& head)>;

//! Call once in main() before any thread starts (tests: in their main).
void GlobalInit();

class Client {
 public:
  //! Fails with kInvalidArgument when a configured file does not exist.
  static Result<std::unique_ptr<Client>> Create(TlsConfig tls);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  //! Sends `request` and returns the whole response. Errors: kUnavailable (connect, TLS, reset),
  //! kDeadlineExceeded (timeouts), kCancelled (stop requested). An HTTP error status is not an
  //! error here: the caller reads Response::status.
  Result<Response> Do(std::stop_token stop, const Request& request);

  //! Like Do, but hands the body to `on_body` as it arrives (Response::body stays empty).
  Result<Response> Stream(std::stop_token stop, const Request& request, const HeadCallback& on_head,
                          const BodyCallback& on_body);

  const TlsConfig& tls() const { return tls_; }

 private:
  struct Handle;
  explicit Client(TlsConfig tls);
  std::unique_ptr<Handle> Acquire();
  void Release(std::unique_ptr<Handle> handle);

  TlsConfig tls_;
  std::mutex mu_;  // guards idle_
  std::vector<std::unique_ptr<Handle>> idle_;
};

}  // namespace vmimport::http
