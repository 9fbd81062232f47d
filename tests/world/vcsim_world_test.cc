// Proves the vSphere side of the test world is real and seeded: vcsim answers vim25 SOAP with
// login enforced and TLS verifiable against the world's CA, its VMs carry the seeded hardware, and
// an ExportVm/HttpNfcLease download yields VMDKs whose raw bytes (after `qemu-img convert`) equal
// the seeded originals, sha256 for sha256.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "http/client.h"
#include "source/vmware/soap.h"
#include "world/world_env.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;
using core::Result;
using testing::ManifestRow;
using testing::ManifestRows;
using testing::WorldVar;
namespace fs = std::filesystem;

struct ServiceContent {
  MoRef session_manager;
  MoRef search_index;
  MoRef property_collector;
};

Result<ServiceContent> RetrieveServiceContent(SoapClient& soap) {
  auto r = soap.Call({}, "RetrieveServiceContent",
                     MoRef{"ServiceInstance", "ServiceInstance"}.Xml("_this"));
  if (!r) {
    return core::MakeError(r.error());
  }
  const auto rv = r->ReturnVal();
  auto ref = [&rv](const char* name) {
    return MoRef{rv.child(name).attribute("type").as_string(), rv.child_value(name)};
  };
  return ServiceContent{ref("sessionManager"), ref("searchIndex"), ref("propertyCollector")};
}

core::Status Login(SoapClient& soap, const ServiceContent& sc, const std::string& user,
                   const std::string& password) {
  auto r = soap.Call({}, "Login",
                     sc.session_manager.Xml("_this") + "<userName>" + XmlEscape(user) +
                         "</userName><password>" + XmlEscape(password) + "</password>");
  if (!r) {
    return core::MakeError(r.error());
  }
  return {};
}

// Reads `paths` of one object into a name -> element map.
Result<std::map<std::string, pugi::xml_node>> Properties(SoapClient& soap, const ServiceContent& sc,
                                                         const MoRef& obj,
                                                         const std::vector<std::string>& paths,
                                                         std::unique_ptr<SoapResponse>& keep) {
  std::string spec = "<specSet><propSet><type>" + obj.type + "</type>";
  for (const auto& p : paths) {
    spec += "<pathSet>" + p + "</pathSet>";
  }
  spec += "</propSet><objectSet>" + obj.Xml("obj") + "</objectSet></specSet>";
  auto r = soap.Call({}, "RetrieveProperties", sc.property_collector.Xml("_this") + spec);
  if (!r) {
    return core::MakeError(r.error());
  }
  keep = std::make_unique<SoapResponse>(std::move(*r));
  std::map<std::string, pugi::xml_node> out;
  for (auto prop : keep->ReturnVal().children("propSet")) {
    out[prop.child_value("name")] = prop.child("val");
  }
  return out;
}

class VcsimWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sdk_url_ = WorldVar("VCSIM_SDK_URL");
    user_ = WorldVar("VCSIM_USERNAME");
    password_ = WorldVar("VCSIM_PASSWORD");
    ca_ = WorldVar("VCSIM_CA");
    datacenter_ = WorldVar("VCSIM_DATACENTER");
    ASSERT_FALSE(sdk_url_.empty() || ca_.empty());
    auto http = http::Client::Create(http::TlsConfig{.ca_file = ca_});
    ASSERT_TRUE(http) << http.error().ToString();
    http_ = std::move(*http);
    soap_ = std::make_unique<SoapClient>(*http_, sdk_url_);
    auto sc = RetrieveServiceContent(*soap_);
    ASSERT_TRUE(sc) << sc.error().ToString();
    sc_ = *sc;
  }

  MoRef FindVm(const std::string& inventory_path) {
    std::string path = inventory_path;
    if (!path.empty() && path[0] == '/') {
      path.erase(0, 1);
    }
    auto r = soap_->Call(
        {}, "FindByInventoryPath",
        sc_.search_index.Xml("_this") + "<inventoryPath>" + XmlEscape(path) + "</inventoryPath>");
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r) {
      return {};
    }
    const auto rv = r->ReturnVal();
    return MoRef{rv.attribute("type").as_string(), rv.child_value()};
  }

  std::string sdk_url_, user_, password_, ca_, datacenter_;
  std::unique_ptr<http::Client> http_;
  std::unique_ptr<SoapClient> soap_;
  ServiceContent sc_;
};

TEST_F(VcsimWorldTest, WrongPasswordIsInvalidLogin) {
  auto s = Login(*soap_, sc_, user_, password_ + "-wrong");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kUnauthenticated);
  EXPECT_NE(s.error().message.find("InvalidLogin"), std::string::npos) << s.error().message;
}

TEST_F(VcsimWorldTest, TlsIsVerifiedAgainstTheWorldCaOnly) {
  auto system_only = http::Client::Create({});  // system trust store: the test CA is not in it
  ASSERT_TRUE(system_only);
  SoapClient soap(**system_only, sdk_url_);
  auto r = soap.Call({}, "RetrieveServiceContent",
                     MoRef{"ServiceInstance", "ServiceInstance"}.Xml("_this"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("tls"), std::string::npos) << r.error().message;
}

TEST_F(VcsimWorldTest, SeededVmsCarryTheirHardware) {
  ASSERT_TRUE(Login(*soap_, sc_, user_, password_));
  const auto vms = ManifestRows("vm");
  ASSERT_GE(vms.size(), 3U);
  for (const ManifestRow& vm : vms) {
    SCOPED_TRACE(vm[1]);
    const MoRef ref = FindVm(vm[1]);
    ASSERT_FALSE(ref.empty()) << "not found: " << vm[1];
    std::unique_ptr<SoapResponse> keep;
    auto props = Properties(*soap_, sc_, ref,
                            {"config.hardware.numCPU", "config.hardware.numCoresPerSocket",
                             "config.hardware.memoryMB", "config.firmware", "runtime.powerState"},
                            keep);
    ASSERT_TRUE(props) << props.error().ToString();
    auto& p = *props;
    EXPECT_EQ(std::string(p["config.hardware.numCPU"].child_value()), vm[4]);
    EXPECT_EQ(std::string(p["config.hardware.numCoresPerSocket"].child_value()), vm[5]);
    EXPECT_EQ(std::string(p["config.hardware.memoryMB"].child_value()), vm[6]);
    EXPECT_EQ(std::string(p["config.firmware"].child_value()), vm[7]);
    EXPECT_EQ(std::string(p["runtime.powerState"].child_value()), vm[8]);
  }
}

TEST_F(VcsimWorldTest, ExportedDisksMatchTheSeededBytes) {
  ASSERT_TRUE(Login(*soap_, sc_, user_, password_));
  // A powered-off VM with the most disks: ExportVm needs the VM off.
  const auto vms = ManifestRows("vm");
  const auto disks = ManifestRows("disk");
  const ManifestRow* chosen = nullptr;
  size_t chosen_disks = 0;
  for (const ManifestRow& vm : vms) {
    const size_t n = static_cast<size_t>(std::count_if(
        disks.begin(), disks.end(), [&vm](const ManifestRow& d) { return d[1] == vm[1]; }));
    if (vm[8] == "poweredOff" && n > chosen_disks) {
      chosen = &vm;
      chosen_disks = n;
    }
  }
  ASSERT_NE(chosen, nullptr) << "the seed has no powered-off VM with disks";
  std::vector<std::string> expected_sha;
  for (const ManifestRow& d : disks) {
    if (d[1] == (*chosen)[1]) {
      expected_sha.push_back(d[4]);
    }
  }
  const MoRef vm = FindVm((*chosen)[1]);
  ASSERT_FALSE(vm.empty());

  auto exported = soap_->Call({}, "ExportVm", vm.Xml("_this"));
  ASSERT_TRUE(exported) << exported.error().ToString();
  const auto rv = exported->ReturnVal();
  const MoRef lease{rv.attribute("type").as_string(), rv.child_value()};
  ASSERT_EQ(lease.type, "HttpNfcLease");

  std::unique_ptr<SoapResponse> keep;
  std::map<std::string, pugi::xml_node> props;
  for (int i = 0; i < 100; ++i) {
    auto p = Properties(*soap_, sc_, lease, {"state", "info"}, keep);
    ASSERT_TRUE(p) << p.error().ToString();
    props = *p;
    if (std::string(props["state"].child_value()) == "ready") {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(std::string(props["state"].child_value()), "ready");

  const fs::path dir = fs::temp_directory_path() / ("vcsim-export-" + lease.value);
  fs::create_directories(dir);
  std::vector<std::string> got_sha;
  int index = 0;
  for (auto url_node : props["info"].children("deviceUrl")) {
    std::string url = url_node.child_value("url");
    // vSphere may name the host "*": it means the host the SDK was reached on.
    if (const auto star = url.find("://*"); star != std::string::npos) {
      const auto host_start = sdk_url_.find("://") + 3;
      url.replace(star + 3, 1,
                  sdk_url_.substr(host_start, sdk_url_.find('/', host_start) - host_start));
    }
    const fs::path vmdk = dir / ("disk-" + std::to_string(index) + ".vmdk");
    const fs::path raw = dir / ("disk-" + std::to_string(index) + ".raw");
    ++index;
    std::ofstream out(vmdk, std::ios::binary);
    http::Request req{.url = url, .timeout = std::chrono::minutes(5)};
    req.headers.emplace_back("Cookie", "vmware_soap_session=" + soap_->SessionCookie());
    auto resp = http_->Stream({}, req, {}, [&out](std::string_view chunk) {
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      return static_cast<bool>(out);
    });
    out.close();
    ASSERT_TRUE(resp) << resp.error().ToString();
    ASSERT_EQ(resp->status, 200) << url;
    std::string output;
    ASSERT_EQ(testing::RunCommand("qemu-img convert -f vmdk -O raw '" + vmdk.string() + "' '" +
                                      raw.string() + "' 2>&1",
                                  &output),
              0)
        << output;
    got_sha.push_back(testing::Sha256File(raw.string()));
  }
  auto complete = soap_->Call({}, "HttpNfcLeaseComplete", lease.Xml("_this"));
  EXPECT_TRUE(complete) << complete.error().ToString();
  fs::remove_all(dir);

  ASSERT_EQ(got_sha.size(), expected_sha.size());
  EXPECT_EQ(got_sha, expected_sha) << "disks in device order must equal the seeded disks in order";
}

TEST_F(VcsimWorldTest, ExportOfAPoweredOnVmIsRefused) {
  ASSERT_TRUE(Login(*soap_, sc_, user_, password_));
  for (const ManifestRow& vm : ManifestRows("vm")) {
    if (vm[8] != "poweredOn") {
      continue;
    }
    auto r = soap_->Call({}, "ExportVm", FindVm(vm[1]).Xml("_this"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kConflict);
    EXPECT_NE(r.error().message.find("InvalidPowerState"), std::string::npos) << r.error().message;
    return;
  }
  FAIL() << "the seed has no powered-on VM";
}

}  // namespace
}  // namespace vmimport::source::vmware
