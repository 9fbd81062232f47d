#include "disk/stream_buffer.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "disk/checked_cast.h"

namespace vmimport::disk {

StreamBuffer::StreamBuffer(ByteSource& source, size_t capacity, uint64_t start_offset)
    : source_(source), buffer_(capacity), offset_(start_offset) {}

Result<size_t> StreamBuffer::Fill(std::stop_token stop, size_t n) {
  assert(n <= buffer_.size() && "StreamBuffer::Fill beyond capacity");
  while (end_ - begin_ < n && !eof_) {
    if (begin_ + n > buffer_.size()) {
      // Not enough room after the window: move it to the front.
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    auto got = source_.Read(stop, std::span<std::byte>(buffer_).subspan(end_));
    if (!got) {
      return core::MakeError(got.error());
    }
    if (*got == 0) {
      eof_ = true;
      break;
    }
    end_ += *got;
  }
  return std::min(n, end_ - begin_);
}

void StreamBuffer::Consume(size_t n) {
  assert(n <= end_ - begin_ && "StreamBuffer::Consume beyond the window");
  begin_ += n;
  offset_ += n;
  if (begin_ == end_) {
    begin_ = end_ = 0;
  }
}

Result<uint64_t> StreamBuffer::Skip(std::stop_token stop, uint64_t n) {
  uint64_t skipped = 0;
  while (skipped < n) {
    if (begin_ == end_) {
      auto got = Fill(stop, 1);
      if (!got) {
        return core::MakeError(got.error());
      }
      if (*got == 0) {
        break;
      }
    }
    const auto step = CheckedCast<size_t>(std::min<uint64_t>(n - skipped, end_ - begin_));
    Consume(step);
    skipped += step;
  }
  return skipped;
}

}  // namespace vmimport::disk
