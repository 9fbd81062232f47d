#pragma once

// A streaming tar reader: entries are read front to back from a disk::ByteSource as they arrive
// (an HTTP body), never staged. Understands POSIX ustar, GNU long names ('L') and base-256 sizes,
// and pax extended headers ('x': path and size, for files of 8 GiB and more). A truncated
// archive is an error (kCorruptData naming the entry and the offset), never a short entry.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stop_token>
#include <string>

#include "core/result.h"
#include "disk/byte_source.h"

namespace vmimport::ovf {

inline constexpr uint64_t kTarBlockSize = 512;

struct TarEntry {
  std::string name;  //!< path inside the archive, without a leading "./"
  char type = '0';   //!< '0' regular file, '5' directory, ... (pax and GNU name headers are folded)
  uint64_t size = 0;
  uint64_t header_offset = 0;  //!< archive offset of the entry's first header (pax/GNU included)
  uint64_t data_offset = 0;    //!< archive offset of the entry's first data byte

  bool IsRegularFile() const { return type == '0' || type == '\0' || type == '7'; }
  //! Offset just past the entry's data and padding: where the next header starts.
  uint64_t EndOffset() const;
};

class TarReader {
 public:
  //! Moves the source forward by n bytes without reading them (an HTTP range reader); must fail
  //! with kCorruptData when the archive is shorter. Without one, skipped bytes are read and
  //! dropped.
  using SkipFunction = std::function<core::Status(std::stop_token, uint64_t)>;

  //! `start_offset`: archive offset of the source's first byte (a ranged download that starts
  //! at an entry). `archive_name` names the archive in errors (never a credentialed URL).
  TarReader(disk::ByteSource& source, std::string archive_name, uint64_t start_offset = 0,
            SkipFunction skip = {});
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  //! The next entry, skipping what is left of the current one; nullopt at the end-of-archive
  //! marker (or when the archive ends exactly where a header would start: the caller checks that
  //! every file it needs was there). Errors: kCorruptData for a bad header or a truncated archive,
  //! the source's own.
  [[nodiscard]] core::Result<std::optional<TarEntry>> Next(std::stop_token stop);

  //! The current entry's data: Read returns its bytes, then 0 at its end. A source that ends
  //! early is kCorruptData ("truncated"). Valid until the next call of Next.
  disk::ByteSource& Data() { return data_; }

  //! Archive offset of the next byte the reader will take from the source.
  uint64_t offset() const { return offset_; }

 private:
  class EntryData final : public disk::ByteSource {
   public:
    explicit EntryData(TarReader& reader) : reader_(reader) {}
    // disk::ByteSource
    core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;

   private:
    TarReader& reader_;
  };

  core::Result<size_t> ReadSome(std::stop_token stop, std::span<std::byte> out);
  //! Reads exactly one block; false at a clean end of the source (no byte of the block).
  core::Result<bool> ReadBlock(std::stop_token stop, std::span<std::byte, kTarBlockSize> block);
  core::Status Skip(std::stop_token stop, uint64_t bytes);
  core::Result<std::string> ReadSmallData(std::stop_token stop, uint64_t size, const char* what);
  core::Error Truncated(std::string_view what) const;

  disk::ByteSource& source_;
  const std::string archive_name_;
  SkipFunction skip_;
  uint64_t offset_ = 0;
  EntryData data_;
  std::optional<TarEntry> current_;
  uint64_t remaining_ = 0;  // data bytes of current_ not yet read
  bool ended_ = false;
};

//! Parses a tar number field: octal ASCII (NUL/space padded) or GNU base-256 (first byte 0x80).
//! nullopt when the field is malformed or the value does not fit in 63 bits.
std::optional<uint64_t> ParseTarNumber(std::span<const std::byte> field);

}  // namespace vmimport::ovf
