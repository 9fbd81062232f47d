// vmimport-e2e-bench: the whole disk path, vSphere export to raw bytes at the consumer, against
// the test world's vcsim. Three ways to move the disks of one powered-off VM:
//   ours       ExportVm, each disk published on our ImageServer (factory: a fresh NFC GET of the
//              lease, decoded by disk::OpenDiskStream), one reader thread per disk GETting the
//              image URL with libcurl; timed from ExportVm to the last byte of the last disk.
//              The readers only count what they receive (a reader to /dev/null); the sha256 the
//              server computed on the bytes it sent must be the seed manifest's, and each reader
//              must have received the disk's size.
//              The disk stream is the product's: the NFC manifest (sha256) checked over the VMDK
//              bytes as received, the last disk bytes held back until it matched
//              (source::HoldLastBytesUntilVerified). The served raw digests follow the checksum
//              policy: "verify" (the default: SHA-512 only, what Longhorn compares) is the
//              headline; "all" (SHA-256 too) and "none" are run for their CPU per GiB.
//   reference  what the Go reference implementation does: `govc export.ovf` into a folder,
//              `qemu-img convert -f vmdk -O raw` of each disk into a second folder, that folder
//              served by `python3 -m http.server`, each raw file downloaded with curl; disks one
//              after the other, as govc does. The raw files are checked against the manifest
//              after the clock stopped.
//   curl       ExportVm and a plain GET of every NFC URL (the VMDK, not decoded) to /dev/null,
//              disks in parallel: the one-pass limit of the source.
// Prints one line per figure, "name value unit":
//   e2e_disks, e2e_raw_MiB          what was moved (raw bytes of every disk of the VM)
//   e2e_ours_seconds, e2e_ours_MBps            ours: ExportVm to last byte; raw bytes / s
//   e2e_ours_cpu_seconds            CPU (user + system) of this process in that time: server,
//                                   decoder, sha256 + sha512, and the readers
//   e2e_ours_vcsim_cpu_seconds      CPU of the vcsim process (VCSIM_PID) in that time: its TLS
//   e2e_ours_cpu_bound_seconds      (ours + vcsim CPU) / cores: no schedule on this machine can
//                                   finish sooner than this
//   e2e_ours_context_switches       voluntary + involuntary context switches of this process
//   e2e_vs_cpu_bound_ratio          ours seconds / the CPU bound: how close to the limit this
//                                   machine allows (1.0 = at the limit)
//   e2e_ours_unchecked_seconds, e2e_ours_unchecked_cpu_seconds, e2e_unchecked_vs_curl_ratio,
//   e2e_unchecked_vs_reference_ratio   ours with the policy "none" (the manifest is still checked)
//   e2e_bare_seconds, e2e_cpu_per_GiB_bare, e2e_bare_vs_curl_ratio   ours with nothing hashed at
//                                   all (no served digest, no NFC manifest check): what the path
//                                   itself costs, against curl, which hashes nothing either
//   e2e_relay_seconds, e2e_relay_cpu_seconds, e2e_relay_vcsim_cpu_seconds,
//   e2e_relay_cpu_bound_seconds, e2e_relay_vs_curl_ratio   the bare path without decoding: the
//                                   VMDK bytes served as they came (useless to a consumer): what
//                                   the two HTTP hops cost with no work between them, the floor
//                                   of our path on this machine
//   e2e_checksums_cpu_seconds       CPU the served digests of "verify" cost: verify - none
//   e2e_cpu_per_GiB_verify, e2e_cpu_per_GiB_all, e2e_cpu_per_GiB_none   CPU seconds of this
//                                   process per GiB of raw disk, for each checksum policy
//   e2e_glance_*                    a Glance raw image, played without the OpenStack peer: a raw
//                                   file of the VM's total size (random bytes) served by
//                                   `python3 -m http.server` as Glance's /v2/images/<id>/file
//                                   would be; ours = HttpStream -> raw reader -> image server
//                                   (verify; with Glance's SHA-512 as spec.checksum Longhorn
//                                   checks it, so nothing is hashed on our side) -> reader; curl =
//                                   a plain GET of the file; reference = the Go reference's chain
//                                   for OpenStack (download the image to a file, serve it with a
//                                   file server, download it). The source server's CPU counts into
//                                   the CPU bound like vcsim's. Keystone/Cinder/the volume upload
//                                   are not part of the figure.
//   e2e_glance_fast_*               the same image from a source that keeps up: python's server
//                                   with the body sent by sendfile(2), one thread per connection
//                                   (ours and a plain GET)
//   nfc_curl_vs_cpu_bound_ratio, e2e_glance_curl_vs_cpu_bound_ratio,
//   e2e_glance_fast_curl_vs_cpu_bound_ratio   a plain GET against its own CPU bound ((its CPU +
//                                   the source's) / cores): how close one hop gets on this machine
//   e2e_reference_seconds, e2e_reference_MBps  the reference chain, end to end
//   e2e_vs_reference_ratio          reference seconds / ours (goal >= 3)
//   nfc_curl_seconds, nfc_curl_MBps the curl baseline (MBps: VMDK bytes / s)
//   nfc_curl_cpu_seconds            CPU of this process in that time
//   nfc_curl_vcsim_cpu_seconds      CPU of vcsim in that time
//   e2e_vs_curl_ratio               curl seconds / ours (goal >= 0.8)
//   e2e_scratch_bytes_ours          bytes this process wrote to storage during ours
//                                   (/proc/self/io write_bytes)
//   e2e_scratch_bytes_reference     bytes of the files the reference wrote (allocated, as du)
//   e2e_peak_rss_MiB                VmHWM of this process during ours (reset before it)
// With --repeat N every path runs N times (interleaved) and the fastest run of each is reported.
// --only-ours / --only-bare: one path, every run's figures (for a profiler); --only-glance: the
// e2e_glance_* figures alone (the image as large as the VM of the seed manifest).
// Usage: . .world/env.sh && vmimport-e2e-bench [--quick] [--vm PATH] [--repeat N] [--dir DIR]
//   default VM /DC0/vm/vmi-big: start the world with VCSIM_WORLD_BIG_DISK=1G (or more) for it;
//   --quick: /DC0/vm/vmi-multi of the default seed (3 disks, 113 MiB), one run (the
//   e2e_bench_smoke ctest). DIR holds the reference's scratch folders (default $TMPDIR or
//   /var/tmp); they are removed afterwards.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/log.h"
#include "core/result.h"
#include "disk/hashing_reader.h"
#include "disk/open.h"
#include "http/client.h"
#include "imageserver/image_server.h"
#include "source/http_stream.h"
#include "source/verifying_source.h"
#include "source/vmware/export.h"
#include "source/vmware/session.h"

extern char** environ;

namespace {

using namespace vmimport;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using core::ErrorCode;
using core::MakeError;
using core::Result;
namespace fs = std::filesystem;
namespace vmware = source::vmware;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "vmimport-e2e-bench: %s\n", what.c_str());
  std::exit(1);
}

void Figure(const std::string& name, double value, const std::string& unit) {
  std::printf("%s %.4g %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

void Count(const std::string& name, uint64_t value, const std::string& unit) {
  std::printf("%s %llu %s\n", name.c_str(), static_cast<unsigned long long>(value), unit.c_str());
  std::fflush(stdout);
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

core::Logger QuietLog() {
  return {std::make_shared<core::StderrSink>(), core::LogLevel::kWarn, core::LogFormat::kLogfmt};
}

// ------------------------------------------------------------------------ the world ----------

struct WorldEnv {
  std::string sdk_url;
  std::string user;
  std::string password;
  std::string ca;
  std::string manifest;
  std::string govc;
};

Result<WorldEnv> ReadWorldEnv() {
  WorldEnv env;
  const std::array<std::pair<const char*, std::string*>, 6> vars{{{"VCSIM_SDK_URL", &env.sdk_url},
                                                                  {"VCSIM_USERNAME", &env.user},
                                                                  {"VCSIM_PASSWORD", &env.password},
                                                                  {"VCSIM_CA", &env.ca},
                                                                  {"VCSIM_MANIFEST", &env.manifest},
                                                                  {"GOVC", &env.govc}}};
  for (const auto& [name, value] : vars) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
      return MakeError(
          ErrorCode::kInvalidArgument,
          std::string(name) +
              " is not set: start the world (tools/world.sh up) and source its env.sh");
    }
    *value = v;
  }
  return env;
}

struct SeededDisk {
  size_t index = 0;
  uint64_t size_bytes = 0;
  std::string sha256;
};

std::vector<std::string> SplitTabs(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t tab = line.find('\t', start);
    fields.push_back(
        line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) {
      return fields;
    }
    start = tab + 1;
  }
}

// The disk rows of `vm_path` in the seed manifest, in index order:
//   disk <vm_inventory_path> <index> <size_bytes> <sha256_raw> ...
Result<std::vector<SeededDisk>> SeededDisks(const std::string& manifest,
                                            const std::string& vm_path) {
  std::ifstream in(manifest);
  if (!in) {
    return MakeError(ErrorCode::kNotFound, "cannot read the seed manifest " + manifest);
  }
  std::vector<SeededDisk> disks;
  std::string line;
  while (std::getline(in, line)) {
    const auto f = SplitTabs(line);
    if (f.size() < 5 || f[0] != "disk" || f[1] != vm_path) {
      continue;
    }
    disks.push_back(
        {std::strtoull(f[2].c_str(), nullptr, 10), std::strtoull(f[3].c_str(), nullptr, 10), f[4]});
  }
  std::sort(disks.begin(), disks.end(),
            [](const SeededDisk& a, const SeededDisk& b) { return a.index < b.index; });
  if (disks.empty()) {
    return MakeError(ErrorCode::kNotFound,
                     "the seed manifest " + manifest + " has no disk of " + vm_path);
  }
  for (size_t i = 0; i < disks.size(); ++i) {
    if (disks[i].index != i) {
      return MakeError(ErrorCode::kInternal, "the seed manifest lists disk " +
                                                 std::to_string(disks[i].index) + " of " + vm_path +
                                                 " at position " + std::to_string(i));
    }
  }
  return disks;
}

// --------------------------------------------------------------------- this process ----------

// A field of /proc/self/<file> ("write_bytes: N", "VmHWM:   N kB"); 0 when unreadable.
uint64_t ProcField(const char* file, const std::string& key) {
  std::ifstream in(std::string("/proc/self/") + file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      return std::strtoull(line.c_str() + key.size(), nullptr, 10);
    }
  }
  return 0;
}

uint64_t StorageWriteBytes() { return ProcField("io", "write_bytes:"); }

// User + system CPU seconds of this process so far (every thread).
double CpuSeconds() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return secs(usage.ru_utime) + secs(usage.ru_stime);
}
// The CPU bound of a run: (this process's CPU + the source's) / the machine's cores. No schedule
// on this machine can finish the run sooner.
double CpuBound(double cpu_seconds, double source_cpu_seconds) {
  const double cores = static_cast<double>(std::max(1U, std::thread::hardware_concurrency()));
  return (cpu_seconds + source_cpu_seconds) / cores;
}
uint64_t PeakRssKib() { return ProcField("status", "VmHWM:"); }

// Voluntary + involuntary context switches of this process so far.
uint64_t ContextSwitches() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_nvcsw) + static_cast<uint64_t>(usage.ru_nivcsw);
}

// User + system CPU seconds of process `pid` so far (/proc/<pid>/stat utime + stime); 0 when
// `pid` is 0 or unreadable.
double PeerCpuSeconds(pid_t pid) {
  if (pid <= 0) {
    return 0;
  }
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) {
    return 0;
  }
  // After "pid (comm)": state is field 3; utime and stime are fields 14 and 15.
  std::istringstream fields(stat.substr(paren + 1));
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) {
      utime = std::strtoull(field.c_str(), nullptr, 10);
    } else if (i == 15) {
      stime = std::strtoull(field.c_str(), nullptr, 10);
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Resets VmHWM to the current RSS (Linux >= 4.0); false if the kernel refused.
bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// ------------------------------------------------------------------------ downloads ----------

struct Received {
  uint64_t bytes = 0;
  std::string sha256;            // when hashed
  Clock::time_point first_byte;  // when the first body bytes arrived
};

// GETs `url` to nowhere, counting (and optionally hashing) the body; anything but 200 fails.
Result<Received> Download(http::Client& http, const std::string& url, const http::Headers& headers,
                          bool hash) {
  http::Request request{.url = url, .headers = headers};
  request.timeout = 0ms;  // a disk takes as long as it takes
  request.stall_timeout = 60s;
  std::optional<disk::Hasher> hasher;
  if (hash) {
    hasher.emplace(disk::Hasher::Digests::kSha256Only);
  }
  Received got;
  auto response = http.Stream(
      {}, request, [](const http::Response& head) { return head.status == 200; },
      [&](std::string_view chunk) {
        if (got.bytes == 0 && !chunk.empty()) {
          got.first_byte = Clock::now();
        }
        got.bytes += chunk.size();
        if (hasher) {
          hasher->Update(std::as_bytes(std::span(chunk.data(), chunk.size())));
        }
        return true;
      });
  if (!response) {
    return MakeError(response.error());
  }
  if (response->status != 200) {
    return MakeError(ErrorCode::kUnavailable, "GET answered " + std::to_string(response->status));
  }
  if (hasher) {
    got.sha256 = hasher->Finish().sha256;
  }
  return got;
}

// One reader thread per URL; the results in URL order, or the first disk's error.
Result<std::vector<Received>> DownloadAll(http::Client& http, const std::vector<std::string>& urls,
                                          const http::Headers& headers, bool hash) {
  std::vector<Result<Received>> results(urls.size(),
                                        MakeError(ErrorCode::kInternal, "reader did not run"));
  {
    std::vector<std::jthread> readers;
    for (size_t i = 0; i < urls.size(); ++i) {
      readers.emplace_back([&, i] { results[i] = Download(http, urls[i], headers, hash); });
    }
  }
  std::vector<Received> out;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i]) {
      return MakeError(results[i].error().Wrap("disk " + std::to_string(i)));
    }
    out.push_back(*results[i]);
  }
  return out;
}

// -------------------------------------------------------------------------- ours -------------

struct OursRun {
  double seconds = 0;
  double first_byte_seconds = 0;  // from the start to the first body byte at any reader
  double cpu_seconds = 0;
  double vcsim_cpu_seconds = 0;
  uint64_t context_switches = 0;
  uint64_t raw_bytes = 0;
  uint64_t scratch_bytes = 0;
  uint64_t peak_rss_kib = 0;
};

// The checksums the server reports for each disk it streamed whole, by disk name.
class ChecksumCollector final : public imageserver::StreamObserver {
 public:
  void OnStreamStarted(const imageserver::StreamInfo&) override {}
  void OnProgress(const imageserver::StreamProgress&) override {}
  void OnStreamFinished(const imageserver::StreamResult& result) override {
    std::lock_guard lock(mu_);
    if (result.outcome == imageserver::StreamOutcome::kCompleted && result.checksums) {
      sums_[result.info.disk_name] = *result.checksums;
    }
    if (result.outcome == imageserver::StreamOutcome::kCompleted) {
      for (const auto& d : result.source_digests) {
        if (d.verifier == disk::kVerifierVsphereManifest) {
          verified_.insert(result.info.disk_name);
        }
      }
    }
  }
  //! The stream of `disk_name` matched its NFC manifest digest.
  bool Verified(const std::string& disk_name) const {
    std::lock_guard lock(mu_);
    return verified_.contains(disk_name);
  }
  std::optional<disk::Checksums> Of(const std::string& disk_name) const {
    std::lock_guard lock(mu_);
    auto it = sums_.find(disk_name);
    return it == sums_.end() ? std::nullopt : std::optional<disk::Checksums>(it->second);
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, disk::Checksums> sums_;
  std::set<std::string> verified_;
};

// How RunOurs reads a disk.
enum class Path {
  kProduct,  // the lease's disk (NFC manifest checked), decoded
  kBare,     // the NFC URL by the same HttpStream, not through the manifest check, decoded
  kRelay,    // kBare without decoding: the VMDK bytes served as they came (nothing a consumer
             // could use): what two hops cost with no work between them
};

// `policy`: the served raw digests (verify: SHA-512 only, the product's default; all; none: the
// bytes are then checked by count, and the NFC manifest still by the stream). kBare (with none):
// nothing hashed at all (ExportLease::OpenDisk always checks the manifest): the path's own cost,
// for the comparison with curl, which hashes nothing either. kRelay needs `relay_sizes`, the VMDK
// bytes of each disk (as a plain GET received them).
Result<OursRun> RunOurs(vmware::Session& session, const vmware::VmRef& vm,
                        const std::vector<SeededDisk>& seeded, imageserver::ChecksumPolicy policy,
                        pid_t vcsim_pid, Path path = Path::kProduct,
                        const std::vector<uint64_t>& relay_sizes = {}) {
  if (path == Path::kRelay && relay_sizes.size() != seeded.size()) {
    return MakeError(ErrorCode::kInvalidArgument, "relay: one VMDK size per disk");
  }
  const core::SystemClock clock;
  ChecksumCollector collector;
  imageserver::ServerConfig config;
  config.checksums = policy;
  auto server = imageserver::ImageServer::Start(config, &collector, clock, QuietLog());
  if (!server) {
    return MakeError(server.error().Wrap("image server"));
  }
  auto reader_http = http::Client::Create({});
  if (!reader_http) {
    return MakeError(reader_http.error());
  }
  const bool rss_reset = ResetPeakRss();
  const uint64_t written_before = StorageWriteBytes();
  const double cpu_before = CpuSeconds();
  const double vcsim_cpu_before = PeerCpuSeconds(vcsim_pid);
  const uint64_t switches_before = ContextSwitches();

  const auto start = Clock::now();
  auto lease = vmware::ExportLease::Start({}, session, vm);
  if (!lease) {
    return MakeError(lease.error().Wrap("export " + vm.inventory_path));
  }
  vmware::ExportLease& l = **lease;
  if (l.disks().size() != seeded.size()) {
    return MakeError(ErrorCode::kInternal, "the lease of " + vm.inventory_path + " has " +
                                               std::to_string(l.disks().size()) +
                                               " disks, the manifest " +
                                               std::to_string(seeded.size()));
  }
  std::vector<std::string> urls;
  std::vector<std::string> tokens;
  for (size_t i = 0; i < seeded.size(); ++i) {
    auto published = (*server)->Publish(
        [&l, &session, i, path,
         &relay_sizes](const std::stop_token& stop) -> Result<disk::DiskReaderPtr> {
          if (path != Path::kProduct) {
            http::Request request{.url = l.disks()[i].url};
            request.headers.emplace_back("Cookie",
                                         "vmware_soap_session=" + session.soap().SessionCookie());
            auto stream = source::HttpStream::Open(stop, session.soap().http(), std::move(request),
                                                   {.name = "bare nfc"});
            if (!stream) {
              return MakeError(stream.error());
            }
            if (path == Path::kRelay) {
              disk::OpenOptions open;
              open.declared = disk::DiskFormat::kRaw;
              return disk::OpenDiskStream(stop, disk::ByteSourcePtr(std::move(*stream)),
                                          relay_sizes[i], open);
            }
            return disk::OpenDiskStream(stop, std::move(*stream), std::nullopt);
          }
          auto source = l.OpenDisk(stop, i);
          if (!source) {
            return MakeError(source.error());
          }
          auto* checked = dynamic_cast<disk::CheckedSource*>(source->get());
          auto reader = disk::OpenDiskStream(stop, std::move(*source), std::nullopt);
          if (!reader || checked == nullptr) {
            return reader;
          }
          return source::HoldLastBytesUntilVerified(std::move(*reader), checked);
        },
        {.name = vm.name + "/disk-" + std::to_string(i)});
    if (!published) {
      return MakeError(published.error());
    }
    urls.push_back(published->url);
    tokens.push_back(published->token);
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < seeded.size(); ++i) {
    names.push_back(vm.name + "/disk-" + std::to_string(i));
  }
  auto received = DownloadAll(**reader_http, urls, {}, /*hash=*/false);
  const auto end = Clock::now();

  OursRun run;
  run.seconds = Seconds(end - start);
  if (received && !received->empty()) {
    Clock::time_point first = received->front().first_byte;
    for (const Received& r : *received) {
      first = std::min(first, r.first_byte);
    }
    run.first_byte_seconds = Seconds(first - start);
  }
  run.cpu_seconds = CpuSeconds() - cpu_before;
  run.vcsim_cpu_seconds = PeerCpuSeconds(vcsim_pid) - vcsim_cpu_before;
  run.context_switches = ContextSwitches() - switches_before;
  run.scratch_bytes = StorageWriteBytes() - written_before;
  run.peak_rss_kib = rss_reset ? PeakRssKib() : 0;
  // The consumer's connections go first (the server waits for kept-alive ones), then the
  // server, whose factories borrow the lease.
  reader_http->reset();
  for (const std::string& token : tokens) {
    (*server)->Unpublish(token);
  }
  server->reset();
  if (!received) {
    (void)l.Abort({}, "benchmark reader failed");
    return MakeError(received.error().Wrap("ours"));
  }
  if (auto done = l.Complete({}); !done) {
    return MakeError(done.error().Wrap("complete the lease"));
  }
  for (size_t i = 0; i < seeded.size(); ++i) {
    const Received& r = (*received)[i];
    const std::string what = "ours: disk " + std::to_string(i) + " of " + vm.inventory_path;
    if (path == Path::kRelay) {
      if (r.bytes != relay_sizes[i]) {
        return MakeError(ErrorCode::kCorruptData, what + ": relayed " + std::to_string(r.bytes) +
                                                      " of " + std::to_string(relay_sizes[i]) +
                                                      " VMDK bytes");
      }
      run.raw_bytes += r.bytes;
      continue;
    }
    if (r.bytes != seeded[i].size_bytes) {
      return MakeError(ErrorCode::kCorruptData,
                       what + ": the reader received " + std::to_string(r.bytes) +
                           " bytes, the manifest says " + std::to_string(seeded[i].size_bytes));
    }
    if (policy != imageserver::ChecksumPolicy::kNone) {
      const auto sums = collector.Of(names[i]);
      const bool sha256_ok = policy == imageserver::ChecksumPolicy::kAll
                                 ? sums && sums->sha256 == seeded[i].sha256
                                 : sums && sums->sha256.empty();
      if (!sums || sums->bytes != seeded[i].size_bytes || !sha256_ok ||
          sums->sha512.size() != 128 || !collector.Verified(names[i])) {
        return MakeError(
            ErrorCode::kCorruptData,
            what + ": the server sent " +
                (sums ? std::to_string(sums->bytes) + " bytes with sha256 " + sums->sha256
                      : std::string("a stream without checksums")) +
                ", the manifest says " + std::to_string(seeded[i].size_bytes) +
                " bytes with sha256 " + seeded[i].sha256);
      }
    }
    run.raw_bytes += r.bytes;
  }
  return run;
}

// -------------------------------------------------------------------------- curl -------------

struct CurlRun {
  double seconds = 0;
  double cpu_seconds = 0;
  double vcsim_cpu_seconds = 0;
  uint64_t nfc_bytes = 0;
  std::vector<uint64_t> disk_bytes;  // VMDK bytes of each disk
};

Result<CurlRun> RunCurl(vmware::Session& session, const vmware::VmRef& vm, pid_t vcsim_pid) {
  const double cpu_before = CpuSeconds();
  const double vcsim_cpu_before = PeerCpuSeconds(vcsim_pid);
  const auto start = Clock::now();
  auto lease = vmware::ExportLease::Start({}, session, vm);
  if (!lease) {
    return MakeError(lease.error().Wrap("export " + vm.inventory_path));
  }
  std::vector<std::string> urls;
  for (const vmware::ExportDisk& d : (*lease)->disks()) {
    urls.push_back(d.url);
  }
  const http::Headers headers{{"Cookie", "vmware_soap_session=" + session.soap().SessionCookie()}};
  auto received = DownloadAll(session.soap().http(), urls, headers, /*hash=*/false);
  const auto end = Clock::now();
  if (!received) {
    (void)(*lease)->Abort({}, "benchmark download failed");
    return MakeError(received.error().Wrap("nfc curl"));
  }
  if (auto done = (*lease)->Complete({}); !done) {
    return MakeError(done.error().Wrap("complete the lease"));
  }
  CurlRun run{.seconds = Seconds(end - start),
              .cpu_seconds = CpuSeconds() - cpu_before,
              .vcsim_cpu_seconds = PeerCpuSeconds(vcsim_pid) - vcsim_cpu_before};
  for (const Received& r : *received) {
    run.nfc_bytes += r.bytes;
    run.disk_bytes.push_back(r.bytes);
  }
  return run;
}

// --------------------------------------------------------------------- reference -------------

std::string Join(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) {
    out += (out.empty() ? "" : " ") + a;
  }
  return out;
}

// Starts `args` (PATH lookup) with stdout and stderr to `out_fd` (-1: /dev/null).
Result<pid_t> Spawn(const std::vector<std::string>& args, int out_fd) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (out_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
    posix_spawn_file_actions_addclose(&actions, out_fd);
  } else {
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return MakeError(ErrorCode::kUnavailable, "cannot start " + args[0] + ": " + std::strerror(rc));
  }
  return pid;
}

// Runs `args` to its end; its output (stdout and stderr), or an error carrying it.
Result<std::string> Run(const std::vector<std::string>& args) {
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) {
    return MakeError(ErrorCode::kInternal, std::string("pipe: ") + std::strerror(errno));
  }
  auto pid = Spawn(args, fds[1]);
  ::close(fds[1]);
  if (!pid) {
    ::close(fds[0]);
    return MakeError(pid.error());
  }
  std::string output;
  std::array<char, 4096> buf{};
  while (true) {
    const ssize_t n = ::read(fds[0], buf.data(), buf.size());
    if (n > 0) {
      output.append(buf.data(), static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    break;
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return MakeError(ErrorCode::kInternal, "`" + Join(args) + "` failed (status " +
                                               std::to_string(status) + "): " + output);
  }
  return output;
}

Result<int> FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return MakeError(ErrorCode::kInternal, std::string("socket: ") + std::strerror(errno));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return MakeError(ErrorCode::kUnavailable, std::string("bind: ") + std::strerror(errno));
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

bool Accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// python's http.server with a file's body sent by sendfile(2) (no 64 KiB copy loop through the
// interpreter), one thread per connection: a source that is not itself the bottleneck.
// argv: port, directory.
constexpr const char* kSendfileServer = R"(
import http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        outputfile.flush()
        self.connection.sendfile(source)
    def log_message(self, *args):
        pass
port, folder = int(sys.argv[1]), sys.argv[2]
http.server.ThreadingHTTPServer(
    ("127.0.0.1", port),
    lambda *a, **k: Handler(*a, directory=folder, **k)).serve_forever()
)";

enum class Serving {
  kPlain,     // `python3 -m http.server`: reads and writes 64 KiB at a time, as Glance's API does
  kSendfile,  // kSendfileServer
};

// A python file server on 127.0.0.1 serving `dir`; stopped (by its PID) on destruction.
class FileServer {
 public:
  static Result<std::unique_ptr<FileServer>> Start(const std::string& dir,
                                                   Serving how = Serving::kPlain) {
    auto port = FreeLoopbackPort();
    if (!port) {
      return MakeError(port.error());
    }
    auto pid = how == Serving::kPlain
                   ? Spawn({"python3", "-m", "http.server", std::to_string(*port), "--bind",
                            "127.0.0.1", "--directory", dir},
                           -1)
                   : Spawn({"python3", "-c", kSendfileServer, std::to_string(*port), dir}, -1);
    if (!pid) {
      return MakeError(pid.error());
    }
    auto server = std::unique_ptr<FileServer>(new FileServer(*pid, *port));
    const auto deadline = Clock::now() + 20s;
    while (!Accepts(*port)) {
      int status = 0;
      if (::waitpid(*pid, &status, WNOHANG) == *pid) {
        server->pid_ = -1;
        return MakeError(ErrorCode::kUnavailable, "python3 -m http.server exited at start");
      }
      if (Clock::now() > deadline) {
        return MakeError(ErrorCode::kDeadlineExceeded,
                         "python3 -m http.server did not listen within 20 s");
      }
      std::this_thread::sleep_for(5ms);
    }
    return server;
  }
  ~FileServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
  FileServer(const FileServer&) = delete;
  FileServer& operator=(const FileServer&) = delete;

  std::string Url(const std::string& file) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + file;
  }
  pid_t pid() const { return pid_; }

 private:
  FileServer(pid_t pid, int port) : pid_(pid), port_(port) {}
  pid_t pid_;
  int port_;
};

// Bytes allocated to the files under `dir` (what du counts: sparse holes are free).
uint64_t AllocatedBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

Result<std::string> Sha256File(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return MakeError(ErrorCode::kNotFound, "cannot read " + path);
  }
  disk::Hasher hasher(disk::Hasher::Digests::kSha256Only);
  std::vector<char> buf(size_t{1} << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(in.gcount());
    hasher.Update(std::as_bytes(std::span(buf.data(), n)));
  }
  return hasher.Finish().sha256;
}

struct ReferenceRun {
  double seconds = 0;
  uint64_t raw_bytes = 0;
  uint64_t scratch_bytes = 0;
};

// The chain in `work` (an empty folder of ours): export, convert, serve, download.
Result<ReferenceRun> RunReferenceIn(const WorldEnv& env, const vmware::VmRef& vm,
                                    const std::vector<SeededDisk>& seeded,
                                    const std::string& work) {
  const std::string ovf_dir = work + "/ovf";
  const std::string raw_dir = work + "/raw";
  std::error_code ec;
  fs::create_directories(ovf_dir, ec);
  fs::create_directories(raw_dir, ec);
  if (ec) {
    return MakeError(ErrorCode::kInternal, "mkdir " + work + ": " + ec.message());
  }
  const auto start = Clock::now();
  if (auto exported = Run({env.govc, "export.ovf", "-vm", vm.inventory_path, ovf_dir}); !exported) {
    return MakeError(exported.error());
  }
  std::vector<std::string> raw_names;
  for (size_t i = 0; i < seeded.size(); ++i) {
    // govc names the disks <vm>/<vm>-disk-<i>.vmdk, in device order.
    const std::string vmdk =
        ovf_dir + "/" + vm.name + "/" + vm.name + "-disk-" + std::to_string(i) + ".vmdk";
    raw_names.push_back(vm.name + "-disk-" + std::to_string(i) + ".raw");
    if (auto converted = Run(
            {"qemu-img", "convert", "-f", "vmdk", "-O", "raw", vmdk, raw_dir + "/" + raw_names[i]});
        !converted) {
      return MakeError(converted.error());
    }
  }
  auto server = FileServer::Start(raw_dir);
  if (!server) {
    return MakeError(server.error());
  }
  std::vector<uint64_t> downloaded;
  for (const std::string& name : raw_names) {
    auto out =
        Run({"curl", "-fsS", "-o", "/dev/null", "-w", "%{size_download}", (*server)->Url(name)});
    if (!out) {
      return MakeError(out.error());
    }
    downloaded.push_back(std::strtoull(out->c_str(), nullptr, 10));
  }
  const auto end = Clock::now();
  server->reset();

  ReferenceRun run{.seconds = Seconds(end - start), .scratch_bytes = AllocatedBytes(work)};
  for (size_t i = 0; i < seeded.size(); ++i) {
    auto sha = Sha256File(raw_dir + "/" + raw_names[i]);
    if (!sha) {
      return MakeError(sha.error());
    }
    if (downloaded[i] != seeded[i].size_bytes || *sha != seeded[i].sha256) {
      return MakeError(ErrorCode::kCorruptData,
                       "reference: disk " + std::to_string(i) + " of " + vm.inventory_path +
                           ": curl received " + std::to_string(downloaded[i]) +
                           " bytes of a raw file with sha256 " + *sha + ", the manifest says " +
                           std::to_string(seeded[i].size_bytes) + " bytes with sha256 " +
                           seeded[i].sha256);
    }
    run.raw_bytes += downloaded[i];
  }
  return run;
}

Result<ReferenceRun> RunReference(const WorldEnv& env, const vmware::VmRef& vm,
                                  const std::vector<SeededDisk>& seeded, const std::string& dir) {
  std::string pattern = dir + "/vmimport-e2e-reference-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return MakeError(ErrorCode::kInternal,
                     "mkdtemp in " + dir + ": " + std::string(std::strerror(errno)));
  }
  auto run = RunReferenceIn(env, vm, seeded, pattern);
  std::error_code ec;
  fs::remove_all(pattern, ec);
  return run;
}

// --------------------------------------------------------------- glance (raw image) ----------

// A raw image of `size` random bytes in `dir`, served like Glance serves an image's file.
struct GlanceStandIn {
  std::string dir;
  uint64_t size = 0;
  std::string sha512;
  std::unique_ptr<FileServer> server;  // Serving::kPlain: Glance's 64 KiB loop
  std::unique_ptr<FileServer> fast;    // Serving::kSendfile: a source that keeps up

  const FileServer& Source(bool fast_source) const { return fast_source ? *fast : *server; }
};

Result<GlanceStandIn> MakeGlanceStandIn(const std::string& parent, uint64_t size) {
  GlanceStandIn g;
  std::string pattern = parent + "/vmimport-e2e-glance-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return MakeError(ErrorCode::kInternal, "mkdtemp in " + parent);
  }
  g.dir = pattern;
  g.size = size;
  {
    std::ofstream out(g.dir + "/image", std::ios::binary);
    std::mt19937_64 rng(20261205);
    disk::Hasher hasher(disk::Hasher::Digests::kSha512Only);
    std::vector<uint64_t> chunk((size_t{1} << 20) / 8);
    for (uint64_t done = 0; done < size;) {
      for (uint64_t& w : chunk) {
        w = rng();
      }
      const auto n = static_cast<size_t>(std::min<uint64_t>(size - done, chunk.size() * 8));
      const auto bytes = std::as_bytes(std::span(chunk)).first(n);
      hasher.Update(bytes);
      out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(n));
      done += n;
    }
    if (!out) {
      return MakeError(ErrorCode::kInternal, "writing " + g.dir + "/image");
    }
    g.sha512 = hasher.Finish().sha512;
  }
  auto server = FileServer::Start(g.dir);
  if (!server) {
    return MakeError(server.error());
  }
  g.server = std::move(*server);
  auto fast = FileServer::Start(g.dir, Serving::kSendfile);
  if (!fast) {
    return MakeError(fast.error());
  }
  g.fast = std::move(*fast);
  return g;
}

struct GlanceRun {
  double seconds = 0;
  double cpu_seconds = 0;
  double source_cpu_seconds = 0;
};

// Ours: the Glance stream (HttpStream, declared raw: never sniffed) through the image server with
// `policy`, to a reader. A raw Glance image's sha512 os_hash_value is Harvester's spec.checksum:
// Longhorn verifies the stored file against it, so the controller publishes the disk with
// consumer_checks_source_digest and "verify" computes nothing (as the product does); the reader
// (Longhorn's part) only counts bytes, as for vSphere.
Result<GlanceRun> RunGlanceOurs(const GlanceStandIn& g, imageserver::ChecksumPolicy policy,
                                bool fast_source = false) {
  const FileServer& source = g.Source(fast_source);
  const std::string url = source.Url("image");
  const core::SystemClock clock;
  ChecksumCollector collector;
  imageserver::ServerConfig config;
  config.checksums = policy;
  auto server = imageserver::ImageServer::Start(config, &collector, clock, QuietLog());
  if (!server) {
    return MakeError(server.error());
  }
  auto source_http = http::Client::Create({});
  auto reader_http = http::Client::Create({});
  if (!source_http || !reader_http) {
    return MakeError(ErrorCode::kInternal, "http clients");
  }
  http::Client& src = **source_http;
  const double cpu_before = CpuSeconds();
  const double source_cpu_before = PeerCpuSeconds(source.pid());
  const auto start = Clock::now();
  auto published = (*server)->Publish(
      [&src, &g, &url](const std::stop_token& stop) -> Result<disk::DiskReaderPtr> {
        source::HttpStreamOptions options;
        options.name = "glance stand-in";
        auto stream = source::HttpStream::Open(stop, src, http::Request{.url = url}, options);
        if (!stream) {
          return MakeError(stream.error());
        }
        disk::OpenOptions open;
        open.declared = disk::DiskFormat::kRaw;
        return disk::OpenDiskStream(stop, disk::ByteSourcePtr(std::move(*stream)), g.size, open);
      },
      {.name = "glance/disk-0", .consumer_checks_source_digest = true});
  if (!published) {
    return MakeError(published.error());
  }
  auto got = Download(**reader_http, published->url, {}, /*hash=*/false);
  const auto end = Clock::now();
  GlanceRun run{.seconds = Seconds(end - start),
                .cpu_seconds = CpuSeconds() - cpu_before,
                .source_cpu_seconds = PeerCpuSeconds(source.pid()) - source_cpu_before};
  reader_http->reset();
  (*server)->Unpublish(published->token);
  server->reset();
  if (!got) {
    return MakeError(got.error().Wrap("glance ours"));
  }
  if (got->bytes != g.size) {
    return MakeError(ErrorCode::kCorruptData, "glance ours: received " +
                                                  std::to_string(got->bytes) + " of " +
                                                  std::to_string(g.size) + " bytes");
  }
  if (collector.Of("glance/disk-0")) {
    return MakeError(ErrorCode::kInternal,
                     "glance ours: the image server hashed a disk whose consumer checks Glance's "
                     "digest itself");
  }
  return run;
}

Result<GlanceRun> RunGlanceCurl(const GlanceStandIn& g, bool fast_source = false) {
  const FileServer& source = g.Source(fast_source);
  auto http = http::Client::Create({});
  if (!http) {
    return MakeError(http.error());
  }
  const double cpu_before = CpuSeconds();
  const double source_cpu_before = PeerCpuSeconds(source.pid());
  const auto start = Clock::now();
  auto got = Download(**http, source.Url("image"), {}, /*hash=*/false);
  if (!got) {
    return MakeError(got.error().Wrap("glance curl"));
  }
  return GlanceRun{.seconds = Seconds(Clock::now() - start),
                   .cpu_seconds = CpuSeconds() - cpu_before,
                   .source_cpu_seconds = PeerCpuSeconds(source.pid()) - source_cpu_before};
}

// The reference's OpenStack chain: the image downloaded to a file (curl), that file served by a
// file server, downloaded by the consumer (curl).
Result<GlanceRun> RunGlanceReference(const GlanceStandIn& g, const std::string& parent) {
  std::string pattern = parent + "/vmimport-e2e-glance-ref-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return MakeError(ErrorCode::kInternal, "mkdtemp in " + parent);
  }
  const auto start = Clock::now();
  Result<GlanceRun> out = MakeError(ErrorCode::kInternal, "unset");
  if (auto dl = Run({"curl", "-fsS", "-o", pattern + "/image.raw", g.server->Url("image")}); !dl) {
    out = MakeError(dl.error());
  } else if (auto served = FileServer::Start(pattern); !served) {
    out = MakeError(served.error());
  } else if (auto up = Run({"curl", "-fsS", "-o", "/dev/null", "-w", "%{size_download}",
                            (*served)->Url("image.raw")});
             !up) {
    out = MakeError(up.error());
  } else if (std::strtoull(up->c_str(), nullptr, 10) != g.size) {
    out = MakeError(ErrorCode::kCorruptData, "glance reference: short download");
  } else {
    out = GlanceRun{.seconds = Seconds(Clock::now() - start)};
  }
  std::error_code ec;
  fs::remove_all(pattern, ec);
  return out;
}

// --------------------------------------------------------------------------- main ------------

struct Options {
  std::string vm_path = "/DC0/vm/vmi-big";
  int repeat = 3;
  bool quick = false;
  bool only_ours = false;    // --only-ours: ours (verify) `repeat` times, one line set per run
  bool only_bare = false;    // --only-bare: the same for the bare path (nothing hashed)
  bool only_glance = false;  // --only-glance: the Glance figures alone
  std::string dir;
};

Options ParseOptions(int argc, char** argv) {
  Options o;
  bool vm_given = false;
  bool repeat_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      o.quick = true;
    } else if (a == "--vm" && i + 1 < argc) {
      o.vm_path = argv[++i];
      vm_given = true;
    } else if (a == "--repeat" && i + 1 < argc) {
      o.repeat = std::atoi(argv[++i]);
      repeat_given = true;
    } else if (a == "--only-ours") {
      o.only_ours = true;
    } else if (a == "--only-bare") {
      o.only_bare = true;
    } else if (a == "--only-glance") {
      o.only_glance = true;
    } else if (a == "--dir" && i + 1 < argc) {
      o.dir = argv[++i];
    } else {
      Die("usage: vmimport-e2e-bench [--quick] [--vm PATH] [--repeat N] [--dir DIR] "
          "[--only-ours | --only-bare | --only-glance]");
    }
  }
  if (o.quick && !vm_given) {
    o.vm_path = "/DC0/vm/vmi-multi";
  }
  if (o.quick && !repeat_given) {
    o.repeat = 1;
  }
  if (o.repeat < 1) {
    Die("--repeat must be at least 1");
  }
  if (o.dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    o.dir = tmp != nullptr && *tmp != '\0' ? tmp : "/var/tmp";
  }
  return o;
}

// The Glance raw image figures (e2e_glance_*) for an image of `size` bytes; dies on a failed run.
void GlanceFigures(const Options& options, uint64_t size) {
  auto glance = MakeGlanceStandIn(options.dir, size);
  if (!glance) {
    Die(glance.error().ToString());
  }
  std::optional<GlanceRun> g_ours, g_none, g_curl, g_ref, f_ours, f_curl;
  for (int round = 0; round < options.repeat; ++round) {
    auto c = RunGlanceCurl(*glance);
    auto o = RunGlanceOurs(*glance, imageserver::ChecksumPolicy::kVerify);
    auto n = RunGlanceOurs(*glance, imageserver::ChecksumPolicy::kNone);
    auto r = RunGlanceReference(*glance, options.dir);
    auto fc = RunGlanceCurl(*glance, /*fast_source=*/true);
    auto fo = RunGlanceOurs(*glance, imageserver::ChecksumPolicy::kVerify, /*fast_source=*/true);
    for (const auto* x : {&c, &o, &n, &r, &fc, &fo}) {
      if (!*x) {
        Die(x->error().ToString());
      }
    }
    const auto keep = [](std::optional<GlanceRun>& best, const GlanceRun& run) {
      if (!best || run.seconds < best->seconds) {
        best = run;
      }
    };
    keep(g_curl, *c);
    keep(g_ours, *o);
    keep(g_none, *n);
    keep(g_ref, *r);
    keep(f_curl, *fc);
    keep(f_ours, *fo);
  }
  {
    glance->server.reset();
    glance->fast.reset();
    std::error_code ec;
    fs::remove_all(glance->dir, ec);
  }

  const double g_gib = static_cast<double>(glance->size) / 1073741824.0;
  const double g_bound = CpuBound(g_ours->cpu_seconds, g_ours->source_cpu_seconds);
  Figure("e2e_glance_raw_MiB", static_cast<double>(glance->size) / 1048576.0, "MiB");
  Figure("e2e_glance_ours_seconds", g_ours->seconds, "s");
  Figure("e2e_glance_ours_MBps", static_cast<double>(glance->size) / 1e6 / g_ours->seconds, "MB/s");
  Figure("e2e_glance_ours_cpu_seconds", g_ours->cpu_seconds, "s");
  Figure("e2e_glance_source_cpu_seconds", g_ours->source_cpu_seconds, "s");
  Figure("e2e_glance_ours_cpu_bound_seconds", g_bound, "s");
  Figure("e2e_glance_vs_cpu_bound_ratio", g_ours->seconds / g_bound, "x");
  Figure("e2e_glance_reference_seconds", g_ref->seconds, "s");
  Figure("e2e_glance_vs_reference_ratio", g_ref->seconds / g_ours->seconds, "x");
  Figure("e2e_glance_curl_seconds", g_curl->seconds, "s");
  Figure("e2e_glance_curl_vs_cpu_bound_ratio",
         g_curl->seconds / CpuBound(g_curl->cpu_seconds, g_curl->source_cpu_seconds), "x");
  Figure("e2e_glance_vs_curl_ratio", g_curl->seconds / g_ours->seconds, "x");
  Figure("e2e_glance_unchecked_vs_curl_ratio", g_curl->seconds / g_none->seconds, "x");
  Figure("e2e_glance_cpu_per_GiB_verify", g_ours->cpu_seconds / g_gib, "s/GiB");
  Figure("e2e_glance_cpu_per_GiB_none", g_none->cpu_seconds / g_gib, "s/GiB");
  const double f_bound = CpuBound(f_ours->cpu_seconds, f_ours->source_cpu_seconds);
  Figure("e2e_glance_fast_ours_seconds", f_ours->seconds, "s");
  Figure("e2e_glance_fast_ours_cpu_seconds", f_ours->cpu_seconds, "s");
  Figure("e2e_glance_fast_source_cpu_seconds", f_ours->source_cpu_seconds, "s");
  Figure("e2e_glance_fast_vs_cpu_bound_ratio", f_ours->seconds / f_bound, "x");
  Figure("e2e_glance_fast_curl_seconds", f_curl->seconds, "s");
  Figure("e2e_glance_fast_curl_vs_cpu_bound_ratio",
         f_curl->seconds / CpuBound(f_curl->cpu_seconds, f_curl->source_cpu_seconds), "x");
  Figure("e2e_glance_fast_vs_curl_ratio", f_curl->seconds / f_ours->seconds, "x");
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseOptions(argc, argv);
  http::GlobalInit();
  auto env = ReadWorldEnv();
  if (!env) {
    Die(env.error().ToString());
  }
  auto seeded = SeededDisks(env->manifest, options.vm_path);
  if (!seeded) {
    Die(seeded.error().ToString() +
        (options.vm_path == "/DC0/vm/vmi-big"
             ? " (start a world with a big disk: VCSIM_WORLD_BIG_DISK=1G tools/world.sh up)"
             : ""));
  }
  // The Glance raw image: as large as the VM's disks together.
  uint64_t total = 0;
  for (const SeededDisk& d : *seeded) {
    total += d.size_bytes;
  }
  if (options.only_glance) {
    GlanceFigures(options, total);
    return 0;
  }
  auto http = http::Client::Create(http::TlsConfig{.ca_file = env->ca});
  if (!http) {
    Die(http.error().ToString());
  }
  auto session = vmware::Session::Login({}, **http, env->sdk_url, env->user, env->password);
  if (!session) {
    Die("login: " + session.error().ToString());
  }
  auto ref = (*session)->FindByInventoryPath({}, options.vm_path);
  if (!ref) {
    Die(ref.error().ToString());
  }
  const vmware::VmRef vm{*ref, options.vm_path.substr(options.vm_path.rfind('/') + 1),
                         options.vm_path};

  const char* pid_env = std::getenv("VCSIM_PID");
  const pid_t vcsim_pid = pid_env != nullptr ? static_cast<pid_t>(std::atoi(pid_env)) : 0;
  if (options.only_ours || options.only_bare) {
    // For a profiler: nothing but one path, every run's figures.
    for (int round = 0; round < options.repeat; ++round) {
      auto o = RunOurs(**session, vm, *seeded,
                       options.only_bare ? imageserver::ChecksumPolicy::kNone
                                         : imageserver::ChecksumPolicy::kVerify,
                       vcsim_pid, options.only_bare ? Path::kBare : Path::kProduct);
      if (!o) {
        Die(o.error().ToString());
      }
      Figure("e2e_ours_seconds", o->seconds, "s");
      Figure("e2e_ours_first_byte_seconds", o->first_byte_seconds, "s");
      Figure("e2e_ours_cpu_seconds", o->cpu_seconds, "s");
      Figure("e2e_ours_vcsim_cpu_seconds", o->vcsim_cpu_seconds, "s");
      Figure("e2e_vs_cpu_bound_ratio", o->seconds / CpuBound(o->cpu_seconds, o->vcsim_cpu_seconds),
             "x");
    }
    return 0;
  }
  std::optional<OursRun> ours;
  std::optional<OursRun> unchecked;
  std::optional<OursRun> all;
  std::optional<OursRun> bare;
  std::optional<OursRun> relay;
  std::optional<CurlRun> curl;
  std::optional<ReferenceRun> reference;
  uint64_t peak_rss_kib = 0;
  for (int round = 0; round < options.repeat; ++round) {
    // The curl baseline first: it also brings the source's files into the page cache.
    auto c = RunCurl(**session, vm, vcsim_pid);
    if (!c) {
      Die(c.error().ToString());
    }
    if (!curl || c->seconds < curl->seconds) {
      curl = *c;
    }
    auto o = RunOurs(**session, vm, *seeded, imageserver::ChecksumPolicy::kVerify, vcsim_pid);
    if (!o) {
      Die(o.error().ToString());
    }
    auto a = RunOurs(**session, vm, *seeded, imageserver::ChecksumPolicy::kAll, vcsim_pid);
    if (!a) {
      Die(a.error().ToString());
    }
    if (!all || a->cpu_seconds < all->cpu_seconds) {
      all = *a;
    }
    auto u = RunOurs(**session, vm, *seeded, imageserver::ChecksumPolicy::kNone, vcsim_pid);
    if (!u) {
      Die(u.error().ToString());
    }
    if (!unchecked || u->seconds < unchecked->seconds) {
      unchecked = *u;
    }
    auto b =
        RunOurs(**session, vm, *seeded, imageserver::ChecksumPolicy::kNone, vcsim_pid, Path::kBare);
    if (!b) {
      Die(b.error().ToString());
    }
    if (!bare || b->seconds < bare->seconds) {
      bare = *b;
    }
    auto rl = RunOurs(**session, vm, *seeded, imageserver::ChecksumPolicy::kNone, vcsim_pid,
                      Path::kRelay, c->disk_bytes);
    if (!rl) {
      Die(rl.error().ToString());
    }
    if (!relay || rl->seconds < relay->seconds) {
      relay = *rl;
    }
    peak_rss_kib = std::max(peak_rss_kib, o->peak_rss_kib);
    if (!ours || o->seconds < ours->seconds) {
      ours = *o;
    }
    auto r = RunReference(*env, vm, *seeded, options.dir);
    if (!r) {
      Die(r.error().ToString());
    }
    if (!reference || r->seconds < reference->seconds) {
      reference = *r;
    }
  }
  if (peak_rss_kib == 0) {
    peak_rss_kib = PeakRssKib();  // clear_refs refused: the whole run's peak
  }
  const double raw_mb = static_cast<double>(ours->raw_bytes) / 1e6;
  Count("e2e_disks", seeded->size(), "disks");
  Figure("e2e_raw_MiB", static_cast<double>(ours->raw_bytes) / 1048576.0, "MiB");
  Figure("e2e_ours_seconds", ours->seconds, "s");
  Figure("e2e_ours_first_byte_seconds", ours->first_byte_seconds, "s");
  Figure("e2e_ours_MBps", raw_mb / ours->seconds, "MB/s");
  Figure("e2e_ours_cpu_seconds", ours->cpu_seconds, "s");
  if (vcsim_pid > 0) {
    Figure("e2e_ours_vcsim_cpu_seconds", ours->vcsim_cpu_seconds, "s");
    Figure("e2e_ours_cpu_bound_seconds", CpuBound(ours->cpu_seconds, ours->vcsim_cpu_seconds), "s");
  }
  Count("e2e_ours_context_switches", ours->context_switches, "switches");
  if (vcsim_pid > 0) {
    Figure("e2e_vs_cpu_bound_ratio",
           ours->seconds / CpuBound(ours->cpu_seconds, ours->vcsim_cpu_seconds), "x");
  }
  const double gib = static_cast<double>(ours->raw_bytes) / 1073741824.0;
  Figure("e2e_cpu_per_GiB_verify", ours->cpu_seconds / gib, "s/GiB");
  Figure("e2e_cpu_per_GiB_all", all->cpu_seconds / gib, "s/GiB");
  Figure("e2e_cpu_per_GiB_none", unchecked->cpu_seconds / gib, "s/GiB");
  Figure("e2e_ours_unchecked_seconds", unchecked->seconds, "s");
  Figure("e2e_ours_unchecked_cpu_seconds", unchecked->cpu_seconds, "s");
  Figure("e2e_checksums_cpu_seconds", ours->cpu_seconds - unchecked->cpu_seconds, "s");
  Figure("e2e_reference_seconds", reference->seconds, "s");
  Figure("e2e_reference_MBps", raw_mb / reference->seconds, "MB/s");
  Figure("e2e_vs_reference_ratio", reference->seconds / ours->seconds, "x");
  Figure("nfc_curl_seconds", curl->seconds, "s");
  Figure("nfc_curl_MBps", static_cast<double>(curl->nfc_bytes) / 1e6 / curl->seconds, "MB/s");
  Figure("nfc_curl_cpu_seconds", curl->cpu_seconds, "s");
  if (vcsim_pid > 0) {
    Figure("nfc_curl_vcsim_cpu_seconds", curl->vcsim_cpu_seconds, "s");
    Figure("nfc_curl_vs_cpu_bound_ratio",
           curl->seconds / CpuBound(curl->cpu_seconds, curl->vcsim_cpu_seconds), "x");
  }
  Figure("e2e_vs_curl_ratio", curl->seconds / ours->seconds, "x");
  Figure("e2e_unchecked_vs_reference_ratio", reference->seconds / unchecked->seconds, "x");
  Figure("e2e_unchecked_vs_curl_ratio", curl->seconds / unchecked->seconds, "x");
  Figure("e2e_bare_seconds", bare->seconds, "s");
  Figure("e2e_cpu_per_GiB_bare", bare->cpu_seconds / gib, "s/GiB");
  Figure("e2e_bare_vs_curl_ratio", curl->seconds / bare->seconds, "x");
  Figure("e2e_relay_seconds", relay->seconds, "s");
  Figure("e2e_relay_cpu_seconds", relay->cpu_seconds, "s");
  Figure("e2e_relay_vcsim_cpu_seconds", relay->vcsim_cpu_seconds, "s");
  Figure("e2e_relay_cpu_bound_seconds", CpuBound(relay->cpu_seconds, relay->vcsim_cpu_seconds),
         "s");
  Figure("e2e_relay_vs_curl_ratio", curl->seconds / relay->seconds, "x");
  Count("e2e_scratch_bytes_ours", ours->scratch_bytes, "bytes");
  Count("e2e_scratch_bytes_reference", reference->scratch_bytes, "bytes");
  Figure("e2e_peak_rss_MiB", static_cast<double>(peak_rss_kib) / 1024.0, "MiB");

  GlanceFigures(options, total);
  return 0;
}
