#pragma once

// The extent stream between the controller and the writer (warm migration, issue 22): a small
// framed protocol over one TCP connection. The controller sends, the writer answers only Hello
// and RoundCommit (or an Error and closes).
//
// Every frame is a 64-byte header, big-endian, then `payload_length` bytes:
//    0  u32 magic 'V' 'M' 'W' '1'
//    4  u8  type      1 Hello, 2 RoundBegin, 3 Extent, 4 RoundCommit, 5 Ack, 6 Error
//    5  u8  flags     Extent: bit 0 = the range reads as zeros (no payload)
//    6  u16 reserved  0
//    8  u32 disk      Extent: the disk index
//   12  u32 payload_length   at most kMaxPayload
//   16  u64 a         RoundBegin/RoundCommit/Ack: the round; Extent: the offset
//   24  u64 b         Extent: the range length; RoundCommit: extents in the round; Ack: bytes
//                     written in the round
//   32  32 bytes      Extent: SHA-256 of the payload (zero extents: of nothing)
//   64  payload       Hello: the per-import token; Extent: the bytes; Error: the message
//
// A session: Hello(token) → Ack(round = last round the writer committed, or -1 as 2^64-1) |
// Error; then any number of rounds: RoundBegin(n), Extent..., RoundCommit(n, count) → Ack(n)
// once every extent is written and every target fsync'd, or Error. A round whose Ack the
// controller did not see did not happen for it: it sends the round again, on a new connection;
// extents are absolute writes, so applying one twice is harmless.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"

namespace vmimport::warm {

inline constexpr uint32_t kFrameMagic = 0x564d5731;  // "VMW1"
inline constexpr size_t kFrameHeaderSize = 64;
//! Largest payload of one frame (an extent longer than this is sent as several).
inline constexpr uint32_t kMaxPayload = 4u << 20;
//! The Ack of a Hello when the writer has committed no round yet.
inline constexpr uint64_t kNoRound = ~uint64_t{0};

enum class FrameType : uint8_t {
  kHello = 1,
  kRoundBegin = 2,
  kExtent = 3,
  kRoundCommit = 4,
  kAck = 5,
  kError = 6,
};

inline constexpr uint8_t kFlagZero = 1;

struct FrameHeader {
  FrameType type = FrameType::kHello;
  uint8_t flags = 0;
  uint32_t disk = 0;
  uint32_t payload_length = 0;
  uint64_t a = 0;
  uint64_t b = 0;
  std::array<std::byte, 32> sha256{};
};

//! The 64 bytes of `h`.
std::array<std::byte, kFrameHeaderSize> EncodeFrameHeader(const FrameHeader& h);
//! Errors: CorruptData (bad magic, unknown type, reserved bits set, payload over kMaxPayload,
//! a zero extent with a payload), naming the field.
[[nodiscard]] core::Result<FrameHeader> DecodeFrameHeader(std::span<const std::byte> bytes);

//! SHA-256 of `data`, raw.
std::array<std::byte, 32> Sha256(std::span<const std::byte> data);

//! Blocking frame I/O on a connected socket (or any stream fd). Not thread-safe; the fd is
//! borrowed. Every call fails with Unavailable when the peer closed or the socket failed, and
//! with DeadlineExceeded when a read or write waited longer than the socket's timeout.
class FrameConnection {
 public:
  explicit FrameConnection(int fd) : fd_(fd) {}
  [[nodiscard]] core::Status Send(const FrameHeader& h, std::span<const std::byte> payload);
  //! Reads one header and its payload into `payload` (resized).
  [[nodiscard]] core::Result<FrameHeader> Receive(std::vector<std::byte>& payload);
  //! An Error frame with `message` (truncated to kMaxPayload); its own failure is ignored (the
  //! connection is closed next anyway).
  void SendError(const std::string& message);

 private:
  int fd_;
};

}  // namespace vmimport::warm
