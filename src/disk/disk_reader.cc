#include "disk/disk_reader.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "disk/checked_cast.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

Result<size_t> PositionedDiskReader::Read(std::stop_token stop, std::span<std::byte> out) {
  if (error_) {
    return MakeError(*error_);
  }
  if (stop.stop_requested()) {
    return CancelledError();
  }
  auto fail = [this](core::Error e) {
    error_ = e;
    return MakeError(std::move(e));
  };
  if (position_ == virtual_size_) {
    if (!complete_checked_) {
      complete_checked_ = true;
      auto st = CheckComplete(stop);
      if (!st) {
        return fail(st.error());
      }
    }
    return size_t{0};
  }
  if (out.empty()) {
    return size_t{0};
  }
  const auto want = CheckedCast<size_t>(std::min<uint64_t>(out.size(), virtual_size_ - position_));
  auto n = ReadAtPosition(stop, position_, out.first(want));
  if (!n) {
    return fail(n.error());
  }
  if (*n == 0 || *n > want) {
    return fail(core::Error{ErrorCode::kInternal,
                            std::string(FormatName()) + ": decoder returned " + std::to_string(*n) +
                                " bytes at disk offset " + std::to_string(position_)});
  }
  if (position_ + *n == virtual_size_) {
    // Hand out the last bytes only once nothing can be missing.
    complete_checked_ = true;
    auto st = CheckComplete(stop);
    if (!st) {
      return fail(st.error());
    }
  }
  position_ += *n;
  return *n;
}

uint64_t RoundUpToSector(uint64_t size) { return (size + 511) / 512 * 512; }

RawReader::RawReader(RandomAccessSourcePtr source)
    : PositionedDiskReader(RoundUpToSector(source->Size())), source_(std::move(source)) {}

Result<size_t> RawReader::ReadAtPosition(std::stop_token stop, uint64_t position,
                                         std::span<std::byte> out) {
  const uint64_t data_size = source_->Size();
  if (position >= data_size) {
    std::memset(out.data(), 0, out.size());  // the padding of the last sector
    return out.size();
  }
  const auto n = CheckedCast<size_t>(std::min<uint64_t>(out.size(), data_size - position));
  auto st = source_->ReadAt(stop, position, out.first(n));
  if (!st) {
    return MakeError(st.error());
  }
  return n;
}

RawStreamReader::RawStreamReader(ByteSourcePtr source, uint64_t size)
    : PositionedDiskReader(RoundUpToSector(size)), source_(std::move(source)), data_size_(size) {}

Result<size_t> RawStreamReader::ReadAtPosition(std::stop_token stop, uint64_t position,
                                               std::span<std::byte> out) {
  if (position >= data_size_) {
    std::memset(out.data(), 0, out.size());
    return out.size();
  }
  out = out.first(CheckedCast<size_t>(std::min<uint64_t>(out.size(), data_size_ - position)));
  auto n = source_->Read(stop, out);
  if (!n) {
    return MakeError(n.error());
  }
  if (*n == 0) {
    return MakeError(ErrorCode::kCorruptData,
                     "raw: stream ended at offset " + std::to_string(position) +
                         " before the announced size " + std::to_string(data_size_));
  }
  return *n;
}

Status RawStreamReader::CheckComplete(std::stop_token stop) {
  std::array<std::byte, 1> probe{};
  auto n = source_->Read(stop, probe);
  if (!n) {
    return MakeError(n.error());
  }
  if (*n != 0) {
    return MakeError(ErrorCode::kCorruptData,
                     "raw: stream continues past the announced size (offset " +
                         std::to_string(data_size_) + ")");
  }
  return core::Ok();
}

}  // namespace vmimport::disk
