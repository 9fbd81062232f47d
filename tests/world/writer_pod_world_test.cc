// Warm migration's writer (issue 22) as a Pod on the world's real node: the controller's own
// image (world.local/vm-import-controller:world, `vm-import-controller writer`) with a filesystem
// PVC (disk.img) and a block PVC (the device) of the node's local PVs, the import's token from a
// Secret, on the host network listening on 127.0.0.1. The test streams rounds of extents to it
// with the controller's client (warm/writer_client.h), one of them cut short and sent again on a
// new connection, and reads the volumes back on the host: their bytes are what the rounds wrote.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "kube/client.h"
#include "kube/config.h"
#include "warm/writer_client.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::RunCommand;
using testing::WorldVar;
namespace fs = std::filesystem;

const Resource kPvcs{"", "v1", "persistentvolumeclaims", true};
const Resource kPvs{"", "v1", "persistentvolumes", false};
const Resource kPods{"", "v1", "pods", true};
const Resource kSecrets{"", "v1", "secrets", true};
const Resource kNamespaces{"", "v1", "namespaces", false};

// Odd sizes: a rounding on the way would show.
constexpr uint64_t kFsDisk = (24ULL << 20) + (192ULL << 10);
constexpr uint64_t kBlockDisk = (16ULL << 20) + (64ULL << 10);

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

std::string Sh(const std::string& command, int* rc = nullptr) {
  std::string out;
  const int r = RunCommand(command + " 2>&1", &out);
  if (rc != nullptr) {
    *rc = r;
  }
  return out;
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

std::vector<std::byte> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) {
    b = std::byte(rng() & 0xff);
  }
  return out;
}

// What a source would send: extents applied to a model of each disk as they are sent.
struct Disks {
  std::vector<std::vector<std::byte>> want{std::vector<std::byte>(kFsDisk),
                                           std::vector<std::byte>(kBlockDisk)};
  // Sends one extent and records it in the model.
  void Send(warm::WriterClient& c, uint32_t disk, uint64_t offset, uint64_t length, bool zero,
            uint32_t seed) {
    std::vector<std::byte> data;
    if (zero) {
      std::fill_n(want[disk].begin() + static_cast<std::ptrdiff_t>(offset), length, std::byte{0});
    } else {
      data = Random(length, seed);
      std::copy(data.begin(), data.end(), want[disk].begin() + static_cast<std::ptrdiff_t>(offset));
    }
    if (zero) {
      auto ok = c.Extent(disk, offset, length, true, {});
      ASSERT_TRUE(ok) << ok.error().ToString();
      return;
    }
    // At most warm::kMaxPayload a frame, as CopyRound sends a long range.
    for (uint64_t done = 0; done < length; done += warm::kMaxPayload) {
      const uint64_t n = std::min<uint64_t>(warm::kMaxPayload, length - done);
      auto ok =
          c.Extent(disk, offset + done, n, false,
                   std::span(data).subspan(static_cast<size_t>(done), static_cast<size_t>(n)));
      ASSERT_TRUE(ok) << ok.error().ToString();
    }
  }
};

class WriterPodWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kubectl_ = WorldVar("KUBECTL");
    kubeconfig_ = WorldVar("KUBECONFIG");
    fs_class_ = WorldVar("NODE_FS_STORAGE_CLASS");
    block_class_ = WorldVar("NODE_BLOCK_STORAGE_CLASS");
    ASSERT_FALSE(WorldVar("NODE_NAME").empty()) << "the node is not up";
    ASSERT_FALSE(HasFailure());
    auto config = LoadKubeconfig(kubeconfig_);
    ASSERT_TRUE(config) << config.error().ToString();
    auto c = Client::Create(*config);
    ASSERT_TRUE(c);
    client_ = std::move(*c);
    ns_ = "warm-" + std::to_string(std::random_device{}() % 1000000);
    ASSERT_TRUE(client_->Create(
        {}, kNamespaces, "",
        {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns_}}}}));
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << Diagnostics() << "namespace " << ns_ << " kept\n";
      return;
    }
    // Free the node's local PVs the claims bound, as the CDI tests do.
    std::vector<std::pair<std::string, std::string>> volumes;
    if (auto pvs = client_->List({}, kPvs, ""); pvs) {
      for (const Json& pv : (*pvs)["items"]) {
        if (pv["spec"].value("claimRef", Json::object()).value("namespace", "") == ns_) {
          volumes.emplace_back(pv["metadata"].value("name", ""),
                               pv["spec"].value("local", Json::object()).value("path", ""));
        }
      }
    }
    EXPECT_TRUE(client_->Delete({}, kNamespaces, "", ns_));
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (client_->Get({}, kNamespaces, "", ns_) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(500ms);
    }
    for (const auto& [pv, path] : volumes) {
      if (!path.empty() && !path.starts_with("/dev/")) {
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(path, ec)) {
          fs::remove_all(entry.path(), ec);
        }
      }
      EXPECT_TRUE(client_->MergePatch({}, kPvs, "", pv, {{"spec", {{"claimRef", nullptr}}}}));
    }
  }

  std::string Kubectl() const {
    return Quote(kubectl_) + " --kubeconfig " + Quote(kubeconfig_) + " -n " + ns_;
  }
  std::string Diagnostics() {
    return Sh(Kubectl() + " get pvc,pods -o wide") + Sh(Kubectl() + " describe pod writer") +
           Sh(Kubectl() + " logs writer");
  }

  void CreateClaim(const std::string& name, const std::string& storage_class,
                   const std::string& mode) {
    auto r = client_->Create({}, kPvcs, ns_,
                             {{"apiVersion", "v1"},
                              {"kind", "PersistentVolumeClaim"},
                              {"metadata", {{"name", name}, {"namespace", ns_}}},
                              {"spec",
                               {{"accessModes", {"ReadWriteOnce"}},
                                {"volumeMode", mode},
                                {"storageClassName", storage_class},
                                {"resources", {{"requests", {{"storage", "64Mi"}}}}}}}});
    ASSERT_TRUE(r) << r.error().ToString();
  }

  //! The writer Pod as the controller would make it (issue 22): the controller's image, the
  //! `writer` subcommand, the token from the import's Secret, the claims mounted.
  void CreateWriterPod(int port) {
    const Json container = {
        {"name", "writer"},
        {"image", "world.local/vm-import-controller:world"},
        {"imagePullPolicy", "IfNotPresent"},
        {"args",
         {"writer", "--listen", "127.0.0.1:" + std::to_string(port), "--disk",
          "/volumes/disk-0/disk.img:" + std::to_string(kFsDisk), "--disk", "/dev/vmimport-disk-1"}},
        {"env",
         {{{"name", "VMIMPORT_WRITER_TOKEN"},
           {"valueFrom", {{"secretKeyRef", {{"name", "writer-token"}, {"key", "token"}}}}}}}},
        {"volumeMounts", {{{"name", "disk-0"}, {"mountPath", "/volumes/disk-0"}}}},
        {"volumeDevices", {{{"name", "disk-1"}, {"devicePath", "/dev/vmimport-disk-1"}}}},
        {"securityContext", {{"allowPrivilegeEscalation", false}}}};
    auto r = client_->Create(
        {}, kPods, ns_,
        {{"apiVersion", "v1"},
         {"kind", "Pod"},
         {"metadata", {{"name", "writer"}, {"namespace", ns_}}},
         {"spec",
          {{"hostNetwork", true},
           {"restartPolicy", "Never"},
           {"securityContext", {{"runAsUser", 65532}, {"runAsGroup", 65532}, {"fsGroup", 65532}}},
           {"containers", {container}},
           {"volumes",
            {{{"name", "disk-0"}, {"persistentVolumeClaim", {{"claimName", "disk-0"}}}},
             {{"name", "disk-1"}, {"persistentVolumeClaim", {{"claimName", "disk-1"}}}}}}}}});
    ASSERT_TRUE(r) << r.error().ToString();
  }

  //! The PV path behind a claim (a directory, or a device for a block PV).
  std::string VolumePath(const std::string& claim) {
    auto pvc = client_->Get({}, kPvcs, ns_, claim);
    if (!pvc) {
      return "";
    }
    auto pv = client_->Get({}, kPvs, "", (*pvc)["spec"].value("volumeName", ""));
    return pv ? (*pv)["spec"].value("local", Json::object()).value("path", "") : "";
  }

  std::unique_ptr<warm::WriterClient> Connect(int port, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto c = warm::WriterClient::Connect("127.0.0.1", static_cast<uint16_t>(port), token_, 30s);
      if (c) {
        return std::move(*c);
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << c.error().ToString();
        return nullptr;
      }
      std::this_thread::sleep_for(200ms);
    }
  }

  std::string kubectl_, kubeconfig_, fs_class_, block_class_, ns_;
  std::string token_ = "3f9c1e0b7a5d4c2e8f6a1b3c5d7e9f02";
  std::unique_ptr<Client> client_;
};

TEST_F(WriterPodWorldTest, RoundsStreamedToTheWriterPodLandInTheFilesystemAndBlockVolumes) {
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(client_->Create({}, kSecrets, ns_,
                              {{"apiVersion", "v1"},
                               {"kind", "Secret"},
                               {"metadata", {{"name", "writer-token"}, {"namespace", ns_}}},
                               {"stringData", {{"token", token_}}}}));
  CreateClaim("disk-0", fs_class_, "Filesystem");
  CreateClaim("disk-1", block_class_, "Block");
  const int port = FreePort();
  CreateWriterPod(port);
  ASSERT_FALSE(HasFailure());

  // The Pod binds the claims (WaitForFirstConsumer), kubelet mounts them and runs the writer.
  auto c = Connect(port, 120s);
  ASSERT_TRUE(c) << Diagnostics();
  EXPECT_EQ(c->WriterLastRound(), -1);
  const double ready_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  Disks disks;
  // Round 0: the whole disks, as a source's full read would send them (data and zero ranges).
  ASSERT_TRUE(c->Begin(0));
  for (uint64_t off = 0; off < kFsDisk; off += 4u << 20) {
    const uint64_t len = std::min<uint64_t>(4u << 20, kFsDisk - off);
    disks.Send(*c, 0, off, len, (off / (4u << 20)) % 3 == 1, static_cast<uint32_t>(off >> 20));
  }
  disks.Send(*c, 1, 0, kBlockDisk, false, 77);
  ASSERT_FALSE(HasFailure());
  auto r0 = c->Commit(0);
  ASSERT_TRUE(r0) << r0.error().ToString();
  EXPECT_EQ(*r0, kFsDisk + kBlockDisk);

  // Round 1: what the guest changed since (4 KiB to 1 MiB pieces, and a range it zeroed).
  ASSERT_TRUE(c->Begin(1));
  disks.Send(*c, 0, 4096, 4096, false, 101);
  disks.Send(*c, 0, kFsDisk - 65536, 65536, false, 102);
  disks.Send(*c, 1, 8u << 20, 1u << 20, true, 0);
  disks.Send(*c, 1, 12345 * 512, 8192, false, 103);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(c->Commit(1));

  // Round 2 cut short (the controller died mid-round): nothing acknowledged, so it is sent again
  // whole on a new connection, which supersedes the old session.
  Disks again = disks;
  ASSERT_TRUE(c->Begin(2));
  disks.Send(*c, 0, 1u << 20, 1u << 20, false, 201);
  c.reset();
  disks = again;
  c = Connect(port, 30s);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->WriterLastRound(), 1);
  ASSERT_TRUE(c->Begin(2));
  disks.Send(*c, 0, 1u << 20, 1u << 20, false, 201);
  disks.Send(*c, 1, 0, 4096, false, 202);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(c->Commit(2));
  c.reset();

  // The bytes on the node, read on the host: disk.img in the PV's directory and the PV's device.
  const std::string image = VolumePath("disk-0") + "/disk.img";
  ASSERT_TRUE(fs::exists(image)) << image;
  EXPECT_EQ(fs::file_size(image), kFsDisk);
  const std::string device = VolumePath("disk-1");
  ASSERT_TRUE(device.starts_with("/dev/")) << device;
  for (size_t d = 0; d < 2; ++d) {
    const std::string path = d == 0 ? image : device;
    const std::string want_file = (fs::temp_directory_path() / (ns_ + "-want")).string();
    {
      std::ofstream f(want_file, std::ios::binary);
      f.write(reinterpret_cast<const char*>(disks.want[d].data()),
              static_cast<std::streamsize>(disks.want[d].size()));
    }
    int rc = 0;
    const std::string got =
        Sh("head -c " + std::to_string(disks.want[d].size()) + " " + Quote(path) + " | sha256sum",
           &rc);
    EXPECT_EQ(got.substr(0, 64), testing::Sha256File(want_file)) << "disk " << d << " " << path;
    fs::remove(want_file);
  }
  // The writer's own account, in the Pod's log.
  const std::string log = Sh(Kubectl() + " logs writer");
  int committed = 0;
  bool round2 = false;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("writer round committed") != std::string::npos) {
      ++committed;
      round2 |= line.find(" round=2 ") != std::string::npos;
    }
  }
  EXPECT_EQ(committed, 3) << log;
  EXPECT_TRUE(round2) << log;
  std::cerr << "writer pod ready (claims bound, volumes mounted, listening) after " << ready_s
            << " s; total "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
            << " s\n";
}

}  // namespace
}  // namespace vmimport::kube
