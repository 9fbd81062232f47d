// Warm migration's source side (issue 22) against the real libvirtd and qemu of the test world:
// LibvirtChangeTracker on a running domain of two qcow2 disks that the test writes into through
// qemu's block layer while rounds proceed. Round 0 reads each disk whole (holes left out), rounds
// 1..3 carry exactly the written ranges at the dirty bitmaps' granularity, a round begun again
// after an abandoned attempt (a controller killed mid-round) loses nothing, and the local copy
// every round was applied to equals the source byte for byte once the domain is off; the last
// round of a cutover runs on the domain shut down and started paused. Cancel (RemoveAll) leaves
// no checkpoint and no job and the domain running; a raw disk is refused.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/strings.h"
#include "source/libvirt/backup_xml.h"
#include "source/libvirt/change_tracker.h"
#include "source/libvirt/extents.h"
#include "world/libvirt_world.h"
#include "world/world_env.h"

namespace vmimport::source::libvirt {
namespace {

using core::ErrorCode;
using testing::LvConfig;
using testing::LvWrite;
using testing::Virsh;
using warm::ChangedRange;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kKiB = 1024;
constexpr uint64_t kGranularity = 64 * kKiB;  // qemu's default bitmap granularity (64 KiB clusters)
constexpr const char* kDomain = "vmi-lv-warm";
const std::vector<uint64_t> kSizes = {16 * kMiB, 8 * kMiB};

std::string Trimmed(const std::string& s) { return std::string(core::TrimSpace(s)); }

std::string CheckpointList(const std::string& domain) {
  std::string out;
  Virsh("checkpoint-list --name " + domain, &out);
  return Trimmed(out);
}

std::string JobType(const std::string& domain) {
  std::string out;
  Virsh("domjobinfo " + domain, &out);
  const auto at = out.find("Job type:");
  return at == std::string::npos ? out : Trimmed(out.substr(at + 9, out.find('\n', at) - at - 9));
}

std::string Show(const std::vector<ChangedRange>& ranges) {
  std::string s;
  for (const auto& r : ranges) {
    s += "[" + std::to_string(r.offset) + "+" + std::to_string(r.length) + (r.zero ? " zero" : "") +
         "] ";
  }
  return s;
}

// The local copies the rounds are applied to, one sparse file per disk.
class Copies {
 public:
  explicit Copies(const std::filesystem::path& dir) : dir_(dir) {
    for (size_t i = 0; i < kSizes.size(); ++i) {
      const std::string path = Path(static_cast<int>(i));
      fds_.push_back(open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600));
      EXPECT_GE(fds_.back(), 0) << path;
      EXPECT_EQ(ftruncate(fds_.back(), static_cast<off_t>(kSizes[i])), 0);
    }
  }
  ~Copies() {
    for (int fd : fds_) {
      close(fd);
    }
  }
  Copies(const Copies&) = delete;
  Copies& operator=(const Copies&) = delete;
  std::string Path(int disk) const {
    return (dir_ / ("disk" + std::to_string(disk) + ".raw")).string();
  }

  // Applies one disk of a round: its ranges' bytes written (zero ranges punched); returns the
  // ranges (empty and a test failure on an error) and adds the bytes read to `moved`.
  std::vector<ChangedRange> Apply(warm::RoundDisk& disk, int index, uint64_t& moved) {
    auto ranges = disk.Changed({});
    if (!ranges) {
      ADD_FAILURE() << ranges.error().ToString();
      return {};
    }
    std::vector<std::byte> buf(4 * kMiB);
    for (const ChangedRange& r : *ranges) {
      if (r.zero) {
        EXPECT_EQ(
            fallocate(fds_[static_cast<size_t>(index)], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(r.offset), static_cast<off_t>(r.length)),
            0);
        continue;
      }
      for (uint64_t at = r.offset; at < r.offset + r.length;) {
        const size_t want =
            static_cast<size_t>(std::min<uint64_t>(buf.size(), r.offset + r.length - at));
        auto n = disk.ReadAt({}, at, std::span<std::byte>(buf.data(), want));
        if (!n || *n == 0) {
          ADD_FAILURE() << "read at " << at << ": " << (n ? "0 bytes" : n.error().ToString());
          return {};
        }
        EXPECT_EQ(pwrite(fds_[static_cast<size_t>(index)], buf.data(), *n, static_cast<off_t>(at)),
                  static_cast<ssize_t>(*n));
        at += *n;
        moved += *n;
      }
    }
    return *ranges;
  }

 private:
  std::filesystem::path dir_;
  std::vector<int> fds_;
};

// Writes `w` into disk `disk` of the domain and remembers it among the writes since the last
// checkpoint.
struct Writer {
  std::vector<std::vector<ChangedRange>> since;  // per disk
  Writer() : since(kSizes.size()) {}
  void Write(int disk, LvWrite w) {
    ASSERT_TRUE(testing::LvGuestWrite(kDomain, disk, w));
    since[static_cast<size_t>(disk)].push_back({w.offset, w.length, false});
  }
  // What a round must report for disk `disk` (the writes rounded out to the granularity); the
  // writes are then forgotten (they belong to the round that begins).
  std::vector<ChangedRange> Expect(int disk) {
    auto& s = since[static_cast<size_t>(disk)];
    auto out = RoundOut(s, kGranularity, kSizes[static_cast<size_t>(disk)]);
    s.clear();
    return out;
  }
};

// What a controller killed in the middle of round `n` leaves: its backup job running (begun as
// BeginRound begins it, with checkpoint n) and its private directory.
std::string AbandonRound(const std::string& uid, int n) {
  const std::string dir =
      std::filesystem::temp_directory_path() / (ExportDirPrefix(uid) + "crash" + std::to_string(n));
  std::filesystem::create_directories(dir);
  const std::string b = dir + "/backup.xml";
  const std::string c = dir + "/checkpoint.xml";
  {
    std::FILE* f = std::fopen(b.c_str(), "w");
    std::fputs(
        BackupXml(
            {{"vda", "vdb"}, dir + "/nbd.sock", dir, n > 0 ? warm::CheckpointName(uid, n - 1) : ""})
            .c_str(),
        f);
    std::fclose(f);
    f = std::fopen(c.c_str(), "w");
    std::fputs(CheckpointXml(warm::CheckpointName(uid, n), {"vda", "vdb"}).c_str(), f);
    std::fclose(f);
  }
  std::string out;
  EXPECT_EQ(Virsh("backup-begin " + std::string(kDomain) + " " + b + " " + c, &out), 0) << out;
  EXPECT_EQ(JobType(kDomain), "Unbounded");
  return dir;
}

TEST(LibvirtWarmWorldTest, RoundsCarryTheWritesRepeatLosesNothingCopyEqualsSource) {
  testing::LvDestroyQcow2Domain(kDomain);  // an earlier failed run's
  ASSERT_TRUE(testing::LvStartQcow2Domain(
      kDomain, kSizes,
      {{{0, 1 * kMiB, 0x11}, {5 * kMiB, 512 * kKiB, 0x22}}, {{1 * kMiB, 256 * kKiB, 0x33}}}));
  const std::string uid = "5a1e0022-0000-4000-8000-" + std::to_string(100000000000 + getpid());
  auto tracker = MakeLibvirtChangeTracker(LvConfig());
  ASSERT_TRUE(tracker->CheckCapable(kDomain)) << tracker->CheckCapable(kDomain).error().ToString();

  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("warm-copy-" + uid);
  std::filesystem::create_directories(dir);
  Copies copies(dir);
  Writer writer;

  // Applies round `n` (begun) to the copies; checks each disk's ranges against `expected`
  // (round 0: the data ranges only); prints its numbers.
  auto apply = [&](warm::Round& round, const std::vector<std::vector<ChangedRange>>& expected,
                   std::chrono::steady_clock::time_point began) {
    EXPECT_EQ(round.DiskCount(), kSizes.size());
    uint64_t moved = 0;
    uint64_t changed = 0;
    for (size_t i = 0; i < round.DiskCount(); ++i) {
      warm::RoundDisk& d = round.Disk(i);
      EXPECT_EQ(d.Target(), std::string("vd") + static_cast<char>('a' + i));
      EXPECT_EQ(d.VirtualSize(), kSizes[i]);
      auto ranges = copies.Apply(d, static_cast<int>(i), moved);
      std::vector<ChangedRange> data;
      for (const auto& r : ranges) {
        if (!r.zero) {
          data.push_back(r);
        }
      }
      changed += TotalBytes(ranges, false);
      EXPECT_EQ(data, expected[i]) << "round " << round.Number() << " disk " << d.Target()
                                   << ": got " << Show(ranges) << " want " << Show(expected[i]);
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    std::printf(
        "warm round %d: %.3f s (begin, block status, read), %llu bytes changed, %llu "
        "bytes moved\n",
        round.Number(), s, static_cast<unsigned long long>(changed),
        static_cast<unsigned long long>(moved));
  };

  // Round 0: everything with data; a write during the round is not in its point in time.
  auto began = std::chrono::steady_clock::now();
  auto r0 = tracker->BeginRound(kDomain, uid, 0);
  ASSERT_TRUE(r0) << r0.error().ToString();
  EXPECT_EQ((*r0)->Checkpoint(), warm::CheckpointName(uid, 0));
  writer.Write(0, {128 * kKiB, 64 * kKiB, 0x44});
  {
    std::vector<std::byte> b(16);
    auto n = (*r0)->Disk(0).ReadAt({}, 128 * kKiB, b);
    ASSERT_TRUE(n) << n.error().ToString();
    EXPECT_EQ(b[0], std::byte{0x11}) << "round 0 must read its point in time, not the later write";
  }
  apply(**r0, {{{0, 1 * kMiB}, {5 * kMiB, 512 * kKiB}}, {{1 * kMiB, 256 * kKiB}}}, began);
  ASSERT_TRUE((*r0)->Finish());
  ASSERT_TRUE((*r0)->Finish()) << "Finish is safe to repeat";
  EXPECT_EQ(JobType(kDomain), "None");

  // Round 1: the write during round 0 and those after it (unaligned ones rounded out).
  writer.Write(0, {3 * kMiB + 4096, 10000, 0x55});
  writer.Write(1, {0, 64 * kKiB, 0x66});
  began = std::chrono::steady_clock::now();
  auto r1 = tracker->BeginRound(kDomain, uid, 1);
  ASSERT_TRUE(r1) << r1.error().ToString();
  const std::vector<std::vector<ChangedRange>> want1 = {writer.Expect(0), writer.Expect(1)};
  writer.Write(0, {8 * kMiB, 128 * kKiB, 0x77});  // during round 1: round 2's
  apply(**r1, want1, began);
  r1->reset();  // destroying an unfinished round finishes it
  EXPECT_EQ(JobType(kDomain), "None");

  // Round 2, begun again after an abandoned attempt (its job still runs, checkpoint 2 exists,
  // a write happened while it ran): the repeat stops the job, removes checkpoint 2 (its bitmap
  // merges into checkpoint 1) and reports the writes since round 1 began, the abandoned
  // attempt's included.
  writer.Write(1, {7 * kMiB + 60 * kKiB, 8 * kKiB, 0x88});  // crosses a granularity boundary
  const std::string crash_dir = AbandonRound(uid, 2);
  writer.Write(0, {12 * kMiB, 64 * kKiB, 0x99});
  began = std::chrono::steady_clock::now();
  auto r2 = tracker->BeginRound(kDomain, uid, 2);
  ASSERT_TRUE(r2) << r2.error().ToString();
  EXPECT_FALSE(std::filesystem::exists(crash_dir)) << "the abandoned attempt's directory stays";
  apply(**r2, {writer.Expect(0), writer.Expect(1)}, began);
  ASSERT_TRUE((*r2)->Finish());

  // Round 3: a one-byte write (a whole block), nothing on vdb.
  writer.Write(0, {15 * kMiB + 65535, 1, 0xaa});
  began = std::chrono::steady_clock::now();
  auto r3 = tracker->BeginRound(kDomain, uid, 3);
  ASSERT_TRUE(r3) << r3.error().ToString();
  apply(**r3, {writer.Expect(0), writer.Expect(1)}, began);
  ASSERT_TRUE((*r3)->Finish());
  EXPECT_EQ(CheckpointList(kDomain),
            warm::CheckpointName(uid, 0) + "\n" + warm::CheckpointName(uid, 1) + "\n" +
                warm::CheckpointName(uid, 2) + "\n" + warm::CheckpointName(uid, 3));

  // Old checkpoints go as rounds are applied; absent is success.
  for (int n : {0, 1, 2, 1}) {
    ASSERT_TRUE(tracker->RemoveCheckpoint(kDomain, uid, n));
  }
  EXPECT_EQ(CheckpointList(kDomain), warm::CheckpointName(uid, 3));

  // Cutover: the guest shut down (after one more write), the last round reads the disks of the
  // domain started paused (its vCPUs never run, so nothing changes; a backup needs qemu
  // running): exactly the write since round 3.
  writer.Write(1, {2 * kMiB, 192 * kKiB, 0xbb});
  {
    std::string out;
    ASSERT_EQ(Virsh("destroy --graceful " + std::string(kDomain), &out), 0) << out;
    ASSERT_EQ(Virsh("start --paused " + std::string(kDomain), &out), 0) << out;
    EXPECT_EQ(testing::DomState(kDomain), "paused");
  }
  ASSERT_TRUE(tracker->CheckCapable(kDomain)) << "a paused domain can do a round";
  began = std::chrono::steady_clock::now();
  auto r4 = tracker->BeginRound(kDomain, uid, 4);
  ASSERT_TRUE(r4) << r4.error().ToString();
  apply(**r4, {writer.Expect(0), writer.Expect(1)}, began);
  ASSERT_TRUE((*r4)->Finish());
  ASSERT_TRUE(tracker->RemoveCheckpoint(kDomain, uid, 3));
  {
    std::string out;
    ASSERT_EQ(Virsh("resume " + std::string(kDomain), &out), 0) << out;
  }

  // A backup job of someone else: a round is refused (kConflict), it is left alone.
  {
    const std::string other = dir / "other.xml";
    std::FILE* f = std::fopen(other.c_str(), "w");
    std::fputs(
        ("<domainbackup mode='pull'><server transport='unix' socket='" + (dir / "o.sock").string() +
         "'/><disks><disk name='vda' backup='yes' type='file'><scratch file='" +
         (dir / "o-vda").string() +
         "'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>")
            .c_str(),
        f);
    std::fclose(f);
    std::string out;
    ASSERT_EQ(Virsh("backup-begin " + std::string(kDomain) + " " + other, &out), 0) << out;
    auto r = tracker->BeginRound(kDomain, uid, 5);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kConflict) << r.error().ToString();
    EXPECT_EQ(JobType(kDomain), "Unbounded");
    EXPECT_EQ(Virsh("domjobabort " + std::string(kDomain), &out), 0) << out;
  }

  // Cancel during precopy (a round of ours abandoned mid-way): nothing of ours stays; the
  // domain runs on.
  AbandonRound(uid, 5);
  EXPECT_EQ(CheckpointList(kDomain),
            warm::CheckpointName(uid, 4) + "\n" + warm::CheckpointName(uid, 5));
  ASSERT_TRUE(tracker->RemoveAll(kDomain, uid));
  EXPECT_EQ(CheckpointList(kDomain), "");
  EXPECT_EQ(JobType(kDomain), "None");
  EXPECT_EQ(testing::DomState(kDomain), "running");
  ASSERT_TRUE(tracker->RemoveAll(kDomain, uid)) << "RemoveAll is safe to repeat";

  // The domain off: the copies equal the source disks byte for byte.
  {
    std::string out;
    ASSERT_EQ(Virsh("destroy --graceful " + std::string(kDomain), &out), 0) << out;
  }
  for (size_t i = 0; i < kSizes.size(); ++i) {
    const std::string raw = (dir / ("source" + std::to_string(i) + ".raw")).string();
    std::string out;
    ASSERT_EQ(testing::RunCommand("qemu-img convert -f qcow2 -O raw '" +
                                      testing::LvQcow2DiskPath(kDomain, static_cast<int>(i)) +
                                      "' '" + raw + "' 2>&1",
                                  &out),
              0)
        << out;
    EXPECT_EQ(testing::RunCommand(
                  "cmp '" + raw + "' '" + copies.Path(static_cast<int>(i)) + "' 2>&1", &out),
              0)
        << "disk " << i << ": " << out;
  }
  ASSERT_TRUE(tracker->RemoveAll(kDomain, uid)) << "a shut-off domain";
  testing::LvDestroyQcow2Domain(kDomain);
  ASSERT_TRUE(tracker->RemoveAll(kDomain, uid)) << "a domain that is gone is success";
  std::filesystem::remove_all(dir);
}

TEST(LibvirtWarmWorldTest, CheckCapableRefusesRawDisksShutOffDomainsAndNamesTheReason) {
  testing::EnsureRunning("vmi-lv-multi");
  auto tracker = MakeLibvirtChangeTracker(LvConfig());
  auto raw = tracker->CheckCapable("vmi-lv-multi");  // vda qcow2, sda raw
  ASSERT_FALSE(raw);
  EXPECT_EQ(raw.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(raw.error().message.find("disk sda"), std::string::npos) << raw.error().message;
  EXPECT_NE(raw.error().message.find("convert it to qcow2"), std::string::npos)
      << raw.error().message;
  EXPECT_EQ(raw.error().message.find("disk vda"), std::string::npos) << raw.error().message;
  auto begun = tracker->BeginRound("vmi-lv-multi", "5a1e0022-refused", 0);
  ASSERT_FALSE(begun);
  EXPECT_EQ(begun.error().code, ErrorCode::kUnsupported);
  EXPECT_EQ(CheckpointList("vmi-lv-multi"), "");

  auto off = tracker->CheckCapable("vmi-lv-efi");  // shut off
  ASSERT_FALSE(off);
  EXPECT_EQ(off.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(off.error().message.find("not running"), std::string::npos) << off.error().message;

  auto none = tracker->CheckCapable("vmi-lv-no-such-domain");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound) << none.error().ToString();
}

}  // namespace
}  // namespace vmimport::source::libvirt
