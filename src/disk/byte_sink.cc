#include "disk/byte_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "disk/byte_source.h"
#include "disk/bytes.h"
#include "disk/checked_cast.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

core::Result<std::unique_ptr<FileSink>> FileSink::Create(const std::string& path,
                                                         FileSinkOptions options) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    const int err = errno;
    return MakeError(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kInternal,
                     "create " + path + ": " + std::strerror(err));
  }
  if (options.hole_block_bytes == 0) {
    options.sparse = false;
  }
  return std::unique_ptr<FileSink>(new FileSink(path, std::move(fd), options));
}

core::Status FileSink::WriteAt(uint64_t offset, std::span<const std::byte> data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd_.get(), data.data() + done, data.size() - done,
                               CheckedCast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      const int err = errno;
      return MakeError(ErrorCode::kInternal, "write " + path_ + " at offset " +
                                                 std::to_string(offset + done) + ": " +
                                                 std::strerror(err));
    }
    done += CheckedCast<size_t>(n);
  }
  stored_ += data.size();
  return core::Ok();
}

core::Status FileSink::Write(std::stop_token stop, std::span<const std::byte> data) {
  if (stop.stop_requested()) {
    return CancelledError();
  }
  if (!fd_.valid()) {
    return MakeError(ErrorCode::kInternal, path_ + ": write after close");
  }
  if (!options_.sparse) {
    auto st = WriteAt(size_, data);
    if (st) {
      size_ += data.size();
    }
    return st;
  }
  // Walk block-aligned pieces; write runs of non-zero pieces in one call.
  const uint64_t block = options_.hole_block_bytes;
  size_t pos = 0;
  size_t run_begin = 0;
  bool in_run = false;
  while (pos < data.size()) {
    const uint64_t file_offset = size_ + pos;
    const auto piece =
        CheckedCast<size_t>(std::min<uint64_t>(data.size() - pos, block - file_offset % block));
    const bool zero = IsAllZero(data.subspan(pos, piece));
    if (!zero && !in_run) {
      run_begin = pos;
      in_run = true;
    } else if (zero && in_run) {
      auto st = WriteAt(size_ + run_begin, data.subspan(run_begin, pos - run_begin));
      if (!st) {
        return st;
      }
      in_run = false;
    }
    pos += piece;
  }
  if (in_run) {
    auto st = WriteAt(size_ + run_begin, data.subspan(run_begin));
    if (!st) {
      return st;
    }
  }
  size_ += data.size();
  return core::Ok();
}

core::Status FileSink::Close() {
  if (!fd_.valid()) {
    return core::Ok();
  }
  // Trailing holes were never written: set the size explicitly.
  if (::ftruncate(fd_.get(), CheckedCast<off_t>(size_)) != 0) {
    const int err = errno;
    return MakeError(ErrorCode::kInternal, "truncate " + path_ + ": " + std::strerror(err));
  }
  if (options_.sync && ::fsync(fd_.get()) != 0) {
    const int err = errno;
    return MakeError(ErrorCode::kInternal, "fsync " + path_ + ": " + std::strerror(err));
  }
  if (fd_.Reset() != 0) {
    const int err = errno;
    return MakeError(ErrorCode::kInternal, "close " + path_ + ": " + std::strerror(err));
  }
  return core::Ok();
}

}  // namespace vmimport::disk
