#pragma once

// The fixture of the world tests on the node's volumes (volume_world_test.cc: straight to volumes,
// issue 19; warm_import_world_test.cc: warm migration, issue 22): the controller and the
// Harvester simulator as child processes against the world's kube-apiserver, and CDI's own
// controller (tests/world/cdi) making each DataVolume's PVC and importer Pod, which the node's
// kubelet runs with CDI's real importer image.
//
// The node's PVs are few (6 filesystem PVs of 10Gi, block PVs of 1, 1 and 4 GiB) and a released
// one is not recycled: TearDown empties and frees every PV this test's claims bound, as a local
// static provisioner would.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "build_paths.h"
#include "kube/client.h"
#include "world/import_fixture.h"
#include "world/process.h"
#include "world/world_env.h"

namespace vmimport::kube::testing_volume {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::Eventually;
using testing::PeerVar;
using testing::ReadFile;
using testing::RunCommand;
using testing::WorldVar;
namespace fs = std::filesystem;

inline const Resource kDataVolumes{"cdi.kubevirt.io", "v1beta1", "datavolumes", true};
inline const Resource kStorageProfiles{"cdi.kubevirt.io", "v1beta1", "storageprofiles", false};
inline const Resource kPvs{"", "v1", "persistentvolumes", false};
inline const Resource kPods{"", "v1", "pods", true};

inline std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

//! sha256 of the first `bytes` bytes of a file or block device.
inline std::string HeadSha256(const std::string& path, uint64_t bytes) {
  std::string out;
  const int rc =
      RunCommand("head -c " + std::to_string(bytes) + " " + Quote(path) + " | sha256sum", &out);
  return rc == 0 && out.size() >= 64 ? out.substr(0, 64) : "<unreadable " + path + ">";
}

inline int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  if (fd >= 0) {
    ::close(fd);
  }
  return port;
}

class VolumeWorldTest : public ImportFixture {
 protected:
  VolumeWorldTest() : ImportFixture("vol") {}

  void SetUp() override {
    ImportFixture::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    ASSERT_FALSE(WorldVar("CDI_CONTROLLER_PID").empty()) << "tools/world.sh cdi up first";
    fs_class_ = WorldVar("NODE_FS_STORAGE_CLASS");
    block_class_ = WorldVar("NODE_BLOCK_STORAGE_CLASS");
    pod_host_ = WorldVar("CDI_POD_GATEWAY");
    CreateNad();
    // CDI knows no volume and access modes for a kubernetes.io/no-provisioner class: an
    // administrator writes them into the class's StorageProfile, as CDI documents; the
    // controller reads them from its status. The filesystem class keeps CDI's (none: the
    // controller's default, Filesystem ReadWriteOnce).
    // CDI makes the StorageProfile shortly after it starts: a test that runs right after
    // `cdi up` may come first (retried until it exists).
    ASSERT_TRUE(Eventually(
        [&] {
          return client_
              ->MergePatch({}, kStorageProfiles, "", block_class_,
                           {{"spec",
                             {{"claimPropertySets",
                               {{{"accessModes", {"ReadWriteOnce"}}, {"volumeMode", "Block"}}}}}}})
              .has_value();
        },
        60s))
        << "no StorageProfile " << block_class_ << " from CDI";
    ASSERT_TRUE(Eventually(
        [&] {
          auto p = client_->Get({}, kStorageProfiles, "", block_class_);
          return p && !p->value("status", Json::object())
                           .value("claimPropertySets", Json::array())
                           .empty();
        },
        30s));
    // The image server on a port of its own, reached by the importer Pods through the pod
    // bridge's gateway address (netns_bridge.py listens there and relays to 127.0.0.1).
    port_ = FreePort();
    ASSERT_GT(port_, 0);
    const std::string podnet =
        "/proc/" + WorldVar("NODE_NS_PID") + "/root" + WorldVar("NODE_STATE_DIR") + "/podnet";
    const std::string ready = (dir_ / "bridge.ready").string();
    bridge_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{
            "/usr/bin/python3",
            std::string(vmimport::build_paths::SourceDir()) + "/tests/world/cdi/netns_bridge.py",
            "--netns", podnet, "--port", std::to_string(port_), "--listen", pod_host_, "--ready",
            ready},
        (dir_ / "bridge.log").string());
    ASSERT_TRUE(Eventually([&] { return fs::exists(ready); }, 10s))
        << ReadFile(dir_ / "bridge.log");
  }

  void TearDown() override {
    const bool failed = HasFailure();
    if (failed && client_ != nullptr) {
      std::string out;
      RunCommand(Quote(WorldVar("KUBECTL")) + " --kubeconfig " + Quote(kubeconfig_) + " -n " + ns_ +
                     " get dv,pvc,pods -o wide 2>&1; tail -n 20 " +
                     Quote(WorldVar("WORLD_DIR") + "/cdi/cdi-controller.log"),
                 &out);
      std::cerr << out;
    }
    ImportFixture::TearDown();  // stops the processes, deletes the namespace
    bridge_.reset();
    if (client_ == nullptr) {
      return;
    }
    // With the controller and the simulator gone, nothing removes the imports' finalizer, and the
    // launcher Pods the simulator ran on its node never finish terminating: both would keep the
    // namespace, and the Pods the PVCs (and so the node's PVs). Done here as an operator would.
    std::string out;
    RunCommand(Quote(WorldVar("KUBECTL")) + " --kubeconfig " + Quote(kubeconfig_) + " -n " + ns_ +
                   " delete pods --all --force --grace-period=0 >/dev/null 2>&1",
               &out);
    if (auto imports = client_->List({}, kImports, ns_)) {
      for (const Json& i : (*imports)["items"]) {
        (void)client_->MergePatch({}, kImports, ns_, i["metadata"].value("name", ""),
                                  {{"metadata", {{"finalizers", nullptr}}}});
      }
    }
    Eventually([&] { return !client_->Get({}, kNamespaces, "", ns_); }, 120s);
    // Every PV a claim of this namespace bound: emptied (a directory; a block device is
    // overwritten by its next user) and Available again.
    auto pvs = client_->List({}, kPvs, "");
    if (!pvs) {
      return;
    }
    for (const Json& pv : (*pvs)["items"]) {
      const Json& spec = pv["spec"];
      if (spec.value("claimRef", Json::object()).value("namespace", "") != ns_) {
        continue;
      }
      const std::string path = spec.value("local", Json::object()).value("path", "");
      if (!path.empty() && !path.starts_with("/dev/")) {
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(path, ec)) {
          fs::remove_all(entry.path(), ec);
        }
      }
      (void)client_->MergePatch({}, kPvs, "", pv["metadata"].value("name", ""),
                                {{"spec", {{"claimRef", nullptr}}}});
    }
  }

  //! The controller as StartController starts it, with its image server on port_ and its disk
  //! URLs on the pod bridge's address.
  void StartVolumeController(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = ControllerArgv("127.0.0.1:" + std::to_string(port_));
    argv.insert(argv.end(),
                {"--image-server-url", "http://" + pod_host_ + ":" + std::to_string(port_)});
    argv.insert(argv.end(), extra.begin(), extra.end());
    controller_ = std::make_unique<ChildProcess>(
        argv, (dir_ / ("controller-" + std::to_string(++controllers_) + ".log")).string());
  }

  void CreateVolumeImport(const std::string& name, Json spec, const std::string& source = "vcsim") {
    spec["diskTarget"] = "volume";
    CreateImport(name, std::move(spec), source);
  }

  //! Every disk of the import is in its DataVolume's PV, byte for byte the source's (sha256 of
  //! the disk's size from the volume's start), and no VirtualMachineImage exists.
  void ExpectVolumesMatch(const std::string& import_name, const std::vector<std::string>& want) {
    const Json status = GetImport(import_name)["status"];
    const Json disks = status.value("diskImportStatus", Json::array());
    ASSERT_EQ(disks.size(), want.size()) << status.dump();
    for (size_t i = 0; i < want.size(); ++i) {
      const std::string dv = disks[i].value("dataVolume", "");
      ASSERT_FALSE(dv.empty()) << disks[i].dump();
      EXPECT_EQ(disks[i].value("VirtualMachineImage", ""), "");
      EXPECT_EQ(disks[i].value("dataVolumeProgress", ""), "100.0%") << disks[i].dump();
      auto pvc = client_->Get({}, kPvcs, ns_, dv);  // CDI's PVC, named like the DataVolume
      ASSERT_TRUE(pvc) << dv;
      auto pv = client_->Get({}, kPvs, "", (*pvc)["spec"].value("volumeName", ""));
      ASSERT_TRUE(pv) << pvc->dump();
      const std::string path = (*pv)["spec"]["local"].value("path", "");
      const bool block = (*pvc)["spec"].value("volumeMode", "") == "Block";
      const std::string file = block ? path : path + "/disk.img";
      EXPECT_EQ(HeadSha256(file, disks[i].value("diskSize", uint64_t{0})), want[i])
          << import_name << " disk " << i << " in " << file;
    }
    EXPECT_TRUE(Items(kImages).empty());
  }

  //! "disk stream finished" lines of the controller's image server: (bytes, wire_bytes).
  std::vector<std::pair<uint64_t, uint64_t>> FinishedStreams() {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    std::istringstream log(ReadFile(dir_ / "controller-1.log"));
    const std::regex re(R"( bytes=(\d+) wire_bytes=(\d+))");
    for (std::string line; std::getline(log, line);) {
      std::smatch m;
      if (line.find("outcome=completed") != std::string::npos && std::regex_search(line, m, re)) {
        out.emplace_back(std::stoull(m[1]), std::stoull(m[2]));
      }
    }
    return out;
  }

  bool NoDataVolumeOwnedByAnImport() {
    for (const Json& dv : Items(kDataVolumes)) {
      for (const Json& ref : dv["metadata"].value("ownerReferences", Json::array())) {
        if (ref.value("kind", "") == "VirtualMachineImport") {
          return false;
        }
      }
    }
    return true;
  }

  size_t S3Secrets() {
    size_t n = 0;
    for (const Json& s : Items(kSecrets)) {
      n += s["metadata"]
                   .value("labels", Json::object())
                   .contains("migration.harvesterhci.io/import-uid")
               ? 1U
               : 0U;
    }
    return n;
  }

  std::string fs_class_, block_class_, pod_host_;
  int port_ = 0;
  int controllers_ = 0;  // controller-<n>.log
  std::unique_ptr<ChildProcess> bridge_;
};

}  // namespace vmimport::kube::testing_volume
