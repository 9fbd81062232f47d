#include "source/libvirt/extents.h"

#include <algorithm>

namespace vmimport::source::libvirt {

void AppendRange(std::vector<warm::ChangedRange>& out, warm::ChangedRange r) {
  if (r.length == 0) {
    return;
  }
  if (!out.empty()) {
    warm::ChangedRange& last = out.back();
    if (last.offset + last.length == r.offset && last.zero == r.zero) {
      last.length += r.length;
      return;
    }
  }
  out.push_back(r);
}

uint64_t AddBlockStatus(std::vector<warm::ChangedRange>& out, StatusContext context,
                        uint64_t offset, std::span<const uint32_t> entries, uint64_t disk_size) {
  uint64_t at = offset;
  for (size_t i = 0; i + 1 < entries.size() && at < disk_size; i += 2) {
    const uint64_t length = std::min<uint64_t>(entries[i], disk_size - at);
    const uint32_t flags = entries[i + 1];
    if (context == StatusContext::kAllocation) {
      AppendRange(out, {at, length, (flags & 2U) != 0});
    } else if ((flags & 1U) != 0) {
      AppendRange(out, {at, length, false});
    }
    at += length;
  }
  return at;
}

std::vector<warm::ChangedRange> RoundOut(std::span<const warm::ChangedRange> ranges,
                                         uint64_t granularity, uint64_t disk_size) {
  std::vector<warm::ChangedRange> widened;
  for (const warm::ChangedRange& r : ranges) {
    if (r.length == 0 || r.offset >= disk_size) {
      continue;
    }
    const uint64_t start = r.offset / granularity * granularity;
    const uint64_t end_raw = r.offset + r.length;
    const uint64_t end =
        std::min(disk_size, (end_raw + granularity - 1) / granularity * granularity);
    widened.push_back({start, end - start, false});
  }
  std::sort(widened.begin(), widened.end(),
            [](const auto& a, const auto& b) { return a.offset < b.offset; });
  std::vector<warm::ChangedRange> out;
  for (const warm::ChangedRange& r : widened) {
    if (!out.empty() && r.offset <= out.back().offset + out.back().length) {
      const uint64_t end = std::max(out.back().offset + out.back().length, r.offset + r.length);
      out.back().length = end - out.back().offset;
    } else {
      out.push_back(r);
    }
  }
  return out;
}

uint64_t TotalBytes(std::span<const warm::ChangedRange> ranges, bool with_zero) {
  uint64_t total = 0;
  for (const warm::ChangedRange& r : ranges) {
    if (with_zero || !r.zero) {
      total += r.length;
    }
  }
  return total;
}

}  // namespace vmimport::source::libvirt
