#pragma once

// A streaming HTTP GET as a disk::ByteSource: the disk stream of every provider (a vSphere NFC
// lease URL, a Glance image file, an OVA archive). A producer thread runs the transfer
// (http::Client::Stream) into a fixed ring buffer that Read drains, so a slow reader slows the
// download instead of growing memory.
//
// Wake-ups are batched with hysteresis, so that a disk costs a few thousand thread wake-ups per
// GiB rather than one per libcurl chunk on each side:
//   - Read sleeps until min(out.size(), low_watermark) bytes are buffered or the transfer ended;
//     the producer wakes it only when it sleeps and that threshold was crossed (or at the end).
//   - The producer sleeps when the ring is full; Read wakes it only when it sleeps and at least
//     half of the ring is free again.
// Each side records whether it sleeps, so no notify is sent when no one waits. Both waits end
// at once when their std::stop_token is stopped.
//
//        producer (libcurl write callback)            consumer (Read)
//   ring: [ ....free.... | head → buffered bytes → | ....free.... ]   capacity = buffer_bytes

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>

#include "core/result.h"
#include "disk/byte_source.h"
#include "http/client.h"

namespace vmimport::source {

//! "Content-Range: bytes <first>-<last>/<total or *>".
struct ContentRange {
  uint64_t first = 0;
  uint64_t last = 0;
  std::optional<uint64_t> total;
};
//! nullopt when `value` is not a satisfied byte range (or last < first, or total <= last).
std::optional<ContentRange> ParseContentRange(std::string_view value);

//! The error for a refused HTTP status, given the stream's name (never the URL).
using HttpStatusMapper = std::function<core::Error(const std::string& name, long status)>;

//! The default mapping: "<name>: http status <n>" as kNotFound for 404, kUnauthenticated for
//! 401/403, kUnavailable for 5xx and 429, kInternal otherwise.
core::Error DefaultHttpStatusError(const std::string& name, long status);

//! Called with the bytes a stream has returned so far, after each Read that returned some
//! (on the reading thread, without locks held).
using StreamPositionCallback = std::function<void(uint64_t position)>;

struct HttpStreamOptions {
  size_t buffer_bytes = 4U << 20;  //!< ring capacity: body bytes held between network and Read
  //! Read waits for min(out.size(), this) bytes; capped at about half of buffer_bytes on small
  //! rings, so that a waiting Read always has the producer awake.
  size_t low_watermark = 256U << 10;
  //! The transfer's receive buffer (http::Request::receive_buffer_bytes), unless the request
  //! names one: a plain-HTTP source (Glance, an OVA URL) is read in 512 KiB recv calls instead
  //! of curl's 16 KiB (measured: about a tenth less CPU per GiB relayed).
  size_t receive_buffer_bytes = 512U << 10;
  std::optional<std::chrono::seconds> stall_timeout;  //!< nullopt: the request's own
  std::string name = "http stream";  //!< names the stream in errors (never the URL or token)
  bool accept_partial = false;       //!< accept 206 Partial Content (and its Content-Range)
  HttpStatusMapper status_error;     //!< empty: DefaultHttpStatusError
  StreamPositionCallback on_position;
};

class HttpStream final : public disk::ByteSource {
 public:
  //! Starts a GET of `request` on a thread of its own (with no whole-transfer timeout: a disk
  //! takes as long as it takes) and returns once the response head arrived with status 200 (or
  //! 206 when options.accept_partial). The body then ends with an error, never short: a
  //! connection that drops, or a body shorter than its Content-Length, is kUnavailable. Errors
  //! before the body: options.status_error's for any other status, the transport's
  //! (kUnavailable, kDeadlineExceeded) prefixed with the name, kCancelled on stop. Destroying the
  //! source stops the transfer. The client must outlive the source.
  static core::Result<std::unique_ptr<HttpStream>> Open(std::stop_token stop, http::Client& http,
                                                        http::Request request,
                                                        HttpStreamOptions options);
  ~HttpStream() override;
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;

  long status() const;
  std::optional<uint64_t> content_length() const;
  //! Only with accept_partial (and a parseable header).
  std::optional<ContentRange> content_range() const;

  // disk::ByteSource
  //! Single reader. Returns fewer bytes than asked only at the end of the body or once the low
  //! watermark is buffered; never blocks after the transfer ended or failed.
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;

  //! How often each side slept and how many notifies were sent, against the body chunks libcurl
  //! delivered (the old per-chunk design notified once per chunk and once per Read).
  struct WakeStats {
    uint64_t chunks = 0;
    uint64_t producer_sleeps = 0;
    uint64_t consumer_sleeps = 0;
    uint64_t notifies = 0;
  };
  WakeStats WakeStatsForTest() const;

 private:
  HttpStream(http::Client& http, http::Request request, HttpStreamOptions options);
  core::Status WaitForHead(std::stop_token stop);
  void Run(std::stop_token stop);
  bool Accepted(long status) const;
  core::Error StatusError(long status) const;
  // Producer side: copies `chunk` into the ring, sleeping while it is full. False on stop.
  bool Push(const std::stop_token& stop, std::string_view chunk);

  http::Client& http_;
  const http::Request request_;
  const HttpStreamOptions options_;
  const size_t capacity_;
  const size_t low_watermark_;
  const size_t resume_free_;  // the producer is woken once this much of the ring is free
  const std::unique_ptr<std::byte[]> ring_;

  mutable std::mutex mu_;                 // guards everything below up to producer_
  std::condition_variable_any data_cv_;   // Read and WaitForHead sleep here
  std::condition_variable_any space_cv_;  // the producer sleeps here
  size_t begin_ = 0;                      // ring index of the oldest buffered byte
  size_t size_ = 0;                       // buffered bytes
  size_t consumer_need_ = 0;              // while consumer_waiting_: bytes Read waits for
  bool consumer_waiting_ = false;
  bool producer_waiting_ = false;
  uint64_t received_ = 0;
  uint64_t delivered_ = 0;
  bool head_ = false;
  long status_ = 0;
  std::optional<uint64_t> content_length_;
  std::optional<ContentRange> content_range_;
  bool done_ = false;
  std::optional<core::Error> error_;
  WakeStats stats_;

  std::jthread producer_;  // last: joined before the state it uses goes away
};

}  // namespace vmimport::source
