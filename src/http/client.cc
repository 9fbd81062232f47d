#include "http/client.h"

#include <curl/curl.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "core/strings.h"

namespace vmimport::http {
namespace {

using core::ErrorCode;
using core::MakeError;

struct CurlEasyDeleter {
  void operator()(CURL* h) const noexcept { curl_easy_cleanup(h); }
};
using CurlEasyPtr = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlSlistDeleter {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};
using CurlSlistPtr = std::unique_ptr<curl_slist, CurlSlistDeleter>;

// Per-transfer state the curl callbacks see.
struct Transfer {
  std::stop_token stop;
  Response response;
  const HeadCallback* on_head = nullptr;
  const BodyCallback* on_body = nullptr;  // null: accumulate into response.body
  bool head_delivered = false;
  bool aborted_by_callback = false;
  std::optional<std::string> callback_exception;  // what a callback threw (the transfer aborts)
  CURL* easy = nullptr;
};

// An exception must never unwind through libcurl's C frames: every callback runs its body here.
// A throw aborts the transfer (`abort_value`) and is reported as kInternal by Send.
template <class R, class F>
R NoThrow(Transfer& t, R abort_value, F&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    t.callback_exception = e.what();
  } catch (...) {
    t.callback_exception = "unknown exception";
  }
  t.aborted_by_callback = true;
  return abort_value;
}

bool DeliverHead(Transfer& t) {
  if (t.head_delivered) {
    return true;
  }
  t.head_delivered = true;
  curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &t.response.status);
  if (t.on_head != nullptr && *t.on_head && !(*t.on_head)(t.response)) {
    t.aborted_by_callback = true;
    return false;
  }
  return true;
}

size_t OnHeaderUnsafe(Transfer& t, char* data, size_t n) {
  std::string_view line(data, n);
  if (line.starts_with("HTTP/")) {
    t.response.headers.clear();  // a new response (after 100-continue or a redirect)
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return n;
  }
  t.response.headers.emplace_back(core::ToLower(core::TrimSpace(line.substr(0, colon))),
                                  std::string(core::TrimSpace(line.substr(colon + 1))));
  return n;
}

size_t OnBodyUnsafe(Transfer& t, char* data, size_t n) {
  if (!DeliverHead(t)) {
    return 0;
  }
  if (t.on_body == nullptr) {
    t.response.body.append(data, n);
    return n;
  }
  if (!(*t.on_body)(std::string_view(data, n))) {
    t.aborted_by_callback = true;
    return 0;
  }
  return n;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  return NoThrow(t, size_t{0}, [&] { return OnHeaderUnsafe(t, data, size * count); });
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  return NoThrow(t, size_t{0}, [&] { return OnBodyUnsafe(t, data, size * count); });
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto& t = *static_cast<Transfer*>(user);
  return t.stop.stop_requested() ? 1 : 0;
}

core::Error MapCurlError(CURLcode code, const char* errbuf, const Request& request,
                         const Transfer& t) {
  std::string detail = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(code);
  // Never echo a URL's userinfo or query (may hold credentials): name scheme://host/path only.
  std::string where = request.method + " " + request.url.substr(0, request.url.find('?'));
  if (const size_t at = where.find('@'); at != std::string::npos) {
    const size_t scheme_end = where.find("://");
    if (scheme_end != std::string::npos && at > scheme_end) {
      where.erase(scheme_end + 3, at - scheme_end - 2);
    }
  }
  if (t.callback_exception) {
    return {ErrorCode::kInternal,
            where + ": callback threw: " + core::SanitizeUtf8(*t.callback_exception)};
  }
  switch (code) {
    case CURLE_ABORTED_BY_CALLBACK:
    case CURLE_WRITE_ERROR:
      if (t.stop.stop_requested() || t.aborted_by_callback) {
        return {ErrorCode::kCancelled, where + ": transfer cancelled"};
      }
      return {ErrorCode::kInternal, where + ": " + detail};
    case CURLE_OPERATION_TIMEDOUT: return {ErrorCode::kDeadlineExceeded, where + ": " + detail};
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR: return {ErrorCode::kUnavailable, where + ": tls: " + detail};
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return {ErrorCode::kInvalidArgument, where + ": " + detail};
    default: return {ErrorCode::kUnavailable, where + ": " + detail};
  }
}

}  // namespace

struct Client::Handle {
  CurlEasyPtr easy;
};

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::optional<std::string> Response::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (core::EqualsIgnoreCase(k, name)) {
      return v;
    }
  }
  return std::nullopt;
}

std::vector<std::string> Response::AllHeaders(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : headers) {
    if (core::EqualsIgnoreCase(k, name)) {
      out.push_back(v);
    }
  }
  return out;
}

Result<std::unique_ptr<Client>> Client::Create(TlsConfig tls) {
  GlobalInit();
  for (const std::string* file : {&tls.ca_file, &tls.client_cert_file, &tls.client_key_file}) {
    std::error_code ec;
    if (!file->empty() && !std::filesystem::exists(*file, ec)) {
      return MakeError(ErrorCode::kInvalidArgument, "tls file does not exist: " + *file);
    }
  }
  return std::unique_ptr<Client>(new Client(std::move(tls)));
}

Client::Client(TlsConfig tls) : tls_(std::move(tls)) {}
Client::~Client() = default;

std::unique_ptr<Client::Handle> Client::Acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto h = std::move(idle_.back());
      idle_.pop_back();
      curl_easy_reset(h->easy.get());  // keeps live connections and the TLS session cache
      return h;
    }
  }
  auto h = std::make_unique<Handle>();
  h->easy.reset(curl_easy_init());
  return h;
}

void Client::Release(std::unique_ptr<Handle> handle) {
  std::lock_guard lock(mu_);
  if (idle_.size() < 16) {
    idle_.push_back(std::move(handle));
  }
}

Result<Response> Client::Do(std::stop_token stop, const Request& request) {
  return Stream(std::move(stop), request, HeadCallback{}, BodyCallback{});
}

Result<Response> Client::Stream(std::stop_token stop, const Request& request,
                                const HeadCallback& on_head, const BodyCallback& on_body) {
  auto handle = Acquire();
  CURL* easy = handle->easy.get();
  if (easy == nullptr) {
    return MakeError(ErrorCode::kInternal, "curl_easy_init failed");
  }
  Transfer t;
  t.stop = std::move(stop);
  t.on_head = &on_head;
  t.on_body = on_body ? &on_body : nullptr;
  t.easy = easy;
  char errbuf[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str());
  if (request.receive_buffer_bytes != 0) {
    const size_t bytes = std::clamp<size_t>(request.receive_buffer_bytes, 1024, CURL_MAX_READ_SIZE);
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, static_cast<long>(bytes));
  }
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(request.connect_timeout.count()));
  if (request.stall_timeout.count() > 0) {
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(request.stall_timeout.count()));
  }
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");

  // TLS: verified unless explicitly skipped.
  if (tls_.insecure_skip_verify) {
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
  } else {
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
  }
  curl_blob ca_blob{};
  if (!tls_.ca_pem.empty()) {
    ca_blob.data = tls_.ca_pem.data();
    ca_blob.len = tls_.ca_pem.size();
    ca_blob.flags = CURL_BLOB_NOCOPY;
    curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &ca_blob);
  } else if (!tls_.ca_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_CAINFO, tls_.ca_file.c_str());
  }
  curl_blob cert_blob{};
  curl_blob key_blob{};
  if (!tls_.client_cert_pem.empty()) {
    cert_blob = {tls_.client_cert_pem.data(), tls_.client_cert_pem.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB, &cert_blob);
    curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (!tls_.client_cert_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLCERT, tls_.client_cert_file.c_str());
  }
  if (!tls_.client_key_pem.empty()) {
    key_blob = {tls_.client_key_pem.data(), tls_.client_key_pem.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB, &key_blob);
    curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (!tls_.client_key_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLKEY, tls_.client_key_file.c_str());
  }

  // Method and body.
  if (request.method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
      request.method == "PATCH") {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
  }
  CurlSlistPtr header_list;
  for (const auto& [name, value] : request.headers) {
    const std::string line = name + ": " + value;
    curl_slist* appended = curl_slist_append(header_list.get(), line.c_str());
    if (appended == nullptr) {
      return MakeError(ErrorCode::kInternal, "curl_slist_append failed");
    }
    (void)header_list.release();
    header_list.reset(appended);
  }
  // No "Expect: 100-continue" round trip for request bodies.
  curl_slist* appended = curl_slist_append(header_list.get(), "Expect:");
  (void)header_list.release();
  header_list.reset(appended);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, header_list.get());

  const CURLcode rc = curl_easy_perform(easy);
  if (rc != CURLE_OK) {
    auto error = MapCurlError(rc, errbuf, request, t);
    // Do not return a handle that may hold a half-read connection: drop it.
    return MakeError(std::move(error));
  }
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t.response.status);
  if (!t.head_delivered && on_head && !on_head(t.response)) {
    return MakeError(ErrorCode::kCancelled, request.method + " " + request.url + ": cancelled");
  }
  Release(std::move(handle));
  return std::move(t.response);
}

}  // namespace vmimport::http
