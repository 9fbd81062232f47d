#pragma once

// A storage volume's bytes over the libvirt connection (virStorageVolDownload into a virStream):
// nothing is staged on either side.
//  - Downloads are bounded: each asks for at most `chunk_bytes` (16 MiB by default), the next
//    starts where it ended. libvirt's event loop (needed for keepalive, connection.h) reads a
//    download off the socket into memory whenever nobody is inside virStreamRecv, with no limit:
//    a consumer held back by the image server would otherwise let a whole disk pile up in RAM.
//    With chunks, at most one chunk per open disk is buffered (measured: without them a 24 MiB
//    download was all in memory 4 s after it started while the reader slept).
//  - Streams are non-blocking: a receive waits for libvirt's stream event or a stop, so a
//    cancelled export returns at once even when the peer stalls; the stream is then aborted on a
//    thread of its own (virStreamAbort is a round trip that a stalled peer answers only when the
//    keepalive closes the connection). Starting and finishing a download are round trips too:
//    they run under RunBounded (bounded_call.h).
//  - A raw volume is read front to back: VolumeByteSource.
//  - A qcow2 volume has tables to follow, so its decoder (disk/qcow2.h) reads at offsets:
//    VolumeRangeSource serves each ReadAt from the open download, skipping forward within a
//    window and starting a new download only when the decoder jumps back or far ahead. qcow2
//    clusters are mostly written in guest order, so a disk costs few more downloads than chunks.
//    DecodedVolumeSource hands the decoded raw bytes on as a stream.
// Each source owns its connection (one per disk stream: a stalled stream holds up nobody else).

#include <libvirt/libvirt.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "disk/byte_source.h"
#include "disk/disk_reader.h"
#include "source/libvirt/connection.h"

namespace vmimport::source::libvirt {

//! A volume and the connection it was found on. Shared: a download start abandoned on a stop
//! keeps it until its call returns.
struct OpenVolume {
  ConnectPtr conn;
  VolumePtr vol;
  std::string name;         //!< for errors: "domain volume-path"
  std::string host;         //!< the libvirt host (RunBounded's key)
  uint64_t size_bytes = 0;  //!< what a download from 0 to the end gives
  uint64_t chunk_bytes = 16ULL << 20;
  std::chrono::milliseconds call_timeout{std::chrono::seconds(60)};
};
using OpenVolumePtr = std::shared_ptr<const OpenVolume>;

//! One bounded download: `length` bytes from `offset`. Not thread-safe (one reader).
class Download {
 public:
  //! Errors: LastError's; RunBounded's (kCancelled, a timeout).
  static core::Result<std::unique_ptr<Download>> Start(std::stop_token stop, OpenVolumePtr volume,
                                                       uint64_t offset, uint64_t length);
  ~Download();
  Download(const Download&) = delete;
  Download& operator=(const Download&) = delete;

  //! Up to out.size() bytes; 0 once all were received and the download is finished. Errors:
  //! kCancelled on stop (at once, whatever the peer does), kUnavailable when the stream breaks
  //! or ends early (the message names the volume and the offset).
  core::Result<size_t> Recv(std::stop_token stop, std::span<std::byte> out);
  uint64_t position() const { return pos_; }
  uint64_t end() const { return end_; }

  //! Woken by libvirt's stream event (volume_stream.cc).
  struct Waiter;

 private:
  Download(OpenVolumePtr volume, virStreamPtr stream, std::shared_ptr<Waiter> waiter,
           uint64_t offset, uint64_t length);
  //! One receive (nonblocking) and, when nothing is there, a wait for the stream's event.
  core::Result<size_t> RecvSome(std::stop_token stop, std::span<std::byte> out);
  core::Status Finish(std::stop_token stop);

  OpenVolumePtr volume_;
  virStreamPtr stream_;
  std::shared_ptr<Waiter> waiter_;
  uint64_t pos_;
  uint64_t end_;
  bool finished_ = false;
};

//! A raw volume front to back, in chunks. Errors: Download's.
class VolumeByteSource final : public disk::ByteSource {
 public:
  explicit VolumeByteSource(OpenVolumePtr volume) : volume_(std::move(volume)) {}
  // disk::ByteSource
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;

 private:
  OpenVolumePtr volume_;
  std::unique_ptr<Download> download_;
  uint64_t offset_ = 0;
};

//! A volume's file bytes at any offset (for the qcow2 decoder); see the file comment. Thread-safe
//! (one download at a time under a mutex).
class VolumeRangeSource final : public disk::RandomAccessSource {
 public:
  explicit VolumeRangeSource(OpenVolumePtr volume) : volume_(std::move(volume)) {}
  // disk::RandomAccessSource
  uint64_t Size() const override { return volume_->size_bytes; }
  core::Status ReadAt(std::stop_token stop, uint64_t offset,
                      std::span<std::byte> out) const override;
  const std::string& Name() const override { return volume_->name; }

  //! Downloads started so far (the chunks of a disk read front to back).
  size_t DownloadsForTest() const;

 private:
  //! A forward jump up to this many bytes is read and dropped instead of a new download.
  static constexpr uint64_t kSkipWindow = 8ULL << 20;
  OpenVolumePtr volume_;
  mutable std::mutex mu_;  // guards download_, downloads_
  mutable std::unique_ptr<Download> download_;
  mutable size_t downloads_ = 0;
};

//! The raw bytes of a decoded disk, as a stream.
class DecodedVolumeSource final : public disk::ByteSource {
 public:
  explicit DecodedVolumeSource(disk::DiskReaderPtr reader) : reader_(std::move(reader)) {}
  // disk::ByteSource
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override {
    return reader_->Read(stop, out);
  }

 private:
  disk::DiskReaderPtr reader_;
};

}  // namespace vmimport::source::libvirt
