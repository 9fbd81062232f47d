#pragma once

// Where disk bytes come from. Two shapes:
//  - ByteSource: a sequential stream (an HTTP body, a tar entry, a pipe). Decoders that must work
//    on a stream (VMDK streamOptimized, raw) take this.
//  - RandomAccessSource: bytes at any offset (a local file, memory). Formats with tables
//    (qcow2, VMDK monolithicSparse, descriptors with extents) need this.
// Implementations here: files, memory, and adapters between the two shapes.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <vector>

#include "core/result.h"
#include "disk/unique_fd.h"

namespace vmimport::disk {

using core::Result;
using core::Status;

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  //! Reads up to out.size() bytes and returns how many; 0 only at the end of the data (or for an
  //! empty `out`). Errors: kCancelled once `stop` is requested; I/O errors as the source maps them
  //! (kUnavailable for a peer, kInternal for a local read error).
  [[nodiscard]] virtual Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) = 0;
};
using ByteSourcePtr = std::unique_ptr<ByteSource>;

class RandomAccessSource {
 public:
  virtual ~RandomAccessSource() = default;
  //! Total bytes; fixed for the source's lifetime.
  virtual uint64_t Size() const = 0;
  //! Reads exactly out.size() bytes at `offset`. A range that ends past Size() is kCorruptData
  //! naming the offset: callers only read what the format says is there, so a short file is a
  //! truncated image. kCancelled once `stop` is requested. Thread-safe.
  [[nodiscard]] virtual Status ReadAt(std::stop_token stop, uint64_t offset,
                                      std::span<std::byte> out) const = 0;
  //! A name for error messages (the file name; never a credentialed URL).
  virtual const std::string& Name() const = 0;
  //! Hint: the source will be read front to back (a file asks for more readahead).
  virtual void AdviseSequential() const {}
};
using RandomAccessSourcePtr = std::unique_ptr<RandomAccessSource>;

//! Reads until `out` is full or the source ends; returns the bytes read (short only at the end).
[[nodiscard]] Result<size_t> ReadFull(std::stop_token stop, ByteSource& source,
                                      std::span<std::byte> out);

//! A local file, read with pread(2).
class FileSource final : public RandomAccessSource {
 public:
  //! kNotFound when the file does not exist, kPermissionDenied, kInvalidArgument when it is a
  //! directory, kInternal for other open errors.
  static Result<std::unique_ptr<FileSource>> Open(const std::string& path);

  // disk::RandomAccessSource
  uint64_t Size() const override { return size_; }
  Status ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out) const override;
  const std::string& Name() const override { return path_; }
  void AdviseSequential() const override;

 private:
  FileSource(std::string path, UniqueFd fd, uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size) {}
  std::string path_;
  UniqueFd fd_;
  uint64_t size_ = 0;
};

//! Bytes held in memory (tests, fuzzing, small fixtures).
class MemorySource final : public RandomAccessSource {
 public:
  explicit MemorySource(std::vector<std::byte> bytes, std::string name = "memory")
      : bytes_(std::move(bytes)), name_(std::move(name)) {}

  // disk::RandomAccessSource
  uint64_t Size() const override { return bytes_.size(); }
  Status ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out) const override;
  const std::string& Name() const override { return name_; }

 private:
  std::vector<std::byte> bytes_;
  std::string name_;
};

//! A sequential stream over bytes in memory; `max_chunk` caps each Read so tests can exercise
//! short reads (0 means no cap).
class MemoryByteSource final : public ByteSource {
 public:
  explicit MemoryByteSource(std::vector<std::byte> bytes, size_t max_chunk = 0)
      : bytes_(std::move(bytes)), max_chunk_(max_chunk) {}

  // disk::ByteSource
  Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;

 private:
  std::vector<std::byte> bytes_;
  size_t max_chunk_ = 0;
  size_t pos_ = 0;
};

//! Reads a RandomAccessSource front to back, from `begin` to its end.
class SequentialSource final : public ByteSource {
 public:
  explicit SequentialSource(RandomAccessSourcePtr source, uint64_t begin = 0)
      : source_(std::move(source)), pos_(begin) {}

  // disk::ByteSource
  Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;

 private:
  RandomAccessSourcePtr source_;
  uint64_t pos_ = 0;
};

//! Replays `prefix` (bytes already taken from `rest`, e.g. to detect the format), then reads on
//! from `rest`.
class PrefixedSource final : public ByteSource {
 public:
  PrefixedSource(std::vector<std::byte> prefix, ByteSourcePtr rest)
      : prefix_(std::move(prefix)), rest_(std::move(rest)) {}

  // disk::ByteSource
  Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;

 private:
  std::vector<std::byte> prefix_;
  size_t prefix_pos_ = 0;
  ByteSourcePtr rest_;
};

//! Passes `source` on at no more than `bytes_per_second` on average since the first Read (a
//! bandwidth cap per stream: protects the source's network and hosts). Sleeps in small steps
//! that notice `stop`.
class RateLimitedSource final : public ByteSource {
 public:
  RateLimitedSource(ByteSourcePtr source, double bytes_per_second)
      : source_(std::move(source)), rate_(bytes_per_second) {}

  // disk::ByteSource
  Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;

 private:
  ByteSourcePtr source_;
  const double rate_;
  uint64_t bytes_ = 0;
  std::chrono::steady_clock::time_point start_{};
  bool started_ = false;
};

//! Reads a whole file into memory (for tests and small fixtures).
Result<std::vector<std::byte>> ReadFileBytes(const std::string& path);

//! kCancelled with a uniform message.
tl::unexpected<core::Error> CancelledError();

}  // namespace vmimport::disk
