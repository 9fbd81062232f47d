#include "bundle/tar_gz.h"

#include <array>
#include <cstdio>
#include <cstring>

namespace vmimport::bundle {
namespace {

constexpr size_t kBlock = 512;

// An octal field of `width` bytes: digits, then NUL.
void Octal(char* field, size_t width, uint64_t value) {
  field[width - 1] = '\0';
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
}

bool SafeName(std::string_view name) {
  if (name.empty() || name.front() == '/' || name.find('\0') != std::string_view::npos) {
    return false;
  }
  size_t start = 0;
  while (start <= name.size()) {
    const size_t end = std::min(name.find('/', start), name.size());
    if (name.substr(start, end - start) == "..") {
      return false;
    }
    start = end + 1;
  }
  return true;
}

}  // namespace

core::Result<std::unique_ptr<TarGzWriter>> TarGzWriter::Create(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "wb6");
  if (f == nullptr) {
    return core::MakeError(
        core::ErrorCode::kUnavailable,
        "bundle: " + path + ": cannot open for writing: " + std::strerror(errno));
  }
  return std::unique_ptr<TarGzWriter>(new TarGzWriter(f, path));
}

TarGzWriter::~TarGzWriter() {
  if (file_ != nullptr) {
    gzclose(file_);
  }
}

core::Status TarGzWriter::Write(const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(size, 1U << 30));
    if (gzwrite(file_, p, chunk) != static_cast<int>(chunk)) {
      int err = 0;
      return core::MakeError(core::ErrorCode::kUnavailable,
                             "bundle: " + path_ + ": write failed: " + gzerror(file_, &err));
    }
    p += chunk;
    size -= chunk;
  }
  return {};
}

core::Status TarGzWriter::Add(std::string_view name, std::string_view data,
                              std::chrono::system_clock::time_point mtime) {
  if (file_ == nullptr) {
    return core::MakeError(core::ErrorCode::kInternal, "bundle: " + path_ + ": already closed");
  }
  if (!SafeName(name)) {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           "bundle: entry name \"" + std::string(name) + "\" is not relative");
  }
  if (data.size() >= (uint64_t{1} << 33)) {  // 11 octal digits
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           "bundle: entry " + std::string(name) + " is 8 GiB or more");
  }
  std::array<char, kBlock> h{};
  std::string_view prefix;
  std::string_view base = name;
  if (name.size() > 100) {
    const size_t slash = name.rfind('/', 155);
    if (slash == std::string_view::npos || name.size() - slash - 1 > 100 || slash == 0) {
      return core::MakeError(core::ErrorCode::kInvalidArgument,
                             "bundle: entry name too long for ustar: " + std::string(name));
    }
    prefix = name.substr(0, slash);
    base = name.substr(slash + 1);
  }
  std::memcpy(h.data(), base.data(), base.size());
  Octal(h.data() + 100, 8, 0644);
  Octal(h.data() + 108, 8, 0);
  Octal(h.data() + 116, 8, 0);
  Octal(h.data() + 124, 12, data.size());
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(mtime.time_since_epoch());
  Octal(h.data() + 136, 12, static_cast<uint64_t>(std::max<int64_t>(0, secs.count())));
  std::memset(h.data() + 148, ' ', 8);  // the checksum is computed with its field as spaces
  h[156] = '0';
  std::memcpy(h.data() + 257, "ustar", 6);
  std::memcpy(h.data() + 263, "00", 2);
  std::memcpy(h.data() + 265, "root", 4);
  std::memcpy(h.data() + 297, "root", 4);
  if (!prefix.empty()) {  // an empty view's data() may be null, which memcpy must not get
    std::memcpy(h.data() + 345, prefix.data(), prefix.size());
  }
  unsigned sum = 0;
  for (char c : h) {
    sum += static_cast<unsigned char>(c);
  }
  Octal(h.data() + 148, 7, sum);  // six digits, NUL, then the space that stays
  h[155] = ' ';
  if (auto st = Write(h.data(), h.size()); !st) {
    return st;
  }
  if (auto st = Write(data.data(), data.size()); !st) {
    return st;
  }
  const std::array<char, kBlock> zeros{};
  const size_t pad = (kBlock - data.size() % kBlock) % kBlock;
  return Write(zeros.data(), pad);
}

core::Status TarGzWriter::Close() {
  if (file_ == nullptr) {
    return {};
  }
  const std::array<char, kBlock * 2> zeros{};
  auto st = Write(zeros.data(), zeros.size());
  const int rc = gzclose(file_);
  file_ = nullptr;
  if (!st) {
    return st;
  }
  if (rc != Z_OK) {
    return core::MakeError(
        core::ErrorCode::kUnavailable,
        "bundle: " + path_ + ": closing failed (zlib " + std::to_string(rc) + ")");
  }
  return {};
}

}  // namespace vmimport::bundle
