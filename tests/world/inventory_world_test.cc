// The inventory at scale (issue 23, item 2), against real vcsims: the world's seeded one (every
// VM of the seed manifest listed with its path, power and hardware, in several pages), and two
// of our own with generated VMs (20 and 300), whose listings must cost the same number of SOAP
// calls apart from the pages, and list exactly what govc finds.

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "core/strings.h"
#include "http/client.h"
#include "source/tls.h"
#include "source/vmware/importer.h"
#include "source/vmware/inventory.h"
#include "source/vmware/session.h"
#include "world/process.h"
#include "world/world_env.h"

namespace vmimport::source::vmware {
namespace {

using namespace std::chrono_literals;
using testing::ManifestRows;
using testing::WorldVar;
namespace fs = std::filesystem;

SourceConfig ConfigFor(const std::string& sdk_url) {
  SourceConfig config;
  config.endpoint = sdk_url;
  config.datacenter = WorldVar("VCSIM_DATACENTER");
  config.secret = {{"username", WorldVar("VCSIM_USERNAME")},
                   {"password", WorldVar("VCSIM_PASSWORD")},
                   {"caCert", testing::ReadFile(WorldVar("VCSIM_CA"))}};
  return config;
}

// A vcsim of our own from the world's binary and certificate, with `vms` generated VMs in one
// cluster (vcsim's model: /DC0/vm/DC0_C0_RP0_VM<i>).
class GeneratedVcsim {
 public:
  explicit GeneratedVcsim(int vms) {
    dir_ = fs::temp_directory_path() /
           ("inv-vcsim-" + std::to_string(getpid()) + "-" + std::to_string(vms));
    fs::create_directories(dir_);
    const std::string bin = fs::path(WorldVar("GOVC")).parent_path() / "vcsim-ext";
    const std::string tls = WorldVar("VCSIM_DIR") + "/tls/";
    process_ =
        std::make_unique<testing::ChildProcess>(std::vector<std::string>{bin,
                                                                         "-l",
                                                                         "127.0.0.1:0",
                                                                         "-url-file",
                                                                         (dir_ / "url").string(),
                                                                         "-username",
                                                                         WorldVar("VCSIM_USERNAME"),
                                                                         "-password",
                                                                         WorldVar("VCSIM_PASSWORD"),
                                                                         "-tlscert",
                                                                         tls + "server.pem",
                                                                         "-tlskey",
                                                                         tls + "server.key",
                                                                         "-cluster",
                                                                         "1",
                                                                         "-host",
                                                                         "1",
                                                                         "-standalone-host",
                                                                         "0",
                                                                         "-vm",
                                                                         std::to_string(vms)},
                                                (dir_ / "vcsim.log").string());
  }
  ~GeneratedVcsim() {
    process_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  //! Waits until it listens; "" after 120 s or when it exited.
  std::string WaitForUrl() {
    for (int i = 0; i < 1200 && sdk_url_.empty() && process_->Running(); ++i) {
      std::ifstream in(dir_ / "url");
      std::getline(in, sdk_url_);
      if (sdk_url_.empty()) {
        std::this_thread::sleep_for(100ms);
      }
    }
    return sdk_url_;
  }
  std::string Log() const { return process_->Log(); }

 private:
  fs::path dir_;
  std::unique_ptr<testing::ChildProcess> process_;
  std::string sdk_url_;
};

// govc's own answer: the inventory path of every VM of `sdk_url`.
std::set<std::string> GovcVmPaths(const std::string& sdk_url) {
  std::string out;
  const int rc = testing::RunCommand("GOVC_URL='" + sdk_url + "' GOVC_USERNAME='" +
                                         WorldVar("VCSIM_USERNAME") + "' GOVC_PASSWORD='" +
                                         WorldVar("VCSIM_PASSWORD") + "' GOVC_TLS_CA_CERTS='" +
                                         WorldVar("VCSIM_CA") + "' GOVC_PERSIST_SESSION=false '" +
                                         WorldVar("GOVC") + "' find / -type m 2>&1",
                                     &out);
  EXPECT_EQ(rc, 0) << out;
  std::set<std::string> paths;
  for (auto line : core::Split(out, '\n')) {
    if (!core::TrimSpace(line).empty()) {
      paths.emplace(core::TrimSpace(line));
    }
  }
  return paths;
}

const model::VmDescription* FindPath(const VmListing& listing, const std::string& path) {
  for (const auto& vm : listing.vms) {
    if (vm.inventory_path == path) {
      return &vm;
    }
  }
  return nullptr;
}

TEST(InventoryWorldTest, ListingMatchesTheSeedManifestAcrossPages) {
  http::GlobalInit();
  auto listing = ListInventory({}, ConfigFor(WorldVar("VCSIM_SDK_URL")), "", 3);
  ASSERT_TRUE(listing) << listing.error().ToString();
  const auto vm_rows = ManifestRows("vm");
  ASSERT_GE(vm_rows.size(), 8u);
  EXPECT_GE(listing->stats.pages, 3) << "a page of 3 objects must take several pages";
  std::set<std::string> listed;
  for (const auto& vm : listing->vms) {
    EXPECT_TRUE(listed.insert(vm.inventory_path).second) << "listed twice: " << vm.inventory_path;
  }
  EXPECT_EQ(listed, GovcVmPaths(WorldVar("VCSIM_SDK_URL"))) << "the listing is not complete";
  for (const auto& row : vm_rows) {
    SCOPED_TRACE(row[1]);
    const model::VmDescription* vm = FindPath(*listing, row[1]);
    ASSERT_NE(vm, nullptr) << "not listed";
    EXPECT_EQ(vm->name, row[2]);
    EXPECT_EQ(vm->id, row[3]);
    EXPECT_EQ(std::to_string(vm->cpus), row[4]);
    EXPECT_EQ(std::to_string(vm->cores_per_socket), row[5]);
    EXPECT_EQ(std::to_string(vm->memory_mib), row[6]);
    EXPECT_EQ(model::FirmwareName(vm->firmware), row[7]);
    EXPECT_EQ(row[8], vm->power_state == model::PowerState::kOn ? "poweredOn" : "poweredOff");
    EXPECT_EQ(vm->instance_uuid, row[9]);
    EXPECT_EQ(vm->secure_boot ? "true" : "false", row[11]);
    size_t disks = 0;
    for (const auto& d : ManifestRows("disk")) {
      if (d[1] != row[1]) {
        continue;
      }
      const size_t i = std::stoul(d[2]);
      ++disks;
      ASSERT_LT(i, vm->disks.size());
      EXPECT_EQ(std::to_string(vm->disks[i].capacity_bytes), d[3]) << "disk " << i;
      EXPECT_EQ(vm->disks[i].controller, d[8]) << "disk " << i;
    }
    EXPECT_EQ(vm->disks.size(), disks);
    size_t nics = 0;
    for (const auto& n : ManifestRows("nic")) {
      if (n[1] != row[1]) {
        continue;
      }
      const size_t i = std::stoul(n[2]);
      ++nics;
      ASSERT_LT(i, vm->nics.size());
      EXPECT_EQ(vm->nics[i].mac, n[3]) << "nic " << i;
      EXPECT_EQ(vm->nics[i].network, n[4]) << "nic " << i;
      EXPECT_EQ(vm->nics[i].adapter_type, n[5]) << "nic " << i;
    }
    EXPECT_EQ(vm->nics.size(), nics);
  }
}

TEST(InventoryWorldTest, AFolderListsOnlyItsVmsWithTheirPaths) {
  http::GlobalInit();
  auto listing = ListInventory({}, ConfigFor(WorldVar("VCSIM_SDK_URL")), "team-a");
  ASSERT_TRUE(listing) << listing.error().ToString();
  ASSERT_EQ(listing->vms.size(), 1u);
  EXPECT_EQ(listing->vms[0].inventory_path, "/DC0/vm/team-a/vmi-dup");
  auto missing = ListInventory({}, ConfigFor(WorldVar("VCSIM_SDK_URL")), "no-such-folder");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, core::ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("/DC0/vm/no-such-folder"), std::string::npos)
      << missing.error().message;
}

TEST(InventoryWorldTest, SoapCallsDoNotGrowWithTheVmCount) {
  http::GlobalInit();
  GeneratedVcsim small(20);
  GeneratedVcsim big(300);
  const std::string small_url = small.WaitForUrl();
  ASSERT_FALSE(small_url.empty()) << small.Log();
  const std::string big_url = big.WaitForUrl();
  ASSERT_FALSE(big_url.empty()) << big.Log();

  constexpr int kPage = 50;
  auto few = ListInventory({}, ConfigFor(small_url), "", kPage);
  ASSERT_TRUE(few) << few.error().ToString();
  auto many = ListInventory({}, ConfigFor(big_url), "", kPage);
  ASSERT_TRUE(many) << many.error().ToString();
  EXPECT_EQ(few->vms.size(), 20u);
  ASSERT_EQ(many->vms.size(), 300u);
  EXPECT_EQ(few->stats.pages, 1);
  EXPECT_EQ(many->stats.pages, static_cast<int>((many->stats.objects + kPage - 1) / kPage));
  // The same calls apart from one ContinueRetrievePropertiesEx per further page.
  EXPECT_EQ(few->stats.soap_calls - static_cast<uint64_t>(few->stats.pages),
            many->stats.soap_calls - static_cast<uint64_t>(many->stats.pages));
  EXPECT_LE(few->stats.soap_calls, 10u) << "login, datacenter, folder, view, page, logout...";

  // Complete and correct: the paths govc finds, and what the per-VM Describe reads.
  std::set<std::string> listed;
  for (const auto& vm : many->vms) {
    listed.insert(vm.inventory_path);
  }
  EXPECT_EQ(listed, GovcVmPaths(big_url));
  auto tls = TlsFromSecret(ConfigFor(big_url).secret);
  ASSERT_TRUE(tls);
  auto http = http::Client::Create(*tls);
  ASSERT_TRUE(http);
  auto session =
      Session::Login({}, **http, big_url, WorldVar("VCSIM_USERNAME"), WorldVar("VCSIM_PASSWORD"));
  ASSERT_TRUE(session) << session.error().ToString();
  Inventory inventory(**session);
  for (size_t i : {size_t{0}, size_t{123}, size_t{299}}) {
    const model::VmDescription& listed_vm = many->vms[i];
    SCOPED_TRACE(listed_vm.inventory_path);
    auto one = inventory.Describe(
        {}, VmRef{{"VirtualMachine", listed_vm.id}, listed_vm.name, listed_vm.inventory_path});
    ASSERT_TRUE(one) << one.error().ToString();
    auto path = inventory.InventoryPath({}, MoRef{"VirtualMachine", listed_vm.id});
    ASSERT_TRUE(path);
    EXPECT_EQ(*path, listed_vm.inventory_path);
    EXPECT_EQ(one->power_state, listed_vm.power_state);
    EXPECT_EQ(one->cpus, listed_vm.cpus);
    EXPECT_EQ(one->memory_mib, listed_vm.memory_mib);
    EXPECT_EQ(one->instance_uuid, listed_vm.instance_uuid);
    ASSERT_EQ(one->disks.size(), listed_vm.disks.size());
    for (size_t d = 0; d < one->disks.size(); ++d) {
      EXPECT_EQ(one->disks[d].capacity_bytes, listed_vm.disks[d].capacity_bytes);
      EXPECT_EQ(one->disks[d].location, listed_vm.disks[d].location);
    }
    ASSERT_EQ(one->nics.size(), listed_vm.nics.size());
    for (size_t n = 0; n < one->nics.size(); ++n) {
      EXPECT_EQ(one->nics[n].mac, listed_vm.nics[n].mac);
      EXPECT_EQ(one->nics[n].network, listed_vm.nics[n].network);
    }
  }
  (void)(*session)->Logout({});
}

}  // namespace
}  // namespace vmimport::source::vmware
