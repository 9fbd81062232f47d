#include "warm/extent_protocol.h"

#include <openssl/sha.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vmimport::warm {
namespace {

void PutU16(std::byte* p, uint16_t v) {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v & 0xff);
}
void PutU32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    p[i] = std::byte((v >> (8 * (3 - i))) & 0xff);
  }
}
void PutU64(std::byte* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    p[i] = std::byte((v >> (8 * (7 - i))) & 0xff);
  }
}
uint16_t GetU16(const std::byte* p) {
  return static_cast<uint16_t>((std::to_integer<uint16_t>(p[0]) << 8) |
                               std::to_integer<uint16_t>(p[1]));
}
uint32_t GetU32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v = (v << 8) | std::to_integer<uint32_t>(p[i]);
  }
  return v;
}
uint64_t GetU64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | std::to_integer<uint64_t>(p[i]);
  }
  return v;
}

core::Error IoError(const char* what) {
  const int err = errno;
  if (err == EAGAIN || err == EWOULDBLOCK) {
    return core::Error{core::ErrorCode::kDeadlineExceeded,
                       std::string("extent stream: ") + what + ": timed out"};
  }
  return core::Error{core::ErrorCode::kUnavailable,
                     std::string("extent stream: ") + what + ": " + std::strerror(err)};
}

core::Status WriteAll(int fd, std::span<const std::byte> data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return core::MakeError(IoError("send"));
    }
    data = data.subspan(static_cast<size_t>(n));
  }
  return core::Ok();
}

core::Status ReadAll(int fd, std::span<std::byte> out) {
  while (!out.empty()) {
    const ssize_t n = ::recv(fd, out.data(), out.size(), 0);
    if (n == 0) {
      return core::MakeError(core::ErrorCode::kUnavailable,
                             "extent stream: the peer closed the connection");
    }
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return core::MakeError(IoError("recv"));
    }
    out = out.subspan(static_cast<size_t>(n));
  }
  return core::Ok();
}

}  // namespace

std::array<std::byte, kFrameHeaderSize> EncodeFrameHeader(const FrameHeader& h) {
  std::array<std::byte, kFrameHeaderSize> out{};
  PutU32(&out[0], kFrameMagic);
  out[4] = std::byte(static_cast<uint8_t>(h.type));
  out[5] = std::byte(h.flags);
  PutU16(&out[6], 0);
  PutU32(&out[8], h.disk);
  PutU32(&out[12], h.payload_length);
  PutU64(&out[16], h.a);
  PutU64(&out[24], h.b);
  std::copy(h.sha256.begin(), h.sha256.end(), out.begin() + 32);
  return out;
}

core::Result<FrameHeader> DecodeFrameHeader(std::span<const std::byte> bytes) {
  if (bytes.size() < kFrameHeaderSize) {
    return core::MakeError(core::ErrorCode::kCorruptData,
                           "extent stream: frame header of " + std::to_string(bytes.size()) +
                               " bytes, want " + std::to_string(kFrameHeaderSize));
  }
  const uint32_t magic = GetU32(&bytes[0]);
  if (magic != kFrameMagic) {
    return core::MakeError(core::ErrorCode::kCorruptData,
                           "extent stream: bad magic " + std::to_string(magic));
  }
  FrameHeader h;
  const auto type = std::to_integer<uint8_t>(bytes[4]);
  if (type < static_cast<uint8_t>(FrameType::kHello) ||
      type > static_cast<uint8_t>(FrameType::kError)) {
    return core::MakeError(core::ErrorCode::kCorruptData,
                           "extent stream: unknown frame type " + std::to_string(type));
  }
  h.type = static_cast<FrameType>(type);
  h.flags = std::to_integer<uint8_t>(bytes[5]);
  if ((h.flags & ~kFlagZero) != 0 || GetU16(&bytes[6]) != 0) {
    return core::MakeError(core::ErrorCode::kCorruptData, "extent stream: reserved flag bits set");
  }
  h.disk = GetU32(&bytes[8]);
  h.payload_length = GetU32(&bytes[12]);
  if (h.payload_length > kMaxPayload) {
    return core::MakeError(core::ErrorCode::kCorruptData,
                           "extent stream: payload of " + std::to_string(h.payload_length) +
                               " bytes is over the limit of " + std::to_string(kMaxPayload));
  }
  h.a = GetU64(&bytes[16]);
  h.b = GetU64(&bytes[24]);
  std::copy(bytes.begin() + 32, bytes.begin() + 64, h.sha256.begin());
  if ((h.flags & kFlagZero) != 0 && h.payload_length != 0) {
    return core::MakeError(core::ErrorCode::kCorruptData,
                           "extent stream: a zero extent with a payload");
  }
  return h;
}

std::array<std::byte, 32> Sha256(std::span<const std::byte> data) {
  std::array<std::byte, 32> out{};
  ::SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
           reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

core::Status FrameConnection::Send(const FrameHeader& h, std::span<const std::byte> payload) {
  FrameHeader copy = h;
  copy.payload_length = static_cast<uint32_t>(payload.size());
  const auto header = EncodeFrameHeader(copy);
  if (auto ok = WriteAll(fd_, header); !ok) {
    return ok;
  }
  return WriteAll(fd_, payload);
}

core::Result<FrameHeader> FrameConnection::Receive(std::vector<std::byte>& payload) {
  std::array<std::byte, kFrameHeaderSize> raw{};
  if (auto ok = ReadAll(fd_, raw); !ok) {
    return core::MakeError(ok.error());
  }
  auto h = DecodeFrameHeader(raw);
  if (!h) {
    return h;
  }
  payload.resize(h->payload_length);
  if (auto ok = ReadAll(fd_, payload); !ok) {
    return core::MakeError(ok.error());
  }
  return h;
}

void FrameConnection::SendError(const std::string& message) {
  FrameHeader h;
  h.type = FrameType::kError;
  const size_t n = std::min<size_t>(message.size(), kMaxPayload);
  (void)Send(h, std::as_bytes(std::span(message.data(), n)));  // best effort: closing next
}

}  // namespace vmimport::warm
