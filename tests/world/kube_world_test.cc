// Proves the Kubernetes side of the test world is the real thing: our CRDs are served by a real
// kube-apiserver (schema validation, status subresource, printer columns), and the foreign CRDs a
// Harvester cluster has are there.

#include <gtest/gtest.h>

#include <random>

#include "api/virtual_machine_import.h"
#include "kube/client.h"
#include "kube/config.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using core::ErrorCode;
using testing::WorldVar;

const Resource kVmwareSources{"migration.harvesterhci.io", "v1beta1", "vmwaresources", true};
const Resource kCrds{"apiextensions.k8s.io", "v1", "customresourcedefinitions", false};

std::string UniqueName(const std::string& prefix) {
  static std::mt19937_64 rng{std::random_device{}()};
  return prefix + "-" + std::to_string(rng() % 1000000);
}

class KubeWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = WorldVar("KUBECONFIG");
    ASSERT_FALSE(path.empty());
    auto config = LoadKubeconfig(path);
    ASSERT_TRUE(config) << config.error().ToString();
    auto c = Client::Create(*config);
    ASSERT_TRUE(c) << c.error().ToString();
    client_ = std::move(*c);
  }
  void TearDown() override {
    for (const auto& name : created_) {
      (void)client_->Delete({}, kVmwareSources, "default", name);
    }
  }
  Json Source(const std::string& name) {
    created_.push_back(name);
    return Json::parse(R"({
      "apiVersion": "migration.harvesterhci.io/v1beta1", "kind": "VmwareSource",
      "metadata": {"name": ")" +
                       name + R"(", "namespace": "default"},
      "spec": {"endpoint": "https://vcenter.example/sdk", "dc": "DC0",
               "credentials": {"name": "vsphere-credentials", "namespace": "default"}}})");
  }
  std::unique_ptr<Client> client_;
  std::vector<std::string> created_;
};

TEST_F(KubeWorldTest, CreatesAVmwareSourceAndReadsItBack) {
  const std::string name = UniqueName("vcsim");
  auto created = client_->Create({}, kVmwareSources, "default", Source(name));
  ASSERT_TRUE(created) << created.error().ToString();
  EXPECT_FALSE((*created)["metadata"].value("uid", "").empty());

  auto got = client_->Get({}, kVmwareSources, "default", name);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ((*got)["spec"]["endpoint"], "https://vcenter.example/sdk");
  EXPECT_EQ((*got)["spec"]["dc"], "DC0");
  EXPECT_EQ((*got)["spec"]["credentials"]["name"], "vsphere-credentials");

  auto again = client_->Create({}, kVmwareSources, "default", Source(name));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);

  auto missing = client_->Get({}, kVmwareSources, "default", name + "-absent");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_F(KubeWorldTest, SchemaRejectsAWrongTypedField) {
  Json bad = Source(UniqueName("bad"));
  bad["spec"]["endpoint"] = 5;
  auto r = client_->Create({}, kVmwareSources, "default", bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("spec.endpoint"), std::string::npos) << r.error().message;
}

// The real API server keeps quiet about a mistyped field unless asked: by default it stores the
// object without the field and says so only in a Warning header, which the client hands to its
// handler (the controller logs and counts it); with fieldValidation=Strict, the write fails.
TEST_F(KubeWorldTest, AnUnknownFieldIsAWarningByDefaultAndAnErrorWhenStrict) {
  std::vector<ApiWarning> warnings;
  client_->SetWarningHandler([&warnings](const ApiWarning& w) { warnings.push_back(w); });
  Json mistyped = Source(UniqueName("warned"));
  mistyped["spec"]["endpointt"] = "https://typo.example/sdk";
  auto stored = client_->Create({}, kVmwareSources, "default", mistyped);
  ASSERT_TRUE(stored) << stored.error().ToString();
  EXPECT_FALSE((*stored)["spec"].contains("endpointt")) << "the server drops the unknown field";
  ASSERT_EQ(warnings.size(), 1U);
  EXPECT_EQ(warnings[0].method, "POST");
  EXPECT_NE(warnings[0].text.find("unknown field"), std::string::npos) << warnings[0].text;
  EXPECT_NE(warnings[0].text.find("spec.endpointt"), std::string::npos) << warnings[0].text;
  EXPECT_EQ(client_->WarningCount(), 1U);

  Resource strict = kVmwareSources;
  strict.field_validation = FieldValidation::kStrict;
  Json strict_mistyped = Source(UniqueName("strict"));
  strict_mistyped["spec"]["endpointt"] = "https://typo.example/sdk";
  auto refused = client_->Create({}, strict, "default", strict_mistyped);
  ASSERT_FALSE(refused) << "Strict must refuse an unknown field";
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.error().message.find("spec.endpointt"), std::string::npos)
      << refused.error().message;
}

TEST_F(KubeWorldTest, StatusIsWritableOnlyThroughTheSubresource) {
  const std::string name = UniqueName("status");
  auto created = client_->Create({}, kVmwareSources, "default", Source(name));
  ASSERT_TRUE(created) << created.error().ToString();

  Json with_status = *created;
  with_status["status"] = {{"status", "clusterReady"}};
  auto updated = client_->Update({}, kVmwareSources, "default", with_status);
  ASSERT_TRUE(updated) << updated.error().ToString();
  EXPECT_FALSE(updated->contains("status") && (*updated)["status"].contains("status"))
      << "the main resource must ignore status: " << updated->dump();

  Json for_status = *updated;
  for_status["status"] = {{"status", "clusterReady"},
                          {"conditions",
                           {{{"type", "ClusterReady"},
                             {"status", "True"},
                             {"lastUpdateTime", "2026-11-24T00:00:00Z"},
                             {"lastTransitionTime", "2026-11-24T00:00:00Z"}}}}};
  auto status = client_->UpdateStatus({}, kVmwareSources, "default", for_status);
  ASSERT_TRUE(status) << status.error().ToString();
  auto got = client_->Get({}, kVmwareSources, "default", name);
  ASSERT_TRUE(got);
  EXPECT_EQ((*got)["status"]["status"], "clusterReady");
  EXPECT_EQ((*got)["status"]["conditions"][0]["type"], "ClusterReady");

  // A stale resourceVersion is a conflict, not a silent overwrite.
  auto stale = client_->UpdateStatus({}, kVmwareSources, "default", for_status);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kConflict);
}

TEST_F(KubeWorldTest, OurCrdsHaveTheReferencePrinterColumns) {
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"vmwaresources.migration.harvesterhci.io", ".status.status"},
      {"openstacksources.migration.harvesterhci.io", ".status.status"},
      {"ovasources.migration.harvesterhci.io", ".status.status"},
      {"libvirtsources.migration.harvesterhci.io", ".status.status"},
      {"virtualmachineimports.migration.harvesterhci.io", ".status.importStatus"},
  };
  for (const auto& [crd_name, path] : expected) {
    auto crd = client_->Get({}, kCrds, "", crd_name);
    ASSERT_TRUE(crd) << crd.error().ToString();
    const Json& version = (*crd)["spec"]["versions"][0];
    EXPECT_EQ(version["name"], "v1beta1");
    EXPECT_TRUE(version["subresources"].contains("status")) << crd_name;
    bool found = false;
    for (const Json& col : version["additionalPrinterColumns"]) {
      found = found || (col["name"] == "Status" && col["jsonPath"] == path);
    }
    EXPECT_TRUE(found) << crd_name << " lacks the Status column on " << path;
  }
}

// Everything the controller writes into status.warm survives the real apiserver: a key the CRD's
// structural schema does not name is pruned without an error (status.warm.writerPort once was,
// and a warm import then dialled port 0).
TEST_F(KubeWorldTest, EveryWarmStatusFieldSurvivesTheSchema) {
  const Resource imports{"migration.harvesterhci.io", "v1beta1", "virtualmachineimports", true};
  const std::string name = UniqueName("warm");
  auto created = client_->Create({}, imports, "default",
                                 {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                                  {"kind", "VirtualMachineImport"},
                                  {"metadata", {{"name", name}, {"namespace", "default"}}},
                                  {"spec",
                                   {{"virtualMachineName", "vm"},
                                    {"sourceCluster",
                                     {{"name", "kvm"},
                                      {"namespace", "default"},
                                      {"kind", "LibvirtSource"},
                                      {"apiVersion", "migration.harvesterhci.io/v1beta1"}}}}}});
  ASSERT_TRUE(created) << created.error().ToString();
  api::WarmStatus warm;
  warm.rounds.push_back({.round = 0,
                         .started = "2026-12-05T01:00:00Z",
                         .bytes_changed = 3,
                         .bytes_moved = 2,
                         .seconds = 1.5});
  warm.estimated_downtime_seconds = 4.5;
  warm.waiting_for = "w";
  warm.next_round_at = "2026-12-05T01:00:01Z";
  warm.cutover_reason = "c";
  warm.source_off_at = "2026-12-05T01:00:02.000001Z";
  warm.target_running_at = "2026-12-05T01:00:03.000001Z";
  warm.downtime_seconds = 1.25;
  warm.writer_pod = "p";
  warm.writer_port = 20001;
  warm.volumes = {"v0", "v1"};
  const Json written = api::WarmStatusToJson(warm);
  Json with_status = *created;
  with_status["status"] = {{"importStatus", "precopy"}, {"warm", written}};
  auto updated = client_->UpdateStatus({}, imports, "default", with_status);
  (void)client_->Delete({}, imports, "default", name);
  ASSERT_TRUE(updated) << updated.error().ToString();
  EXPECT_EQ((*updated)["status"]["warm"], written);
  for (const auto& [key, value] : written.items()) {
    EXPECT_TRUE((*updated)["status"]["warm"].contains(key)) << "status.warm." << key << " pruned";
  }
}

TEST_F(KubeWorldTest, ForeignCrdsAndTheDefaultStorageClassExist) {
  for (const char* crd_name :
       {"virtualmachineimages.harvesterhci.io", "virtualmachines.kubevirt.io",
        "virtualmachineinstances.kubevirt.io", "network-attachment-definitions.k8s.cni.cncf.io"}) {
    auto crd = client_->Get({}, kCrds, "", crd_name);
    EXPECT_TRUE(crd) << crd_name << ": " << (crd ? "" : crd.error().ToString());
  }
  const Resource storage_classes{"storage.k8s.io", "v1", "storageclasses", false};
  auto sc = client_->Get({}, storage_classes, "", "harvester-longhorn");
  ASSERT_TRUE(sc) << sc.error().ToString();
  EXPECT_EQ((*sc)["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
            "true");
}

TEST_F(KubeWorldTest, UnauthenticatedClientIsRejected) {
  Config anonymous = client_->config();
  anonymous.tls.client_cert_pem.clear();
  anonymous.tls.client_key_pem.clear();
  anonymous.tls.client_cert_file.clear();
  anonymous.tls.client_key_file.clear();
  anonymous.bearer_token = "not-a-valid-token";
  auto c = Client::Create(anonymous);
  ASSERT_TRUE(c);
  auto r = (*c)->List({}, kVmwareSources, "default");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated) << r.error().ToString();
}

}  // namespace
}  // namespace vmimport::kube
