#include "disk/extent.h"

#include <algorithm>
#include <cstring>

#include "disk/checked_cast.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

namespace {

uint64_t TotalSize(const std::vector<ExtentSlot>& slots) {
  uint64_t total = 0;
  for (const auto& s : slots) {
    total += s.size;
  }
  return total;
}

}  // namespace

Result<size_t> ZeroExtent::ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out) {
  (void)stop;
  (void)offset;
  std::memset(out.data(), 0, out.size());
  return out.size();
}

Result<std::unique_ptr<FlatExtent>> FlatExtent::Open(RandomAccessSourcePtr source, uint64_t start,
                                                     uint64_t size) {
  const uint64_t have = source->Size();
  if (start > have || size > have - start) {
    return MakeError(ErrorCode::kCorruptData,
                     "vmdk: flat extent " + source->Name() + ": truncated: holds " +
                         std::to_string(have) + " bytes, the descriptor needs " +
                         std::to_string(size) + " bytes from offset " + std::to_string(start));
  }
  return std::unique_ptr<FlatExtent>(new FlatExtent(std::move(source), start, size));
}

Result<size_t> FlatExtent::ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out) {
  auto st = source_->ReadAt(stop, start_ + offset, out);
  if (!st) {
    return MakeError(st.error());
  }
  return out.size();
}

ExtentListReader::ExtentListReader(std::vector<ExtentSlot> slots, std::string format_name)
    : PositionedDiskReader(TotalSize(slots)),
      slots_(std::move(slots)),
      format_name_(std::move(format_name)) {}

Result<size_t> ExtentListReader::ReadAtPosition(std::stop_token stop, uint64_t position,
                                                std::span<std::byte> out) {
  // Reads go front to back: move to the slot holding `position`, skipping empty ones.
  while (current_ < slots_.size() && position >= current_start_ + slots_[current_].size) {
    current_start_ += slots_[current_].size;
    ++current_;
    open_.reset();
  }
  if (current_ >= slots_.size() || position < current_start_) {
    return MakeError(ErrorCode::kInternal,
                     format_name_ + ": no extent for disk offset " + std::to_string(position));
  }
  const ExtentSlot& slot = slots_[current_];
  if (!open_) {
    auto extent = slot.open(stop);
    if (!extent) {
      return MakeError(extent.error());
    }
    if ((*extent)->Size() < slot.size) {
      return MakeError(ErrorCode::kCorruptData,
                       format_name_ + ": extent " + std::to_string(current_) + " (disk offset " +
                           std::to_string(current_start_) + ") holds " +
                           std::to_string((*extent)->Size()) + " bytes, the descriptor needs " +
                           std::to_string(slot.size));
    }
    open_ = std::move(*extent);
  }
  const uint64_t in_extent = position - current_start_;
  const auto n = CheckedCast<size_t>(std::min<uint64_t>(out.size(), slot.size - in_extent));
  return open_->ReadAt(stop, in_extent, out.first(n));
}

}  // namespace vmimport::disk
