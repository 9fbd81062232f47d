#pragma once

// Where decoded bytes go when they are not streamed to a peer: the image server's staged mode
// writes a sparse raw file, the benchmark writes to /dev/null.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stop_token>
#include <string>

#include "core/result.h"
#include "disk/unique_fd.h"

namespace vmimport::disk {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  //! Appends `data`. Errors: kCancelled once `stop` is requested, kInternal for I/O errors
  //! (ENOSPC included).
  [[nodiscard]] virtual core::Status Write(std::stop_token stop,
                                           std::span<const std::byte> data) = 0;
  //! Finishes the output (final size, close) and reports the errors a destructor would swallow.
  [[nodiscard]] virtual core::Status Close() = 0;
};
using ByteSinkPtr = std::unique_ptr<ByteSink>;

struct FileSinkOptions {
  //! All-zero blocks of `hole_block_bytes` (aligned in the file) are skipped, leaving holes.
  bool sparse = true;
  size_t hole_block_bytes = 4096;
  //! fsync(2) in Close.
  bool sync = false;
};

//! Writes a new file (created or truncated, mode 0600).
class FileSink final : public ByteSink {
 public:
  static core::Result<std::unique_ptr<FileSink>> Create(const std::string& path,
                                                        FileSinkOptions options = {});

  // disk::ByteSink
  core::Status Write(std::stop_token stop, std::span<const std::byte> data) override;
  core::Status Close() override;

  //! Bytes appended so far (the file's logical size).
  uint64_t size() const { return size_; }
  //! Bytes actually written to storage (holes excluded): the scratch cost of staging.
  uint64_t stored_bytes() const { return stored_; }

 private:
  FileSink(std::string path, UniqueFd fd, FileSinkOptions options)
      : path_(std::move(path)), fd_(std::move(fd)), options_(options) {}
  core::Status WriteAt(uint64_t offset, std::span<const std::byte> data);

  std::string path_;
  UniqueFd fd_;
  FileSinkOptions options_;
  uint64_t size_ = 0;
  uint64_t stored_ = 0;
};

}  // namespace vmimport::disk
