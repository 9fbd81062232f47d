#pragma once

// A storage volume's bytes over the libvirt connection (virStorageVolDownload into a virStream):
// nothing is staged on either side.
//  - A raw volume is one download from its first byte: VolumeByteSource.
//  - A qcow2 volume has tables to follow, so its decoder (disk/qcow2.h) reads at offsets:
//    VolumeRangeSource serves each ReadAt from one open download, skipping forward within a
//    window and starting a new download (at that offset, to the end) only when the decoder jumps
//    back or far ahead. qcow2 clusters are mostly written in guest order, so a disk costs few
//    downloads. DecodedVolumeSource hands the decoded raw bytes on as a stream.
// Each source owns its connection (one per disk stream: a stalled stream holds up nobody else).

#include <libvirt/libvirt.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "disk/byte_source.h"
#include "disk/disk_reader.h"
#include "source/libvirt/connection.h"

namespace vmimport::source::libvirt {

struct StreamDeleter {
  void operator()(virStreamPtr s) const noexcept {
    virStreamAbort(s);  // a no-op error on a finished stream
    virStreamFree(s);
  }
};
using StreamPtr = std::unique_ptr<virStream, StreamDeleter>;

//! A volume and the connection it was found on.
struct OpenVolume {
  ConnectPtr conn;
  VolumePtr vol;
  std::string name;  //!< for errors: "pool volume path"
};

//! Starts a download of `volume` from `offset` to its end. Errors: LastError's.
core::Result<StreamPtr> StartDownload(const OpenVolume& volume, uint64_t offset);

//! A raw volume front to back. Errors: kCancelled on stop, kUnavailable when the connection or
//! the download breaks (the message names the volume and the offset).
class VolumeByteSource final : public disk::ByteSource {
 public:
  static core::Result<std::unique_ptr<VolumeByteSource>> Open(OpenVolume volume);
  // disk::ByteSource
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;

 private:
  VolumeByteSource(OpenVolume volume, StreamPtr stream)
      : volume_(std::move(volume)), stream_(std::move(stream)) {}
  OpenVolume volume_;  // outlives stream_: declared first
  StreamPtr stream_;
  uint64_t offset_ = 0;
  bool done_ = false;
};

//! A volume's file bytes at any offset (for the qcow2 decoder); see the file comment. Thread-safe
//! (one download at a time under a mutex).
class VolumeRangeSource final : public disk::RandomAccessSource {
 public:
  //! `size_bytes`: the volume file's physical size.
  VolumeRangeSource(OpenVolume volume, uint64_t size_bytes)
      : volume_(std::move(volume)), size_(size_bytes) {}
  // disk::RandomAccessSource
  uint64_t Size() const override { return size_; }
  core::Status ReadAt(std::stop_token stop, uint64_t offset,
                      std::span<std::byte> out) const override;
  const std::string& Name() const override { return volume_.name; }

  //! Downloads started so far (1 for a disk read front to back).
  size_t DownloadsForTest() const;

 private:
  //! A forward jump up to this many bytes is read and dropped instead of a new download.
  static constexpr uint64_t kSkipWindow = 8ULL << 20;
  OpenVolume volume_;
  const uint64_t size_;
  mutable std::mutex mu_;  // guards stream_, pos_, downloads_
  mutable StreamPtr stream_;
  mutable uint64_t pos_ = 0;
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
