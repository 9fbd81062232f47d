// The vSphere provider against the test world's real vcsim: power-off (graceful through VMware
// Tools, forced, and a VM already off left alone), every Task followed to its end, export of
// every seeded disk through an NFC lease whose streams decode (with the project's own decoders)
// to the seeded sha256, the lease's keep-alive, completion and abort, faults as clear errors,
// and a session that expires and is renewed without the caller noticing.
//
// The power tests make their own VMs (govc vm.create) and destroy them afterwards: the seeded
// VMs keep the power state other tests expect. vcsim never reports VMware Tools running, so a
// test VM gets guest.toolsRunningStatus through vcsim's "SET.<property>" extraConfig hook.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

#include "disk/digest.h"
#include "disk/hashing_reader.h"
#include "disk/open.h"
#include "http/client.h"
#include "source/vmware/export.h"
#include "source/vmware/inventory.h"
#include "source/vmware/power.h"
#include "source/vmware/properties.h"
#include "source/vmware/session.h"
#include "source/vmware/task.h"
#include "world/process.h"
#include "world/world_env.h"

namespace vmimport::source::vmware {
namespace {

using namespace std::chrono_literals;
using core::ErrorCode;
using core::Result;
using testing::ManifestRow;
using testing::ManifestRows;
using testing::WorldVar;
namespace fs = std::filesystem;

struct Action {
  std::string reason;
  std::string message;
};

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// Decodes a streamOptimized VMDK stream with the project's decoders; sha256 of the raw disk and
// its size.
struct Decoded {
  std::string sha256;
  uint64_t raw_bytes = 0;
};
Result<Decoded> DecodeSha256(std::stop_token stop, disk::ByteSourcePtr source) {
  auto reader = disk::OpenDiskStream(stop, std::move(source), std::nullopt);
  if (!reader) {
    return core::MakeError(reader.error());
  }
  disk::Hasher hasher(disk::Hasher::Digests::kSha256Only);
  std::vector<std::byte> buf(1 << 20);
  while (true) {
    auto n = (*reader)->Read(stop, buf);
    if (!n) {
      return core::MakeError(n.error());
    }
    if (*n == 0) {
      break;
    }
    hasher.Update(std::span<const std::byte>(buf.data(), *n));
  }
  const disk::Checksums sums = hasher.Finish();
  return Decoded{sums.sha256, sums.bytes};
}

// The bytes of a stream as they come (the VMDK itself).
Result<std::string> ReadAll(disk::ByteSource& source) {
  std::string out;
  std::vector<std::byte> buf(256 << 10);
  while (true) {
    auto n = source.Read({}, buf);
    if (!n) {
      return core::MakeError(n.error());
    }
    if (*n == 0) {
      return out;
    }
    out.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
}

class VmwareProviderWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sdk_url_ = WorldVar("VCSIM_SDK_URL");
    user_ = WorldVar("VCSIM_USERNAME");
    password_ = WorldVar("VCSIM_PASSWORD");
    ca_ = WorldVar("VCSIM_CA");
    ASSERT_FALSE(sdk_url_.empty() || ca_.empty() || user_.empty());
    auto http = http::Client::Create(http::TlsConfig{.ca_file = ca_});
    ASSERT_TRUE(http) << http.error().ToString();
    http_ = std::move(*http);
    auto session = Session::Login({}, *http_, sdk_url_, user_, password_);
    ASSERT_TRUE(session) << session.error().ToString();
    session_ = std::move(*session);
  }

  void TearDown() override {
    for (const std::string& path : created_) {
      std::string out;
      EXPECT_EQ(Govc("vm.destroy " + Quote(path), &out), 0) << out;
    }
  }

  int Govc(const std::string& args, std::string* out = nullptr) {
    const std::string cmd = "GOVC_URL=" + Quote(WorldVar("GOVC_URL")) +
                            " GOVC_USERNAME=" + Quote(WorldVar("GOVC_USERNAME")) +
                            " GOVC_PASSWORD=" + Quote(WorldVar("GOVC_PASSWORD")) +
                            " GOVC_TLS_CA_CERTS=" + Quote(WorldVar("GOVC_TLS_CA_CERTS")) +
                            " GOVC_DATACENTER=" + Quote(WorldVar("GOVC_DATACENTER")) +
                            " GOVMOMI_HOME=" + Quote(WorldVar("GOVMOMI_HOME")) + " " +
                            Quote(WorldVar("GOVC")) + " " + args + " 2>&1";
    return testing::RunCommand(cmd, out);
  }

  // A fresh powered-on VM of this test (destroyed in TearDown), optionally with Tools running.
  VmRef MakeRunningVm(const std::string& tag, bool tools_running) {
    const std::string name = "vmw-" + tag + "-" + std::to_string(getpid());
    const std::string path = "/DC0/vm/" + name;
    std::string out;
    EXPECT_EQ(Govc("vm.create -on=true -net 'VM Network' -folder /DC0/vm -pool "
                   "/DC0/host/DC0_C0/Resources -ds seedds -m 64 -c 1 -g otherLinux64Guest " +
                       Quote(name),
                   &out),
              0)
        << out;
    created_.push_back(path);
    if (tools_running) {
      // vcsim's extraConfig hook: "SET.<path>" assigns the property itself.
      EXPECT_EQ(Govc("vm.change -vm " + Quote(path) +
                         " -e SET.guest.toolsRunningStatus=guestToolsRunning",
                     &out),
                0)
          << out;
    }
    return Find(path);
  }

  VmRef Find(const std::string& path) {
    auto ref = session_->FindByInventoryPath({}, path);
    EXPECT_TRUE(ref) << ref.error().ToString();
    return VmRef{ref ? *ref : MoRef{}, path.substr(path.rfind('/') + 1), path};
  }

  std::string Property(const MoRef& obj, const std::string& path) {
    auto props = RetrieveProperties({}, *session_, obj, {path});
    EXPECT_TRUE(props) << props.error().ToString();
    return props ? props->Text(path) : "";
  }

  size_t RecentTasks(const MoRef& vm) {
    auto props = RetrieveProperties({}, *session_, vm, {"recentTask"});
    EXPECT_TRUE(props) << props.error().ToString();
    if (!props) {
      return 0;
    }
    const auto tasks = (*props)["recentTask"].children();
    return static_cast<size_t>(std::distance(tasks.begin(), tasks.end()));
  }

  // Manifest disk rows of VM `path`, in index order.
  static std::vector<ManifestRow> DisksOf(const std::string& path) {
    std::vector<ManifestRow> rows;
    for (ManifestRow& d : ManifestRows("disk")) {
      if (d[1] == path) {
        rows.push_back(std::move(d));
      }
    }
    return rows;
  }

  // A GET of a lease URL with nothing but the TLS settings: the status says whether it lives.
  long UrlStatus(const std::string& url) {
    auto r = http_->Do({}, http::Request{.method = "HEAD", .url = url});
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? r->status : 0;
  }

  static PowerOffOptions FastPowerOptions() {
    PowerOffOptions o;
    o.graceful_timeout = 10s;
    o.poll_interval = 50ms;
    o.task.poll_interval = 50ms;
    o.task.timeout = 30s;
    return o;
  }

  std::string sdk_url_, user_, password_, ca_;
  std::unique_ptr<http::Client> http_;
  std::unique_ptr<Session> session_;
  std::vector<std::string> created_;
};

// ---------------------------------------------------------------------------------- power ----

TEST_F(VmwareProviderWorldTest, ToolsRunningVmIsShutDownThroughTheGuest) {
  const VmRef vm = MakeRunningVm("graceful", /*tools_running=*/true);
  ASSERT_EQ(Property(vm.ref, "runtime.powerState"), "poweredOn");
  ASSERT_EQ(Property(vm.ref, "guest.toolsRunningStatus"), "guestToolsRunning");
  std::vector<Action> actions;
  auto outcome = PowerOff({}, *session_, vm, FastPowerOptions(),
                          [&actions](std::string_view reason, std::string_view message) {
                            actions.push_back({std::string(reason), std::string(message)});
                          });
  ASSERT_TRUE(outcome) << outcome.error().ToString();
  EXPECT_EQ(*outcome, PowerOffOutcome::kGuestShutdown);
  ASSERT_EQ(actions.size(), 1U);
  EXPECT_EQ(actions[0].reason, kReasonShutdownGuest);
  EXPECT_NE(actions[0].message.find(vm.inventory_path), std::string::npos) << actions[0].message;
  EXPECT_EQ(Property(vm.ref, "runtime.powerState"), "poweredOff");
}

TEST_F(VmwareProviderWorldTest, ForceSkipsTheGuestAndFollowsThePowerOffTask) {
  const VmRef vm = MakeRunningVm("force", /*tools_running=*/true);
  ASSERT_EQ(Property(vm.ref, "runtime.powerState"), "poweredOn");
  const size_t tasks_before = RecentTasks(vm.ref);
  std::vector<std::string> reasons;
  PowerOffOptions options = FastPowerOptions();
  options.force = true;
  auto outcome = PowerOff(
      {}, *session_, vm, options,
      [&reasons](std::string_view reason, std::string_view) { reasons.emplace_back(reason); });
  ASSERT_TRUE(outcome) << outcome.error().ToString();
  EXPECT_EQ(*outcome, PowerOffOutcome::kPoweredOff);
  EXPECT_EQ(reasons, std::vector<std::string>{std::string(kReasonPowerOff)});
  EXPECT_EQ(Property(vm.ref, "runtime.powerState"), "poweredOff");
  EXPECT_EQ(RecentTasks(vm.ref), tasks_before + 1) << "exactly one task: PowerOffVM_Task";
}

TEST_F(VmwareProviderWorldTest, WithoutToolsTheVmIsPoweredOffHard) {
  const VmRef vm = MakeRunningVm("notools", /*tools_running=*/false);
  std::vector<std::string> reasons;
  auto outcome = PowerOff(
      {}, *session_, vm, FastPowerOptions(),
      [&reasons](std::string_view reason, std::string_view) { reasons.emplace_back(reason); });
  ASSERT_TRUE(outcome) << outcome.error().ToString();
  EXPECT_EQ(*outcome, PowerOffOutcome::kPoweredOff);
  EXPECT_EQ(reasons, std::vector<std::string>{std::string(kReasonPowerOff)});
  EXPECT_EQ(Property(vm.ref, "runtime.powerState"), "poweredOff");
}

TEST_F(VmwareProviderWorldTest, AVmAlreadyOffIsLeftAloneWithoutATask) {
  const VmRef vm = Find("/DC0/vm/vmi-bios-small");
  ASSERT_EQ(Property(vm.ref, "runtime.powerState"), "poweredOff");
  const size_t tasks_before = RecentTasks(vm.ref);
  std::vector<Action> actions;
  auto outcome = PowerOff({}, *session_, vm, FastPowerOptions(),
                          [&actions](std::string_view reason, std::string_view message) {
                            actions.push_back({std::string(reason), std::string(message)});
                          });
  ASSERT_TRUE(outcome) << outcome.error().ToString();
  EXPECT_EQ(*outcome, PowerOffOutcome::kAlreadyOff);
  ASSERT_EQ(actions.size(), 1U);
  EXPECT_EQ(actions[0].reason, kReasonAlreadyPoweredOff);
  EXPECT_NE(actions[0].message.find("already powered off"), std::string::npos);
  EXPECT_EQ(RecentTasks(vm.ref), tasks_before) << "a task was issued for a VM already off";
  EXPECT_EQ(Property(vm.ref, "runtime.powerState"), "poweredOff");
}

TEST_F(VmwareProviderWorldTest, AFailedTaskEndsWithItsFaultAndMessage) {
  const VmRef vm = Find("/DC0/vm/vmi-bios-small");  // off: powering it off again must fail
  auto task = session_->soap().Call({}, "PowerOffVM_Task", vm.ref.Xml("_this"));
  ASSERT_TRUE(task) << task.error().ToString();
  const MoRef task_ref{task->ReturnVal().attribute("type").as_string(),
                       task->ReturnVal().child_value()};
  auto done = WaitForTask({}, *session_, task_ref, "PowerOffVM_Task on " + vm.inventory_path,
                          TaskWaitOptions{.poll_interval = 50ms, .timeout = 30s});
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, ErrorCode::kConflict);
  EXPECT_NE(done.error().message.find("InvalidPowerState"), std::string::npos)
      << done.error().message;
  EXPECT_NE(done.error().message.find("/DC0/vm/vmi-bios-small"), std::string::npos);
  EXPECT_NE(done.error().message.find("the VM is poweredOff"), std::string::npos)
      << done.error().message;
}

TEST_F(VmwareProviderWorldTest, AVmThatDoesNotExistIsManagedObjectNotFound) {
  const VmRef ghost{MoRef{"VirtualMachine", "vm-999999"}, "ghost", "/DC0/vm/ghost"};
  auto outcome = PowerOff({}, *session_, ghost, FastPowerOptions(), {});
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, ErrorCode::kNotFound) << outcome.error().ToString();
  EXPECT_NE(outcome.error().message.find("ManagedObjectNotFound"), std::string::npos)
      << outcome.error().message;
}

// --------------------------------------------------------------------------------- export ----

TEST_F(VmwareProviderWorldTest, EveryDiskOfAMultiDiskVmExportsToTheSeededBytes) {
  const std::string path = "/DC0/vm/vmi-multi";
  const auto expected = DisksOf(path);
  ASSERT_EQ(expected.size(), 3U);
  const VmRef vm = Find(path);
  Inventory inventory(*session_);
  auto description = inventory.Describe({}, vm);
  ASSERT_TRUE(description) << description.error().ToString();

  ExportOptions options;
  options.keep_alive_interval = 100ms;
  auto lease = ExportLease::Start({}, *session_, vm, options);
  ASSERT_TRUE(lease) << lease.error().ToString();
  ExportLease& l = **lease;
  ASSERT_EQ(l.disks().size(), expected.size());
  ASSERT_EQ(description->disks.size(), expected.size());
  for (size_t i = 0; i < l.disks().size(); ++i) {
    EXPECT_EQ(l.disks()[i].device_key, description->disks[i].id) << "disk " << i;
    EXPECT_EQ(l.disks()[i].capacity_bytes, std::stoull(expected[i][3])) << "disk " << i;
    EXPECT_TRUE(l.disks()[i].lease_key.starts_with("/" + vm.ref.value + "/"))
        << l.disks()[i].lease_key;
  }

  // Disks 0 and 1 at once, on two threads; then disk 2.
  std::vector<Result<Decoded>> got(expected.size(), core::MakeError(ErrorCode::kInternal, "unset"));
  const auto start = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> readers;
    for (size_t i : {0U, 1U}) {
      readers.emplace_back([&l, &got, i] {
        auto source = l.OpenDisk({}, i);
        got[i] = source ? DecodeSha256({}, std::move(*source)) : core::MakeError(source.error());
      });
    }
  }
  auto source = l.OpenDisk({}, 2);
  ASSERT_TRUE(source) << source.error().ToString();
  got[2] = DecodeSha256({}, std::move(*source));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  uint64_t vmdk_bytes = 0;
  uint64_t raw_bytes = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_TRUE(got[i]) << "disk " << i << ": " << got[i].error().ToString();
    EXPECT_EQ(got[i]->sha256, expected[i][4]) << "disk " << i;
    EXPECT_EQ(got[i]->raw_bytes, std::stoull(expected[i][3])) << "disk " << i;
    EXPECT_GT(l.BytesRead(i), 0U);
    vmdk_bytes += l.BytesRead(i);
    raw_bytes += got[i]->raw_bytes;
  }
  std::cout << "export of " << path << ": " << vmdk_bytes << " VMDK bytes (" << raw_bytes
            << " raw) in " << seconds << " s: " << static_cast<double>(vmdk_bytes) / 1e6 / seconds
            << " MB/s VMDK, " << static_cast<double>(raw_bytes) / 1e6 / seconds
            << " MB/s raw decoded\n";

  // The keep-alive reported progress to the lease while (and after) the disks streamed: its
  // calls during the stream said less, the first one after it says 99 (every 100 ms here; the
  // stream itself may end within two intervals on a fast machine, so wait for that call).
  EXPECT_EQ(l.ProgressPercent(), 99);
  std::string reported;
  for (int i = 0; i < 100 && reported != "99"; ++i) {
    std::this_thread::sleep_for(50ms);
    reported = Property(l.lease(), "transferProgress");
  }
  EXPECT_GE(l.keep_alive_calls(), 2);
  EXPECT_TRUE(l.KeepAliveStatus()) << l.KeepAliveStatus().error().ToString();
  EXPECT_EQ(reported, "99");

  const std::string url = l.disks()[0].url;
  EXPECT_EQ(UrlStatus(url), 200);
  auto complete = l.Complete({});
  ASSERT_TRUE(complete) << complete.error().ToString();
  EXPECT_EQ(UrlStatus(url), 404) << "a completed lease must release its URLs";
  auto after = l.OpenDisk({}, 0);
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, ErrorCode::kGone);
}

TEST_F(VmwareProviderWorldTest, ADiskReadTwiceGivesIdenticalBytes) {
  const std::string path = "/DC0/vm/vmi-efi-secure";
  const auto expected = DisksOf(path);
  ASSERT_EQ(expected.size(), 2U);
  auto lease = ExportLease::Start({}, *session_, Find(path));
  ASSERT_TRUE(lease) << lease.error().ToString();
  auto first = (*lease)->OpenDisk({}, 1);
  ASSERT_TRUE(first) << first.error().ToString();
  auto first_bytes = ReadAll(**first);
  ASSERT_TRUE(first_bytes) << first_bytes.error().ToString();
  auto second = (*lease)->OpenDisk({}, 1);
  ASSERT_TRUE(second) << second.error().ToString();
  auto second_bytes = ReadAll(**second);
  ASSERT_TRUE(second_bytes) << second_bytes.error().ToString();
  ASSERT_GT(first_bytes->size(), 0U);
  EXPECT_EQ(first_bytes->size(), second_bytes->size());
  EXPECT_TRUE(*first_bytes == *second_bytes) << "two reads of one disk URL differ";
  EXPECT_EQ((*lease)->BytesRead(1), first_bytes->size());
  // And the bytes are the seeded disk.
  auto third = (*lease)->OpenDisk({}, 1);
  ASSERT_TRUE(third) << third.error().ToString();
  auto decoded = DecodeSha256({}, std::move(*third));
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(decoded->sha256, expected[1][4]);
  EXPECT_TRUE((*lease)->Complete({}));
}

// Issue 16: the lease's manifest (sha256 since HttpNfcLeaseSetManifestChecksumType took it) is
// checked over the VMDK bytes as received; the verified digest is that of exactly those bytes.
TEST_F(VmwareProviderWorldTest, EachDiskStreamIsCheckedAgainstTheLeaseManifest) {
  const std::string path = "/DC0/vm/vmi-efi-secure";
  auto lease = ExportLease::Start({}, *session_, Find(path));
  ASSERT_TRUE(lease) << lease.error().ToString();
  EXPECT_EQ((*lease)->manifest_algorithm(), "sha256");
  for (size_t i = 0; i < (*lease)->disks().size(); ++i) {
    auto source = (*lease)->OpenDisk({}, i);
    ASSERT_TRUE(source) << source.error().ToString();
    auto* checked = dynamic_cast<disk::CheckedSource*>(source->get());
    ASSERT_NE(checked, nullptr) << "a vSphere disk stream checks the manifest";
    auto bytes = ReadAll(**source);
    ASSERT_TRUE(bytes) << bytes.error().ToString();
    auto verified = checked->Verified();
    ASSERT_TRUE(verified) << "disk " << i;
    EXPECT_EQ(verified->verifier, "vsphere-manifest");
    EXPECT_EQ(verified->algorithm, "sha256");
    EXPECT_EQ(verified->hex,
              disk::DigestOf(disk::DigestAlgorithm::kSha256, std::as_bytes(std::span(*bytes))));
    EXPECT_EQ(verified->bytes, bytes->size());
    auto entry = (*lease)->GetManifestEntry({}, i);
    ASSERT_TRUE(entry && *entry) << "disk " << i;
    EXPECT_EQ((*entry)->hex, verified->hex);
    EXPECT_EQ((*entry)->size, bytes->size());
  }
  EXPECT_TRUE((*lease)->Complete({}));
}

// The vcsim fault mode: a VM whose downloads carry bytes the manifest does not declare. The
// stream ends with kCorruptData naming both digests instead of ending cleanly.
TEST_F(VmwareProviderWorldTest, ATamperedDownloadFailsAsCorruptData) {
  const std::string path = "/DC0/vm/vmi-bios-small";
  std::string out;
  ASSERT_EQ(Govc("vm.change -vm " + Quote(path) + " -e vmimport-ext.nfcTamper=append", &out), 0)
      << out;
  // Cleared whatever happens: the other tests want this VM's bytes intact.
  const std::shared_ptr<void> untamper(nullptr, [&](void*) {
    std::string o;
    EXPECT_EQ(Govc("vm.change -vm " + Quote(path) + " -e vmimport-ext.nfcTamper=", &o), 0) << o;
  });
  auto lease = ExportLease::Start({}, *session_, Find(path));
  ASSERT_TRUE(lease) << lease.error().ToString();
  auto source = (*lease)->OpenDisk({}, 0);
  ASSERT_TRUE(source) << source.error().ToString();
  auto bytes = ReadAll(**source);
  ASSERT_FALSE(bytes) << "a tampered stream must not read clean";
  EXPECT_EQ(bytes.error().code, ErrorCode::kCorruptData) << bytes.error().ToString();
  EXPECT_NE(bytes.error().message.find("vsphere-manifest declares"), std::string::npos)
      << bytes.error().message;
  EXPECT_TRUE((*lease)->Abort({}, "tampered"));
}

TEST_F(VmwareProviderWorldTest, AFailedExportAbortsItsLease) {
  const VmRef vm = Find("/DC0/vm/vmi-bios-small");
  auto lease = ExportLease::Start({}, *session_, vm);
  ASSERT_TRUE(lease) << lease.error().ToString();
  ASSERT_EQ((*lease)->disks().size(), 1U);
  const std::string url = (*lease)->disks()[0].url;
  ASSERT_EQ(UrlStatus(url), 200);
  auto aborted = (*lease)->Abort({}, "the image upload failed <test>");
  ASSERT_TRUE(aborted) << aborted.error().ToString();
  EXPECT_EQ(UrlStatus(url), 404) << "an aborted lease must release its URLs";
  auto open = (*lease)->OpenDisk({}, 0);
  ASSERT_FALSE(open);
  EXPECT_EQ(open.error().code, ErrorCode::kGone);
  auto complete = (*lease)->Complete({});
  ASSERT_FALSE(complete);
  EXPECT_EQ(complete.error().code, ErrorCode::kGone);
}

TEST_F(VmwareProviderWorldTest, ALeaseDroppedWithoutCompletingIsAborted) {
  const VmRef vm = Find("/DC0/vm/team-a/vmi-dup");
  std::string url;
  {
    auto lease = ExportLease::Start({}, *session_, vm);
    ASSERT_TRUE(lease) << lease.error().ToString();
    ASSERT_EQ((*lease)->disks().size(), 1U);
    url = (*lease)->disks()[0].url;
    ASSERT_EQ(UrlStatus(url), 200);
    auto source = (*lease)->OpenDisk({}, 0);  // a stream still open when the lease goes
    ASSERT_TRUE(source) << source.error().ToString();
  }
  EXPECT_EQ(UrlStatus(url), 404) << "the destructor must abort the lease";
}

TEST_F(VmwareProviderWorldTest, ExportOfARunningVmIsAClearConflict) {
  auto lease = ExportLease::Start({}, *session_, Find("/DC0/vm/vmi-running"));
  ASSERT_FALSE(lease);
  EXPECT_EQ(lease.error().code, ErrorCode::kConflict);
  EXPECT_NE(lease.error().message.find("InvalidPowerState"), std::string::npos)
      << lease.error().message;
  EXPECT_NE(lease.error().message.find("the VM is poweredOn"), std::string::npos)
      << lease.error().message;
  EXPECT_NE(lease.error().message.find("/DC0/vm/vmi-running"), std::string::npos);
}

// -------------------------------------------------------------------------------- session ----

TEST_F(VmwareProviderWorldTest, WrongPasswordIsUnauthenticatedInvalidLogin) {
  auto s = Session::Login({}, *http_, sdk_url_, user_, password_ + "-wrong");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kUnauthenticated);
  EXPECT_NE(s.error().message.find("InvalidLogin"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("user name or password"), std::string::npos);
}

// A vcsim of its own, from the world's binary and certificate, whose sessions expire after 1 s
// idle (the world's shared vcsim has no session timeout).
class ShortSessionVcsim {
 public:
  ShortSessionVcsim() {
    dir_ = fs::temp_directory_path() / ("vmw-vcsim-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    const std::string bin = fs::path(WorldVar("GOVC")).parent_path() / "vcsim-ext";
    const std::string tls = WorldVar("VCSIM_DIR") + "/tls/";
    process_ = std::make_unique<testing::ChildProcess>(
        std::vector<std::string>{bin, "-l", "127.0.0.1:0", "-url-file", (dir_ / "url").string(),
                                 "-username", WorldVar("VCSIM_USERNAME"), "-password",
                                 WorldVar("VCSIM_PASSWORD"), "-tlscert", tls + "server.pem",
                                 "-tlskey", tls + "server.key", "-session-timeout", "1s"},
        (dir_ / "vcsim.log").string());
    for (int i = 0; i < 200 && sdk_url_.empty(); ++i) {
      std::ifstream in(dir_ / "url");
      std::getline(in, sdk_url_);
      if (sdk_url_.empty()) {
        std::this_thread::sleep_for(50ms);
      }
    }
  }
  ~ShortSessionVcsim() {
    process_.reset();
    fs::remove_all(dir_);
  }
  const std::string& sdk_url() const { return sdk_url_; }
  std::string Log() const { return process_->Log(); }

 private:
  fs::path dir_;
  std::unique_ptr<testing::ChildProcess> process_;
  std::string sdk_url_;
};

TEST_F(VmwareProviderWorldTest, AnExpiredSessionIsRenewedTransparently) {
  ShortSessionVcsim vcsim;
  ASSERT_FALSE(vcsim.sdk_url().empty()) << vcsim.Log();
  auto session = Session::Login({}, *http_, vcsim.sdk_url(), user_, password_);
  ASSERT_TRUE(session) << session.error().ToString();
  Session& s = **session;
  const std::string first_cookie = s.soap().SessionCookie();

  // Idle past the timeout (vcsim drops an idle session after at most twice it).
  std::this_thread::sleep_for(3s);
  {
    SoapClient stale(*http_, vcsim.sdk_url());  // the old cookie, no re-login: proves expiry
    stale.SetSessionCookie(first_cookie);
    auto r =
        stale.Call({}, "FindByInventoryPath",
                   s.content().search_index.Xml("_this") + "<inventoryPath>DC0</inventoryPath>");
    ASSERT_FALSE(r) << "the session did not expire: the test proves nothing";
    EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated);
    EXPECT_NE(r.error().message.find("NotAuthenticated"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("log in again"), std::string::npos) << r.error().message;
  }
  auto dc = s.FindDatacenter({}, "DC0");  // a SOAP fault path
  ASSERT_TRUE(dc) << dc.error().ToString();
  EXPECT_EQ(s.relogins(), 1);
  EXPECT_NE(s.soap().SessionCookie(), first_cookie);

  std::this_thread::sleep_for(3s);
  auto name = RetrieveProperties({}, s, *dc, {"name"});  // the missingSet path
  ASSERT_TRUE(name) << name.error().ToString();
  EXPECT_EQ(name->Text("name"), "DC0");
  EXPECT_EQ(s.relogins(), 2);
}

TEST_F(VmwareProviderWorldTest, KeepAliveStopsAnIdleSessionFromExpiring) {
  ShortSessionVcsim vcsim;
  ASSERT_FALSE(vcsim.sdk_url().empty()) << vcsim.Log();
  auto session = Session::Login({}, *http_, vcsim.sdk_url(), user_, password_);
  ASSERT_TRUE(session) << session.error().ToString();
  Session& s = **session;
  const std::string cookie = s.soap().SessionCookie();
  s.StartKeepAlive(250ms);
  std::this_thread::sleep_for(3s);
  auto dc = s.FindDatacenter({}, "DC0");
  ASSERT_TRUE(dc) << dc.error().ToString();
  EXPECT_EQ(s.relogins(), 0) << "the session expired despite the keep-alive";
  EXPECT_EQ(s.soap().SessionCookie(), cookie);
  EXPECT_TRUE(s.Logout({}));
}

}  // namespace
}  // namespace vmimport::source::vmware
