#include "warm/writer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <optional>
#include <thread>
#include <utility>

#include "warm/extent_protocol.h"

namespace vmimport::warm {
namespace {

core::Error OsError(const std::string& what) {
  const int err = errno;
  const core::ErrorCode code = err == ENOENT   ? core::ErrorCode::kNotFound
                               : err == EACCES ? core::ErrorCode::kPermissionDenied
                                               : core::ErrorCode::kInternal;
  return core::Error{code, "writer: " + what + ": " + std::strerror(err)};
}

bool SameToken(const std::string& want, std::span<const std::byte> got) {
  // Constant time in the token's length: no early exit on the first differing byte.
  unsigned diff = want.size() == got.size() ? 0U : 1U;
  for (size_t i = 0; i < want.size(); ++i) {
    const auto g = i < got.size() ? std::to_integer<unsigned char>(got[i]) : 0;
    diff |= static_cast<unsigned>(static_cast<unsigned char>(want[i]) ^ g);
  }
  return diff == 0;
}

core::Status PwriteAll(int fd, std::span<const std::byte> data, uint64_t offset,
                       const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return core::MakeError(OsError(path + ": write at " + std::to_string(offset)));
    }
    data = data.subspan(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return core::Ok();
}

// Zeros [offset, offset+length): a hole in a file, BLKZEROOUT on a device, else written zeros.
core::Status WriteZeros(int fd, bool block, uint64_t offset, uint64_t length,
                        const std::string& path) {
  if (!block && ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            static_cast<off_t>(offset), static_cast<off_t>(length)) == 0) {
    return core::Ok();
  }
  if (block) {
    uint64_t range[2] = {offset, length};
    if (::ioctl(fd, BLKZEROOUT, range) == 0) {
      return core::Ok();
    }
  }
  static const std::vector<std::byte> kZeros(1u << 20);
  while (length > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(length, kZeros.size()));
    if (auto ok = PwriteAll(fd, std::span(kZeros).first(n), offset, path); !ok) {
      return ok;
    }
    offset += n;
    length -= n;
  }
  return core::Ok();
}

}  // namespace

core::Result<std::unique_ptr<Writer>> Writer::Open(WriterOptions options, core::Logger log) {
  if (options.token.empty()) {
    return core::MakeError(core::ErrorCode::kInvalidArgument, "writer: no token");
  }
  if (options.disks.empty()) {
    return core::MakeError(core::ErrorCode::kInvalidArgument, "writer: no disks");
  }
  std::vector<Disk> disks;
  for (const WriterTarget& t : options.disks) {
    Disk d;
    d.path = t.path;
    // Only a file target (one with a size) is made when missing: a device path that is not
    // there (a volume not mapped) must fail, not become a file on the container's /dev.
    const int create = t.size > 0 ? O_CREAT : 0;
    d.fd = disk::UniqueFd(::open(t.path.c_str(), O_RDWR | O_CLOEXEC | create, 0644));
    if (!d.fd.valid()) {
      return core::MakeError(OsError("open " + t.path));
    }
    struct stat st {};
    if (::fstat(d.fd.get(), &st) != 0) {
      return core::MakeError(OsError("stat " + t.path));
    }
    d.block = S_ISBLK(st.st_mode);
    if (d.block) {
      uint64_t bytes = 0;
      if (::ioctl(d.fd.get(), BLKGETSIZE64, &bytes) != 0) {
        return core::MakeError(OsError("size of " + t.path));
      }
      d.size = bytes;
    } else {
      d.size = static_cast<uint64_t>(st.st_size);
      if (t.size > d.size) {
        if (::ftruncate(d.fd.get(), static_cast<off_t>(t.size)) != 0) {
          return core::MakeError(OsError("extend " + t.path + " to " + std::to_string(t.size)));
        }
        d.size = t.size;
      }
    }
    if (t.size > d.size) {
      return core::MakeError(core::ErrorCode::kInvalidArgument,
                             "writer: " + t.path + " holds " + std::to_string(d.size) +
                                 " bytes, the disk needs " + std::to_string(t.size));
    }
    disks.push_back(std::move(d));
  }
  return std::unique_ptr<Writer>(new Writer(std::move(options), std::move(disks), std::move(log)));
}

Writer::Writer(WriterOptions options, std::vector<Disk> disks, core::Logger log)
    : token_(std::move(options.token)), log_(std::move(log)), disks_(std::move(disks)) {}

Writer::~Writer() = default;

int64_t Writer::LastCommittedRound() const {
  std::lock_guard lock(mu_);
  return last_round_;
}

uint64_t Writer::BytesWritten() const { return bytes_written_.load(); }

uint64_t Writer::DiskSize(size_t index) const {
  std::lock_guard lock(mu_);
  return index < disks_.size() ? disks_[index].size : 0;
}

core::Status Writer::Apply(uint64_t session, uint32_t disk, uint64_t offset, uint64_t length,
                           bool zero, std::span<const std::byte> data) {
  std::lock_guard lock(mu_);
  if (session != session_) {
    return core::MakeError(core::ErrorCode::kCancelled,
                           "writer: a newer session took over; this connection's extents are "
                           "refused");
  }
  if (disk >= disks_.size()) {
    return core::MakeError(
        core::ErrorCode::kCorruptData,
        "writer: extent for disk " + std::to_string(disk) + " of " + std::to_string(disks_.size()));
  }
  Disk& d = disks_[disk];
  if (offset > d.size || length > d.size - offset) {
    return core::MakeError(core::ErrorCode::kCorruptData,
                           "writer: extent [" + std::to_string(offset) + ", +" +
                               std::to_string(length) + ") past the end of disk " +
                               std::to_string(disk) + " (" + std::to_string(d.size) + " bytes)");
  }
  auto ok = zero ? WriteZeros(d.fd.get(), d.block, offset, length, d.path)
                 : PwriteAll(d.fd.get(), data, offset, d.path);
  if (ok) {
    round_bytes_ += length;
    bytes_written_ += length;
  }
  return ok;
}

core::Result<uint64_t> Writer::Commit(uint64_t session, uint64_t round) {
  std::lock_guard lock(mu_);
  if (session != session_) {
    return core::MakeError(core::ErrorCode::kCancelled, "writer: a newer session took over");
  }
  for (Disk& d : disks_) {
    if (::fsync(d.fd.get()) != 0) {
      return core::MakeError(OsError("fsync " + d.path));
    }
  }
  last_round_ = static_cast<int64_t>(round);
  return std::exchange(round_bytes_, 0);
}

core::Status Writer::ServeConnection(int fd) {
  FrameConnection conn(fd);
  std::vector<std::byte> payload;
  auto hello = conn.Receive(payload);
  if (!hello) {
    return core::MakeError(hello.error());
  }
  if (hello->type != FrameType::kHello || !SameToken(token_, payload)) {
    conn.SendError("writer: a session starts with a Hello carrying the import's token");
    return core::MakeError(core::ErrorCode::kUnauthenticated, "writer: bad or missing token");
  }
  uint64_t session = 0;
  FrameHeader ack;
  ack.type = FrameType::kAck;
  {
    std::lock_guard lock(mu_);
    session = ++session_;
    round_bytes_ = 0;
    ack.a = last_round_ < 0 ? kNoRound : static_cast<uint64_t>(last_round_);
  }
  if (auto ok = conn.Send(ack, {}); !ok) {
    return ok;
  }
  log_.Info("writer session started", {{"session", session}});
  std::optional<uint64_t> round;  // the round in progress
  uint64_t extents = 0;
  for (;;) {
    auto h = conn.Receive(payload);
    if (!h) {
      if (h.error().code == core::ErrorCode::kUnavailable && !round) {
        return core::Ok();  // closed between rounds
      }
      return core::MakeError(h.error());
    }
    core::Status ok;
    switch (h->type) {
      case FrameType::kRoundBegin: {
        round = h->a;
        extents = 0;
        std::lock_guard lock(mu_);
        if (session == session_) {  // a superseded session must not touch the current round
          round_bytes_ = 0;
        }
        continue;
      }
      case FrameType::kExtent: {
        if (!round) {
          ok = core::MakeError(core::ErrorCode::kCorruptData, "writer: extent outside a round");
          break;
        }
        const bool zero = (h->flags & kFlagZero) != 0;
        if (!zero && (h->b != payload.size() || Sha256(payload) != h->sha256)) {
          ok = core::MakeError(core::ErrorCode::kCorruptData,
                               "writer: disk " + std::to_string(h->disk) + " extent at " +
                                   std::to_string(h->a) + ": length or sha256 mismatch");
          break;
        }
        ok = Apply(session, h->disk, h->a, h->b, zero, payload);
        ++extents;
        break;
      }
      case FrameType::kRoundCommit: {
        if (!round || *round != h->a || extents != h->b) {
          ok = core::MakeError(core::ErrorCode::kCorruptData,
                               "writer: commit of round " + std::to_string(h->a) + " with " +
                                   std::to_string(h->b) + " extents, got " +
                                   std::to_string(extents) + " in this round");
          break;
        }
        auto bytes = Commit(session, h->a);
        if (!bytes) {
          ok = core::MakeError(bytes.error());
          break;
        }
        FrameHeader done;
        done.type = FrameType::kAck;
        done.a = h->a;
        done.b = *bytes;
        log_.Info("writer round committed",
                  {{"session", session}, {"round", h->a}, {"extents", extents}, {"bytes", *bytes}});
        round.reset();
        ok = conn.Send(done, {});
        break;
      }
      case FrameType::kHello:
      case FrameType::kAck:
      case FrameType::kError:
        ok = core::MakeError(
            core::ErrorCode::kCorruptData,
            "writer: unexpected frame type " + std::to_string(static_cast<int>(h->type)));
        break;
    }
    if (!ok) {
      conn.SendError(ok.error().message);
      return ok;
    }
  }
}

core::Status ServeWriter(std::stop_token stop, Writer& writer, const std::string& host,
                         uint16_t port, std::atomic<uint16_t>& bound_port,
                         const core::Logger& log) {
  disk::UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener.valid()) {
    return core::MakeError(OsError("socket"));
  }
  const int one = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           "writer: listen address " + host + " is not an IPv4 address");
  }
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listener.get(), 8) != 0) {
    return core::MakeError(OsError("listen on " + host + ":" + std::to_string(port)));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  bound_port = ntohs(addr.sin_port);

  struct Conn {
    disk::UniqueFd fd;
    std::atomic<bool> done{false};
    std::jthread thread;  // declared last: joined before fd is closed
  };
  std::list<Conn> conns;
  while (!stop.stop_requested()) {
    pollfd p{listener.get(), POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) {  // wakes for `stop` 20 times a second
      continue;
    }
    disk::UniqueFd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) {
      continue;
    }
    // A peer that dies without closing is dropped after 5 minutes of silence.
    timeval timeout{300, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    conns.remove_if([](const Conn& c) { return c.done.load(); });
    Conn& c = conns.emplace_back();
    c.fd = std::move(fd);
    c.thread = std::jthread([&writer, &log, &c] {
      if (auto ok = writer.ServeConnection(c.fd.get()); !ok) {
        log.Warn("writer session ended", {{"error", ok.error().ToString()}});
      }
      c.done = true;
    });
  }
  for (Conn& c : conns) {
    ::shutdown(c.fd.get(), SHUT_RDWR);
  }
  conns.clear();  // joins each thread, then closes its fd
  return core::Ok();
}

}  // namespace vmimport::warm
