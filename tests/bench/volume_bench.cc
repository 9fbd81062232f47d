// vmimport-volume-bench: zeros off the wire (issue 19, item 6). The image server serves a 1 GiB
// disk as volume mode serves it (imageserver::Encoding::kSparseGzip, what CDI's importer decodes
// while it streams) and as image mode serves it (raw, Content-Length = virtual size), to a client
// on 127.0.0.1 that reads the whole body; for a disk that is 95% zeros (each 1 MiB: 5% random
// bytes, then zeros, as a thin disk's few written extents) and for a random one. Prints
// "name value unit" lines: bytes on the wire and seconds per case, and the gzip body's size
// relative to the disk. The decoder is an in-memory generator, so the figures are the serving
// path's alone (no source, no checksums: --disk-checksums=none).
//
//   build/ci/tests/bench/vmimport-volume-bench [--quick] (--quick: 256 MiB disks)

#include <chrono>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/log.h"
#include "disk/disk_reader.h"
#include "http/client.h"
#include "imageserver/image_server.h"

namespace vmimport {
namespace {

//! A disk of `size` bytes whose every 1 MiB starts with `data_per_mib` random bytes (a fixed
//! pattern, generated once) and is zero after them.
class PatternDisk final : public disk::DiskReader {
 public:
  PatternDisk(uint64_t size, size_t data_per_mib) : size_(size), data_per_mib_(data_per_mib) {
    std::mt19937_64 rng(42);
    mib_.resize(size_t{1} << 20);
    for (size_t i = 0; i < data_per_mib_; i += 8) {
      const uint64_t v = rng();
      std::memcpy(mib_.data() + i, &v, std::min<size_t>(8, data_per_mib_ - i));
    }
  }
  // disk::DiskReader
  uint64_t VirtualSize() const override { return size_; }
  std::string_view FormatName() const override { return "pattern"; }
  core::Result<size_t> Read(std::stop_token, std::span<std::byte> out) override {
    const uint64_t left = size_ - pos_;
    size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), left));
    const size_t in_mib = static_cast<size_t>(pos_ % mib_.size());
    n = std::min(n, mib_.size() - in_mib);
    std::memcpy(out.data(), mib_.data() + in_mib, n);
    pos_ += n;
    return n;
  }

 private:
  uint64_t size_;
  size_t data_per_mib_;
  std::vector<std::byte> mib_;
  uint64_t pos_ = 0;
};

void Figure(const std::string& name, double value, const std::string& unit) {
  std::cout << name << " " << std::setprecision(unit == "bytes" ? 15 : 4) << value << " " << unit
            << "\n"
            << std::flush;
}

int Run(bool quick) {
  const uint64_t size = quick ? (uint64_t{256} << 20) : (uint64_t{1} << 30);
  core::SystemClock clock;
  imageserver::ServerConfig config;
  config.checksums = imageserver::ChecksumPolicy::kNone;
  auto server = imageserver::ImageServer::Start(config, nullptr, clock, core::Logger());
  if (!server) {
    std::cerr << server.error().ToString() << "\n";
    return 1;
  }
  auto client = http::Client::Create({});
  if (!client) {
    std::cerr << client.error().ToString() << "\n";
    return 1;
  }
  struct Case {
    std::string disk;
    size_t data_per_mib;
  };
  const std::vector<Case> cases{{"sparse95", (size_t{1} << 20) / 20}, {"random", size_t{1} << 20}};
  for (const Case& c : cases) {
    for (const auto encoding : {imageserver::Encoding::kRaw, imageserver::Encoding::kSparseGzip}) {
      const std::string enc = encoding == imageserver::Encoding::kRaw ? "raw" : "sparse_gzip";
      auto pub = (*server)->Publish(
          [size, c](std::stop_token) -> core::Result<disk::DiskReaderPtr> {
            return disk::DiskReaderPtr(std::make_unique<PatternDisk>(size, c.data_per_mib));
          },
          {.name = c.disk, .encoding = encoding});
      if (!pub) {
        std::cerr << pub.error().ToString() << "\n";
        return 1;
      }
      uint64_t wire = 0;
      const auto start = std::chrono::steady_clock::now();
      auto r = (*client)->Stream(
          {}, {.method = "GET", .url = pub->url}, [](const http::Response&) { return true; },
          [&](std::string_view chunk) {
            wire += chunk.size();
            return true;
          });
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (!r || r->status != 200) {
        std::cerr << c.disk << " " << enc << ": "
                  << (r ? std::to_string(r->status) : r.error().ToString()) << "\n";
        return 1;
      }
      const std::string name = "volume_" + c.disk + "_" + std::to_string(size >> 20) + "MiB_" + enc;
      Figure(name + "_wire_bytes", static_cast<double>(wire), "bytes");
      Figure(name + "_wire_ratio", static_cast<double>(wire) / static_cast<double>(size), "x");
      Figure(name + "_seconds", seconds, "s");
      Figure(name + "_disk_rate", static_cast<double>(size) / seconds / 1e6, "MB/s");
      (*server)->Unpublish(pub->token);
    }
  }
  return 0;
}

}  // namespace
}  // namespace vmimport

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  return vmimport::Run(quick);
}
