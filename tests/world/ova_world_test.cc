// OvaSource against real HTTP(S) servers (tests/world/ova/ova_server.py: ranges on or off,
// basic auth, TLS) and the world's kube-apiserver, through the controller binary and the
// Harvester simulator: readiness reasons, a 2-disk/2-NIC OVA imported end to end with disks
// identical to the seeded ones (in the normal order over a ranged server, with the OVF after the
// disks over a server without ranges), and a digest mismatch and a truncated archive failing
// the import with their reason. The OVAs are built from the seeded vcsim disks by
// tests/world/ova/make-ovas.sh.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "build_paths.h"
#include "kube/client.h"
#include "kube/config.h"
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

// A running ova_server.py.
struct OvaServer {
  std::unique_ptr<ChildProcess> process;
  std::string base_url;  // http(s)://127.0.0.1:<port>/
  std::string log_path;
};

class OvaWorldTest : public ImportFixture {
 protected:
  OvaWorldTest() : ImportFixture("ova") {}

  static void SetUpTestSuite() {
    suite_dir_ =
        fs::temp_directory_path() / ("vmimport-ova-" + std::to_string(std::random_device{}()));
    fs::create_directories(suite_dir_);
    const std::string script =
        std::string(vmimport::build_paths::SourceDir()) + "/tests/world/ova/make-ovas.sh";
    const std::string cmd = "VCSIM_MANIFEST='" + WorldVar("VCSIM_MANIFEST") +
                            "' VCSIM_DATASTORE_DIR='" + WorldVar("VCSIM_DATASTORE_DIR") + "' '" +
                            script + "' '" + suite_dir_.string() + "' >'" + suite_dir_.string() +
                            "/make.log' 2>&1";
    ASSERT_EQ(testing::RunCommand(cmd), 0) << ReadFile(suite_dir_ / "make.log");
    ranged_ = Start("ranged", {});
    plain_ = Start("plain", {"--no-range"});
    auth_ = Start("auth", {"--user", "ova", "--password", "s3cret"});
    tls_ = Start("tls", {"--cert", (suite_dir_ / "tls/server.pem").string(), "--key",
                         (suite_dir_ / "tls/server.key").string()});
  }

  static void TearDownTestSuite() {
    for (OvaServer* s : {&ranged_, &plain_, &auth_, &tls_}) {
      s->process.reset();
    }
    if (!::testing::Test::HasFailure()) {
      fs::remove_all(suite_dir_);
    }
  }

  static OvaServer Start(const std::string& name, std::vector<std::string> extra) {
    OvaServer s;
    const fs::path port_file = suite_dir_ / (name + ".port");
    // Through the shell: python3 is found on PATH (pyenv shims, /usr/bin).
    std::string command = "exec python3 '" + std::string(vmimport::build_paths::SourceDir()) +
                          "/tests/world/ova/ova_server.py' --dir '" + suite_dir_.string() +
                          "' --port-file '" + port_file.string() + "'";
    for (const std::string& e : extra) {
      command += " '" + e + "'";
    }
    std::vector<std::string> argv = {"/bin/sh", "-c", command};
    s.log_path = (suite_dir_ / (name + ".log")).string();
    s.process = std::make_unique<ChildProcess>(argv, s.log_path);
    EXPECT_TRUE(Eventually([&] { return fs::exists(port_file); }, 10s))
        << name << ": exit " << s.process->Wait(100ms) << ": " << ReadFile(s.log_path);
    const bool tls = std::find(extra.begin(), extra.end(), "--cert") != extra.end();
    s.base_url = std::string(tls ? "https" : "http") + "://127.0.0.1:" + ReadFile(port_file) + "/";
    return s;
  }

  void SetUp() override {
    ImportFixture::SetUp();
    if (!HasFatalFailure()) {
      CreateNad();
    }
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "the OVA servers' files and logs are in " << suite_dir_ << "\n";
    }
    ImportFixture::TearDown();
  }

  //! status.status and the ClusterError reason once status.status is `want` (or the last seen).
  std::pair<std::string, std::string> WaitSourceStatus(const std::string& name,
                                                       const std::string& want) {
    std::pair<std::string, std::string> last;
    Eventually(
        [&] {
          auto obj = client_->Get({}, kOvaSources, ns_, name);
          if (!obj || !obj->contains("status")) {
            return false;
          }
          last.first = (*obj)["status"].value("status", "");
          last.second.clear();
          for (const Json& c : (*obj)["status"].value("conditions", Json::array())) {
            if (c.value("type", "") == "ClusterError") {
              last.second = c.value("reason", "");
            }
          }
          return last.first == want;
        },
        60s);
    return last;
  }

  //! An import of the OVA source `source`, named like its VM, "VM Network" mapped to vlan10.
  void CreateOvaImport(const std::string& name, const std::string& source) {
    CreateImport(name, {{"virtualMachineName", name},
                        {"networkMapping",
                         {{{"sourceNetwork", "VM Network"}, {"destinationNetwork", "vlan10"}}}},
                        {"sourceCluster", SourceRef(source, "OvaSource")}});
  }

  //! Each disk's sha256 as the simulator received it equals the seeded disk's.
  void ExpectOvaDisksMatch(const std::string& import_name) {
    std::vector<std::string> want;
    std::istringstream tsv(ReadFile(suite_dir_ / "expected.tsv"));
    for (std::string line; std::getline(tsv, line);) {
      want.push_back(line.substr(line.find('\t') + 1, 64));
    }
    ASSERT_EQ(want.size(), 2U);
    const Json disks = GetImport(import_name)["status"].value("diskImportStatus", Json::array());
    ASSERT_EQ(disks.size(), want.size()) << GetImport(import_name).dump();
    for (size_t i = 0; i < want.size(); ++i) {
      auto image = client_->Get({}, kImages, ns_, disks[i].value("VirtualMachineImage", ""));
      ASSERT_TRUE(image);
      EXPECT_EQ(
          (*image)["metadata"]["annotations"].value("harvester-sim.vm-import.test/sha256", ""),
          want[i])
          << import_name << " disk " << i;
    }
  }

  static inline fs::path suite_dir_;  // the OVAs, the servers' files and logs
  static inline OvaServer ranged_, plain_, auth_, tls_;
};

TEST_F(OvaWorldTest, ReadinessSaysWhatIsWrong) {
  CreateSecret("good-auth", {{"username", "ova"}, {"password", "s3cret"}});
  CreateSecret("bad-auth", {{"username", "ova"}, {"password", "wrong"}});
  CreateSecret("right-ca", {{"ca.crt", ReadFile(suite_dir_ / "tls/ca.pem")}});
  CreateSecret("wrong-ca", {{"ca.crt", ReadFile(suite_dir_ / "tls/other-ca.pem")}});
  CreateOvaSource("ok", ranged_.base_url + "good.ova");
  CreateOvaSource("missing", ranged_.base_url + "no-such.ova");
  CreateOvaSource("auth-ok", auth_.base_url + "good.ova", "good-auth");
  CreateOvaSource("auth-bad", auth_.base_url + "good.ova", "bad-auth");
  CreateOvaSource("auth-none", auth_.base_url + "good.ova");
  CreateOvaSource("tls-ok", tls_.base_url + "good.ova", "right-ca");
  CreateOvaSource("tls-bad", tls_.base_url + "good.ova", "wrong-ca");
  StartWorld();
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(WaitSourceStatus("ok", "clusterReady").first, "clusterReady");
  EXPECT_EQ(WaitSourceStatus("auth-ok", "clusterReady").first, "clusterReady");
  EXPECT_EQ(WaitSourceStatus("tls-ok", "clusterReady").first, "clusterReady");
  EXPECT_EQ(WaitSourceStatus("missing", "clusterNotReady"), P("clusterNotReady", "NotFound"));
  EXPECT_EQ(WaitSourceStatus("auth-bad", "clusterNotReady"),
            P("clusterNotReady", "InvalidCredentials"));
  EXPECT_EQ(WaitSourceStatus("auth-none", "clusterNotReady"),
            P("clusterNotReady", "InvalidCredentials"));
  EXPECT_EQ(WaitSourceStatus("tls-bad", "clusterNotReady"), P("clusterNotReady", "TLSError"));
}

TEST_F(OvaWorldTest, TwoDiskTwoNicOvaImportsWithIdenticalDisks) {
  CreateSecret("tls-auth", {{"ca.crt", ReadFile(suite_dir_ / "tls/ca.pem")}});
  CreateOvaSource("ranged", ranged_.base_url + "good.ova");
  CreateOvaSource("plain", plain_.base_url + "ovf-last.ova");  // no ranges, the OVF at the end
  CreateOvaSource("tls", tls_.base_url + "no-manifest.ova", "tls-auth");
  StartWorld();
  CreateOvaImport("ova-efi", "ranged");
  CreateOvaImport("ova-last", "plain");
  CreateOvaImport("ova-tls", "tls");
  EXPECT_EQ(WaitImport("ova-efi", "virtualMachineRunning", 120s), "virtualMachineRunning")
      << GetImport("ova-efi").dump();
  EXPECT_EQ(WaitImport("ova-last", "virtualMachineRunning", 120s), "virtualMachineRunning")
      << GetImport("ova-last").dump();
  EXPECT_EQ(WaitImport("ova-tls", "virtualMachineRunning", 120s), "virtualMachineRunning")
      << GetImport("ova-tls").dump();
  ExpectOvaDisksMatch("ova-efi");
  ExpectOvaDisksMatch("ova-last");
  ExpectOvaDisksMatch("ova-tls");

  // The VM: topology, memory, EFI with secure boot, both NICs with their MACs.
  auto vm = client_->Get({}, kVms, ns_, "ova-efi");
  ASSERT_TRUE(vm);
  const Json& domain = (*vm)["spec"]["template"]["spec"]["domain"];
  EXPECT_EQ(domain["cpu"].value("cores", 0), 2) << domain.dump();
  EXPECT_EQ(domain["cpu"].value("sockets", 0), 1);
  EXPECT_EQ(QuantityBytes(domain["memory"].value("guest", "")), 2048LL << 20) << domain["memory"];
  EXPECT_TRUE(domain["firmware"]["bootloader"].contains("efi")) << domain.dump();
  std::set<std::string> macs;
  for (const Json& nic : domain["devices"]["interfaces"]) {
    macs.insert(nic.value("macAddress", ""));
  }
  EXPECT_TRUE(macs.contains("00:50:56:aa:00:01")) << domain.dump();
  const Json& disks = domain["devices"]["disks"];
  ASSERT_EQ(disks.size(), 2U);
  // lsilogic, but the OVF's guest is ubuntu64Guest: a Linux guest gets virtio (issue 17's device
  // rules; the reference's mapping gave virtio-scsi)
  EXPECT_EQ(disks[0]["disk"].value("bus", ""), "virtio");
  EXPECT_EQ(disks[1]["disk"].value("bus", ""), "sata");  // AHCI

  // Over ranges, no disk byte moved while the importer looked for the OVF: the only requests
  // that carried more than a window are the two disk streams.
  const std::string log = ReadFile(ranged_.log_path);
  size_t big = 0;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("good.ova") != std::string::npos && line.starts_with("GET")) {
      const uint64_t sent = std::stoull(line.substr(line.rfind(' ') + 1));
      big += sent > (256U << 10) ? 1 : 0;
    }
  }
  EXPECT_EQ(big, 2U) << log;
  std::cerr << "controller stream rates:\n";
  std::istringstream clog(ControllerLog());
  for (std::string line; std::getline(clog, line);) {
    if (line.find("disk stream finished") != std::string::npos &&
        line.find("MBps") != std::string::npos) {
      std::cerr << "  " << line << "\n";
    }
  }
}

TEST_F(OvaWorldTest, DigestMismatchAndTruncationFailTheImportWithTheirReason) {
  CreateOvaSource("bad-digest", ranged_.base_url + "bad-digest.ova");
  CreateOvaSource("truncated", ranged_.base_url + "truncated.ova");
  CreateOvaSource("truncated-plain", plain_.base_url + "truncated.ova");
  StartWorld();
  CreateOvaImport("bad-digest", "bad-digest");
  CreateOvaImport("truncated", "truncated");
  CreateOvaImport("truncated-plain", "truncated-plain");
  // Over ranges the truncation shows when the importer opens the archive.
  EXPECT_EQ(WaitImport("truncated", "virtualMachineImportInvalid", 120s),
            "virtualMachineImportInvalid");
  const std::string truncated = GetImport("truncated").dump();
  EXPECT_NE(truncated.find("truncated archive"), std::string::npos) << truncated;
  // The others fail while the disk streams: Harvester's image fails, our log says why.
  EXPECT_EQ(WaitImport("bad-digest", "virtualMachineRunning", 180s), "diskImageFailed");
  EXPECT_EQ(WaitImport("truncated-plain", "virtualMachineRunning", 180s), "diskImageFailed");
  const std::string log = ControllerLog();
  EXPECT_NE(log.find("disk2.vmdk: SHA256 digest mismatch: the manifest says"), std::string::npos)
      << log;
  EXPECT_NE(log.find("truncated archive: disk2.vmdk ends after"), std::string::npos) << log;
  EXPECT_TRUE(client_->List({}, kVms, ns_)->value("items", Json::array()).empty());
}

}  // namespace
}  // namespace vmimport::kube
