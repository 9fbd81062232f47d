#pragma once

// Pure extent arithmetic of the warm change tracker: NBD block status answers (a list of
// (length, flags) pairs from an offset) turned into the sorted, non-overlapping ranges of the
// seam (warm/change_tracker.h), and ranges rounded out to a dirty bitmap's granularity.

#include <cstdint>
#include <span>
#include <vector>

#include "warm/change_tracker.h"

namespace vmimport::source::libvirt {

//! Which meta context a block status answer is of.
enum class StatusContext {
  kAllocation,   //!< "base:allocation": bit 1 (2) = reads as zeros; the rest holds data
  kDirtyBitmap,  //!< "qemu:dirty-bitmap:...": bit 0 (1) = written since the checkpoint
};

//! Appends `r` to `out` (sorted, non-overlapping), merged into the last range when they touch
//! and have the same `zero`. A range of length 0 is dropped. `r` must start at or after the end
//! of out's last range.
void AppendRange(std::vector<warm::ChangedRange>& out, warm::ChangedRange r);

//! Adds the ranges of one block status answer: `entries` are (length, flags) pairs from
//! `offset` (NBD's layout). kAllocation: every range, zero = true where the flags say zeros;
//! kDirtyBitmap: only dirty ranges (zero = false). Clipped to `disk_size`. Returns the offset
//! just after the last entry (where the next request starts), at most disk_size.
uint64_t AddBlockStatus(std::vector<warm::ChangedRange>& out, StatusContext context,
                        uint64_t offset, std::span<const uint32_t> entries, uint64_t disk_size);

//! Each range widened to whole `granularity` blocks (a power of two), clipped to `disk_size`,
//! overlapping or touching ranges merged (zero = false): what a dirty bitmap of that granularity
//! reports for writes to `ranges`.
std::vector<warm::ChangedRange> RoundOut(std::span<const warm::ChangedRange> ranges,
                                         uint64_t granularity, uint64_t disk_size);

//! Sum of the lengths (zero = true ranges included only when `with_zero`).
uint64_t TotalBytes(std::span<const warm::ChangedRange> ranges, bool with_zero);

}  // namespace vmimport::source::libvirt
