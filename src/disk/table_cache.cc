#include "disk/table_cache.h"

#include <algorithm>
#include <cassert>

#include "disk/checked_cast.h"

namespace vmimport::disk {

void TableWindow::Select(uint64_t offset, uint64_t entry_count, size_t entry_bytes) {
  if (loaded_ && offset == offset_ && entry_count == entry_count_ && entry_bytes == entry_bytes_) {
    return;
  }
  offset_ = offset;
  entry_count_ = entry_count;
  entry_bytes_ = entry_bytes;
  loaded_ = false;
}

Result<const std::byte*> TableWindow::Entry(std::stop_token stop, uint64_t index) {
  assert(index < entry_count_ && "TableWindow::Entry out of range");
  if (!loaded_ || index < first_ || index >= first_ + count_) {
    first_ = index - index % window_entries_;
    count_ = std::min<uint64_t>(window_entries_, entry_count_ - first_);
    bytes_.resize(CheckedCast<size_t>(count_ * entry_bytes_));
    auto st = source_.ReadAt(stop, offset_ + first_ * entry_bytes_, bytes_);
    if (!st) {
      loaded_ = false;
      return core::MakeError(st.error());
    }
    loaded_ = true;
  }
  return bytes_.data() + CheckedCast<size_t>((index - first_) * entry_bytes_);
}

}  // namespace vmimport::disk
