#include "source/libvirt/volume_stream.h"

#include <algorithm>
#include <vector>

namespace vmimport::source::libvirt {

using core::ErrorCode;
using core::MakeError;

namespace {

constexpr size_t kMaxRecv = size_t{256} * 1024;

// Receives up to out.size() bytes (one virStreamRecv); 0 at the end of the download.
core::Result<size_t> Recv(std::stop_token stop, virStreamPtr stream, const std::string& name,
                          uint64_t offset, std::span<std::byte> out) {
  if (stop.stop_requested()) {
    return disk::CancelledError();
  }
  const size_t want = std::min(out.size(), kMaxRecv);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): libvirt takes char*
  const int n = virStreamRecv(stream, reinterpret_cast<char*>(out.data()), want);
  if (n < 0) {
    core::Error e = LastError("download of " + name + " at offset " + std::to_string(offset));
    if (e.code == ErrorCode::kInternal) {
      e.code = ErrorCode::kUnavailable;  // a broken download: the next attempt may work
    }
    return MakeError(std::move(e));
  }
  return static_cast<size_t>(n);
}

}  // namespace

core::Result<StreamPtr> StartDownload(const OpenVolume& volume, uint64_t offset) {
  StreamPtr stream(virStreamNew(volume.conn.get(), 0));
  if (!stream) {
    return MakeError(LastError("stream for " + volume.name));
  }
  if (virStorageVolDownload(volume.vol.get(), stream.get(), offset, 0, 0) < 0) {
    return MakeError(LastError("download of " + volume.name));
  }
  return stream;
}

core::Result<std::unique_ptr<VolumeByteSource>> VolumeByteSource::Open(OpenVolume volume) {
  auto stream = StartDownload(volume, 0);
  if (!stream) {
    return MakeError(stream.error());
  }
  return std::unique_ptr<VolumeByteSource>(
      new VolumeByteSource(std::move(volume), std::move(*stream)));
}

core::Result<size_t> VolumeByteSource::Read(std::stop_token stop, std::span<std::byte> out) {
  if (done_ || out.empty()) {
    return size_t{0};
  }
  auto n = Recv(stop, stream_.get(), volume_.name, offset_, out);
  if (!n) {
    return n;
  }
  if (*n == 0) {
    done_ = true;
    if (virStreamFinish(stream_.get()) < 0) {
      return MakeError(LastError("end of the download of " + volume_.name));
    }
    return size_t{0};
  }
  offset_ += *n;
  return n;
}

core::Status VolumeRangeSource::ReadAt(std::stop_token stop, uint64_t offset,
                                       std::span<std::byte> out) const {
  if (offset > size_ || out.size() > size_ - offset) {
    return MakeError(ErrorCode::kCorruptData, volume_.name + ": read of " +
                                                  std::to_string(out.size()) + " bytes at " +
                                                  std::to_string(offset) + " past its end");
  }
  std::lock_guard lock(mu_);
  if (stream_ && (offset < pos_ || offset - pos_ > kSkipWindow)) {
    stream_.reset();
  }
  if (!stream_) {
    auto s = StartDownload(volume_, offset);
    if (!s) {
      return MakeError(s.error());
    }
    stream_ = std::move(*s);
    pos_ = offset;
    downloads_++;
  }
  std::vector<std::byte> scratch;
  while (pos_ < offset) {
    scratch.resize(static_cast<size_t>(std::min<uint64_t>(offset - pos_, kMaxRecv)));
    auto n = Recv(stop, stream_.get(), volume_.name, pos_, scratch);
    if (!n || *n == 0) {
      stream_.reset();
      return n ? MakeError(ErrorCode::kUnavailable, volume_.name + ": download ended early")
               : MakeError(n.error());
    }
    pos_ += *n;
  }
  size_t got = 0;
  while (got < out.size()) {
    auto n = Recv(stop, stream_.get(), volume_.name, pos_, out.subspan(got));
    if (!n || *n == 0) {
      stream_.reset();
      return n ? MakeError(ErrorCode::kUnavailable,
                           volume_.name + ": download ended early at " + std::to_string(pos_))
               : MakeError(n.error());
    }
    got += *n;
    pos_ += *n;
  }
  return {};
}

size_t VolumeRangeSource::DownloadsForTest() const {
  std::lock_guard lock(mu_);
  return downloads_;
}

}  // namespace vmimport::source::libvirt
