#include "disk/sparse_gzip.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>
#include <vector>

namespace vmimport::disk {
namespace {

std::vector<std::byte> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) {
    b = static_cast<std::byte>(rng() & 0xff);
  }
  return out;
}

//! zlib's gzip decoder (windowBits 16 + 15): the whole member, trailer checked.
std::vector<std::byte> Gunzip(const std::vector<std::byte>& in, size_t expect) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 16 + 15), Z_OK);
  std::vector<std::byte> out(expect + 1);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  EXPECT_EQ(rc, Z_STREAM_END) << (z.msg != nullptr ? z.msg : "");
  EXPECT_EQ(z.avail_in, 0u) << "bytes after the member";
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

std::vector<std::byte> Encode(const std::vector<std::byte>& disk, size_t chunk) {
  std::vector<std::byte> wire;
  SparseGzipEncoder enc(wire);
  for (size_t pos = 0; pos < disk.size(); pos += chunk) {
    enc.Add(std::span<const std::byte>(disk).subspan(pos, std::min(chunk, disk.size() - pos)),
            wire);
  }
  enc.Finish(wire);
  return wire;
}

TEST(SparseGzip, MixedDiskDecodesToItsBytesWhateverTheChunking) {
  // Data, zero runs of odd lengths, a zero run shorter than a block, data of 1 byte.
  std::vector<std::byte> disk = Random(70000, 1);
  disk.resize(disk.size() + 3 * 4096 + 7, std::byte{0});
  const auto more = Random(1, 2);
  disk.insert(disk.end(), more.begin(), more.end());
  disk.resize(disk.size() + 300000, std::byte{0});
  const auto tail = Random(5000, 3);
  disk.insert(disk.end(), tail.begin(), tail.end());
  disk.resize(disk.size() + 100, std::byte{0});
  for (size_t chunk : {size_t{1} << 20, size_t{4096}, size_t{4095}, size_t{65537}, size_t{3}}) {
    const auto wire = Encode(disk, chunk);
    EXPECT_EQ(Gunzip(wire, disk.size()), disk) << "chunk " << chunk;
  }
}

TEST(SparseGzip, EmptyDiskIsAValidEmptyMember) {
  const auto wire = Encode({}, 4096);
  EXPECT_TRUE(Gunzip(wire, 0).empty());
}

TEST(SparseGzip, ZerosCostUnderOnePercentAndDataUnderATenthOfAPercentMore) {
  std::vector<std::byte> zeros(64 << 20, std::byte{0});
  const auto zwire = Encode(zeros, 1 << 20);
  EXPECT_LT(zwire.size(), zeros.size() / 100) << zwire.size();
  EXPECT_EQ(Gunzip(zwire, zeros.size()), zeros);
  const auto data = Random(8 << 20, 4);
  const auto dwire = Encode(data, 1 << 20);
  EXPECT_LT(dwire.size(), data.size() + data.size() / 1000) << dwire.size();
  EXPECT_EQ(Gunzip(dwire, data.size()), data);
}

TEST(SparseGzip, Crc32OfZerosMatchesZlib) {
  const std::vector<Bytef> zeros(100000, 0);
  const uLong start = crc32(0, reinterpret_cast<const Bytef*>("abc"), 3);
  for (uint64_t n : {uint64_t{0}, uint64_t{1}, uint64_t{4096}, uint64_t{99999}}) {
    EXPECT_EQ(Crc32OfZeros(static_cast<uint32_t>(start), n),
              crc32(start, zeros.data(), static_cast<uInt>(n)))
        << n;
  }
}

}  // namespace
}  // namespace vmimport::disk
