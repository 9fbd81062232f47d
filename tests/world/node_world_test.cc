// Proves the test world's node is a real one (tools/world.sh node up: kubelet, containerd + runc,
// kube-scheduler, kube-controller-manager): the real scheduler places a Pod, the kubelet runs it
// and `kubectl logs` shows its output; a PVC of each node StorageClass waits for its first
// consumer, is bound by the real PV controller, and the bytes a Pod wrote are on the node's volume
// (a directory, a loop device); a kubelet killed and started again leaves a running Pod running
// with its volume intact. The Pods run world.local/node-probe:1 (tests/world/node/images), which
// computes the same byte pattern as Pattern() below. `down` checks itself that it left nothing
// (tests/world/node/node-world.sh verify-down, run by the node.down fixture).

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kube/client.h"
#include "kube/config.h"
#include "world/world_env.h"

namespace vmimport {
namespace {

using kube::Json;
using testing::Eventually;
using testing::RunCommand;
using testing::WorldVar;
using namespace std::chrono_literals;

const kube::Resource kPods{"", "v1", "pods", true};
const kube::Resource kPvcs{"", "v1", "persistentvolumeclaims", true};
const kube::Resource kPvs{"", "v1", "persistentvolumes", false};
const kube::Resource kNodes{"", "v1", "nodes", false};

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

std::string UniqueName(const std::string& prefix) {
  static std::mt19937_64 rng{std::random_device{}()};
  return prefix + "-" + std::to_string(rng() % 1000000);
}

//! The probe's pattern: block i = SHA-256(seed || i as 8 little-endian bytes), truncated to `size`.
std::string Pattern(const std::string& seed, size_t size) {
  std::string out;
  out.reserve(size + SHA256_DIGEST_LENGTH);
  std::string in = seed + std::string(8, '\0');
  for (uint64_t i = 0; out.size() < size; ++i) {
    for (size_t b = 0; b < 8; ++b) {
      in[seed.size() + b] = static_cast<char>((i >> (8 * b)) & 0xff);
    }
    std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
    SHA256(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest.data());
    out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  }
  out.resize(size);
  return out;
}

//! The first `size` bytes of a file or block device; shorter if it is shorter.
std::string ReadPrefix(const std::string& path, size_t size) {
  std::ifstream in(path, std::ios::binary);
  std::string out(size, '\0');
  in.read(out.data(), static_cast<std::streamsize>(size));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

//! Where two byte strings first differ, for a readable failure ("" when equal).
std::string FirstDifference(const std::string& got, const std::string& want) {
  if (got == want) {
    return "";
  }
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) {
    ++i;
  }
  return "first difference at byte " + std::to_string(i) + " of " + std::to_string(want.size()) +
         " (got " + std::to_string(got.size()) + " bytes)";
}

class NodeWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = WorldVar("NODE_NAME");
    probe_ = WorldVar("NODE_PROBE_IMAGE");
    kubectl_ = WorldVar("KUBECTL");
    kubeconfig_ = WorldVar("KUBECONFIG");
    ASSERT_FALSE(node_.empty() || probe_.empty() || kubectl_.empty() || kubeconfig_.empty());
    auto config = kube::LoadKubeconfig(kubeconfig_);
    ASSERT_TRUE(config) << config.error().ToString();
    auto c = kube::Client::Create(*config);
    ASSERT_TRUE(c) << c.error().ToString();
    client_ = std::move(*c);
  }

  void TearDown() override {
    for (const auto& name : pods_) {
      (void)client_->Call({}, "DELETE", kPods.Path("default", name), "application/json",
                          R"({"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0})");
    }
    for (const auto& name : pods_) {
      Eventually([&] { return !client_->Get({}, kPods, "default", name); }, 60s);
    }
    // The claims go; their local PVs are made Available again for the next tests, as a local
    // static provisioner would (a directory emptied; a block device is rewritten by its next user).
    for (const auto& name : pvcs_) {
      auto claim = client_->Get({}, kPvcs, "default", name);
      const std::string pv = claim ? (*claim)["spec"].value("volumeName", "") : "";
      const std::string path = claim ? BoundPath(name) : "";
      (void)client_->Delete({}, kPvcs, "default", name);
      if (pv.empty()) {
        continue;
      }
      Eventually([&] { return !client_->Get({}, kPvcs, "default", name); }, 60s);
      if (!path.empty() && !path.starts_with("/dev/")) {
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
          std::filesystem::remove_all(entry.path(), ec);
        }
      }
      (void)client_->MergePatch({}, kPvs, "", pv, {{"spec", {{"claimRef", nullptr}}}});
    }
  }

  //! A Pod of the probe image running `steps`, placed by the scheduler (no nodeName).
  Json ProbePod(const std::string& name, const std::vector<std::string>& steps) {
    pods_.push_back(name);
    Json args = Json::array();
    for (const auto& s : steps) {
      args.push_back(s);
    }
    return {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", name}, {"namespace", "default"}}},
            {"spec",
             {{"automountServiceAccountToken", false},
              {"terminationGracePeriodSeconds", 1},
              {"containers",
               {{{"name", "probe"},
                 {"image", probe_},
                 {"imagePullPolicy", "Never"},
                 {"args", args}}}}}}};
  }

  Json Pvc(const std::string& name, const std::string& storage_class, const std::string& mode) {
    pvcs_.push_back(name);
    return {{"apiVersion", "v1"},
            {"kind", "PersistentVolumeClaim"},
            {"metadata", {{"name", name}, {"namespace", "default"}}},
            {"spec",
             {{"accessModes", {"ReadWriteOnce"}},
              {"storageClassName", storage_class},
              {"volumeMode", mode},
              {"resources", {{"requests", {{"storage", "64Mi"}}}}}}}};
  }

  std::string Phase(const std::string& resource_name, const kube::Resource& r) {
    auto o = client_->Get({}, r, "default", resource_name);
    return o ? (*o)["status"].value("phase", "") : "";
  }

  bool PodRunning(const std::string& name) { return Phase(name, kPods) == "Running"; }

  std::string Logs(const std::string& pod) {
    std::string out;
    (void)RunCommand(Quote(kubectl_) + " --kubeconfig " + Quote(kubeconfig_) + " logs -n default " +
                         Quote(pod) + " 2>&1",
                     &out);
    return out;
  }

  bool NodeReady() {
    auto node = client_->Get({}, kNodes, "", node_);
    if (!node) {
      return false;
    }
    for (const Json& c : (*node)["status"].value("conditions", Json::array())) {
      if (c.value("type", "") == "Ready") {
        return c.value("status", "") == "True";
      }
    }
    return false;
  }

  //! The local path of the PV bound to a PVC ("" while unbound).
  std::string BoundPath(const std::string& pvc) {
    auto claim = client_->Get({}, kPvcs, "default", pvc);
    if (!claim || (*claim)["status"].value("phase", "") != "Bound") {
      return "";
    }
    auto pv = client_->Get({}, kPvs, "", (*claim)["spec"].value("volumeName", ""));
    return pv ? (*pv)["spec"]["local"].value("path", "") : "";
  }

  std::string node_, probe_, kubectl_, kubeconfig_;
  std::unique_ptr<kube::Client> client_;
  std::vector<std::string> pods_, pvcs_;
};

TEST_F(NodeWorldTest, TheSchedulerPlacesAPodTheKubeletRunsItAndLogsShowItsOutput) {
  ASSERT_TRUE(NodeReady());
  auto node = client_->Get({}, kNodes, "", node_);
  ASSERT_TRUE(node);
  EXPECT_EQ((*node)["status"]["nodeInfo"].value("kubeletVersion", ""), "v1.37.2");
  EXPECT_TRUE((*node)["status"]["nodeInfo"]
                  .value("containerRuntimeVersion", "")
                  .starts_with("containerd://"));

  const std::string name = UniqueName("node-hello");
  const std::string marker = "hello-from-" + name;
  auto created =
      client_->Create({}, kPods, "default", ProbePod(name, {"print:" + marker, "ticks:1"}));
  ASSERT_TRUE(created) << created.error().ToString();
  ASSERT_TRUE(Eventually([&] { return PodRunning(name); }, 60s)) << "phase " << Phase(name, kPods);
  auto pod = client_->Get({}, kPods, "default", name);
  ASSERT_TRUE(pod);
  EXPECT_EQ((*pod)["spec"].value("nodeName", ""), node_) << "placed by kube-scheduler";
  // Not a host-network Pod: an address on the node's own bridge, in its network namespace.
  EXPECT_TRUE((*pod)["status"].value("podIP", "").starts_with("10.244.0."))
      << (*pod)["status"].dump();
  ASSERT_TRUE(Eventually([&] { return Logs(name).find("tick 1") != std::string::npos; }, 30s))
      << Logs(name);
  EXPECT_NE(Logs(name).find(marker), std::string::npos);
}

TEST_F(NodeWorldTest, AHostNetworkPodSharesTheHostsLoopback) {
  const std::string name = UniqueName("node-hostnet");
  Json pod = ProbePod(name, {"print:hostnet-" + name, "sleep"});
  pod["spec"]["hostNetwork"] = true;
  ASSERT_TRUE(client_->Create({}, kPods, "default", pod));
  ASSERT_TRUE(Eventually([&] { return PodRunning(name); }, 60s)) << "phase " << Phase(name, kPods);
  ASSERT_TRUE(
      Eventually([&] { return Logs(name).find("hostnet-" + name) != std::string::npos; }, 30s))
      << Logs(name);
}

TEST_F(NodeWorldTest, VolumesOfBothClassesWaitForTheirPodBindAndHoldItsBytes) {
  const std::string fs_pvc = UniqueName("node-fs");
  const std::string block_pvc = UniqueName("node-block");
  ASSERT_TRUE(client_->Create({}, kPvcs, "default",
                              Pvc(fs_pvc, WorldVar("NODE_FS_STORAGE_CLASS"), "Filesystem")));
  ASSERT_TRUE(client_->Create({}, kPvcs, "default",
                              Pvc(block_pvc, WorldVar("NODE_BLOCK_STORAGE_CLASS"), "Block")));
  // WaitForFirstConsumer: nothing binds before a Pod uses the claims.
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(Phase(fs_pvc, kPvcs), "Pending");
  EXPECT_EQ(Phase(block_pvc, kPvcs), "Pending");

  const std::string name = UniqueName("node-writer");
  const size_t size = 1024 * 1024 + 17;  // not a multiple of any block size
  const std::string fs_seed = "fs-" + name;
  const std::string block_seed = "block-" + name;
  Json pod = ProbePod(name, {"write:/pv/data:" + std::to_string(size) + ":" + fs_seed,
                             "write:/dev/xvda:" + std::to_string(size) + ":" + block_seed,
                             "sha256:/pv/data:" + std::to_string(size), "print:written", "sleep"});
  pod["spec"]["containers"][0]["volumeMounts"] = {{{"name", "fs"}, {"mountPath", "/pv"}}};
  pod["spec"]["containers"][0]["volumeDevices"] = {
      {{"name", "block"}, {"devicePath", "/dev/xvda"}}};
  pod["spec"]["volumes"] = {
      {{"name", "fs"}, {"persistentVolumeClaim", {{"claimName", fs_pvc}}}},
      {{"name", "block"}, {"persistentVolumeClaim", {{"claimName", block_pvc}}}}};
  ASSERT_TRUE(client_->Create({}, kPods, "default", pod));
  ASSERT_TRUE(Eventually([&] { return Logs(name).find("written") != std::string::npos; }, 90s))
      << "phase " << Phase(name, kPods) << "; logs: " << Logs(name);
  EXPECT_EQ(Phase(fs_pvc, kPvcs), "Bound");
  EXPECT_EQ(Phase(block_pvc, kPvcs), "Bound");

  // Read back on the node, outside the Pod: the PV's directory and the PV's loop device.
  const std::string dir = BoundPath(fs_pvc);
  const std::string device = BoundPath(block_pvc);
  ASSERT_FALSE(dir.empty());
  ASSERT_TRUE(device.starts_with("/dev/loop")) << device;
  EXPECT_EQ(FirstDifference(ReadPrefix(dir + "/data", size + 1), Pattern(fs_seed, size)), "");
  EXPECT_EQ(FirstDifference(ReadPrefix(device, size), Pattern(block_seed, size)), "");
}

TEST_F(NodeWorldTest, AKubeletRestartLeavesARunningPodRunningAndItsVolumeIntact) {
  const std::string pvc = UniqueName("node-restart");
  ASSERT_TRUE(client_->Create({}, kPvcs, "default",
                              Pvc(pvc, WorldVar("NODE_FS_STORAGE_CLASS"), "Filesystem")));
  const std::string name = UniqueName("node-survivor");
  const size_t size = 256 * 1024 + 3;
  const std::string seed = "restart-" + name;
  Json pod = ProbePod(name, {"write:/pv/data:" + std::to_string(size) + ":" + seed, "ticks:1"});
  pod["spec"]["containers"][0]["volumeMounts"] = {{{"name", "fs"}, {"mountPath", "/pv"}}};
  pod["spec"]["volumes"] = {{{"name", "fs"}, {"persistentVolumeClaim", {{"claimName", pvc}}}}};
  ASSERT_TRUE(client_->Create({}, kPods, "default", pod));
  ASSERT_TRUE(Eventually([&] { return Logs(name).find("tick 1") != std::string::npos; }, 90s))
      << Logs(name);
  auto before = client_->Get({}, kPods, "default", name);
  ASSERT_TRUE(before);
  const Json status_before = (*before)["status"]["containerStatuses"][0];
  const std::string dir = BoundPath(pvc);
  ASSERT_FALSE(dir.empty());

  std::string out;
  ASSERT_EQ(RunCommand(Quote(WorldVar("NODE_WORLD_SCRIPT")) + " restart-kubelet 2>&1", &out), 0)
      << out;
  // The restarted kubelet reports the node again and serves the Pod's logs.
  ASSERT_TRUE(Eventually([&] { return NodeReady(); }, 60s));
  std::string logs;
  ASSERT_TRUE(Eventually(
      [&] {
        logs = Logs(name);
        return logs.find("tick 15") != std::string::npos;
      },
      60s))
      << logs;
  auto after = client_->Get({}, kPods, "default", name);
  ASSERT_TRUE(after);
  EXPECT_EQ((*after)["status"].value("phase", ""), "Running");
  const Json status_after = (*after)["status"]["containerStatuses"][0];
  EXPECT_EQ(status_after.value("containerID", ""), status_before.value("containerID", ""))
      << "the same container, not a new one";
  EXPECT_EQ(status_after.value("restartCount", -1), 0);
  // One process all along: its ticks count on without starting again at 0.
  EXPECT_EQ(logs.find("tick 0"), logs.rfind("tick 0"));
  EXPECT_EQ(FirstDifference(ReadPrefix(dir + "/data", size + 1), Pattern(seed, size)), "");
}

}  // namespace
}  // namespace vmimport
