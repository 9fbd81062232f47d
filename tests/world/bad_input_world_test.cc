// Bad input end to end (issue #10): every case states the status it must produce (the import's
// importStatus, or the source's status.status) and the condition reason and message it must
// carry, and is checked to get there within 10 s of its object's creation, with an Event and a
// controller log line naming it, and with nothing touched: powered-on source VMs stay on, no
// VirtualMachineImage, PVC or VirtualMachine appears, and the objects already there (a VM of the
// target name, an image) keep their resourceVersion. Cases are grouped so that one controller and
// one Harvester simulator serve a whole table at once.
//
// Security: nothing the run wrote (controller and simulator logs, Events, every import and
// source object) holds a credential (passwords, their base64, vSphere session keys captured
// while the controller held its session, image-server tokens); a disk URL stops working once
// the import ends; TLS is verified by default (the no-CA and wrong-CA cases).
//
// VMIMPORT_CAMPAIGN_FIGURES names a file that gets "name value unit" lines (appended):
// bad_inputs_tried, bad_inputs_handled, bad_input_max_seconds_to_reason, secrets_leaked.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "build_paths.h"
#include "http/client.h"
#include "kube/client.h"
#include "world/import_fixture.h"
#include "world/process.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::Eventually;
using testing::ReadFile;
using testing::WorldVar;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const Resource kStorageClasses{"storage.k8s.io", "v1", "storageclasses", false};

constexpr auto kReasonLimit = 10s;                 // each case must show its reason within this
constexpr const char* kRunningVm = "vmi-running";  // seeded powered on
constexpr const char* kRunningDup = "/DC0/vm/team-b/vmi-dup";  // seeded powered on
// kReasonLimit, except for a reason only Harvester's retries bring (ImageFailed: the image failed
// spec.retry + 1 = 4 times): each attempt of Longhorn's own downloader takes about 2 s
// (backing-image-manager polls in 1 s ticks), then harvester-sim waits 2 s (Harvester 10 s).
constexpr auto kRetriedReasonLimit = 30s;

std::string Base64(const std::string& s) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    const unsigned v = (unsigned(uint8_t(s[i])) << 16) | (unsigned(uint8_t(s[i + 1])) << 8) |
                       unsigned(uint8_t(s[i + 2]));
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == s.size()) {
    const unsigned v = unsigned(uint8_t(s[i])) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == s.size()) {
    const unsigned v = (unsigned(uint8_t(s[i])) << 16) | (unsigned(uint8_t(s[i + 1])) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// --- figures for the campaign ---------------------------------------------------------------

struct Outcome {
  std::string name;
  bool handled = false;
  double seconds = -1;  // to the reason; -1: never reached
};

std::vector<Outcome>& Outcomes() {
  static std::vector<Outcome> outcomes;
  return outcomes;
}

int& SecretsLeaked() {
  static int leaked = -1;  // -1: the security test did not run
  return leaked;
}

// Appends this process's figures to $VMIMPORT_CAMPAIGN_FIGURES, and prints the case table.
class FiguresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    if (Outcomes().empty() && SecretsLeaked() < 0) {
      return;
    }
    size_t handled = 0;
    double max_seconds = 0;
    std::cerr << "bad-input cases (seconds to reason):\n";
    for (const Outcome& o : Outcomes()) {
      handled += o.handled ? 1 : 0;
      max_seconds = std::max(max_seconds, o.seconds);
      std::cerr << "  " << (o.handled ? "ok  " : "FAIL") << " " << o.name << " " << o.seconds
                << "\n";
    }
    const char* path = std::getenv("VMIMPORT_CAMPAIGN_FIGURES");
    if (path == nullptr || *path == '\0') {
      return;
    }
    std::ofstream out(path, std::ios::app);
    if (!Outcomes().empty()) {
      out << "bad_inputs_tried " << Outcomes().size() << " count\n";
      out << "bad_inputs_handled " << handled << " count\n";
      out << "bad_input_max_seconds_to_reason " << max_seconds << " s\n";
    }
    if (SecretsLeaked() >= 0) {
      out << "secrets_leaked " << SecretsLeaked() << " count\n";
    }
  }
};

// gtest owns registered environments.
[[maybe_unused]] ::testing::Environment* const kFigures = ::testing::AddGlobalTestEnvironment(
    new FiguresEnvironment);  // NOLINT(cppcoreguidelines-owning-memory)

// --- cases ----------------------------------------------------------------------------------

//! Which object carries a case's outcome.
enum class On { kImport, kVmwareSource, kOvaSource };

struct Case {
  std::string name;  // the import's or the source's name
  On on = On::kImport;
  std::string status;   // importStatus, or the source's status.status
  std::string reason;   // the condition's reason; the Event has it too
  std::string message;  // a part of the condition's message (and of the Event's)
};

//! What an object shows: its status and the reason and message of its failure condition (for an
//! import still waiting, those of its newest Event of the expected reason).
struct Seen {
  std::string status;
  std::string reason;
  std::string message;
};

std::ostream& operator<<(std::ostream& os, const Seen& s) {
  return os << "{status=" << s.status << " reason=" << s.reason << " message=" << s.message << "}";
}

// A running ova_server.py.
struct OvaServer {
  std::unique_ptr<ChildProcess> process;
  std::string base_url;
};

class BadInputWorldTest : public ImportFixture {
 protected:
  BadInputWorldTest() : ImportFixture("bad") {}

  void SetUp() override {
    ImportFixture::SetUp();
    if (!HasFatalFailure()) {
      CreateNad();
    }
  }

  void TearDown() override {
    controller_.reset();
    sim_.reset();
    for (auto& [name, server] : ova_servers_) {
      server.process.reset();
    }
    if (client_ != nullptr) {
      for (const std::string& sc : storage_classes_) {
        (void)client_->Delete({}, kStorageClasses, "", sc);
      }
    }
    ImportFixture::TearDown();
  }

  // --- the world --------------------------------------------------------------------------

  std::string SimLog() { return ReadFile(dir_ / "harvester-sim.log"); }

  Json Get(const Resource& r, const std::string& name) {
    auto obj = client_->Get({}, r, ns_, name);
    return obj ? *obj : Json::object();
  }

  void WaitSourceReady(const Resource& r, const std::string& name) {
    ASSERT_TRUE(Eventually(
        [&] {
          return Get(r, name).value("status", Json::object()).value("status", "") == "clusterReady";
        },
        60s))
        << name << ": " << Get(r, name).dump() << "\n"
        << ControllerLog();
  }

  // --- OVA --------------------------------------------------------------------------------

  //! The OVAs of make-ovas.sh plus the corrupt ones of this file, in dir_/ova.
  void MakeOvas() {
    const fs::path ova = dir_ / "ova";
    fs::create_directories(ova);
    const std::string script =
        std::string(vmimport::build_paths::SourceDir()) + "/tests/world/ova/make-ovas.sh";
    const std::string cmd = "VCSIM_MANIFEST='" + WorldVar("VCSIM_MANIFEST") +
                            "' VCSIM_DATASTORE_DIR='" + WorldVar("VCSIM_DATASTORE_DIR") + "' '" +
                            script + "' '" + ova.string() + "' >'" + (dir_ / "make.log").string() +
                            "' 2>&1";
    ASSERT_EQ(testing::RunCommand(cmd), 0) << ReadFile(dir_ / "make.log");
    // From good.ova (OVF, manifest, disk1.vmdk 24 MiB of random data, disk2.vmdk sparse):
    //  corrupt-grain.ova  64 KiB of disk1's compressed grains overwritten, manifest made anew
    //                     (only the VMDK decoder can see it)
    //  bad-magic.ova      disk1's "KDMV" magic overwritten, manifest made anew
    //  qcow2.ova          disk1 as qcow2 (the OVF still says streamOptimized), manifest anew
    //  no-ovf.ova         the disks without an OVF
    //  not-a-tar.ova      text
    const std::string py = R"PY(
import hashlib, io, os, random, re, subprocess, sys, tarfile
d = sys.argv[1]
src = tarfile.open(os.path.join(d, 'good.ova'))
files = {m.name: src.extractfile(m).read() for m in src.getmembers()}
def write(name, entries):
    with tarfile.open(os.path.join(d, name), 'w', format=tarfile.USTAR_FORMAT) as t:
        for n, b in entries:
            ti = tarfile.TarInfo(n); ti.size = len(b); ti.mode = 0o644
            t.addfile(ti, io.BytesIO(b))
def ova(name, disk1, href='disk1.vmdk'):
    ovf = files['vm.ovf'].decode()
    ovf = re.sub(r'ovf:href="disk1.vmdk" ovf:id="file1" ovf:size="\d+"',
                 'ovf:href="%s" ovf:id="file1" ovf:size="%d"' % (href, len(disk1)), ovf).encode()
    entries = [('vm.ovf', ovf), (href, disk1), ('disk2.vmdk', files['disk2.vmdk'])]
    mf = ''.join('SHA256(%s)= %s\n' % (n, hashlib.sha256(b).hexdigest()) for n, b in entries)
    write(name, [entries[0], ('vm.mf', mf.encode())] + entries[1:])
disk1 = bytearray(files['disk1.vmdk'])
rnd = random.Random(10)
bad = bytearray(disk1); mid = len(bad) // 2
bad[mid:mid + 65536] = bytes(rnd.getrandbits(8) for _ in range(65536))
ova('corrupt-grain.ova', bytes(bad))
bad = bytearray(disk1); bad[0:4] = b'XXXX'
ova('bad-magic.ova', bytes(bad))
open(os.path.join(d, 'd1.vmdk'), 'wb').write(disk1)
subprocess.check_call(['qemu-img', 'convert', '-O', 'qcow2', os.path.join(d, 'd1.vmdk'),
                       os.path.join(d, 'd1.qcow2')])
q = open(os.path.join(d, 'd1.qcow2'), 'rb').read()
os.remove(os.path.join(d, 'd1.vmdk')); os.remove(os.path.join(d, 'd1.qcow2'))
ova('qcow2.ova', q, 'disk1.qcow2')
write('no-ovf.ova', [('disk1.vmdk', files['disk1.vmdk']), ('disk2.vmdk', files['disk2.vmdk'])])
open(os.path.join(d, 'not-a-tar.ova'), 'w').write('this is not an OVA archive\n' * 100)
)PY";
    std::ofstream(dir_ / "make-bad-ovas.py") << py;
    ASSERT_EQ(testing::RunCommand("python3 '" + (dir_ / "make-bad-ovas.py").string() + "' '" +
                                  ova.string() + "' >>'" + (dir_ / "make.log").string() + "' 2>&1"),
              0)
        << ReadFile(dir_ / "make.log");
  }

  //! Starts ova_server.py on `dir` (extra: --no-range, --user U --password P, ...).
  OvaServer& StartOvaServer(const std::string& name, const fs::path& dir,
                            const std::vector<std::string>& extra = {}) {
    const fs::path port_file = dir_ / (name + ".port");
    std::string command = "exec python3 '" + std::string(vmimport::build_paths::SourceDir()) +
                          "/tests/world/ova/ova_server.py' --dir '" + dir.string() +
                          "' --port-file '" + port_file.string() + "'";
    for (const std::string& e : extra) {
      command += " '" + e + "'";
    }
    OvaServer& s = ova_servers_[name];
    s.process = std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", command},
                                               (dir_ / (name + ".log")).string());
    EXPECT_TRUE(Eventually([&] { return fs::exists(port_file); }, 10s)) << name;
    s.base_url = "http://127.0.0.1:" + ReadFile(port_file) + "/";
    return s;
  }

  // --- observing cases ----------------------------------------------------------------------

  static bool IsImport(const Case& c) { return c.on == On::kImport; }

  //! The Events of the namespace (one list).
  std::vector<Json> Events() { return Items(kEvents); }

  static bool EventNames(const std::vector<Json>& events, const Case& c) {
    for (const Json& e : events) {
      const Json& involved = e.value("involvedObject", Json::object());
      if (involved.value("name", "") == c.name && e.value("reason", "") == c.reason &&
          e.value("message", "").find(c.message) != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  static Seen SeenOf(const Case& c, const Json& object, const std::vector<Json>& events) {
    Seen s;
    const Json status = object.value("status", Json::object());
    if (!IsImport(c)) {
      s.status = status.value("status", "");
      for (const Json& cond : status.value("conditions", Json::array())) {
        if (cond.value("type", "") == "ClusterError" && cond.value("status", "") == "True") {
          s.reason = cond.value("reason", "");
          s.message = cond.value("message", "");
        }
      }
      return s;
    }
    s.status = status.value("importStatus", "");
    for (const Json& cond : status.value("importConditions", Json::array())) {
      const std::string type = cond.value("type", "");
      if ((type == "Invalid" || type == "Failed") && cond.value("status", "") == "True") {
        s.reason = cond.value("reason", "");
        s.message = cond.value("message", "");
      }
    }
    if (s.reason.empty() && s.status == "virtualMachineImportValid") {
      // Waiting (the source does not exist or is not ready): no condition, an Event says why.
      for (const Json& e : events) {
        if (e.value("involvedObject", Json::object()).value("name", "") == c.name &&
            e.value("reason", "") == c.reason) {
          s.reason = c.reason;
          s.message = e.value("message", "");
        }
      }
    }
    return s;
  }

  static bool Reached(const Case& c, const Seen& s) {
    return s.status == c.status && s.reason == c.reason &&
           s.message.find(c.message) != std::string::npos;
  }

  //! Whether the controller log has a line naming the case's object and its reason.
  bool LogNames(const std::string& log, const Case& c) {
    const std::string object = (IsImport(c) ? "import=" : "source=") + ns_ + "/" + c.name;
    std::istringstream lines(log);
    for (std::string line; std::getline(lines, line);) {
      if (line.find(object + " ") != std::string::npos &&
          line.find("reason=" + c.reason) != std::string::npos) {
        return true;
      }
      if (line.ends_with(object) && line.find("reason=" + c.reason) != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  //! Waits for every case (each at most kReasonLimit, or kRetriedReasonLimit, after its creation,
  //! plus slack to see a late one), then checks its Event and log line; `untouched` is the group's
  //! own check of what must not have changed. Records each case's outcome for the figures.
  void CheckCases(const std::vector<Case>& cases, const std::function<bool()>& untouched) {
    std::map<std::string, double> seconds;
    std::map<std::string, Seen> last;
    const auto give_up = Clock::now() + kRetriedReasonLimit + 20s;
    while (seconds.size() < cases.size() && Clock::now() < give_up) {
      auto imports = Items(kImports);
      auto vmware = Items(kVmwareSources);
      auto ova = Items(kOvaSources);
      auto events = Events();
      const auto now = Clock::now();
      for (const Case& c : cases) {
        if (seconds.contains(c.name)) {
          continue;
        }
        const std::vector<Json>& list = c.on == On::kImport         ? imports
                                        : c.on == On::kVmwareSource ? vmware
                                                                    : ova;
        for (const Json& o : list) {
          if (o["metadata"].value("name", "") != c.name) {
            continue;
          }
          last[c.name] = SeenOf(c, o, events);
          if (Reached(c, last[c.name])) {
            seconds[c.name] = std::chrono::duration<double>(now - created_.at(c.name)).count();
          }
        }
      }
      std::this_thread::sleep_for(100ms);
    }
    // Events and log lines may trail the status by a moment.
    std::vector<Json> events;
    std::string log;
    auto named = [&](const Case& c) { return EventNames(events, c) && LogNames(log, c); };
    Eventually(
        [&] {
          events = Events();
          log = ControllerLog();
          return std::all_of(cases.begin(), cases.end(), named);
        },
        5s);
    const bool nothing_touched = untouched();
    EXPECT_TRUE(nothing_touched);
    for (const Case& c : cases) {
      SCOPED_TRACE("case " + c.name);
      const bool reached = seconds.contains(c.name);
      EXPECT_TRUE(reached) << "want {status=" << c.status << " reason=" << c.reason << " message~"
                           << c.message << "}, last seen " << last[c.name];
      const double s = reached ? seconds[c.name] : -1;
      const double limit = std::chrono::duration<double>(
                               c.reason == "ImageFailed" ? kRetriedReasonLimit : kReasonLimit)
                               .count();
      EXPECT_LE(s, limit);
      EXPECT_TRUE(EventNames(events, c)) << "no Event " << c.reason << " naming " << c.name;
      EXPECT_TRUE(LogNames(log, c)) << "no log line naming " << c.name << " and " << c.reason;
      const bool handled =
          reached && s <= limit && EventNames(events, c) && LogNames(log, c) && nothing_touched;
      Outcomes().push_back({c.name, handled, s});
    }
  }

  //! No import left, not even one waiting for its finalizer.
  bool Finalized() {
    auto list = client_->List({}, kImports, ns_);
    return list && (*list)["items"].empty();
  }

  //! resourceVersions of the objects of `r` (by name).
  std::map<std::string, std::string> Versions(const Resource& r) {
    std::map<std::string, std::string> out;
    for (const Json& o : Items(r)) {
      out[o["metadata"].value("name", "")] = o["metadata"].value("resourceVersion", "");
    }
    return out;
  }

  //! What this project's client wrote to each VM: its managedFields entries of manager
  //! "vm-import" (the test's own create is one of them; any later write by the controller changes
  //! them). Not the resourceVersion or generation: KubeVirt's virt-controller writes its finalizer,
  //! annotations, defaults and status to every VM.
  std::map<std::string, std::string> VmStates() {
    std::map<std::string, std::string> out;
    for (const Json& o : Items(kVms)) {
      const Json& m = o["metadata"];
      std::string ours;
      for (const Json& f : m.value("managedFields", Json::array())) {
        if (f.value("manager", "") == "vm-import") {
          ours += f.dump();
        }
      }
      out[m.value("name", "")] = ours + " " + m.value("ownerReferences", Json::array()).dump();
    }
    return out;
  }

  //! A VirtualMachine that is not this controller's: it must never be changed or adopted.
  void CreateForeignVm(const std::string& name) {
    Json vm = {
        {"apiVersion", "kubevirt.io/v1"},
        {"kind", "VirtualMachine"},
        {"metadata", {{"name", name}, {"namespace", ns_}, {"labels", {{"owner", "someone-else"}}}}},
        {"spec",
         {{"runStrategy", "Halted"},
          {"template", {{"spec", {{"domain", {{"devices", Json::object()}}}}}}}}}};
    auto r = client_->Create({}, kVms, ns_, vm);
    ASSERT_TRUE(r) << r.error().ToString();
  }

  //! An image that is not this controller's, already imported (the simulator leaves it alone).
  void CreateForeignImage(const std::string& name) {
    Json image = {
        {"apiVersion", "harvesterhci.io/v1beta1"},
        {"kind", "VirtualMachineImage"},
        {"metadata", {{"name", name}, {"namespace", ns_}}},
        {"spec",
         {{"displayName", name},
          {"sourceType", "download"},
          {"backend", "backingimage"},
          {"url", "http://127.0.0.1:1/foreign.img"}}},
        {"status",
         {{"progress", 100},
          {"conditions", {{{"type", "Imported"}, {"status", "True"}, {"reason", "Imported"}}}}}}};
    auto r = client_->Create({}, kImages, ns_, image);
    ASSERT_TRUE(r) << r.error().ToString();
  }

  std::map<std::string, OvaServer> ova_servers_;
  std::vector<std::string> storage_classes_;
};

// Sources that cannot be used: the source says why (status clusterNotReady, ClusterError with
// the reason), an import naming it waits in virtualMachineImportValid with a SourceNotReady Event
// that repeats the reason, and the powered-on VM it names stays on.
TEST_F(BadInputWorldTest, VsphereSourceProblemsAreReportedAndTouchNothing) {
  PowerOn("/DC0/vm/" + std::string(kRunningVm));
  const std::string vcsim_port = WorldVar("VCSIM_PORT");
  CreateSecret("good", VsphereSecret());
  CreateSecret("wrong-password", VsphereSecret({{"password", "wrong-Pa55-" + suffix_}}));
  CreateSecret("no-username", VsphereSecret({{"username", nullptr}}));
  CreateSecret("no-password", VsphereSecret({{"password", nullptr}}));
  CreateSecret("no-ca", VsphereSecret({{"caCert", nullptr}}));
  CreateSecret("wrong-ca", VsphereSecret({{"caCert", ReadFile(WorldVar("KUBE_CA_FILE"))}}));
  CreateForeignImage("foreign-image");
  const auto images_before = Versions(kImages);
  StartWorld();
  CreateVmwareSource("vcsim", VmwareSpec("good"));
  WaitSourceReady(kVmwareSources, "vcsim");

  const std::string nr = "clusterNotReady";
  const std::vector<Case> cases = {
      {"wrong-password", On::kVmwareSource, nr, "InvalidCredentials", "password was refused"},
      {"secret-missing", On::kVmwareSource, nr, "NotFound",
       "secret " + ns_ + "/no-such-secret not found"},
      // The Secret is named (issue 15): "secret <ns>/<name> has no password (...)".
      {"secret-no-username", On::kVmwareSource, nr, "InvalidSecret", "has no username"},
      {"secret-no-password", On::kVmwareSource, nr, "InvalidSecret", "has no password"},
      {"unreachable-port", On::kVmwareSource, nr, "Unreachable", "Failed to connect"},
      {"plain-http", On::kVmwareSource, nr, "InvalidSpec", "must be an https:// URL"},
      {"garbage-url", On::kVmwareSource, nr, "InvalidSpec", "must be an https:// URL"},
      {"empty-endpoint", On::kVmwareSource, nr, "InvalidSpec", "spec.endpoint is empty"},
      {"wrong-ca", On::kVmwareSource, nr, "TLSError", "tls:"},
      {"no-ca-system-trust", On::kVmwareSource, nr, "TLSError", "tls:"},
      {"unknown-datacenter", On::kVmwareSource, nr, "NotFound", "datacenter NoSuchDC not found"},
  };
  CreateVmwareSource("wrong-password", VmwareSpec("wrong-password"));
  CreateVmwareSource("secret-missing", VmwareSpec("no-such-secret"));
  CreateVmwareSource("secret-no-username", VmwareSpec("no-username"));
  CreateVmwareSource("secret-no-password", VmwareSpec("no-password"));
  CreateVmwareSource("unreachable-port",
                     VmwareSpec("good", {{"endpoint", "https://127.0.0.1:1/sdk"}}));
  CreateVmwareSource("plain-http",
                     VmwareSpec("good", {{"endpoint", "http://127.0.0.1:" + vcsim_port + "/sdk"}}));
  CreateVmwareSource("garbage-url", VmwareSpec("good", {{"endpoint", "::not a url::"}}));
  CreateVmwareSource("empty-endpoint", VmwareSpec("good", {{"endpoint", ""}}));
  CreateVmwareSource("wrong-ca", VmwareSpec("wrong-ca"));
  CreateVmwareSource("no-ca-system-trust", VmwareSpec("no-ca"));
  CreateVmwareSource("unknown-datacenter", VmwareSpec("good", {{"dc", "NoSuchDC"}}));
  // An import per bad source, of the powered-on VM: it must wait and say why.
  for (const Case& c : cases) {
    CreateImport("imp-" + c.name, {{"virtualMachineName", kRunningVm},
                                   {"forcePowerOff", true},
                                   {"sourceCluster", SourceRef(c.name)}});
  }
  CheckCases(cases, [&] {
    bool ok = true;
    EXPECT_EQ(SourcePower("/DC0/vm/" + std::string(kRunningVm)), model::PowerState::kOn);
    ok &= SourcePower("/DC0/vm/" + std::string(kRunningVm)) == model::PowerState::kOn;
    ok &= Versions(kImages) == images_before;
    ok &= Items(kPvcs).empty() && Items(kVms).empty();
    EXPECT_EQ(Versions(kImages), images_before);
    EXPECT_TRUE(Items(kPvcs).empty());
    EXPECT_TRUE(Items(kVms).empty());
    const auto events = Events();
    for (const Case& c : cases) {
      const Case waiting{"imp-" + c.name, On::kImport, "virtualMachineImportValid",
                         "SourceNotReady", c.reason};
      const bool waits =
          ImportStatus(waiting.name) == "virtualMachineImportValid" && EventNames(events, waiting);
      EXPECT_TRUE(waits) << waiting.name << ": " << Get(kImports, waiting.name).dump();
      ok &= waits;
    }
    return ok;
  });
}

// Specs that cannot be imported, found before anything is touched: invalid specs (status
// virtualMachineImportInvalid, condition Invalid/InvalidSpec), preflight failures (condition
// Failed with the reason), and a source that does not exist (the import waits with a
// SourceNotFound Event: one manifest may hold the source after the import).
TEST_F(BadInputWorldTest, ImportSpecAndPreflightProblemsTouchNothing) {
  PowerOn("/DC0/vm/" + std::string(kRunningVm));
  PowerOn(kRunningDup);
  CreateSecret("good", VsphereSecret());
  CreateForeignImage("foreign-image");
  CreateForeignVm(kRunningVm);  // the target name of the "target-vm-exists" cases
  const auto images_before = Versions(kImages);
  const auto vms_before = VmStates();
  StartWorld();
  CreateVmwareSource("vcsim", VmwareSpec("good"));
  WaitSourceReady(kVmwareSources, "vcsim");

  std::string running_uuid;
  for (const auto& row : testing::ManifestRows("vm")) {
    if (row[2] == kRunningVm) {
      running_uuid = row[10];  // BIOS UUID: the import gets the VM's own name
    }
  }
  ASSERT_FALSE(running_uuid.empty());
  const std::string inv = "virtualMachineImportInvalid";
  const std::string valid = "virtualMachineImportValid";
  const std::string on = "vmi-running";
  const Json vlan10 = {{"sourceNetwork", "VM Network"}, {"destinationNetwork", "vlan10"}};
  struct Spec {
    Case expect;
    Json spec;
  };
  const std::vector<Spec> specs = {
      {{"empty-vm-name", On::kImport, inv, "InvalidSpec", "spec.virtualMachineName: required"},
       {{"virtualMachineName", ""}}},
      {{"camel-case-space-name", On::kImport, inv, "InvalidSpec", "is not RFC 1123 compliant"},
       {{"virtualMachineName", "test Focal_CamelCase"}}},
      {{"too-long-name", On::kImport, inv, "InvalidSpec", "must be no more than 63 characters"},
       {{"virtualMachineName", std::string(70, 'a')}}},
      {{"dotted-name", On::kImport, inv, "InvalidSpec", "must consist of lower-case alphanumeric"},
       {{"virtualMachineName", "web.example.com"}}},
      {{"missing-source", On::kImport, valid, "SourceNotFound", "no-such-source"},
       {{"virtualMachineName", on}, {"sourceCluster", SourceRef("no-such-source")}}},
      {{"unknown-source-kind", On::kImport, inv, "InvalidSpec", "unsupported source kind"},
       {{"virtualMachineName", on}, {"sourceCluster", SourceRef("vcsim", "VmwareSorce")}}},
      {{"source-of-wrong-kind", On::kImport, valid, "SourceNotFound", "vcsim"},
       {{"virtualMachineName", on}, {"sourceCluster", SourceRef("vcsim", "OvaSource")}}},
      {{"wrong-api-version", On::kImport, inv, "InvalidSpec", "spec.sourceCluster.apiVersion"},
       {{"virtualMachineName", on},
        {"sourceCluster",
         {{"name", "vcsim"},
          {"namespace", ns_},
          {"kind", "VmwareSource"},
          {"apiVersion", "migration.harvesterhci.io/v1"}}}}},
      {{"empty-source-network", On::kImport, inv, "InvalidSpec",
        "spec.networkMapping[0].sourceNetwork: required"},
       {{"virtualMachineName", on},
        {"networkMapping", {{{"sourceNetwork", ""}, {"destinationNetwork", "vlan10"}}}}}},
      {{"empty-destination-network", On::kImport, inv, "InvalidSpec",
        "spec.networkMapping[0].destinationNetwork: required"},
       {{"virtualMachineName", on},
        {"networkMapping", {{{"sourceNetwork", "VM Network"}, {"destinationNetwork", ""}}}}}},
      {{"malformed-destination-network", On::kImport, inv, "InvalidSpec",
        "invalid destination network 'a/b/c'"},
       {{"virtualMachineName", on},
        {"networkMapping", {{{"sourceNetwork", "VM Network"}, {"destinationNetwork", "a/b/c"}}}}}},
      {{"duplicate-source-network", On::kImport, inv, "InvalidSpec", "appears multiple times"},
       {{"virtualMachineName", on}, {"networkMapping", {vlan10, vlan10}}}},
      {{"unknown-destination-nad", On::kImport, inv, "PreflightFailed",
        "destination network " + ns_ + "/no-such-nad not found"},
       {{"virtualMachineName", on},
        {"forcePowerOff", true},
        {"networkMapping",
         {{{"sourceNetwork", "VM Network"}, {"destinationNetwork", "no-such-nad"}}}}}},
      {{"missing-storage-class", On::kImport, inv, "PreflightFailed",
        "storage class no-such-sc not found"},
       {{"virtualMachineName", on}, {"forcePowerOff", true}, {"storageClass", "no-such-sc"}}},
      {{"unsupported-disk-bus", On::kImport, inv, "InvalidSpec", "unsupported disk bus \"ide\""},
       {{"virtualMachineName", on}, {"defaultDiskBusType", "ide"}}},
      {{"unknown-folder", On::kImport, inv, "VirtualMachineNotFound", "team-z"},
       {{"virtualMachineName", "vmi-dup"}, {"folder", "team-z"}}},
      {{"unknown-vm", On::kImport, inv, "VirtualMachineNotFound", "no VM named no-such-vm"},
       {{"virtualMachineName", "no-such-vm"}}},
      {{"ambiguous-vm-name", On::kImport, inv, "AmbiguousOrInvalid", "/DC0/vm/team-b/vmi-dup"},
       {{"virtualMachineName", "vmi-dup"}, {"forcePowerOff", true}}},
      {{"target-vm-exists", On::kImport, inv, "VirtualMachineExists",
        "VirtualMachine " + ns_ + "/" + on + " already exists"},
       {{"virtualMachineName", on}, {"forcePowerOff", true}}},
      {{"target-vm-exists-by-uuid", On::kImport, inv, "VirtualMachineExists",
        "VirtualMachine " + ns_ + "/" + on + " already exists"},
       {{"virtualMachineName", running_uuid}, {"forcePowerOff", true}}},
  };
  std::vector<Case> cases;
  for (const Spec& s : specs) {
    CreateImport(s.expect.name, s.spec);
    cases.push_back(s.expect);
  }
  CheckCases(cases, [&] {
    bool ok = true;
    for (const std::string& path :
         {"/DC0/vm/" + std::string(kRunningVm), std::string(kRunningDup)}) {
      const bool still_on = SourcePower(path) == model::PowerState::kOn;
      EXPECT_TRUE(still_on) << path;
      ok &= still_on;
    }
    EXPECT_EQ(Versions(kImages), images_before);
    EXPECT_EQ(VmStates(), vms_before);
    EXPECT_TRUE(Items(kPvcs).empty());
    ok &= Versions(kImages) == images_before && VmStates() == vms_before && Items(kPvcs).empty();
    return ok;
  });
  // The ambiguous name lists every candidate.
  const std::string dup = Get(kImports, "ambiguous-vm-name").dump();
  EXPECT_NE(dup.find("/DC0/vm/team-a/vmi-dup"), std::string::npos) << dup;
}

// Corrupt, truncated and oversized disks, from OVAs: what the importer sees when it opens the
// archive makes the import invalid before any image exists; what only shows while the disk
// streams fails the import (diskImageFailed) with the cause; no PVC and no VM is ever made, and
// deleting the failed import removes its images.
TEST_F(BadInputWorldTest, CorruptTruncatedAndOversizedDisksFailWithTheirReason) {
  MakeOvas();
  const fs::path ova = dir_ / "ova";
  const std::string ranged = StartOvaServer("ranged", ova).base_url;
  const std::string plain = StartOvaServer("plain", ova, {"--no-range"}).base_url;
  // A storage class that holds 4 MiB: neither disk of good.ova (24 and 48 MiB) fits.
  const std::string tiny = "bad-input-tiny-" + suffix_;
  ASSERT_TRUE(client_->Create(
      {}, kStorageClasses, "",
      {{"apiVersion", "storage.k8s.io/v1"},
       {"kind", "StorageClass"},
       {"metadata", {{"name", tiny}}},
       {"provisioner", "driver.longhorn.io"},
       {"parameters",
        {{"numberOfReplicas", "1"},
         {"harvester-sim.vm-import.test/capacity-bytes", std::to_string(4 << 20)}}}}));
  storage_classes_.push_back(tiny);
  StartWorld();
  struct OvaCase {
    Case expect;
    std::string url;
    std::string storage_class;
  };
  const std::string inv = "virtualMachineImportInvalid";
  const std::string failed = "diskImageFailed";
  const std::vector<OvaCase> ova_cases = {
      {{"truncated-ranged", On::kImport, inv, "CorruptSource", "truncated archive"},
       ranged + "truncated.ova"},
      {{"no-ovf", On::kImport, inv, "CorruptSource", "no .ovf descriptor in the archive"},
       ranged + "no-ovf.ova"},
      {{"not-a-tar", On::kImport, inv, "CorruptSource", "not-a-tar.ova"}, ranged + "not-a-tar.ova"},
      {{"truncated-plain", On::kImport, failed, "CorruptDisk", "truncated archive"},
       plain + "truncated.ova"},
      {{"wrong-digest", On::kImport, failed, "CorruptDisk", "SHA256 digest mismatch"},
       ranged + "bad-digest.ova"},
      {{"corrupt-vmdk-grain", On::kImport, failed, "CorruptDisk", "invalid zlib data"},
       ranged + "corrupt-grain.ova"},
      {{"vmdk-bad-magic", On::kImport, failed, "CorruptDisk", "declares a vmdk-sparse image"},
       ranged + "bad-magic.ova"},
      {{"qcow2-in-ova", On::kImport, failed, "UnsupportedDisk", "qcow2 needs random access"},
       ranged + "qcow2.ova"},
      {{"disk-larger-than-storage", On::kImport, failed, "ImageFailed", "no space left on device"},
       ranged + "good.ova",
       tiny},
  };
  std::vector<Case> cases;
  for (const OvaCase& c : ova_cases) {
    CreateOvaSource(c.expect.name, c.url);
  }
  for (const OvaCase& c : ova_cases) {
    Json spec = {{"virtualMachineName", c.expect.name},
                 {"sourceCluster", SourceRef(c.expect.name, "OvaSource")}};
    if (!c.storage_class.empty()) {
      spec["storageClass"] = c.storage_class;
    }
    CreateImport(c.expect.name, spec);
    cases.push_back(c.expect);
  }
  // Archives the source check itself refuses.
  const std::vector<Case> source_cases = {
      {"ova-not-found", On::kOvaSource, "clusterNotReady", "NotFound", "HEAD answered 404"},
  };
  CreateOvaSource("ova-not-found", ranged + "no-such.ova");
  cases.insert(cases.end(), source_cases.begin(), source_cases.end());
  CheckCases(cases, [&] {
    EXPECT_TRUE(Items(kPvcs).empty());
    EXPECT_TRUE(Items(kVms).empty());
    return Items(kPvcs).empty() && Items(kVms).empty();
  });
  // A failed import's images go with it.
  for (const OvaCase& c : ova_cases) {
    ASSERT_TRUE(client_->Delete({}, kImports, ns_, c.expect.name));
  }
  EXPECT_TRUE(Eventually([&] { return Finalized(); }, 30s));
  EXPECT_TRUE(Items(kImages).empty());
}

// The source goes away while Harvester downloads: the OVA's server stops and the file is gone.
// The import fails (diskImageFailed) saying that the source stream broke, with no PVC and no VM;
// deleting it removes its images.
TEST_F(BadInputWorldTest, SourceDeletedMidImportFailsTheImport) {
  MakeOvas();
  const fs::path gone = dir_ / "gone";
  fs::create_directories(gone);
  fs::copy_file(dir_ / "ova" / "good.ova", gone / "vm.ova");
  OvaServer& server = StartOvaServer("gone", gone);
  // 6 MB/s per disk stream: disk1 (24 MiB of random data) streams for 4 s.
  StartWorld({}, {"--stream-rate-limit", "6000000"});
  CreateOvaSource("vanishing", server.base_url + "vm.ova");
  WaitSourceReady(kOvaSources, "vanishing");
  CreateImport("vanishing", {{"virtualMachineName", "vanishing"},
                             {"sourceCluster", SourceRef("vanishing", "OvaSource")}});
  // Mid-import: the images exist and bytes flow.
  ASSERT_TRUE(Eventually(
      [&] {
        const Json disks = Get(kImports, "vanishing")
                               .value("status", Json::object())
                               .value("diskImportStatus", Json::array());
        return ImportStatus("vanishing") == "diskImageSubmitted" && !disks.empty() &&
               disks[0].value("bytesDone", 0) > 0;
      },
      60s))
      << Get(kImports, "vanishing").dump();
  std::set<std::string> tokens;
  for (const Json& image : Items(kImages)) {
    const std::string url = image["spec"].value("url", "");
    tokens.insert(url.substr(url.rfind('/') + 1));
  }
  server.process->Signal(SIGKILL);
  server.process->Wait(10s);
  fs::remove(gone / "vm.ova");
  created_["vanishing"] = Clock::now();  // the clock of this case starts at the deletion
  CheckCases({{"vanishing", On::kImport, "diskImageFailed", "ImageFailed",
               "the source stream ended with"}},
             [&] {
               EXPECT_TRUE(Items(kPvcs).empty());
               EXPECT_TRUE(Items(kVms).empty());
               return Items(kPvcs).empty() && Items(kVms).empty();
             });
  // Harvester's error quotes the disk URL; the import's status, Events and log do not.
  std::string written = Get(kImports, "vanishing").dump() + ControllerLog();
  for (const Json& e : Events()) {
    written += e.dump();
  }
  for (const std::string& token : tokens) {
    EXPECT_EQ(written.find(token), std::string::npos) << "image-server token leaked";
  }
  ASSERT_TRUE(client_->Delete({}, kImports, ns_, "vanishing"));
  EXPECT_TRUE(Eventually([&] { return Finalized(); }, 30s));
  EXPECT_TRUE(Items(kImages).empty());
}

// Nothing the run wrote holds a credential: after successful imports (vSphere, OVA behind basic
// auth) and failing ones (a wrong password, an invalid spec), the controller's and the
// simulator's logs, every Event, every import, source and VM object are searched for the
// passwords (and their base64), every vSphere session key seen while the controller held its
// session (the value of its session cookie), and the image-server tokens. And once an import
// has ended its disk URLs answer 404.
TEST_F(BadInputWorldTest, NoCredentialLeaksAndDiskUrlsDieWithTheImport) {
  MakeOvas();
  const std::string ova_password = "Ova-Pa55-" + suffix_;
  const std::string wrong_password = "wrong-Pa55-" + suffix_;
  const std::string auth =
      StartOvaServer("auth", dir_ / "ova", {"--user", "ova", "--password", ova_password}).base_url;
  CreateSecret("good", VsphereSecret());
  CreateSecret("wrong-password", VsphereSecret({{"password", wrong_password}}));
  CreateSecret("ova-auth", {{"username", "ova"}, {"password", ova_password}});
  // 30 MB/s: the vSphere import lasts a few seconds, while its session is captured.
  StartWorld({"--rate", "30000000"});
  CreateVmwareSource("vcsim", VmwareSpec("good"));
  CreateVmwareSource("bad-login", VmwareSpec("wrong-password"));
  CreateOvaSource("ova", auth + "good.ova", "ova-auth");
  CreateOvaSource("ova-bad-digest", auth + "bad-digest.ova", "ova-auth");
  WaitSourceReady(kVmwareSources, "vcsim");
  WaitSourceReady(kOvaSources, "ova");

  // Sessions before the imports are not the controller's import sessions.
  auto sessions = [&] {
    std::map<std::string, std::string> keys;  // key -> user agent
    std::string out;
    if (testing::RunCommand(Govc("session.ls -json 2>/dev/null"), &out) != 0) {
      return keys;
    }
    auto parsed = Json::parse(out, nullptr, false);
    if (parsed.is_discarded()) {
      return keys;
    }
    for (const Json& s : parsed.value("sessionList", Json::array())) {
      keys[s.value("key", "")] = s.value("userAgent", "");
    }
    return keys;
  };
  const auto before = sessions();
  CreateImport(
      "ok-vsphere",
      {{"virtualMachineName", "vmi-multi"},
       {"networkMapping", {{{"sourceNetwork", "VM Network"}, {"destinationNetwork", "vlan10"}}}}});
  CreateImport("ok-ova", {{"virtualMachineName", "ok-ova"},
                          {"networkMapping",
                           {{{"sourceNetwork", "VM Network"}, {"destinationNetwork", "vlan10"}}}},
                          {"sourceCluster", SourceRef("ova", "OvaSource")}});
  CreateImport("fail-login", {{"virtualMachineName", "vmi-bios-small"},
                              {"sourceCluster", SourceRef("bad-login")}});
  CreateImport("fail-invalid", {{"virtualMachineName", "Not A Valid Name"}});
  // Fails while Harvester downloads: Harvester's error quotes the disk URL.
  CreateImport("fail-stream", {{"virtualMachineName", "fail-stream"},
                               {"sourceCluster", SourceRef("ova-bad-digest", "OvaSource")}});
  std::set<std::string> session_keys;
  std::set<std::string> urls;
  ASSERT_TRUE(Eventually(
      [&] {
        for (const auto& [key, agent] : sessions()) {
          if (!before.contains(key) && agent.find("govc") == std::string::npos) {
            session_keys.insert(key);
          }
        }
        for (const Json& image : Items(kImages)) {
          urls.insert(image["spec"].value("url", ""));
        }
        return ImportStatus("ok-vsphere") == "virtualMachineRunning" &&
               ImportStatus("ok-ova") == "virtualMachineRunning" &&
               ImportStatus("fail-stream") == "diskImageFailed";
      },
      120s))
      << Get(kImports, "ok-vsphere").dump() << "\n"
      << Get(kImports, "ok-ova").dump();
  EXPECT_EQ(ImportStatus("fail-invalid"), "virtualMachineImportInvalid");
  EXPECT_EQ(ImportStatus("fail-login"), "virtualMachineImportValid");
  // The controller's own vSphere session was seen (else the search below proves nothing on it).
  EXPECT_FALSE(session_keys.empty());
  ASSERT_EQ(urls.size(), 7U);  // 3 disks of vmi-multi, 2 of each OVA

  // Disk URLs die with the import: the import is over, its URLs answer 404.
  auto http = http::Client::Create({});
  ASSERT_TRUE(http);
  std::set<std::string> tokens;
  for (const std::string& url : urls) {
    auto res = (*http)->Do({}, {.url = url, .timeout = 10s});
    ASSERT_TRUE(res) << res.error().ToString();
    EXPECT_EQ(res->status, 404) << "a disk URL still answers after its import ended";
    tokens.insert(url.substr(url.rfind('/') + 1));
  }

  // Everything the run wrote, but the images (whose spec.url holds a token by design).
  std::map<std::string, std::string> written = {{"controller log", ControllerLog()},
                                                {"simulator log", SimLog()}};
  for (const auto* r : {&kEvents, &kImports, &kVmwareSources, &kOvaSources, &kVms, &kPvcs}) {
    for (const Json& o : Items(*r)) {
      written[r->plural + "/" + o["metadata"].value("name", "")] = o.dump();
    }
  }
  std::map<std::string, std::string> needles = {
      {"vSphere password", WorldVar("VCSIM_PASSWORD")},
      {"vSphere password (base64)", Base64(WorldVar("VCSIM_PASSWORD"))},
      {"wrong password", wrong_password},
      {"wrong password (base64)", Base64(wrong_password)},
      {"OVA password", ova_password},
      {"OVA password (base64)", Base64(ova_password)},
      {"OVA basic auth", Base64("ova:" + ova_password)},
  };
  for (const std::string& k : session_keys) {
    needles["vSphere session key " + k] = k;
  }
  for (const std::string& t : tokens) {
    needles["image-server token " + t] = t;
  }
  int leaks = 0;
  for (const auto& [where, text] : written) {
    for (const auto& [what, needle] : needles) {
      // Harvester holds the disk URLs by design (image spec.url) and its download errors quote
      // them: the simulator's log may; our outputs may not.
      if (where == "simulator log" && what.starts_with("image-server token")) {
        continue;
      }
      if (!needle.empty() && text.find(needle) != std::string::npos) {
        ++leaks;
        ADD_FAILURE() << what << " found in " << where;
      }
    }
  }
  SecretsLeaked() = leaks;
  EXPECT_EQ(leaks, 0);
  std::cerr << "searched " << written.size() << " outputs for " << needles.size()
            << " credentials (" << session_keys.size() << " session keys, " << tokens.size()
            << " tokens)\n";
}

}  // namespace
}  // namespace vmimport::kube
