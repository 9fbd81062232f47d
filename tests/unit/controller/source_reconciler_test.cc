// The source reconciler on the in-memory Kubernetes: readiness, the reasons it gives, a Secret
// that lacks a key, a conflicting status write, a deleted source.

#include "controller/source_reconciler.h"

#include <gtest/gtest.h>

#include "core/strings.h"
#include "tests/unit/fakes/fake_kube.h"

namespace vmimport::testing {
namespace {

using core::ErrorCode;

class FakeChecker final : public source::ConnectionChecker {
 public:
  core::Status CheckConnection(std::stop_token, const source::SourceConfig& config) override {
    ++checks;
    last = config;
    if (error) return core::MakeError(*error);
    return {};
  }
  int checks = 0;
  source::SourceConfig last;
  std::optional<core::Error> error;
};

class SourceReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reconciler_ = std::make_unique<controller::SourceReconciler>(
        source::SourceKind::kVmware, api_, cache_, &checker_, events_, clock_, core::Logger());
  }
  void CreateSecret(const Json& data) {
    std::stop_source none;
    ASSERT_TRUE(api_.Create(none.get_token(), controller::SecretResource(), "ns",
                            {{"metadata", {{"name", "vc-secret"}}}, {"data", data}}));
  }
  void CreateSource() {
    std::stop_source none;
    ASSERT_TRUE(api_.Create(none.get_token(),
                            controller::SourceResource(source::SourceKind::kVmware), "ns",
                            {{"metadata", {{"name", "vc"}}},
                             {"spec",
                              {{"endpoint", "https://vc.example/sdk"},
                               {"dc", "DC0"},
                               {"credentials", {{"name", "vc-secret"}}}}}}));
  }
  core::Result<controller::ReconcileResult> Step() {
    std::stop_source none;
    return reconciler_->Reconcile(none.get_token(), "ns/vc");
  }
  Json Status() { return api_.Peek("vmwaresources", "ns", "vc")->value("status", Json::object()); }
  std::string Reason(const std::string& type) {
    for (const auto& c : Status().value("conditions", Json::array())) {
      if (c.value("type", "") == type) return c.value("reason", "");
    }
    return "";
  }

  FakeApi api_;
  FakeCache cache_{api_, "vmwaresources"};
  FakeEvents events_;
  FakeChecker checker_;
  core::FakeClock clock_;
  std::unique_ptr<controller::SourceReconciler> reconciler_;
};

TEST_F(SourceReconcilerTest, ReadySourceIsCheckedWithItsSecret) {
  CreateSecret({{"username", core::Base64Encode("admin")}, {"password", core::Base64Encode("pw")}});
  CreateSource();
  auto r = Step();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->requeue_after, std::chrono::minutes(5));
  EXPECT_EQ(Status().value("status", ""), "clusterReady");
  EXPECT_EQ(checker_.last.secret["password"], "pw");
  EXPECT_EQ(events_.WithReason("ClusterReady").size(), 1u);
}

TEST_F(SourceReconcilerTest, SecretWithoutPasswordNamesTheSecret) {
  CreateSecret({{"username", core::Base64Encode("admin")}});
  CreateSource();
  ASSERT_TRUE(Step());
  EXPECT_EQ(Status().value("status", ""), "clusterNotReady");
  EXPECT_EQ(Reason("ClusterError"), "InvalidSecret");
  ASSERT_EQ(events_.WithReason("InvalidSecret").size(), 1u);
  EXPECT_NE(events_.WithReason("InvalidSecret")[0].message.find("secret ns/vc-secret has no "
                                                                "password"),
            std::string::npos)
      << events_.WithReason("InvalidSecret")[0].message;
  EXPECT_EQ(checker_.checks, 0);  // never sent to vCenter
}

TEST_F(SourceReconcilerTest, UnreachableSourceSaysWhy) {
  CreateSecret({{"username", core::Base64Encode("admin")}, {"password", core::Base64Encode("pw")}});
  CreateSource();
  checker_.error = core::Error{ErrorCode::kUnavailable, "connect: connection refused"};
  auto r = Step();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->requeue_after, std::chrono::seconds(30));
  EXPECT_EQ(Reason("ClusterReady"), "Unreachable");
}

TEST_F(SourceReconcilerTest, FailedStatusWriteIsRetried) {
  CreateSecret({{"username", core::Base64Encode("admin")}, {"password", core::Base64Encode("pw")}});
  CreateSource();
  api_.FailNext("updateStatus", "vmwaresources", core::Error{ErrorCode::kConflict, "modified"});
  auto r = Step();
  ASSERT_FALSE(r);
  EXPECT_FALSE(r.error().Terminal());
  EXPECT_TRUE(events_.All().empty());
  ASSERT_TRUE(Step());
  EXPECT_EQ(Status().value("status", ""), "clusterReady");
}

TEST_F(SourceReconcilerTest, DeletedSourceIsNothingToDo) {
  auto r = Step();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->requeue_after.count(), 0);
  EXPECT_EQ(checker_.checks, 0);
}

TEST_F(SourceReconcilerTest, SourcesReferencingSecretFindsThem) {
  CreateSource();
  EXPECT_EQ(reconciler_->SourcesReferencingSecret("ns/vc-secret"),
            std::vector<std::string>{"ns/vc"});
  EXPECT_TRUE(reconciler_->SourcesReferencingSecret("ns/other").empty());
}

// A LibvirtSource: spec.uri is the endpoint, the Secret needs SASL username and password.
TEST(LibvirtSourceConfig, UriIsTheEndpointAndTheSecretNeedsSaslCredentials) {
  FakeApi api;
  std::stop_source none;
  const auto& lv = controller::SourceResource(source::SourceKind::kLibvirt);
  EXPECT_EQ(lv.plural, "libvirtsources");
  ASSERT_TRUE(api.Create(
      none.get_token(), controller::SecretResource(), "ns",
      {{"metadata", {{"name", "kvm"}}}, {"data", {{"username", core::Base64Encode("vmimport")}}}}));
  const Json source = {
      {"metadata", {{"name", "kvm1"}, {"namespace", "ns"}}},
      {"spec", {{"uri", "qemu+tls://kvm1/system"}, {"credentials", {{"name", "kvm"}}}}}};
  auto config =
      controller::LoadSourceConfig(none.get_token(), api, source::SourceKind::kLibvirt, source);
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().message,
            "secret ns/kvm has no password (a libvirt source needs username, password)");
  EXPECT_EQ(controller::ReadinessReason(config.error()), "InvalidSecret");
  Json ssh = source;
  ssh["spec"]["uri"] = "qemu+ssh://root@kvm1/system";
  config = controller::LoadSourceConfig(none.get_token(), api, source::SourceKind::kLibvirt, ssh);
  ASSERT_FALSE(config);
  EXPECT_NE(config.error().message.find("has no ssh-privatekey"), std::string::npos)
      << config.error().message;
  EXPECT_EQ(controller::ReadinessReason(core::Error{
                ErrorCode::kUnavailable, "ssh host key: libvirt: connect to kvm1: not accepted"}),
            "HostKeyMismatch");
  Json no_uri = source;
  no_uri["spec"].erase("uri");
  config =
      controller::LoadSourceConfig(none.get_token(), api, source::SourceKind::kLibvirt, no_uri);
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().message, "spec.uri is empty");
}

}  // namespace
}  // namespace vmimport::testing
