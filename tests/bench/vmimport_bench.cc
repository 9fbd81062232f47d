// vmimport-bench: decode speed of the disk path against qemu-img, and what a stream costs.
// Prints one line per figure, "name value unit":
//   decode_MBps / qemu_img_MBps / decode_vs_qemu_img_ratio   streamOptimized VMDK of random data
//                                   to raw on /dev/null, against `qemu-img convert -O raw` to
//                                   qemu's null-co driver (its /dev/null) and to tmpfs
//   decode_mixed_MBps ... _mixed_ratio   the same on 256 MiB of compressible, disk-like data
//   decode_hashed_MBps              the same with sha256+sha512 on the way (what the server
//                                   does; _serial: both digests on the decoding thread)
//   inflate_<backend>_<data>_MBps   libdeflate vs zlib on the grains of real qemu-img VMDKs
//   four_vs_one_disk_ratio          aggregate throughput of 4 disks decoded+hashed at once vs 1
//                                   (as the server hashes: SHA-512 on a helper thread only while
//                                   cores are free); _helper_always_ and _serial_ variants: with
//                                   the helper always, and never
//   stream_peak_rss_MiB             VmHWM of a process that only decodes one stream
//   scratch_bytes_written           bytes the streaming decode wrote to storage (/proc/self/io)
// Usage: vmimport-bench [--quick] [--size-gib N] [--dir DIR] [--repeat N]
//   --quick: 256 MiB instead of 4 GiB (the bench_smoke ctest). Generated images are cached in
//   DIR (default $VMIMPORT_BENCH_DIR or /var/tmp/vmimport-bench) and reused.

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "disk/bytes.h"
#include "disk/hashing_reader.h"
#include "disk/inflate.h"
#include "disk/open.h"
#include "disk/vmdk_header.h"

namespace {

using namespace vmimport;
using Clock = std::chrono::steady_clock;

struct Options {
  uint64_t size_bytes = uint64_t{4} << 30;
  std::string dir;
  int repeat = 2;
  bool quick = false;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "vmimport-bench: %s\n", what.c_str());
  std::exit(1);
}

void Figure(const std::string& name, double value, const std::string& unit) {
  std::printf("%s %.3g %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Runs argv; returns wall seconds and the child's peak RSS (KiB).
std::pair<double, long> RunTimed(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  const auto start = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execvp(argv[0], argv.data());
    std::_Exit(127);
  }
  int status = 0;
  struct rusage usage {};
  if (pid < 0 || ::wait4(pid, &status, 0, &usage) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    Die("command failed: " + args[0] + " " + (args.size() > 1 ? args[1] : ""));
  }
  return {std::chrono::duration<double>(Clock::now() - start).count(), usage.ru_maxrss};
}

void Shell(const std::string& command) {
  if (std::system(command.c_str()) != 0) {
    Die("command failed: " + command);
  }
}

// Deterministic incompressible bytes, fast (xorshift).
void WriteRandomRaw(const std::string& path, uint64_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::vector<uint64_t> block(size_t{1} << 17);
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (uint64_t done = 0; done < size;) {
    for (auto& w : block) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      w = x;
    }
    const uint64_t n = std::min<uint64_t>(block.size() * 8, size - done);
    out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(n));
    done += n;
  }
  if (!out) {
    Die("writing " + path);
  }
}

// Disk-like compressible bytes: zero runs, text, and some random blocks.
void WriteMixedRaw(const std::string& path, uint64_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::mt19937_64 rng(42);
  static const char* kWords[] = {"kernel",    "vmlinuz",  "initrd",    "systemd",
                                 "/usr/lib/", "GLIBC_2.", "harvester", "0x00000000",
                                 "libc.so.6", "\n",       " ",         "ERROR"};
  std::string block;
  for (uint64_t done = 0; done < size;) {
    block.clear();
    const auto kind = rng() % 3;
    while (block.size() < 65536) {
      if (kind == 0) {
        block.append(4096, '\0');
      } else if (kind == 1) {
        block += kWords[rng() % (sizeof(kWords) / sizeof(kWords[0]))];
      } else {
        const uint64_t v = rng();
        block.append(reinterpret_cast<const char*>(&v), 8);
      }
    }
    const uint64_t n = std::min<uint64_t>(65536, size - done);
    out.write(block.data(), static_cast<std::streamsize>(n));
    done += n;
  }
}

// The streamOptimized VMDK of `kind` data, made by qemu-img once and cached.
std::string StreamVmdk(const Options& o, const std::string& kind, uint64_t size) {
  const std::string base = o.dir + "/" + kind + "-" + std::to_string(size);
  const std::string vmdk = base + ".vmdk";
  if (Exists(vmdk)) {
    return vmdk;
  }
  std::fprintf(stderr, "vmimport-bench: making %s (once)\n", vmdk.c_str());
  const std::string raw = base + ".raw";
  if (kind == "random") {
    WriteRandomRaw(raw, size);
  } else {
    WriteMixedRaw(raw, size);
  }
  Shell("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized '" + raw + "' '" + vmdk +
        ".tmp' && mv '" + vmdk + ".tmp' '" + vmdk + "'");
  ::unlink(raw.c_str());
  return vmdk;
}

void WarmPageCache(const std::string& path) { Shell("cat '" + path + "' > /dev/null"); }

struct DecodeRun {
  double seconds = 0;
  uint64_t bytes = 0;
};

// kSerial: SHA-512 on the reading thread; kParallel: always on a helper; kServer: what the image
// server does (the helper only while cores are free, disk::Sha512Thread::kWhenCoresAreFree).
enum class Hashing { kNone, kSerial, kParallel, kServer };

DecodeRun Decode(const std::string& path, disk::InflateBackend backend, Hashing hashing) {
  const auto start = Clock::now();
  auto reader = disk::OpenDiskFile({}, path, {.inflate_backend = backend});
  if (!reader) {
    Die(reader.error().ToString());
  }
  disk::DiskReaderPtr r = std::move(*reader);
  if (hashing != Hashing::kNone) {
    const disk::Sha512Thread where = hashing == Hashing::kSerial ? disk::Sha512Thread::kNever
                                     : hashing == Hashing::kParallel
                                         ? disk::Sha512Thread::kAlways
                                         : disk::Sha512Thread::kWhenCoresAreFree;
    r = std::make_unique<disk::HashingReader>(std::move(r), where);
  }
  const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  uint64_t bytes = 0;
  auto st = disk::DrainDisk({}, *r, size_t{1} << 20, [&](std::span<const std::byte> chunk) {
    if (::write(null_fd, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) {
      return core::Status(core::MakeError(core::ErrorCode::kInternal, "write /dev/null"));
    }
    bytes += chunk.size();
    return core::Ok();
  });
  ::close(null_fd);
  if (!st) {
    Die(st.error().ToString());
  }
  return {std::chrono::duration<double>(Clock::now() - start).count(), bytes};
}

uint64_t ProcField(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string k;
  uint64_t v = 0;
  while (in >> k) {
    if (k == key) {
      in >> v;
      return v;
    }
  }
  return 0;
}

// One decode in a child process: its VmHWM (KiB) and the bytes it wrote to storage.
std::pair<uint64_t, uint64_t> DecodeInChild(const std::string& path) {
  int fds[2];
  if (::pipe(fds) != 0) {
    Die("pipe");
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    const uint64_t written_before = ProcField("/proc/self/io", "write_bytes:");
    Decode(path, disk::kDefaultInflateBackend, Hashing::kParallel);
    uint64_t out[2] = {ProcField("/proc/self/status", "VmHWM:"),
                       ProcField("/proc/self/io", "write_bytes:") - written_before};
    (void)!::write(fds[1], out, sizeof(out));
    std::_Exit(0);
  }
  ::close(fds[1]);
  uint64_t in[2] = {0, 0};
  (void)!::read(fds[0], in, sizeof(in));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {in[0], in[1]};
}

// The compressed grains of a streamOptimized file (markers after the overHead), up to `max`.
std::vector<std::vector<std::byte>> Grains(const std::string& path, size_t max) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::byte> sector(512);
  in.read(reinterpret_cast<char*>(sector.data()), 512);
  auto header = disk::ParseVmdkSparseHeader(sector, path, 0);
  if (!header) {
    Die(header.error().ToString());
  }
  in.seekg(static_cast<std::streamoff>(header->overhead_sectors * 512));
  std::vector<std::vector<std::byte>> grains;
  while (grains.size() < max && in.read(reinterpret_cast<char*>(sector.data()), 512)) {
    const uint64_t value = disk::LoadLe64(sector.data());
    const uint32_t size = disk::LoadLe32(sector.data() + 8);
    if (size == 0) {
      if (disk::LoadLe32(sector.data() + 12) == 0) {
        break;
      }
      in.seekg(static_cast<std::streamoff>(value * 512), std::ios::cur);
      continue;
    }
    std::vector<std::byte> grain(size);
    const size_t first = std::min<size_t>(size, 500);
    std::memcpy(grain.data(), sector.data() + 12, first);
    in.read(reinterpret_cast<char*>(grain.data() + first),
            static_cast<std::streamsize>(size - first));
    const uint64_t total = (12 + uint64_t{size} + 511) / 512 * 512;
    in.seekg(static_cast<std::streamoff>(total - 512 - (size - first)), std::ios::cur);
    grains.push_back(std::move(grain));
  }
  return grains;
}

double InflateMBps(const std::vector<std::vector<std::byte>>& grains, disk::InflateBackend backend,
                   uint64_t grain_bytes) {
  disk::Inflater inflater(backend);
  std::vector<std::byte> out(grain_bytes);
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    uint64_t produced = 0;
    const auto start = Clock::now();
    for (const auto& g : grains) {
      auto n = inflater.Inflate(g, out, disk::DeflateWrapper::kAuto);
      if (!n) {
        Die("inflate: " + n.error().ToString());
      }
      produced += *n;
    }
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, static_cast<double>(produced) / s / 1e6);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (const char* env = std::getenv("VMIMPORT_BENCH_DIR"); env != nullptr) {
    o.dir = env;
  }
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      o.quick = true;
      o.size_bytes = uint64_t{256} << 20;
    } else if (a == "--size-gib" && i + 1 < argc) {
      o.size_bytes = static_cast<uint64_t>(std::atof(argv[++i]) * double(uint64_t{1} << 30));
    } else if (a == "--dir" && i + 1 < argc) {
      o.dir = argv[++i];
    } else if (a == "--repeat" && i + 1 < argc) {
      o.repeat = std::max(1, std::atoi(argv[++i]));
    } else {
      Die("usage: vmimport-bench [--quick] [--size-gib N] [--dir DIR] [--repeat N]");
    }
  }
  if (o.dir.empty()) {
    o.dir = "/var/tmp/vmimport-bench";
  }
  Shell("mkdir -p '" + o.dir + "'");

  const std::string random_vmdk = StreamVmdk(o, "random", o.size_bytes);
  const std::string mixed_vmdk = StreamVmdk(o, "mixed", uint64_t{256} << 20);
  WarmPageCache(random_vmdk);
  WarmPageCache(mixed_vmdk);
  const double mib = double(o.size_bytes) / double(1 << 20);
  Figure("disk_size", mib, "MiB");

  // Ours: best of N, each backend, then with the checksums.
  double ours = 1e30;
  double ours_zlib = 1e30;
  double ours_hashed = 1e30;
  double ours_hashed_serial = 1e30;
  for (int i = 0; i < o.repeat; ++i) {
    auto run = Decode(random_vmdk, disk::InflateBackend::kLibdeflate, Hashing::kNone);
    if (run.bytes != o.size_bytes) {
      Die("decoded " + std::to_string(run.bytes) + " bytes");
    }
    ours = std::min(ours, run.seconds);
    ours_zlib = std::min(ours_zlib,
                         Decode(random_vmdk, disk::InflateBackend::kZlib, Hashing::kNone).seconds);
    ours_hashed = std::min(
        ours_hashed, Decode(random_vmdk, disk::kDefaultInflateBackend, Hashing::kParallel).seconds);
    ours_hashed_serial =
        std::min(ours_hashed_serial,
                 Decode(random_vmdk, disk::kDefaultInflateBackend, Hashing::kSerial).seconds);
  }
  // qemu-img to its null driver, and to tmpfs.
  double qemu = 1e30;
  double qemu_tmpfs = 1e30;
  long qemu_rss_kib = 0;
  const std::string tmpfs_out = "/dev/shm/vmimport-bench-qemu.raw";
  for (int i = 0; i < o.repeat; ++i) {
    auto [s, rss] = RunTimed({"qemu-img", "convert", "-n", "--target-image-opts", random_vmdk,
                              "driver=null-co,size=" + std::to_string(o.size_bytes)});
    qemu = std::min(qemu, s);
    qemu_rss_kib = std::max(qemu_rss_kib, rss);
    ::unlink(tmpfs_out.c_str());
    auto [t, rss2] = RunTimed({"qemu-img", "convert", "-O", "raw", random_vmdk, tmpfs_out});
    (void)rss2;
    qemu_tmpfs = std::min(qemu_tmpfs, t);
    ::unlink(tmpfs_out.c_str());
  }
  // Compressible, disk-like data (zero runs, text, random): real deflate work.
  const uint64_t mixed_size = uint64_t{256} << 20;
  double ours_mixed = 1e30;
  double qemu_mixed = 1e30;
  for (int i = 0; i < o.repeat; ++i) {
    ours_mixed = std::min(ours_mixed,
                          Decode(mixed_vmdk, disk::kDefaultInflateBackend, Hashing::kNone).seconds);
    qemu_mixed = std::min(qemu_mixed,
                          RunTimed({"qemu-img", "convert", "-n", "--target-image-opts", mixed_vmdk,
                                    "driver=null-co,size=" + std::to_string(mixed_size)})
                              .first);
  }
  Figure("decode_seconds", ours, "s");
  Figure("decode_MBps", double(o.size_bytes) / ours / 1e6, "MB/s");
  Figure("decode_zlib_MBps", double(o.size_bytes) / ours_zlib / 1e6, "MB/s");
  Figure("decode_hashed_MBps", double(o.size_bytes) / ours_hashed / 1e6, "MB/s");
  Figure("decode_hashed_serial_MBps", double(o.size_bytes) / ours_hashed_serial / 1e6, "MB/s");
  Figure("qemu_img_seconds", qemu, "s");
  Figure("qemu_img_MBps", double(o.size_bytes) / qemu / 1e6, "MB/s");
  Figure("qemu_img_tmpfs_MBps", double(o.size_bytes) / qemu_tmpfs / 1e6, "MB/s");
  Figure("decode_vs_qemu_img_ratio", qemu / ours, "x");
  Figure("decode_vs_qemu_img_tmpfs_ratio", qemu_tmpfs / ours, "x");
  Figure("decode_hashed_vs_qemu_img_ratio", qemu / ours_hashed, "x");
  Figure("decode_mixed_MBps", double(mixed_size) / ours_mixed / 1e6, "MB/s");
  Figure("qemu_img_mixed_MBps", double(mixed_size) / qemu_mixed / 1e6, "MB/s");
  Figure("decode_vs_qemu_img_mixed_ratio", qemu_mixed / ours_mixed, "x");

  // Four disks at once vs one (what the image server does for a 4-disk VM): the mixed image
  // decoded and hashed as the server does, by 1 and by 4 threads; aggregate throughput.
  const auto four_vs_one = [&](Hashing hashing) {
    double one = 1e30;
    double four = 1e30;
    for (int i = 0; i < o.repeat; ++i) {
      one = std::min(one, Decode(mixed_vmdk, disk::kDefaultInflateBackend, hashing).seconds);
      const auto start = Clock::now();
      {
        std::vector<std::jthread> threads;
        for (int t = 0; t < 4; ++t) {
          threads.emplace_back([&] { Decode(mixed_vmdk, disk::kDefaultInflateBackend, hashing); });
        }
      }
      four = std::min(four, std::chrono::duration<double>(Clock::now() - start).count());
    }
    return std::pair(one, four);
  };
  const auto [one_disk, four_disks] = four_vs_one(Hashing::kServer);
  Figure("one_disk_hashed_MBps", double(mixed_size) / one_disk / 1e6, "MB/s");
  Figure("four_disks_hashed_aggregate_MBps", 4.0 * double(mixed_size) / four_disks / 1e6, "MB/s");
  Figure("four_vs_one_disk_ratio", 4.0 * one_disk / four_disks, "x");
  // The same with SHA-512 always on a helper thread (the server before it counted streams), and
  // always on the reading thread (one stream then leaves a core idle).
  const auto [one_always, four_always] = four_vs_one(Hashing::kParallel);
  Figure("four_disks_helper_always_aggregate_MBps", 4.0 * double(mixed_size) / four_always / 1e6,
         "MB/s");
  Figure("four_vs_one_disk_helper_always_ratio", 4.0 * one_always / four_always, "x");
  const auto [one_serial, four_serial] = four_vs_one(Hashing::kSerial);
  Figure("one_disk_hashed_serial_MBps", double(mixed_size) / one_serial / 1e6, "MB/s");
  Figure("four_vs_one_disk_serial_ratio", 4.0 * one_serial / four_serial, "x");

  // What one stream costs, measured in a child before this process holds the grains below.
  auto [hwm_kib, written] = DecodeInChild(random_vmdk);

  // Inflate alone, on the grains of real qemu-img output.
  auto random_grains = Grains(random_vmdk, 2048);
  auto mixed_grains = Grains(mixed_vmdk, 4096);
  for (auto backend : {disk::InflateBackend::kLibdeflate, disk::InflateBackend::kZlib}) {
    const std::string name(disk::InflateBackendName(backend));
    Figure("inflate_" + name + "_random_MBps", InflateMBps(random_grains, backend, 65536), "MB/s");
    Figure("inflate_" + name + "_mixed_MBps", InflateMBps(mixed_grains, backend, 65536), "MB/s");
  }

  Figure("stream_peak_rss_MiB", double(hwm_kib) / 1024.0, "MiB");
  Figure("qemu_img_peak_rss_MiB", double(qemu_rss_kib) / 1024.0, "MiB");
  Figure("scratch_bytes_written", double(written), "bytes");
  return 0;
}
