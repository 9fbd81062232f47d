#include "warm/writer_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace vmimport::warm {

core::Result<std::unique_ptr<WriterClient>> WriterClient::Connect(const std::string& host,
                                                                  uint16_t port,
                                                                  const std::string& token,
                                                                  std::chrono::seconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string where = host + ":" + std::to_string(port);
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 ||
      found == nullptr) {
    return core::MakeError(core::ErrorCode::kUnavailable, "writer " + where + ": cannot resolve");
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(found, &::freeaddrinfo);
  disk::UniqueFd fd(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    return core::MakeError(core::ErrorCode::kInternal,
                           std::string("writer: socket: ") + std::strerror(errno));
  }
  timeval tv{static_cast<time_t>(timeout.count()), 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd.get(), found->ai_addr, found->ai_addrlen) != 0) {
    return core::MakeError(core::ErrorCode::kUnavailable,
                           "writer " + where + ": connect: " + std::strerror(errno));
  }
  std::unique_ptr<WriterClient> client(new WriterClient(std::move(fd)));
  FrameHeader hello;
  hello.type = FrameType::kHello;
  if (auto ok = client->conn_.Send(hello, std::as_bytes(std::span(token.data(), token.size())));
      !ok) {
    return core::MakeError(ok.error().Wrap("writer " + where));
  }
  auto ack = client->ReadAck();
  if (!ack) {
    core::Error e = ack.error().Wrap("writer " + where + ": hello");
    if (e.message.find("token") != std::string::npos) {
      e.code = core::ErrorCode::kUnauthenticated;
    }
    return core::MakeError(std::move(e));
  }
  client->writer_last_round_ = ack->a == kNoRound ? -1 : static_cast<int64_t>(ack->a);
  return client;
}

core::Result<FrameHeader> WriterClient::ReadAck() {
  std::vector<std::byte> payload;
  auto h = conn_.Receive(payload);
  if (!h) {
    return h;
  }
  if (h->type == FrameType::kError) {
    return core::MakeError(
        core::ErrorCode::kUnavailable,
        "writer refused: " +
            std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
  }
  if (h->type != FrameType::kAck) {
    return core::MakeError(core::ErrorCode::kInternal,
                           "writer answered frame type " +
                               std::to_string(static_cast<int>(h->type)) + ", want an ack");
  }
  return h;
}

core::Status WriterClient::Begin(int round) {
  FrameHeader h;
  h.type = FrameType::kRoundBegin;
  h.a = static_cast<uint64_t>(round);
  extents_ = 0;
  return conn_.Send(h, {});
}

core::Status WriterClient::Extent(uint32_t disk, uint64_t offset, uint64_t length, bool zero,
                                  std::span<const std::byte> data) {
  FrameHeader h;
  h.type = FrameType::kExtent;
  h.flags = zero ? kFlagZero : 0;
  h.disk = disk;
  h.a = offset;
  h.b = length;
  if (!zero) {
    if (data.size() != length || data.size() > kMaxPayload) {
      return core::MakeError(core::ErrorCode::kInternal,
                             "writer: extent of " + std::to_string(length) + " bytes with " +
                                 std::to_string(data.size()) + " bytes of data");
    }
    h.sha256 = Sha256(data);
  }
  ++extents_;
  return conn_.Send(h, zero ? std::span<const std::byte>{} : data);
}

core::Result<uint64_t> WriterClient::Commit(int round) {
  FrameHeader h;
  h.type = FrameType::kRoundCommit;
  h.a = static_cast<uint64_t>(round);
  h.b = extents_;
  if (auto ok = conn_.Send(h, {}); !ok) {
    return core::MakeError(ok.error());
  }
  auto ack = ReadAck();
  if (!ack) {
    return core::MakeError(ack.error().Wrap("round " + std::to_string(round) + ": commit"));
  }
  if (ack->a != static_cast<uint64_t>(round)) {
    return core::MakeError(
        core::ErrorCode::kInternal,
        "writer acknowledged round " + std::to_string(ack->a) + ", want " + std::to_string(round));
  }
  return ack->b;
}

}  // namespace vmimport::warm
