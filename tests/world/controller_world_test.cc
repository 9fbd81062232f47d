// The vm-import-controller binary against the real kube-apiserver and vcsim: source readiness
// with the reasons an operator needs, re-checks when a Secret changes, leader election between
// two processes, and a clean exit on SIGTERM.

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "build_paths.h"
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

const Resource kOvaSources{"migration.harvesterhci.io", "v1beta1", "ovasources", true};
const Resource kOpenstackSources{"migration.harvesterhci.io", "v1beta1", "openstacksources", true};
const Resource kLeases{"coordination.k8s.io", "v1", "leases", true};

class ControllerWorldTest : public WorldNamespaceTest {
 protected:
  ControllerWorldTest() : WorldNamespaceTest("ctl") {}

  std::unique_ptr<ChildProcess> StartController(const std::string& name,
                                                const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {vmimport::build_paths::ControllerBinary(),
                                     "--kubeconfig",
                                     kubeconfig_,
                                     "--namespace",
                                     ns_,
                                     "--log-level",
                                     "debug",
                                     "--source-retry-interval",
                                     "2",
                                     "--health-address",
                                     "127.0.0.1:0",
                                     "--image-server-address",
                                     "127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<ChildProcess>(argv, (dir_ / (name + ".log")).string());
  }
  void PutSecret(const std::string& name, const std::map<std::string, std::string>& data) {
    Json secret = {{"apiVersion", "v1"},
                   {"kind", "Secret"},
                   {"metadata", {{"name", name}, {"namespace", ns_}}},
                   {"stringData", data}};
    auto existing = client_->Get({}, kSecrets, ns_, name);
    if (existing) {
      secret["metadata"]["resourceVersion"] = (*existing)["metadata"]["resourceVersion"];
      (*existing)["data"] = Json::object();
      secret["data"] = Json::object();
      ASSERT_TRUE(client_->Update({}, kSecrets, ns_, secret));
    } else {
      ASSERT_TRUE(client_->Create({}, kSecrets, ns_, secret));
    }
  }
  void CreateVmwareSource(const std::string& name, const std::string& endpoint,
                          const std::string& dc, const std::string& secret) {
    auto r = client_->Create({}, kVmwareSources, ns_,
                             {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                              {"kind", "VmwareSource"},
                              {"metadata", {{"name", name}, {"namespace", ns_}}},
                              {"spec",
                               {{"endpoint", endpoint},
                                {"dc", dc},
                                {"credentials", {{"name", secret}, {"namespace", ns_}}}}}});
    ASSERT_TRUE(r) << r.error().ToString();
  }
  // status.status and the ClusterError condition's reason, once the status is `want`.
  std::pair<std::string, std::string> WaitStatus(const Resource& r, const std::string& name,
                                                 const std::string& want,
                                                 std::chrono::seconds limit = 60s) {
    std::pair<std::string, std::string> last;
    Eventually(
        [&] {
          auto obj = client_->Get({}, r, ns_, name);
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
        limit);
    return last;
  }
  std::map<std::string, std::string> VcsimSecret() {
    return {{"username", WorldVar("VCSIM_USERNAME")},
            {"password", WorldVar("VCSIM_PASSWORD")},
            {"caCert", ReadFile(WorldVar("VCSIM_CA"))}};
  }
};

TEST_F(ControllerWorldTest, VmwareSourceReadinessGivesReasons) {
  auto ctl = StartController("ctl", {"--leader-elect", "false"});
  const std::string sdk = WorldVar("VCSIM_SDK_URL");
  const std::string dc = WorldVar("VCSIM_DATACENTER");
  PutSecret("good", VcsimSecret());
  auto wrong_password = VcsimSecret();
  wrong_password["password"] = "wrong";
  PutSecret("wrong-password", wrong_password);
  auto no_ca = VcsimSecret();
  no_ca.erase("caCert");
  PutSecret("no-ca", no_ca);

  CreateVmwareSource("ready", sdk, dc, "good");
  CreateVmwareSource("bad-login", sdk, dc, "wrong-password");
  CreateVmwareSource("bad-dc", sdk, "NoSuchDC", "good");
  CreateVmwareSource("bad-tls", sdk, dc, "no-ca");
  CreateVmwareSource("unreachable", "https://127.0.0.1:1/sdk", dc, "good");
  CreateVmwareSource("no-secret", sdk, dc, "absent");

  EXPECT_EQ(WaitStatus(kVmwareSources, "ready", "clusterReady").first, "clusterReady")
      << ctl->Log();
  EXPECT_EQ(WaitStatus(kVmwareSources, "bad-login", "clusterNotReady"),
            std::make_pair(std::string("clusterNotReady"), std::string("InvalidCredentials")));
  EXPECT_EQ(WaitStatus(kVmwareSources, "bad-dc", "clusterNotReady"),
            std::make_pair(std::string("clusterNotReady"), std::string("NotFound")));
  EXPECT_EQ(WaitStatus(kVmwareSources, "bad-tls", "clusterNotReady"),
            std::make_pair(std::string("clusterNotReady"), std::string("TLSError")));
  EXPECT_EQ(WaitStatus(kVmwareSources, "unreachable", "clusterNotReady"),
            std::make_pair(std::string("clusterNotReady"), std::string("Unreachable")));
  EXPECT_EQ(WaitStatus(kVmwareSources, "no-secret", "clusterNotReady"),
            std::make_pair(std::string("clusterNotReady"), std::string("NotFound")));

  // Fixing the Secret makes the source ready (re-checked on the Secret's change).
  PutSecret("wrong-password", VcsimSecret());
  EXPECT_EQ(WaitStatus(kVmwareSources, "bad-login", "clusterReady").first, "clusterReady");
  // Creating the missing Secret too.
  PutSecret("absent", VcsimSecret());
  EXPECT_EQ(WaitStatus(kVmwareSources, "no-secret", "clusterReady").first, "clusterReady");

  // An Event says why a source was not ready.
  auto events = client_->List({}, kEvents, ns_);
  ASSERT_TRUE(events);
  bool found = false;
  for (const Json& e : (*events)["items"]) {
    found = found || (e["involvedObject"].value("name", "") == "bad-dc" &&
                      e.value("reason", "") == "NotFound" && e.value("type", "") == "Warning");
  }
  EXPECT_TRUE(found) << "no Warning event on bad-dc";

  // No secret value ever reaches the log.
  const std::string log = ctl->Log();
  EXPECT_EQ(log.find(WorldVar("VCSIM_PASSWORD")), std::string::npos);
  ctl->Signal(SIGTERM);
  EXPECT_EQ(ctl->Wait(20s), 0) << ctl->Log();
}

TEST_F(ControllerWorldTest, OvaAndOpenstackSourcesSayWhyTheyAreNotReady) {
  auto ctl = StartController("ctl", {"--leader-elect", "false"});
  ASSERT_TRUE(client_->Create({}, kOvaSources, ns_,
                              {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                               {"kind", "OvaSource"},
                               {"metadata", {{"name", "ova"}, {"namespace", ns_}}},
                               {"spec", {{"url", "http://127.0.0.1:1/x.ova"}}}}));
  ASSERT_TRUE(client_->Create({}, kOvaSources, ns_,
                              {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                               {"kind", "OvaSource"},
                               {"metadata", {{"name", "ftp"}, {"namespace", ns_}}},
                               {"spec", {{"url", "ftp://127.0.0.1/x.ova"}}}}));
  EXPECT_EQ(WaitStatus(kOvaSources, "ova", "clusterNotReady").second, "Unreachable") << ctl->Log();
  EXPECT_EQ(WaitStatus(kOvaSources, "ftp", "clusterNotReady").second, "InvalidSpec");
  // An OpenstackSource whose Keystone does not answer.
  PutSecret(
      "os",
      {{"username", "u"}, {"password", "p"}, {"project_name", "p"}, {"domain_name", "Default"}});
  ASSERT_TRUE(client_->Create({}, kOpenstackSources, ns_,
                              {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                               {"kind", "OpenstackSource"},
                               {"metadata", {{"name", "os"}, {"namespace", ns_}}},
                               {"spec",
                                {{"endpoint", "http://127.0.0.1:1/identity"},
                                 {"region", "RegionOne"},
                                 {"credentials", {{"name", "os"}, {"namespace", ns_}}}}}}));
  EXPECT_EQ(WaitStatus(kOpenstackSources, "os", "clusterNotReady").second, "Unreachable");
  ctl->Signal(SIGTERM);
  EXPECT_EQ(ctl->Wait(20s), 0);
}

TEST_F(ControllerWorldTest, OnlyTheLeaderReconcilesAndAFollowerTakesOver) {
  const std::vector<std::string> election = {"--leader-elect",
                                             "true",
                                             "--leader-election-namespace",
                                             ns_,
                                             "--lease-duration",
                                             "4",
                                             "--renew-deadline",
                                             "3",
                                             "--retry-period",
                                             "1"};
  auto a = StartController("a", election);
  ASSERT_TRUE(
      Eventually([&] { return a->Log().find("controllers started") != std::string::npos; }, 30s))
      << a->Log();
  auto b = StartController("b", election);
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(b->Log().find("controllers started"), std::string::npos) << "two leaders at once";
  auto lease = client_->Get({}, kLeases, ns_, "vm-import-controller");
  ASSERT_TRUE(lease);
  const std::string first_holder = (*lease)["spec"].value("holderIdentity", "");
  EXPECT_NE(first_holder.find(std::to_string(a->pid())), std::string::npos) << first_holder;

  // The leader dies without releasing the lease: the follower takes over within the lease
  // duration (4 s) plus a retry period or two.
  const auto killed_at = std::chrono::steady_clock::now();
  a->Signal(SIGKILL);
  ASSERT_TRUE(
      Eventually([&] { return b->Log().find("controllers started") != std::string::npos; }, 30s))
      << b->Log();
  const auto takeover = std::chrono::steady_clock::now() - killed_at;
  EXPECT_LT(takeover, 8s);
  std::cerr << "leader takeover after SIGKILL: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(takeover).count() << " ms\n";

  // A clean stop releases the lease at once.
  b->Signal(SIGTERM);
  EXPECT_EQ(b->Wait(20s), 0) << b->Log();
  lease = client_->Get({}, kLeases, ns_, "vm-import-controller");
  ASSERT_TRUE(lease);
  EXPECT_EQ((*lease)["spec"].value("holderIdentity", "x"), "");
}

TEST_F(ControllerWorldTest, UnreachableApiServerIsRetriedNotFatal) {
  // A kubeconfig whose server refuses connections: the process logs and retries; it does not exit.
  auto config = ReadFile(kubeconfig_);
  const size_t at = config.find("server: ");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, config.find('\n', at) - at, "server: https://127.0.0.1:1");
  const std::string path = (dir_ / "unreachable.kubeconfig").string();
  std::ofstream(path) << config;
  ChildProcess ctl(
      {vmimport::build_paths::ControllerBinary(), "--kubeconfig", path, "--leader-elect", "false"},
      (dir_ / "unreachable.log").string());
  std::this_thread::sleep_for(3s);
  EXPECT_TRUE(ctl.Running()) << ctl.Log();
  EXPECT_NE(ctl.Log().find("list failed, retrying"), std::string::npos) << ctl.Log();
  ctl.Signal(SIGTERM);
  EXPECT_EQ(ctl.Wait(20s), 0) << ctl.Log();
}

}  // namespace
}  // namespace vmimport::kube
