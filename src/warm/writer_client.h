#pragma once

// The controller's end of the extent stream (warm/extent_protocol.h): a RoundSink that sends a
// round to a writer over TCP and returns once the writer acknowledged it after fsync.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/result.h"
#include "disk/unique_fd.h"
#include "warm/extent_protocol.h"
#include "warm/precopy.h"

namespace vmimport::warm {

class WriterClient final : public RoundSink {
 public:
  //! Connects to `host`:`port` and opens a session with `token` (which supersedes any older
  //! one). `timeout` bounds the connect and each later wait (a round's Commit waits for fsync:
  //! give it room). Errors: Unavailable (no connection), Unauthenticated (token refused).
  [[nodiscard]] static core::Result<std::unique_ptr<WriterClient>> Connect(
      const std::string& host, uint16_t port, const std::string& token,
      std::chrono::seconds timeout);

  //! The last round the writer committed before this session (-1: none): informational, the
  //! import's status is what decides which round comes next.
  int64_t WriterLastRound() const { return writer_last_round_; }

  // warm::RoundSink
  core::Status Begin(int round) override;
  core::Status Extent(uint32_t disk, uint64_t offset, uint64_t length, bool zero,
                      std::span<const std::byte> data) override;
  core::Result<uint64_t> Commit(int round) override;

 private:
  explicit WriterClient(disk::UniqueFd fd) : fd_(std::move(fd)), conn_(fd_.get()) {}
  //! A reply: an Ack, or the writer's Error as Unavailable with its message.
  core::Result<FrameHeader> ReadAck();

  disk::UniqueFd fd_;
  FrameConnection conn_;
  int64_t writer_last_round_ = -1;
  uint64_t extents_ = 0;
};

}  // namespace vmimport::warm
