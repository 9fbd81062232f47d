#include "world/import_fixture.h"

#include <cctype>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <random>

#include "harvester/backing_image.h"
#include "http/client.h"
#include "kube/config.h"
#include "source/vmware/inventory.h"
#include "source/vmware/session.h"
#include "world/argv.h"
#include "world/world_env.h"

namespace vmimport::kube {

using testing::ChildProcess;
using testing::Eventually;
using testing::ReadFile;
using testing::WorldVar;
namespace fs = std::filesystem;

std::vector<std::string> SeededDiskSha256(const std::string& path) {
  std::vector<std::string> out;
  for (const auto& row : testing::ManifestRows("disk")) {
    if (row[1] == path) {
      out.push_back(row[4]);
    }
  }
  return out;
}

// --- WorldNamespaceTest -----------------------------------------------------------------------

void WorldNamespaceTest::SetUp() {
  kubeconfig_ = WorldVar("KUBECONFIG");
  ASSERT_FALSE(kubeconfig_.empty());
  auto config = LoadKubeconfig(kubeconfig_);
  ASSERT_TRUE(config);
  auto c = Client::Create(*config);
  ASSERT_TRUE(c);
  client_ = std::move(*c);
  suffix_ = std::to_string(std::random_device{}() % 1000000);
  ns_ = prefix_ + "-" + suffix_;
  ASSERT_TRUE(client_->Create(
      {}, kNamespaces, "",
      {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns_}}}}));
  dir_ = fs::temp_directory_path() / ("vmimport-" + prefix_ + "-" + suffix_);
  fs::create_directories(dir_);
}

void WorldNamespaceTest::TearDown() {
  if (client_ == nullptr) {
    return;  // SetUp failed before the namespace existed
  }
  (void)client_->Delete({}, kNamespaces, "", ns_);
  if (dir_.empty()) {
    return;
  }
  if (!HasFailure() && std::getenv("VMIMPORT_KEEP_LOGS") == nullptr) {
    fs::remove_all(dir_);
  } else {
    std::cerr << "logs kept in " << dir_ << "\n";
  }
}

// --- ImportFixture: the processes -------------------------------------------------------------

void ImportFixture::TearDown() {
  controller_.reset();
  sim_.reset();
  WorldNamespaceTest::TearDown();
}

void ImportFixture::StartSim(const std::vector<std::string>& sim_args,
                             const std::string& log_name) {
  sim_ = std::make_unique<ChildProcess>(testing::HarvesterSimArgv(kubeconfig_, dir_, sim_args),
                                        (dir_ / log_name).string());
}

std::vector<std::string> ImportFixture::ControllerArgv(
    const std::string& image_server_address) const {
  return testing::ControllerArgv(kubeconfig_, ns_, image_server_address);
}

void ImportFixture::StartController(const std::vector<std::string>& extra,
                                    const std::string& log_name) {
  std::vector<std::string> argv = ControllerArgv("127.0.0.1:0");
  argv.insert(argv.end(), extra.begin(), extra.end());
  controller_ = std::make_unique<ChildProcess>(argv, (dir_ / log_name).string());
}

void ImportFixture::StartWorld(const std::vector<std::string>& sim_args,
                               const std::vector<std::string>& controller_args) {
  StartSim(sim_args);
  StartController(controller_args);
}

std::string ImportFixture::ControllerLog() { return ReadFile(dir_ / "controller.log"); }

// --- ImportFixture: objects -------------------------------------------------------------------

void ImportFixture::CreateNad(const std::string& name, const std::string& config) {
  auto r = client_->Create({}, kNads, ns_,
                           {{"apiVersion", "k8s.cni.cncf.io/v1"},
                            {"kind", "NetworkAttachmentDefinition"},
                            {"metadata", {{"name", name}, {"namespace", ns_}}},
                            {"spec", {{"config", config}}}});
  ASSERT_TRUE(r) << r.error().ToString();
}

Json ImportFixture::VsphereSecret(const Json& overrides) {
  Json data = {{"username", WorldVar("VCSIM_USERNAME")},
               {"password", WorldVar("VCSIM_PASSWORD")},
               {"caCert", ReadFile(WorldVar("VCSIM_CA"))}};
  for (const auto& [k, v] : overrides.items()) {
    if (v.is_null()) {
      data.erase(k);
    } else {
      data[k] = v;
    }
  }
  return data;
}

void ImportFixture::CreateSecret(const std::string& name, const Json& data) {
  auto r = client_->Create({}, kSecrets, ns_,
                           {{"apiVersion", "v1"},
                            {"kind", "Secret"},
                            {"metadata", {{"name", name}, {"namespace", ns_}}},
                            {"stringData", data.is_null() ? VsphereSecret() : data}});
  ASSERT_TRUE(r) << r.error().ToString();
}

Json ImportFixture::VmwareSpec(const std::string& secret, const Json& overrides) {
  Json spec = {{"endpoint", WorldVar("VCSIM_SDK_URL")},
               {"dc", WorldVar("VCSIM_DATACENTER")},
               {"credentials", {{"name", secret}, {"namespace", ns_}}}};
  spec.update(overrides);
  return spec;
}

void ImportFixture::CreateVmwareSource(const std::string& name, const Json& spec) {
  auto r = client_->Create({}, kVmwareSources, ns_,
                           {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                            {"kind", "VmwareSource"},
                            {"metadata", {{"name", name}, {"namespace", ns_}}},
                            {"spec", spec}});
  ASSERT_TRUE(r) << r.error().ToString();
  created_[name] = Clock::now();
}

void ImportFixture::CreateSource(const std::string& secret, const std::string& name,
                                 const Json& overrides) {
  CreateVmwareSource(name, VmwareSpec(secret, overrides));
}

Json ImportFixture::SourceRef(const std::string& name, const std::string& kind) {
  return {{"name", name},
          {"namespace", ns_},
          {"kind", kind},
          {"apiVersion", "migration.harvesterhci.io/v1beta1"}};
}

void ImportFixture::CreateLibvirtSource(const std::string& name, const std::string& uri,
                                        const std::string& secret) {
  auto r = client_->Create(
      {}, kLibvirtSources, ns_,
      {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
       {"kind", "LibvirtSource"},
       {"metadata", {{"name", name}, {"namespace", ns_}}},
       {"spec", {{"uri", uri}, {"credentials", {{"name", secret}, {"namespace", ns_}}}}}});
  ASSERT_TRUE(r) << r.error().ToString();
}

void ImportFixture::CreateOvaSource(const std::string& name, const std::string& url,
                                    const std::string& secret) {
  Json spec = {{"url", url}, {"httpTimeoutSeconds", 30}};
  if (!secret.empty()) {
    spec["credentials"] = {{"name", secret}, {"namespace", ns_}};
  }
  auto r = client_->Create({}, kOvaSources, ns_,
                           {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                            {"kind", "OvaSource"},
                            {"metadata", {{"name", name}, {"namespace", ns_}}},
                            {"spec", spec}});
  ASSERT_TRUE(r) << r.error().ToString();
  created_[name] = Clock::now();
}

void ImportFixture::CreateImport(const std::string& name, Json spec, const std::string& source) {
  if (!spec.contains("sourceCluster")) {
    spec["sourceCluster"] = SourceRef(source);
  }
  auto r = client_->Create({}, kImports, ns_,
                           {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                            {"kind", "VirtualMachineImport"},
                            {"metadata", {{"name", name}, {"namespace", ns_}}},
                            {"spec", spec}});
  ASSERT_TRUE(r) << r.error().ToString();
  created_[name] = Clock::now();
}

// --- ImportFixture: what the controller did ---------------------------------------------------

std::string ImportFixture::ImportStatus(const std::string& name) {
  auto obj = client_->Get({}, kImports, ns_, name);
  if (!obj) {
    return obj.error().code == core::ErrorCode::kNotFound ? "<gone>" : "<error>";
  }
  return obj->value("status", Json::object()).value("importStatus", "");
}

long long QuantityBytes(const std::string& quantity) {
  size_t digits = 0;
  while (digits < quantity.size() && std::isdigit(static_cast<unsigned char>(quantity[digits]))) {
    ++digits;
  }
  if (digits == 0) {
    return -1;
  }
  const long long n = std::stoll(quantity.substr(0, digits));
  const std::string suffix = quantity.substr(digits);
  const std::map<std::string, int> shift = {
      {"", 0}, {"Ki", 10}, {"Mi", 20}, {"Gi", 30}, {"Ti", 40}};
  const auto it = shift.find(suffix);
  return it == shift.end() ? -1 : n << it->second;
}

bool FinalImportStatus(const std::string& status) {
  return status == "virtualMachineRunning" || status == "virtualMachineImportInvalid" ||
         status == "diskImageFailed" || status == "VMMigrationFailed";
}

std::string ImportFixture::WaitImport(const std::string& name, const std::string& want,
                                      std::chrono::seconds limit) {
  std::string last;
  Eventually(
      [&] {
        last = ImportStatus(name);
        return last == want || FinalImportStatus(last);
      },
      limit);
  return last;
}

Json ImportFixture::GetImport(const std::string& name) {
  auto obj = client_->Get({}, kImports, ns_, name);
  EXPECT_TRUE(obj);
  return obj ? *obj : Json::object();
}

std::vector<Json> ImportFixture::Items(const Resource& r) {
  auto list = client_->List({}, r, r.namespaced ? ns_ : "");
  EXPECT_TRUE(list);
  std::vector<Json> out;
  if (list) {
    for (const Json& i : (*list)["items"]) {
      if (!i["metadata"].contains("deletionTimestamp")) {
        out.push_back(i);
      }
    }
  }
  return out;
}

void ImportFixture::ExpectDisksMatch(const std::string& import_name, const std::string& vm_path) {
  const auto want = SeededDiskSha256(vm_path);
  ASSERT_FALSE(want.empty()) << vm_path;
  ExpectDisksMatch(import_name, want, vm_path);
}

void ImportFixture::ExpectDisksMatch(const std::string& import_name,
                                     const std::vector<std::string>& want,
                                     const std::string& vm_path) {
  const Json status = GetImport(import_name)["status"];
  const Json disks = status.value("diskImportStatus", Json::array());
  ASSERT_EQ(disks.size(), want.size()) << import_name;
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string image_name = disks[i].value("VirtualMachineImage", "");
    auto image = client_->Get({}, kImages, ns_, image_name);
    ASSERT_TRUE(image) << image_name;
    EXPECT_EQ((*image)["metadata"]["annotations"].value(kSha256Annotation, ""), want[i])
        << vm_path << " disk " << i;
    const std::string checks = disks[i].value("verification", Json::array()).dump();
    if (checks.find("adopted VirtualMachineImage") != std::string::npos) {
      continue;  // an earlier import's image, reused (its bytes were compared by that import)
    }
    const std::string sim512 = (*image)["metadata"]["annotations"].value(kSha512Annotation, "");
    EXPECT_EQ(sim512.size(), 128U) << vm_path << " disk " << i;
    // A raw Glance image's SHA-512 is the image's spec.checksum: Longhorn compares the stored
    // file with it, and the image server computes none (status has no served SHA-512).
    const std::string spec_checksum = (*image)["spec"].value("checksum", "");
    const std::string expected512 =
        spec_checksum.empty() ? disks[i].value("sha512", "") : spec_checksum;
    if (!spec_checksum.empty()) {
      EXPECT_EQ(disks[i].value("sha512", ""), "") << vm_path << " disk " << i;
    }
    EXPECT_EQ(expected512, sim512) << vm_path << " disk " << i;
    // Issue 16: every disk verified by someone (a disk that finished streaming just before a
    // controller was killed may have lost its served digest: said as such, never silently).
    bool verified = false;
    std::string said;
    for (const Json& v : disks[i].value("verification", Json::array())) {
      verified |= v.value("result", "") == "verified";
      said += " " + v.dump();
    }
    EXPECT_TRUE(verified || said.find("controller restart") != std::string::npos)
        << vm_path << " disk " << i << " verification:" << said;
    if ((*image)["spec"].value("backend", "") != "backingimage") {
      continue;
    }
    std::optional<Json> bi;
    for (const std::string& n : harvester::BackingImageNames(*image)) {
      if (auto got =
              client_->Get({}, kBackingImages, std::string(harvester::kLonghornNamespace), n)) {
        bi = *got;
        break;
      }
    }
    ASSERT_TRUE(bi) << "no BackingImage for " << image_name;
    const auto stored = harvester::ReadBackingImageChecksum(*bi);
    EXPECT_TRUE(stored.ready) << bi->dump();
    EXPECT_EQ(harvester::CompareStoredChecksum(expected512, stored),
              harvester::StoredVerdict::kVerified)
        << vm_path << " disk " << i << ": " << bi->dump();
  }
}

// --- ImportFixture: vSphere -------------------------------------------------------------------

model::PowerState ImportFixture::SourcePower(const std::string& path) {
  auto http = http::Client::Create({.ca_file = WorldVar("VCSIM_CA")});
  EXPECT_TRUE(http);
  if (!http) {
    return model::PowerState::kUnknown;
  }
  auto session =
      source::vmware::Session::Login({}, **http, WorldVar("VCSIM_SDK_URL"),
                                     WorldVar("VCSIM_USERNAME"), WorldVar("VCSIM_PASSWORD"));
  EXPECT_TRUE(session);
  if (!session) {
    return model::PowerState::kUnknown;
  }
  auto ref = (*session)->FindByInventoryPath({}, path);
  EXPECT_TRUE(ref) << path;
  if (!ref) {
    return model::PowerState::kUnknown;
  }
  source::vmware::Inventory inventory(**session);
  auto d = inventory.Describe({}, {*ref, path.substr(path.rfind('/') + 1), path});
  EXPECT_TRUE(d);
  (void)(*session)->Logout({});
  return d ? d->power_state : model::PowerState::kUnknown;
}

std::string ImportFixture::Govc(const std::string& args) {
  return "GOVC_URL='" + WorldVar("GOVC_URL") + "' GOVC_USERNAME='" + WorldVar("GOVC_USERNAME") +
         "' GOVC_PASSWORD='" + WorldVar("GOVC_PASSWORD") + "' GOVC_TLS_CA_CERTS='" +
         WorldVar("GOVC_TLS_CA_CERTS") + "' GOVMOMI_HOME='" + (dir_ / "govmomi").string() + "' '" +
         WorldVar("GOVC") + "' " + args;
}

void ImportFixture::PowerOn(const std::string& path) {
  if (SourcePower(path) != model::PowerState::kOn) {
    const std::string cmd = Govc("vm.power -on '" + path + "' >/dev/null 2>&1");
    ASSERT_EQ(testing::RunCommand(cmd), 0) << "govc vm.power -on '" << path << "' failed";
  }
  ASSERT_EQ(SourcePower(path), model::PowerState::kOn) << path;
}

}  // namespace vmimport::kube
