#include "vmware_stream.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "disk/bytes.h"

namespace vmimport::disk::testing {

namespace {

constexpr uint64_t kSector = 512;
constexpr uint64_t kGrainSectors = 128;
constexpr uint64_t kGrainBytes = kGrainSectors * kSector;
constexpr uint32_t kGtes = 512;

std::vector<std::byte> Compress(const std::byte* data, size_t n, bool raw) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, raw ? -15 : 15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("deflateInit2");
  }
  std::vector<std::byte> out(deflateBound(&z, static_cast<uLong>(n)));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(data));
  z.avail_in = static_cast<uInt>(n);
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
    throw std::runtime_error("deflate");
  }
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void PadToSector(std::vector<std::byte>& out) {
  out.resize((out.size() + kSector - 1) / kSector * kSector);
}

void Header(std::byte* p, uint64_t capacity_sectors, uint64_t gd_offset) {
  std::memset(p, 0, kSector);
  std::memcpy(p, "KDMV", 4);
  StoreLe32(p + 4, 3);
  StoreLe32(p + 8, 0x30001);  // newline test, compressed, markers
  StoreLe64(p + 12, capacity_sectors);
  StoreLe64(p + 20, kGrainSectors);
  StoreLe64(p + 28, 1);  // descriptor at sector 1
  StoreLe64(p + 36, 1);
  StoreLe32(p + 44, kGtes);
  StoreLe64(p + 48, 0);
  StoreLe64(p + 56, gd_offset);
  StoreLe64(p + 64, 128);  // overHead
  p[73] = std::byte{'\n'};
  p[74] = std::byte{' '};
  p[75] = std::byte{'\r'};
  p[76] = std::byte{'\n'};
  p[77] = std::byte{1};  // deflate
}

void MetadataMarker(std::vector<std::byte>& out, uint64_t sectors, uint32_t type) {
  const size_t at = out.size();
  out.resize(at + kSector);
  StoreLe64(out.data() + at, sectors);
  StoreLe32(out.data() + at + 8, 0);
  StoreLe32(out.data() + at + 12, type);
}

}  // namespace

std::vector<std::byte> MakeVmwareStream(const std::vector<std::byte>& data,
                                        const VmwareStreamOptions& options) {
  const uint64_t capacity_sectors = data.size() / kSector;
  std::vector<std::byte> out(kSector);
  Header(out.data(), options.capacity_in_header ? capacity_sectors : 0,
         options.gd_at_end ? 0xffffffffffffffffULL : 1000);
  const std::string descriptor =
      "# Disk DescriptorFile\nversion=1\nCID=12345678\n"
      "parentCID=ffffffff\ncreateType=\"streamOptimized\"\n"
      "RW " +
      std::to_string(capacity_sectors) + " SPARSE \"disk.vmdk\"\n";
  out.resize(128 * kSector);
  std::memcpy(out.data() + kSector, descriptor.data(), descriptor.size());

  if (options.extra_marker_type) {
    MetadataMarker(out, 0, *options.extra_marker_type);
  }
  const uint64_t grains = (data.size() + kGrainBytes - 1) / kGrainBytes;
  const uint64_t tables = (grains + kGtes - 1) / kGtes;
  std::vector<uint32_t> gd(tables, 0);
  std::vector<uint64_t> order;
  for (uint64_t g = 0; g < grains; ++g) {
    const size_t begin = g * kGrainBytes;
    const size_t len = std::min<size_t>(kGrainBytes, data.size() - begin);
    if (!IsAllZero(std::span<const std::byte>(data.data() + begin, len))) {
      order.push_back(g);
    }
  }
  if (options.swap_first_two_grains && order.size() >= 2) {
    std::swap(order[0], order[1]);
  }
  std::vector<uint32_t> gt(kGtes, 0);
  uint64_t current_table = 0;
  auto flush_table = [&](uint64_t table) {
    if (std::all_of(gt.begin(), gt.end(), [](uint32_t v) { return v == 0; })) {
      return;
    }
    MetadataMarker(out, 4, 1);
    gd[table] = static_cast<uint32_t>(out.size() / kSector);
    const size_t at = out.size();
    out.resize(at + 4 * kSector);
    for (uint32_t i = 0; i < kGtes; ++i) {
      StoreLe32(out.data() + at + 4 * i, gt[i]);
    }
    std::fill(gt.begin(), gt.end(), 0);
  };
  auto write_grain = [&](uint64_t lba, const std::byte* bytes, size_t len) {
    auto compressed = Compress(bytes, len, options.raw_deflate);
    const size_t at = out.size();
    out.resize(at + 12 + compressed.size());
    StoreLe64(out.data() + at, lba);
    StoreLe32(out.data() + at + 8, static_cast<uint32_t>(compressed.size()));
    std::memcpy(out.data() + at + 12, compressed.data(), compressed.size());
    PadToSector(out);
    return static_cast<uint32_t>(at / kSector);
  };
  bool first = true;
  for (uint64_t g : order) {
    if (g / kGtes != current_table) {
      flush_table(current_table);
      current_table = g / kGtes;
    }
    const size_t begin = g * kGrainBytes;
    size_t len = std::min<size_t>(kGrainBytes, data.size() - begin);
    if (first && options.truncate_first_grain_data) {
      len -= 1;
    }
    first = false;
    gt[g % kGtes] = write_grain(g * kGrainSectors, data.data() + begin, len);
  }
  flush_table(current_table);
  if (options.extra_grain_lba) {
    std::vector<std::byte> grain(kGrainBytes, std::byte{0x42});
    write_grain(*options.extra_grain_lba, grain.data(), grain.size());
  }

  const uint64_t gd_sectors = (tables * 4 + kSector - 1) / kSector;
  MetadataMarker(out, gd_sectors, 2);
  const uint64_t gd_offset = out.size() / kSector;
  const size_t gd_at = out.size();
  out.resize(gd_at + gd_sectors * kSector);
  for (uint64_t t = 0; t < tables; ++t) {
    StoreLe32(out.data() + gd_at + 4 * t, gd[t]);
  }
  if (options.write_footer) {
    MetadataMarker(out, 1, 3);
    const size_t at = out.size();
    out.resize(at + kSector);
    Header(out.data() + at, options.footer_capacity_sectors.value_or(capacity_sectors), gd_offset);
  }
  if (options.write_eos) {
    MetadataMarker(out, 0, 0);
  }
  return out;
}

}  // namespace vmimport::disk::testing
