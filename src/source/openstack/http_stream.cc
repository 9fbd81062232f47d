#include "source/openstack/http_stream.h"

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

namespace vmimport::source::openstack {
namespace {

using core::ErrorCode;
using core::MakeError;

core::Error StatusError(const std::string& name, long status) {
  const std::string message = name + ": http status " + std::to_string(status);
  if (status == 404) {
    return {ErrorCode::kNotFound, message};
  }
  if (status == 401 || status == 403) {
    return {ErrorCode::kUnauthenticated, message + " (the token was refused)"};
  }
  if (status >= 500 || status == 429) {
    return {ErrorCode::kUnavailable, message};
  }
  return {ErrorCode::kInternal, message};
}

class GetStream final : public disk::ByteSource {
 public:
  GetStream(http::Client& http, http::Request request, StreamOptions options)
      : http_(http), request_(std::move(request)), options_(std::move(options)) {
    producer_ = std::jthread([this](std::stop_token stop) { Run(std::move(stop)); });
  }
  ~GetStream() override {
    producer_.request_stop();
    producer_.join();
  }
  GetStream(const GetStream&) = delete;
  GetStream& operator=(const GetStream&) = delete;

  // Waits until the response head (or an error) arrived; the status must be 200.
  core::Status WaitForHead(std::stop_token stop) {
    std::unique_lock lock(mu_);
    if (!cv_.wait(lock, stop, [this] { return head_ || done_; })) {
      return MakeError(ErrorCode::kCancelled, options_.name + ": cancelled");
    }
    if (error_ && (!head_ || status_ != 200)) {
      return MakeError(*error_);
    }
    if (status_ != 200) {
      return MakeError(StatusError(options_.name, status_));
    }
    return {};
  }

  // disk::ByteSource
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override {
    if (out.empty()) {
      return 0;
    }
    std::unique_lock lock(mu_);
    if (!cv_.wait(lock, stop, [this] { return !chunks_.empty() || done_; })) {
      return disk::CancelledError();
    }
    if (chunks_.empty()) {
      if (error_) {
        return MakeError(*error_);
      }
      return 0;
    }
    size_t n = 0;
    while (n < out.size() && !chunks_.empty()) {
      std::string& front = chunks_.front();
      const size_t take = std::min(out.size() - n, front.size() - front_offset_);
      std::memcpy(out.data() + n, front.data() + front_offset_, take);
      n += take;
      front_offset_ += take;
      if (front_offset_ == front.size()) {
        buffered_ -= front.size();
        chunks_.pop_front();
        front_offset_ = 0;
      }
    }
    lock.unlock();
    cv_.notify_all();  // room for the producer
    return n;
  }

 private:
  void Run(std::stop_token stop) {
    uint64_t received = 0;
    const http::HeadCallback on_head = [this](const http::Response& head) {
      {
        std::lock_guard lock(mu_);
        head_ = true;
        status_ = head.status;
        if (auto length = head.Header("content-length")) {
          uint64_t value = 0;
          const char* end = length->data() + length->size();
          if (auto [ptr, ec] = std::from_chars(length->data(), end, value);
              ec == std::errc() && ptr == end) {
            content_length_ = value;
          }
        }
      }
      cv_.notify_all();
      return head.status == 200;
    };
    const http::BodyCallback on_body = [this, &stop, &received](std::string_view chunk) {
      {
        std::unique_lock lock(mu_);
        if (!cv_.wait(lock, stop, [this] { return buffered_ < options_.buffer_bytes; })) {
          return false;
        }
        chunks_.emplace_back(chunk);
        buffered_ += chunk.size();
        received += chunk.size();
      }
      cv_.notify_all();
      return true;
    };
    auto r = http_.Stream(stop, request_, on_head, on_body);
    {
      std::lock_guard lock(mu_);
      if (head_ && status_ != 200) {
        error_ = StatusError(options_.name, status_);
      } else if (!r) {
        error_ = r.error().code == ErrorCode::kCancelled
                     ? core::Error{ErrorCode::kCancelled, options_.name + ": cancelled"}
                     : core::Error{r.error().code, options_.name + ": " + r.error().message};
      } else if (r->status != 200) {
        error_ = StatusError(options_.name, r->status);
      } else if (content_length_ && received != *content_length_) {
        error_ = core::Error{ErrorCode::kUnavailable,
                             options_.name + ": the body ended after " + std::to_string(received) +
                                 " of " + std::to_string(*content_length_) + " bytes"};
      }
      done_ = true;
    }
    cv_.notify_all();
  }

  http::Client& http_;
  const http::Request request_;
  const StreamOptions options_;

  std::mutex mu_;  // guards everything below up to producer_
  std::condition_variable_any cv_;
  std::deque<std::string> chunks_;
  size_t front_offset_ = 0;
  size_t buffered_ = 0;
  bool head_ = false;
  long status_ = 0;
  std::optional<uint64_t> content_length_;
  bool done_ = false;
  std::optional<core::Error> error_;

  std::jthread producer_;  // last: joined before the state it uses goes away
};

}  // namespace

core::Result<disk::ByteSourcePtr> OpenGetStream(std::stop_token stop, http::Client& http,
                                                http::Request request, StreamOptions options) {
  request.timeout = std::chrono::milliseconds(0);  // a disk takes as long as it takes
  request.stall_timeout = options.stall_timeout;
  auto source = std::make_unique<GetStream>(http, std::move(request), std::move(options));
  if (auto head = source->WaitForHead(std::move(stop)); !head) {
    return MakeError(head.error());
  }
  return disk::ByteSourcePtr(std::move(source));
}

}  // namespace vmimport::source::openstack
