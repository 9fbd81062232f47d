#include "source/libvirt/volume_stream.h"

#include <algorithm>
#include <condition_variable>
#include <vector>

#include "source/libvirt/bounded_call.h"

namespace vmimport::source::libvirt {

using core::ErrorCode;
using core::MakeError;

namespace {

constexpr size_t kMaxRecv = size_t{256} * 1024;
constexpr int kStreamEvents =
    VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP;
// A wait for the stream's event wakes up this often anyway: a connection closed by the keepalive
// sends no stream event (libvirt 9.0), so the wait checks whether it is still alive.
constexpr auto kRecvPoll = std::chrono::seconds(1);

}  // namespace

// Signalled by libvirt's stream event (on its event loop thread).
struct Download::Waiter {
  std::mutex mu;
  std::condition_variable_any cv;
  uint64_t events = 0;
};

namespace {

void OnStreamEvent(virStreamPtr stream, int /*events*/, void* opaque) {
  auto* waiter = static_cast<std::shared_ptr<Download::Waiter>*>(opaque);
  {
    std::lock_guard lock((*waiter)->mu);
    (*waiter)->events++;
  }
  (*waiter)->cv.notify_all();
  // Data stays queued until read: without this the event would fire on every loop turn.
  virStreamEventUpdateCallback(stream, 0);
}

// NOLINTNEXTLINE(cppcoreguidelines-owning-memory): libvirt hands back what Start gave it
void FreeWaiter(void* opaque) { delete static_cast<std::shared_ptr<Download::Waiter>*>(opaque); }

}  // namespace

namespace {

// A started stream nobody reads yet: aborted and freed on a thread of its own when dropped (a
// start abandoned on a stop after libvirt started the download).
struct AbortStream {
  void operator()(virStreamPtr s) const noexcept {
    ReleaseInBackground([s] {
      virStreamAbort(s);
      virStreamFree(s);
      virResetLastError();
    });
  }
};
using StartedStream = std::unique_ptr<virStream, AbortStream>;

}  // namespace

core::Result<std::unique_ptr<Download>> Download::Start(std::stop_token stop, OpenVolumePtr volume,
                                                        uint64_t offset, uint64_t length) {
  const std::string what = "download of " + volume->name + " at offset " + std::to_string(offset);
  auto started = RunBounded<StartedStream>(
      stop, volume->call_timeout, volume->host, what,
      [volume, offset, length, what]() -> core::Result<StartedStream> {
        virStreamPtr s = virStreamNew(volume->conn.get(), VIR_STREAM_NONBLOCK);
        if (s == nullptr) {
          return MakeError(LastError("stream for " + volume->name));
        }
        if (virStorageVolDownload(volume->vol.get(), s, offset, length, 0) < 0) {
          core::Error e = LastError(what);
          virStreamFree(s);
          return MakeError(std::move(e));
        }
        return StartedStream(s);
      });
  if (!started) {
    return MakeError(started.error());
  }
  auto waiter = std::make_shared<Waiter>();
  auto opaque = std::make_unique<std::shared_ptr<Waiter>>(waiter);  // FreeWaiter deletes it
  if (virStreamEventAddCallback(started->get(), kStreamEvents, OnStreamEvent, opaque.get(),
                                FreeWaiter) < 0) {
    return MakeError(LastError("events of the " + what));  // `started` is aborted
  }
  opaque.release();  // NOLINT(bugprone-unused-return-value): libvirt owns it now
  return std::unique_ptr<Download>(
      new Download(std::move(volume), started->release(), std::move(waiter), offset, length));
}

Download::Download(OpenVolumePtr volume, virStreamPtr stream, std::shared_ptr<Waiter> waiter,
                   uint64_t offset, uint64_t length)
    : volume_(std::move(volume)),
      stream_(stream),
      waiter_(std::move(waiter)),
      pos_(offset),
      end_(offset + length) {}

Download::~Download() {
  virStreamEventRemoveCallback(stream_);
  virResetLastError();
  if (finished_) {
    virStreamFree(stream_);
    return;
  }
  // A round trip: on a stalled peer it returns only once the keepalive closed the connection.
  virStreamPtr s = stream_;
  OpenVolumePtr keep = volume_;
  ReleaseInBackground([s, keep] {
    virStreamAbort(s);
    virStreamFree(s);
    virResetLastError();
  });
}

core::Result<size_t> Download::RecvSome(std::stop_token stop, std::span<std::byte> out) {
  for (;;) {
    if (stop.stop_requested()) {
      return disk::CancelledError();
    }
    uint64_t seen = 0;
    {
      std::lock_guard lock(waiter_->mu);
      seen = waiter_->events;
    }
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): libvirt takes char*
    const int n = virStreamRecv(stream_, reinterpret_cast<char*>(out.data()), out.size());
    if (n >= 0) {
      return static_cast<size_t>(n);
    }
    if (n != -2) {
      core::Error e =
          LastError("download of " + volume_->name + " at offset " + std::to_string(pos_));
      if (e.code == ErrorCode::kInternal) {
        e.code = ErrorCode::kUnavailable;  // a broken download: the next attempt may work
      }
      return MakeError(std::move(e));
    }
    // A connection the keepalive closed leaves a non-blocking stream without data or an error:
    // ask the connection (no round trip).
    if (virConnectIsAlive(volume_->conn.get()) != 1) {
      virResetLastError();
      return MakeError(ErrorCode::kUnavailable,
                       "libvirt: download of " + volume_->name + " at offset " +
                           std::to_string(pos_) +
                           ": the connection is closed (the peer stopped answering)");
    }
    // Nothing queued yet: ask for the event, then wait for it (or a stop).
    virStreamEventUpdateCallback(stream_, kStreamEvents);
    std::unique_lock lock(waiter_->mu);
    waiter_->cv.wait_for(lock, stop, kRecvPoll, [&] { return waiter_->events != seen; });
  }
}

core::Result<size_t> Download::Recv(std::stop_token stop, std::span<std::byte> out) {
  if (finished_) {
    return size_t{0};
  }
  if (pos_ == end_) {
    if (auto f = Finish(stop); !f) {
      return MakeError(f.error());
    }
    return size_t{0};
  }
  const size_t want = static_cast<size_t>(std::min<uint64_t>({out.size(), kMaxRecv, end_ - pos_}));
  auto n = RecvSome(stop, out.first(want));
  if (!n) {
    return n;
  }
  if (*n == 0) {
    return MakeError(ErrorCode::kUnavailable, "libvirt: download of " + volume_->name +
                                                  " ended early at offset " + std::to_string(pos_) +
                                                  " (expected " + std::to_string(end_) + ")");
  }
  pos_ += *n;
  return n;
}

core::Status Download::Finish(std::stop_token stop) {
  std::byte extra{};
  auto n = RecvSome(stop, std::span<std::byte>(&extra, 1));  // the end of the stream
  if (!n) {
    return MakeError(n.error());
  }
  if (*n != 0) {
    return MakeError(ErrorCode::kCorruptData, "libvirt: download of " + volume_->name +
                                                  " sent more than the " + std::to_string(end_) +
                                                  " bytes asked for");
  }
  virStreamPtr s = stream_;
  virStreamRef(s);
  auto done =
      RunBounded<bool>(stop, volume_->call_timeout, volume_->host,
                       "end of the download of " + volume_->name, [s]() -> core::Result<bool> {
                         const int rc = virStreamFinish(s);
                         core::Result<bool> r = true;
                         if (rc < 0) {
                           r = MakeError(LastError("end of a download"));
                         }
                         virStreamFree(s);
                         return r;
                       });
  if (!done) {
    return MakeError(done.error());
  }
  finished_ = true;
  return {};
}

core::Result<size_t> VolumeByteSource::Read(std::stop_token stop, std::span<std::byte> out) {
  for (;;) {
    if (out.empty() || (offset_ == volume_->size_bytes && !download_)) {
      return size_t{0};
    }
    if (!download_) {
      const uint64_t length = std::min(volume_->chunk_bytes, volume_->size_bytes - offset_);
      auto d = Download::Start(stop, volume_, offset_, length);
      if (!d) {
        return MakeError(d.error());
      }
      download_ = std::move(*d);
    }
    auto n = download_->Recv(stop, out);
    if (!n) {
      return n;
    }
    if (*n > 0) {
      offset_ += *n;
      return n;
    }
    download_.reset();  // this chunk is done: the next one, or the end
  }
}

core::Status VolumeRangeSource::ReadAt(std::stop_token stop, uint64_t offset,
                                       std::span<std::byte> out) const {
  const uint64_t size = volume_->size_bytes;
  if (offset > size || out.size() > size - offset) {
    return MakeError(ErrorCode::kCorruptData, volume_->name + ": read of " +
                                                  std::to_string(out.size()) + " bytes at " +
                                                  std::to_string(offset) + " past its end");
  }
  std::lock_guard lock(mu_);
  std::vector<std::byte> scratch;
  size_t got = 0;
  while (got < out.size()) {
    const uint64_t at = offset + got;
    if (download_ && download_->position() == download_->end()) {
      auto end = download_->Recv(stop, out.subspan(got));  // all received: finish it
      download_.reset();
      if (!end) {
        return MakeError(end.error());
      }
    }
    if (download_ && (at < download_->position() || at - download_->position() > kSkipWindow ||
                      at >= download_->end())) {
      download_.reset();  // aborted: a new download starts at `at`
    }
    if (!download_) {
      const uint64_t length =
          std::min(std::max<uint64_t>(volume_->chunk_bytes, out.size() - got), size - at);
      auto d = Download::Start(stop, volume_, at, length);
      if (!d) {
        return MakeError(d.error());
      }
      download_ = std::move(*d);
      downloads_++;
    }
    const bool skipping = download_->position() < at;
    std::span<std::byte> into = out.subspan(got);
    if (skipping) {
      scratch.resize(static_cast<size_t>(std::min<uint64_t>(at - download_->position(), kMaxRecv)));
      into = scratch;
    }
    auto n = download_->Recv(stop, into);
    if (!n) {
      download_.reset();
      return MakeError(n.error());
    }
    if (!skipping) {
      got += *n;
    }
  }
  return {};
}

size_t VolumeRangeSource::DownloadsForTest() const {
  std::lock_guard lock(mu_);
  return downloads_;
}

}  // namespace vmimport::source::libvirt
