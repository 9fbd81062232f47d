#include "source/ova/http_body.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/strings.h"

namespace vmimport::source::ova {

using core::ErrorCode;
using core::MakeError;

namespace {

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

core::Error HttpStatusError(const std::string& name, long status) {
  const std::string message = name + ": http status " + std::to_string(status);
  if (status == 404 || status == 410) {
    return {ErrorCode::kNotFound, message + " (no such file)"};
  }
  if (status == 401 || status == 403) {
    return {ErrorCode::kUnauthenticated, message + " (credentials refused)"};
  }
  if (status == 416) {
    return {ErrorCode::kCorruptData,
            message + " (range not satisfiable: the file is shorter than its archive says)"};
  }
  if (status >= 500 || status == 429) {
    return {ErrorCode::kUnavailable, message};
  }
  return {ErrorCode::kInternal, message};
}

HttpBodySource::HttpBodySource(http::Client& http, http::Request request, std::string name,
                               size_t buffer_bytes)
    : http_(http),
      request_(std::move(request)),
      name_(std::move(name)),
      buffer_bytes_(buffer_bytes) {
  producer_ = std::jthread([this](std::stop_token stop) { Run(std::move(stop)); });
}

HttpBodySource::~HttpBodySource() {
  producer_.request_stop();
  producer_.join();
}

core::Result<std::unique_ptr<HttpBodySource>> HttpBodySource::Open(std::stop_token stop,
                                                                   http::Client& http,
                                                                   http::Request request,
                                                                   std::string name,
                                                                   size_t buffer_bytes) {
  std::unique_ptr<HttpBodySource> source(
      new HttpBodySource(http, std::move(request), std::move(name), buffer_bytes));
  if (auto head = source->WaitForHead(std::move(stop)); !head) {
    return MakeError(head.error());
  }
  return source;
}

long HttpBodySource::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

std::optional<uint64_t> HttpBodySource::content_length() const {
  std::lock_guard lock(mu_);
  return content_length_;
}

std::optional<ContentRange> HttpBodySource::content_range() const {
  std::lock_guard lock(mu_);
  return content_range_;
}

core::Status HttpBodySource::WaitForHead(std::stop_token stop) {
  std::unique_lock lock(mu_);
  if (!cv_.wait(lock, stop, [this] { return head_ || done_; })) {
    return MakeError(ErrorCode::kCancelled, name_ + ": cancelled");
  }
  if (head_ && status_ != 200 && status_ != 206) {
    return MakeError(HttpStatusError(name_, status_));
  }
  if (error_ && !head_) {
    return MakeError(*error_);
  }
  return {};
}

core::Result<size_t> HttpBodySource::Read(std::stop_token stop, std::span<std::byte> out) {
  if (out.empty()) {
    return size_t{0};
  }
  std::unique_lock lock(mu_);
  if (!cv_.wait(lock, stop, [this] { return !chunks_.empty() || done_; })) {
    return disk::CancelledError();
  }
  if (chunks_.empty()) {
    if (error_) {
      return MakeError(*error_);
    }
    return size_t{0};
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

void HttpBodySource::Run(std::stop_token stop) {
  uint64_t received = 0;
  const http::HeadCallback on_head = [this](const http::Response& head) {
    {
      std::lock_guard lock(mu_);
      head_ = true;
      status_ = head.status;
      if (auto length = head.Header("content-length")) {
        content_length_ = ParseU64(core::TrimSpace(*length));
      }
      if (auto range = head.Header("content-range")) {
        content_range_ = ParseContentRange(*range);
      }
    }
    cv_.notify_all();
    return head.status == 200 || head.status == 206;
  };
  const http::BodyCallback on_body = [this, &stop, &received](std::string_view chunk) {
    {
      std::unique_lock lock(mu_);
      if (!cv_.wait(lock, stop, [this] { return buffered_ < buffer_bytes_; })) {
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
    if (head_ && status_ != 200 && status_ != 206) {
      error_ = HttpStatusError(name_, status_);
    } else if (!r) {
      error_ = r.error().code == ErrorCode::kCancelled
                   ? core::Error{ErrorCode::kCancelled, name_ + ": cancelled"}
                   : core::Error{r.error().code, name_ + ": " + r.error().message};
    } else if (content_length_ && received != *content_length_) {
      error_ = core::Error{ErrorCode::kUnavailable,
                           name_ + ": the body ended after " + std::to_string(received) + " of " +
                               std::to_string(*content_length_) + " bytes"};
    }
    done_ = true;
  }
  cv_.notify_all();
}

}  // namespace vmimport::source::ova
