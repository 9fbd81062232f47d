#include "ovf/tar.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <vector>

#include "disk/checked_cast.h"

namespace vmimport::ovf {

// POSIX ustar header: one 512-byte block (POSIX.1-2001 "ustar Interchange Format"). Text fields
// are NUL-terminated unless full; numbers are octal ASCII (NUL or space terminated) or, in GNU
// tar, base-256 big-endian with the high bit of the first byte set (sizes of 8 GiB and more).
//     0 name[100]      100 mode[8]       108 uid[8]        116 gid[8]
//   124 size[12]       136 mtime[12]     148 chksum[8]     156 typeflag[1]
//   157 linkname[100]  257 magic[6]      263 version[2]    265 uname[32]
//   297 gname[32]      329 devmajor[8]   337 devminor[8]   345 prefix[155]   500 pad[12]
// magic: "ustar\0" + "00" (POSIX) or "ustar " + " \0" (GNU). chksum: the sum of all 512 bytes
// as unsigned values with the chksum field itself counted as eight spaces.
// typeflag: '0' or NUL file, '1' hard link, '2' symlink, '5' directory, '7' contiguous file,
//   'x' pax header for the next entry, 'g' pax global header, 'L' GNU long name of the next
//   entry (its data is the name), 'K' GNU long link name.
// The data of an entry follows its header, padded with zeros to a multiple of 512. The archive
// ends with two all-zero blocks (and is padded to a record of 10240 bytes).
// pax records (the data of an 'x' header): "<length> <key>=<value>\n", length in decimal
// counting the whole record; we use "path" and "size".
namespace {

using core::ErrorCode;
using core::MakeError;

constexpr size_t kNameOffset = 0, kNameSize = 100;
constexpr size_t kSizeOffset = 124, kSizeSize = 12;
constexpr size_t kChecksumOffset = 148, kChecksumSize = 8;
constexpr size_t kTypeOffset = 156;
constexpr size_t kMagicOffset = 257;
constexpr size_t kPrefixOffset = 345, kPrefixSize = 155;
// Metadata entries (long names, pax records) are read into memory: cap them.
constexpr uint64_t kMaxMetadataBytes = 1U << 20;

uint64_t Padding(uint64_t size) { return (kTarBlockSize - size % kTarBlockSize) % kTarBlockSize; }

std::string Field(std::span<const std::byte> block, size_t offset, size_t size) {
  const char* p = reinterpret_cast<const char*>(block.data()) + offset;
  return {p, strnlen(p, size)};
}

bool AllZero(std::span<const std::byte> block) {
  return std::all_of(block.begin(), block.end(), [](std::byte b) { return b == std::byte{0}; });
}

bool ChecksumOk(std::span<const std::byte> block) {
  auto stored = ParseTarNumber(block.subspan(kChecksumOffset, kChecksumSize));
  if (!stored) {
    return false;
  }
  uint64_t unsigned_sum = 0;
  int64_t signed_sum = 0;  // some old tars summed signed chars
  for (size_t i = 0; i < block.size(); ++i) {
    const bool in_field = i >= kChecksumOffset && i < kChecksumOffset + kChecksumSize;
    const auto u = in_field ? uint8_t{' '} : std::to_integer<uint8_t>(block[i]);
    unsigned_sum += u;
    signed_sum += static_cast<int8_t>(u);
  }
  return *stored == unsigned_sum || static_cast<int64_t>(*stored) == signed_sum;
}

std::string StripDotSlash(std::string name) {
  while (name.starts_with("./")) {
    name.erase(0, 2);
  }
  return name;
}

struct PaxValues {
  std::optional<std::string> path;
  std::optional<uint64_t> size;
};

core::Result<PaxValues> ParsePax(std::string_view data, const std::string& where) {
  PaxValues out;
  while (!data.empty()) {
    const size_t space = data.find(' ');
    uint64_t length = 0;
    if (space == std::string_view::npos ||
        std::from_chars(data.data(), data.data() + space, length).ptr != data.data() + space ||
        length <= space + 1 || length > data.size() || data[length - 1] != '\n') {
      return MakeError(ErrorCode::kCorruptData, where + ": malformed pax record");
    }
    const std::string_view record = data.substr(space + 1, length - space - 2);
    data.remove_prefix(length);
    const size_t eq = record.find('=');
    if (eq == std::string_view::npos) {
      return MakeError(ErrorCode::kCorruptData, where + ": pax record without '='");
    }
    const std::string_view key = record.substr(0, eq);
    const std::string_view value = record.substr(eq + 1);
    if (key == "path") {
      out.path = std::string(value);
    } else if (key == "size") {
      uint64_t size = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), size);
      if (ec != std::errc() || ptr != value.data() + value.size() || size > uint64_t{INT64_MAX}) {
        return MakeError(ErrorCode::kCorruptData,
                         where + ": pax size \"" + std::string(value) + "\" is not a size");
      }
      out.size = size;
    }
  }
  return out;
}

}  // namespace

std::optional<uint64_t> ParseTarNumber(std::span<const std::byte> field) {
  if (field.empty()) {
    return std::nullopt;
  }
  const auto first = std::to_integer<uint8_t>(field[0]);
  if ((first & 0x80U) != 0) {  // GNU base-256; 0xff would be negative
    if (first == 0xff) {
      return std::nullopt;
    }
    uint64_t value = first & 0x7fU;
    for (size_t i = 1; i < field.size(); ++i) {
      if (value > (uint64_t{INT64_MAX} >> 8)) {
        return std::nullopt;
      }
      value = (value << 8) | std::to_integer<uint8_t>(field[i]);
    }
    return value;
  }
  size_t i = 0;
  while (i < field.size() && std::to_integer<char>(field[i]) == ' ') {
    ++i;
  }
  uint64_t value = 0;
  bool digits = false;
  for (; i < field.size(); ++i) {
    const char c = std::to_integer<char>(field[i]);
    if (c == '\0' || c == ' ') {
      break;
    }
    if (c < '0' || c > '7' || value > (uint64_t{INT64_MAX} >> 3)) {
      return std::nullopt;
    }
    value = value * 8 + static_cast<uint64_t>(c - '0');
    digits = true;
  }
  for (; i < field.size(); ++i) {  // only padding may follow
    const char c = std::to_integer<char>(field[i]);
    if (c != '\0' && c != ' ') {
      return std::nullopt;
    }
  }
  if (!digits) {
    return uint64_t{0};
  }
  return value;
}

uint64_t TarEntry::EndOffset() const { return data_offset + size + Padding(size); }

TarReader::TarReader(disk::ByteSource& source, std::string archive_name, uint64_t start_offset,
                     SkipFunction skip)
    : source_(source),
      archive_name_(std::move(archive_name)),
      skip_(std::move(skip)),
      offset_(start_offset),
      data_(*this) {}

core::Error TarReader::Truncated(std::string_view what) const {
  return {ErrorCode::kCorruptData, archive_name_ + ": truncated archive: it ends at offset " +
                                       std::to_string(offset_) + " inside " + std::string(what)};
}

core::Result<size_t> TarReader::ReadSome(std::stop_token stop, std::span<std::byte> out) {
  auto n = source_.Read(std::move(stop), out);
  if (!n) {
    return MakeError(n.error());
  }
  offset_ += *n;
  return *n;
}

core::Result<bool> TarReader::ReadBlock(std::stop_token stop,
                                        std::span<std::byte, kTarBlockSize> block) {
  size_t got = 0;
  while (got < block.size()) {
    auto n = ReadSome(stop, std::span<std::byte>(block).subspan(got));
    if (!n) {
      return MakeError(n.error());
    }
    if (*n == 0) {
      if (got == 0) {
        return false;
      }
      return MakeError(Truncated("a header block"));
    }
    got += *n;
  }
  return true;
}

core::Status TarReader::Skip(std::stop_token stop, uint64_t bytes) {
  if (bytes == 0) {
    return {};
  }
  if (skip_) {
    if (auto st = skip_(stop, bytes); !st) {
      return MakeError(current_ ? st.error().Wrap("the data of " + current_->name) : st.error());
    }
    offset_ += bytes;
    return {};
  }
  std::vector<std::byte> scratch(static_cast<size_t>(std::min<uint64_t>(bytes, 256U << 10)));
  while (bytes > 0) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(bytes, scratch.size()));
    auto n = ReadSome(stop, std::span(scratch).first(want));
    if (!n) {
      return MakeError(n.error());
    }
    if (*n == 0) {
      return MakeError(
          Truncated(current_ ? "the data of " + current_->name : std::string("entry data")));
    }
    bytes -= *n;
  }
  return {};
}

core::Result<std::string> TarReader::ReadSmallData(std::stop_token stop, uint64_t size,
                                                   const char* what) {
  if (size > kMaxMetadataBytes) {
    return MakeError(ErrorCode::kCorruptData, archive_name_ + ": " + what + " at offset " +
                                                  std::to_string(offset_) + " has " +
                                                  std::to_string(size) + " bytes (at most " +
                                                  std::to_string(kMaxMetadataBytes) + ")");
  }
  std::string data(disk::CheckedCast<size_t>(size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    auto n = ReadSome(stop, std::as_writable_bytes(std::span(data)).subspan(got));
    if (!n) {
      return MakeError(n.error());
    }
    if (*n == 0) {
      return MakeError(Truncated(what));
    }
    got += *n;
  }
  if (auto st = Skip(stop, Padding(size)); !st) {
    return MakeError(st.error());
  }
  return data;
}

core::Result<std::optional<TarEntry>> TarReader::Next(std::stop_token stop) {
  if (ended_) {
    return std::optional<TarEntry>();
  }
  if (current_) {
    if (auto st = Skip(stop, remaining_ + Padding(current_->size)); !st) {
      return MakeError(st.error());
    }
    current_.reset();
    remaining_ = 0;
  }
  std::optional<std::string> long_name;
  PaxValues pax;
  std::optional<uint64_t> first_header;
  std::array<std::byte, kTarBlockSize> block{};
  while (true) {
    const uint64_t header_offset = offset_;
    auto got = ReadBlock(stop, block);
    if (!got) {
      return MakeError(got.error());
    }
    if (!*got) {
      if (first_header) {
        return MakeError(Truncated("the headers of an entry"));
      }
      ended_ = true;
      return std::optional<TarEntry>();
    }
    if (AllZero(block)) {
      if (first_header) {
        return MakeError(ErrorCode::kCorruptData,
                         archive_name_ + ": end-of-archive block at offset " +
                             std::to_string(header_offset) + " after a pax or long-name header");
      }
      ended_ = true;
      return std::optional<TarEntry>();
    }
    const std::string where =
        archive_name_ + ": tar header at offset " + std::to_string(header_offset);
    if (!ChecksumOk(block)) {
      return MakeError(ErrorCode::kCorruptData, where + ": checksum mismatch (not a tar archive?)");
    }
    auto size = ParseTarNumber(std::span(block).subspan(kSizeOffset, kSizeSize));
    if (!size) {
      return MakeError(ErrorCode::kCorruptData, where + ": malformed size field");
    }
    if (!first_header) {
      first_header = header_offset;
    }
    const char type = std::to_integer<char>(block[kTypeOffset]);
    if (type == 'L') {
      auto name = ReadSmallData(stop, *size, "a GNU long name");
      if (!name) {
        return MakeError(name.error());
      }
      long_name = std::string(name->c_str());  // NUL-terminated inside its data
      continue;
    }
    if (type == 'x' || type == 'g') {
      auto records = ReadSmallData(stop, *size, "a pax header");
      if (!records) {
        return MakeError(records.error());
      }
      if (type == 'g') {
        continue;  // global defaults: none that we use
      }
      auto values = ParsePax(*records, where);
      if (!values) {
        return MakeError(values.error());
      }
      if (values->path) {
        pax.path = values->path;
      }
      if (values->size) {
        pax.size = values->size;
      }
      continue;
    }
    if (type == 'K') {
      if (auto st = Skip(stop, *size + Padding(*size)); !st) {
        return MakeError(st.error());
      }
      continue;
    }
    TarEntry entry;
    entry.type = type;
    entry.header_offset = *first_header;
    entry.data_offset = offset_;
    entry.size = pax.size ? *pax.size : *size;
    if (pax.path) {
      entry.name = *pax.path;
    } else if (long_name) {
      entry.name = *long_name;
    } else {
      entry.name = Field(block, kNameOffset, kNameSize);
      const bool ustar = std::memcmp(block.data() + kMagicOffset, "ustar", 5) == 0;
      const std::string prefix = ustar ? Field(block, kPrefixOffset, kPrefixSize) : "";
      if (!prefix.empty()) {
        entry.name = prefix + "/" + entry.name;
      }
    }
    entry.name = StripDotSlash(std::move(entry.name));
    remaining_ = entry.size;
    current_ = entry;
    return std::optional<TarEntry>(std::move(entry));
  }
}

core::Result<size_t> TarReader::EntryData::Read(std::stop_token stop, std::span<std::byte> out) {
  TarReader& r = reader_;
  if (!r.current_ || r.remaining_ == 0 || out.empty()) {
    return size_t{0};
  }
  const size_t want = static_cast<size_t>(std::min<uint64_t>(out.size(), r.remaining_));
  auto n = r.ReadSome(std::move(stop), out.first(want));
  if (!n) {
    return MakeError(n.error());
  }
  if (*n == 0) {
    return MakeError(ErrorCode::kCorruptData,
                     r.archive_name_ + ": truncated archive: " + r.current_->name + " ends after " +
                         std::to_string(r.current_->size - r.remaining_) + " of " +
                         std::to_string(r.current_->size) + " bytes");
  }
  r.remaining_ -= *n;
  return *n;
}

}  // namespace vmimport::ovf
