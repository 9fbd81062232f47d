#include "source/http_stream.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

#include "core/strings.h"

namespace vmimport::source {
namespace {

using core::ErrorCode;
using core::MakeError;

std::optional<uint64_t> ParseU64(std::string_view s) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

std::optional<ContentRange> ParseContentRange(std::string_view value) {
  value = core::TrimSpace(value);
  if (!value.starts_with("bytes ")) {
    return std::nullopt;
  }
  value.remove_prefix(6);
  const size_t dash = value.find('-');
  const size_t slash = value.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash) {
    return std::nullopt;
  }
  auto first = ParseU64(core::TrimSpace(value.substr(0, dash)));
  auto last = ParseU64(core::TrimSpace(value.substr(dash + 1, slash - dash - 1)));
  if (!first || !last || *last < *first) {
    return std::nullopt;
  }
  ContentRange r{*first, *last, std::nullopt};
  const std::string_view total = core::TrimSpace(value.substr(slash + 1));
  if (total != "*") {
    r.total = ParseU64(total);
    if (!r.total || *r.total <= *last) {
      return std::nullopt;
    }
  }
  return r;
}

core::Error DefaultHttpStatusError(const std::string& name, long status) {
  const std::string message = name + ": http status " + std::to_string(status);
  if (status == 404) {
    return {ErrorCode::kNotFound, message};
  }
  if (status == 401 || status == 403) {
    return {ErrorCode::kUnauthenticated, message};
  }
  if (status >= 500 || status == 429) {
    return {ErrorCode::kUnavailable, message};
  }
  return {ErrorCode::kInternal, message};
}

namespace {

// The client's transport errors read "<method> <scheme://host/path>: <detail>"; a disk URL's
// path may hold a ticket (vSphere NFC), so only the detail is kept: the name says which stream.
std::string WithoutUrl(const http::Request& request, const std::string& message) {
  const std::string prefix = request.method + " ";
  if (!message.starts_with(prefix)) {
    return message;
  }
  const size_t end = message.find(": ", prefix.size());  // a URL holds no unescaped space
  return end == std::string::npos ? message : message.substr(end + 2);
}

size_t Capacity(const HttpStreamOptions& options) {
  return std::max<size_t>(1, options.buffer_bytes);
}

size_t ResumeFree(size_t capacity) { return std::max<size_t>(1, capacity / 2); }

// Read waits for at most this many bytes. It must be reachable while the producer sleeps for
// ResumeFree bytes of room: when Read waits (fewer than `need` bytes buffered), at least
// capacity - need + 1 bytes are free, which must already have woken the producer.
size_t LowWatermark(const HttpStreamOptions& options, size_t capacity) {
  return std::clamp<size_t>(options.low_watermark, 1, capacity - ResumeFree(capacity) + 1);
}

}  // namespace

HttpStream::HttpStream(http::Client& http, http::Request request, HttpStreamOptions options)
    : http_(http),
      request_(std::move(request)),
      options_(std::move(options)),
      capacity_(Capacity(options_)),
      low_watermark_(LowWatermark(options_, capacity_)),
      resume_free_(ResumeFree(capacity_)),
      ring_(std::make_unique_for_overwrite<std::byte[]>(capacity_)) {
  producer_ = std::jthread([this](std::stop_token stop) { Run(std::move(stop)); });
}

HttpStream::~HttpStream() {
  producer_.request_stop();  // wakes the producer if it sleeps on a full ring
  producer_.join();
}

core::Result<std::unique_ptr<HttpStream>> HttpStream::Open(std::stop_token stop, http::Client& http,
                                                           http::Request request,
                                                           HttpStreamOptions options) {
  request.timeout = std::chrono::milliseconds(0);  // a disk takes as long as it takes
  if (request.receive_buffer_bytes == 0) {
    request.receive_buffer_bytes = options.receive_buffer_bytes;
  }
  if (options.stall_timeout) {
    request.stall_timeout = *options.stall_timeout;
  }
  std::unique_ptr<HttpStream> source(new HttpStream(http, std::move(request), std::move(options)));
  if (auto head = source->WaitForHead(std::move(stop)); !head) {
    return MakeError(head.error());
  }
  return source;
}

long HttpStream::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

std::optional<uint64_t> HttpStream::content_length() const {
  std::lock_guard lock(mu_);
  return content_length_;
}

std::optional<ContentRange> HttpStream::content_range() const {
  std::lock_guard lock(mu_);
  return content_range_;
}

HttpStream::WakeStats HttpStream::WakeStatsForTest() const {
  std::lock_guard lock(mu_);
  return stats_;
}

bool HttpStream::Accepted(long status) const {
  return status == 200 || (options_.accept_partial && status == 206);
}

core::Error HttpStream::StatusError(long status) const {
  return options_.status_error ? options_.status_error(options_.name, status)
                               : DefaultHttpStatusError(options_.name, status);
}

core::Status HttpStream::WaitForHead(std::stop_token stop) {
  std::unique_lock lock(mu_);
  if (!data_cv_.wait(lock, stop, [this] { return head_ || done_; })) {
    return MakeError(ErrorCode::kCancelled, options_.name + ": cancelled");
  }
  if (!head_ && error_) {  // the transfer failed before any response
    return MakeError(*error_);
  }
  if (!Accepted(status_)) {
    return MakeError(StatusError(status_));
  }
  return {};  // a failure after the head shows in Read
}

core::Result<size_t> HttpStream::Read(std::stop_token stop, std::span<std::byte> out) {
  if (out.empty()) {
    return size_t{0};
  }
  std::unique_lock lock(mu_);
  const size_t need = std::min(out.size(), low_watermark_);
  if (size_ < need && !done_) {
    consumer_need_ = need;
    const bool ready = data_cv_.wait(lock, stop, [this] {
      if (size_ >= consumer_need_ || done_) {
        return true;
      }
      consumer_waiting_ = true;  // set before every sleep: the producer clears it when it wakes us
      ++stats_.consumer_sleeps;
      return false;
    });
    consumer_waiting_ = false;
    if (!ready) {
      return disk::CancelledError();
    }
  }
  if (size_ == 0) {  // only once done_
    if (error_) {
      return MakeError(*error_);
    }
    return size_t{0};
  }
  const size_t n = std::min(out.size(), size_);
  const size_t first = std::min(n, capacity_ - begin_);
  std::memcpy(out.data(), ring_.get() + begin_, first);
  std::memcpy(out.data() + first, ring_.get(), n - first);
  size_ -= n;
  begin_ = size_ == 0 ? 0 : (begin_ + n) % capacity_;  // an empty ring restarts unwrapped
  delivered_ += n;
  const uint64_t position = delivered_;
  bool wake_producer = false;
  if (producer_waiting_ && capacity_ - size_ >= resume_free_) {
    producer_waiting_ = false;
    ++stats_.notifies;
    wake_producer = true;
  }
  lock.unlock();
  if (wake_producer) {
    space_cv_.notify_all();
  }
  if (options_.on_position) {
    options_.on_position(position);
  }
  return n;
}

bool HttpStream::Push(const std::stop_token& stop, std::string_view chunk) {
  std::unique_lock lock(mu_);
  ++stats_.chunks;
  size_t offset = 0;
  while (offset < chunk.size()) {
    if (size_ == capacity_) {
      const bool room = space_cv_.wait(lock, stop, [this] {
        if (capacity_ - size_ >= resume_free_) {
          return true;
        }
        producer_waiting_ = true;  // set before every sleep: Read clears it when it wakes us
        ++stats_.producer_sleeps;
        return false;
      });
      producer_waiting_ = false;
      if (!room) {
        return false;
      }
    }
    const size_t n = std::min(chunk.size() - offset, capacity_ - size_);
    const size_t end = (begin_ + size_) % capacity_;
    const size_t first = std::min(n, capacity_ - end);
    std::memcpy(ring_.get() + end, chunk.data() + offset, first);
    std::memcpy(ring_.get(), chunk.data() + offset + first, n - first);
    size_ += n;
    offset += n;
    received_ += n;
    if (consumer_waiting_ && size_ >= consumer_need_) {
      consumer_waiting_ = false;
      ++stats_.notifies;
      lock.unlock();
      data_cv_.notify_all();
      lock.lock();
    }
  }
  return true;
}

void HttpStream::Run(std::stop_token stop) {
  const http::HeadCallback on_head = [this](const http::Response& head) {
    bool accepted = false;
    {
      std::lock_guard lock(mu_);
      head_ = true;
      status_ = head.status;
      if (auto length = head.Header("content-length")) {
        content_length_ = ParseU64(core::TrimSpace(*length));
      }
      if (options_.accept_partial) {
        if (auto range = head.Header("content-range")) {
          content_range_ = ParseContentRange(*range);
        }
      }
      accepted = Accepted(status_);
      ++stats_.notifies;
    }
    data_cv_.notify_all();  // WaitForHead
    return accepted;
  };
  const http::BodyCallback on_body = [this, &stop](std::string_view chunk) {
    return Push(stop, chunk);
  };
  auto r = http_.Stream(stop, request_, on_head, on_body);
  {
    std::lock_guard lock(mu_);
    if (!head_ && r) {  // no head callback came: take the status of the response
      status_ = r->status;
    }
    if ((head_ || r) && !Accepted(status_)) {
      error_ = StatusError(status_);
    } else if (!r) {
      error_ = r.error().code == ErrorCode::kCancelled
                   ? core::Error{ErrorCode::kCancelled, options_.name + ": cancelled"}
                   : core::Error{r.error().code,
                                 options_.name + ": " + WithoutUrl(request_, r.error().message)};
    } else if (content_length_ && received_ != *content_length_) {
      error_ = core::Error{ErrorCode::kUnavailable,
                           options_.name + ": the body ended after " + std::to_string(received_) +
                               " of " + std::to_string(*content_length_) + " bytes"};
    }
    done_ = true;
    ++stats_.notifies;
  }
  data_cv_.notify_all();  // Read (or WaitForHead) sees the end
}

}  // namespace vmimport::source
