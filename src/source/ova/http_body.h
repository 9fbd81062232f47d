#pragma once

// A GET body as a disk::ByteSource for the OVA provider: a producer thread runs the transfer and
// fills a bounded buffer, Read drains it (a slow reader slows the download instead of growing
// memory). Like source/vmware's OpenHttpStream, but it also accepts 206 Partial Content and
// reports Content-Range, which the OVA importer needs for its ranged reads (providers may not
// share code with each other; see importer.h for why ranges).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>

#include "core/result.h"
#include "disk/byte_source.h"
#include "http/client.h"

namespace vmimport::source::ova {

//! "Content-Range: bytes <first>-<last>/<total or *>".
struct ContentRange {
  uint64_t first = 0;
  uint64_t last = 0;
  std::optional<uint64_t> total;
};
std::optional<ContentRange> ParseContentRange(std::string_view value);

//! The error for an HTTP status other than 200/206, naming `name` (never the URL): kNotFound for
//! 404/410, kUnauthenticated for 401/403, kCorruptData for 416 (a range past the end: the file
//! is shorter than its archive says), kUnavailable for 5xx and 429, kInternal otherwise.
core::Error HttpStatusError(const std::string& name, long status);

class HttpBodySource final : public disk::ByteSource {
 public:
  //! Starts the GET and returns once the response head arrived with status 200 or 206. The body
  //! then ends with an error, never short: a connection that drops, or a body shorter than its
  //! Content-Length, is kUnavailable. Errors before the body: HttpStatusError's, the transport's
  //! (kUnavailable, kDeadlineExceeded), kCancelled on stop. Destroying the source stops the
  //! transfer. The client must outlive the source.
  static core::Result<std::unique_ptr<HttpBodySource>> Open(std::stop_token stop,
                                                            http::Client& http,
                                                            http::Request request, std::string name,
                                                            size_t buffer_bytes = 4U << 20);
  ~HttpBodySource() override;
  HttpBodySource(const HttpBodySource&) = delete;
  HttpBodySource& operator=(const HttpBodySource&) = delete;

  long status() const;
  std::optional<uint64_t> content_length() const;
  std::optional<ContentRange> content_range() const;

  // disk::ByteSource
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;

 private:
  HttpBodySource(http::Client& http, http::Request request, std::string name, size_t buffer_bytes);
  core::Status WaitForHead(std::stop_token stop);
  void Run(std::stop_token stop);

  http::Client& http_;
  const http::Request request_;
  const std::string name_;
  const size_t buffer_bytes_;

  mutable std::mutex mu_;  // guards everything below up to producer_
  std::condition_variable_any cv_;
  std::deque<std::string> chunks_;
  size_t front_offset_ = 0;
  size_t buffered_ = 0;
  bool head_ = false;
  long status_ = 0;
  std::optional<uint64_t> content_length_;
  std::optional<ContentRange> content_range_;
  bool done_ = false;
  std::optional<core::Error> error_;

  std::jthread producer_;  // last: joined before the state it uses goes away
};

}  // namespace vmimport::source::ova
