#include "disk/byte_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "disk/checked_cast.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

ErrorCode OpenErrorCode(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR: return ErrorCode::kNotFound;
    case EACCES:
    case EPERM: return ErrorCode::kPermissionDenied;
    default: return ErrorCode::kInternal;
  }
}

tl::unexpected<core::Error> PastEndError(const std::string& name, uint64_t offset, size_t length,
                                         uint64_t size) {
  return MakeError(ErrorCode::kCorruptData,
                   name + ": truncated: read of " + std::to_string(length) + " bytes at offset " +
                       std::to_string(offset) + " ends past the end of the data (size " +
                       std::to_string(size) + ")");
}

}  // namespace

tl::unexpected<core::Error> CancelledError() {
  return MakeError(ErrorCode::kCancelled, "disk read cancelled");
}

Result<size_t> ReadFull(std::stop_token stop, ByteSource& source, std::span<std::byte> out) {
  size_t filled = 0;
  while (filled < out.size()) {
    auto n = source.Read(stop, out.subspan(filled));
    if (!n) {
      return MakeError(n.error());
    }
    if (*n == 0) {
      break;
    }
    filled += *n;
  }
  return filled;
}

Result<std::unique_ptr<FileSource>> FileSource::Open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    return MakeError(OpenErrorCode(err), "open " + path + ": " + ErrnoText(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    const int err = errno;
    return MakeError(ErrorCode::kInternal, "stat " + path + ": " + ErrnoText(err));
  }
  if (S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, path + ": is a directory");
  }
  uint64_t size = 0;
  if (S_ISREG(st.st_mode)) {
    size = CheckedCast<uint64_t>(st.st_size);
  } else {
    // A block device: its size comes from seeking to the end.
    const off_t end = ::lseek(fd.get(), 0, SEEK_END);
    if (end < 0) {
      const int err = errno;
      return MakeError(ErrorCode::kInvalidArgument, path + ": not seekable: " + ErrnoText(err));
    }
    size = CheckedCast<uint64_t>(end);
  }
  return std::unique_ptr<FileSource>(new FileSource(path, std::move(fd), size));
}

Status FileSource::ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out) const {
  if (stop.stop_requested()) {
    return CancelledError();
  }
  if (offset > size_ || out.size() > size_ - offset) {
    return PastEndError(path_, offset, out.size(), size_);
  }
  size_t done = 0;
  while (done < out.size()) {
    const auto at = CheckedCast<off_t>(offset + done);
    const ssize_t n = ::pread(fd_.get(), out.data() + done, out.size() - done, at);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      const int err = errno;
      return MakeError(
          ErrorCode::kInternal,
          path_ + ": read at offset " + std::to_string(offset + done) + ": " + ErrnoText(err));
    }
    if (n == 0) {
      // The file shrank under us.
      return PastEndError(path_, offset, out.size(), offset + done);
    }
    done += CheckedCast<size_t>(n);
  }
  return core::Ok();
}

void FileSource::AdviseSequential() const {
  (void)::posix_fadvise(fd_.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
}

Status MemorySource::ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out) const {
  if (stop.stop_requested()) {
    return CancelledError();
  }
  if (offset > bytes_.size() || out.size() > bytes_.size() - offset) {
    return PastEndError(name_, offset, out.size(), bytes_.size());
  }
  std::copy_n(bytes_.begin() + CheckedCast<ptrdiff_t>(offset), out.size(), out.begin());
  return core::Ok();
}

Result<size_t> MemoryByteSource::Read(std::stop_token stop, std::span<std::byte> out) {
  if (stop.stop_requested()) {
    return CancelledError();
  }
  size_t n = std::min(out.size(), bytes_.size() - pos_);
  if (max_chunk_ != 0) {
    n = std::min(n, max_chunk_);
  }
  std::copy_n(bytes_.begin() + CheckedCast<ptrdiff_t>(pos_), n, out.begin());
  pos_ += n;
  return n;
}

Result<size_t> SequentialSource::Read(std::stop_token stop, std::span<std::byte> out) {
  const uint64_t size = source_->Size();
  if (pos_ >= size) {
    return size_t{0};
  }
  const auto n = CheckedCast<size_t>(std::min<uint64_t>(out.size(), size - pos_));
  auto st = source_->ReadAt(stop, pos_, out.first(n));
  if (!st) {
    return MakeError(st.error());
  }
  pos_ += n;
  return n;
}

Result<size_t> RateLimitedSource::Read(std::stop_token stop, std::span<std::byte> out) {
  if (!started_) {
    start_ = std::chrono::steady_clock::now();
    started_ = true;
  }
  // Read at most a tenth of a second's worth at a time, so that the pace is even.
  const auto chunk = std::max<size_t>(4096, static_cast<size_t>(rate_ / 10));
  auto n = source_->Read(stop, out.first(std::min(out.size(), chunk)));
  if (!n) {
    return n;
  }
  bytes_ += *n;
  const auto due = start_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                std::chrono::duration<double>(static_cast<double>(bytes_) / rate_));
  while (std::chrono::steady_clock::now() < due) {
    if (stop.stop_requested()) {
      return CancelledError();
    }
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        due - std::chrono::steady_clock::now(), std::chrono::milliseconds(50)));
  }
  return n;
}

Result<size_t> PrefixedSource::Read(std::stop_token stop, std::span<std::byte> out) {
  if (prefix_pos_ < prefix_.size()) {
    if (stop.stop_requested()) {
      return CancelledError();
    }
    const size_t n = std::min(out.size(), prefix_.size() - prefix_pos_);
    std::copy_n(prefix_.begin() + CheckedCast<ptrdiff_t>(prefix_pos_), n, out.begin());
    prefix_pos_ += n;
    if (prefix_pos_ == prefix_.size()) {
      prefix_ = {};  // release the memory
      prefix_pos_ = 0;
    }
    return n;
  }
  return rest_->Read(stop, out);
}

Result<std::vector<std::byte>> ReadFileBytes(const std::string& path) {
  auto file = FileSource::Open(path);
  if (!file) {
    return MakeError(file.error());
  }
  auto size = TryCast<size_t>((*file)->Size());
  if (!size) {
    return MakeError(ErrorCode::kInvalidArgument, path + ": too large to read into memory");
  }
  std::vector<std::byte> bytes(*size);
  auto st = (*file)->ReadAt({}, 0, bytes);
  if (!st) {
    return MakeError(st.error());
  }
  return bytes;
}

}  // namespace vmimport::disk
