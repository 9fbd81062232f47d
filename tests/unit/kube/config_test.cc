#include "kube/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/strings.h"

namespace vmimport::kube {
namespace {

namespace fs = std::filesystem;

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kubeconfig-test-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  fs::path dir_;
};

constexpr const char* kTwoContexts = R"(apiVersion: v1
kind: Config
current-context: admin
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: Q0EtUEVN
- name: other
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority: certs/ca.crt
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
- name: robot
  user:
    token: abc.def
contexts:
- name: admin
  context: {cluster: local, user: admin, namespace: harvester-system}
- name: robot
  context: {cluster: other, user: robot}
)";

TEST_F(KubeconfigTest, ReadsCurrentContextWithInlineCertificates) {
  auto c = LoadKubeconfig(Write("config", kTwoContexts));
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->server, "https://127.0.0.1:6443");
  EXPECT_EQ(c->tls.ca_pem, "CA-PEM");
  EXPECT_EQ(c->tls.client_cert_pem, "CERT");
  EXPECT_EQ(c->tls.client_key_pem, "KEY");
  EXPECT_EQ(c->namespace_, "harvester-system");
  EXPECT_FALSE(c->tls.insecure_skip_verify);
  EXPECT_TRUE(c->bearer_token.empty());
}

TEST_F(KubeconfigTest, NamedContextWithTokenAndRelativeCaFile) {
  const std::string path = Write("config", kTwoContexts);
  auto c = LoadKubeconfig(path, "robot");
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->server, "https://10.0.0.1:6443");
  EXPECT_EQ(c->bearer_token, "abc.def");
  EXPECT_EQ(c->tls.ca_file, (dir_ / "certs/ca.crt").string());
  EXPECT_TRUE(c->tls.insecure_skip_verify);
}

TEST_F(KubeconfigTest, UnknownContextNamesItself) {
  auto c = LoadKubeconfig(Write("config", kTwoContexts), "nope");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_NE(c.error().message.find("context \"nope\" not found"), std::string::npos);
}

TEST_F(KubeconfigTest, MalformedFilesGiveOneClearError) {
  for (const char* text : {"{{{", "- a\n- b\n", "current-context: x\n",
                           "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c}\n"}) {
    auto c = LoadKubeconfig(Write("bad", text));
    ASSERT_FALSE(c) << text;
    EXPECT_EQ(c.error().code, core::ErrorCode::kInvalidArgument) << text;
    EXPECT_NE(c.error().message.find("kubeconfig"), std::string::npos);
  }
  auto missing = LoadKubeconfig((dir_ / "absent").string());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, core::ErrorCode::kInvalidArgument);
}

TEST_F(KubeconfigTest, BadBase64IsReported) {
  auto c = LoadKubeconfig(Write("config", R"(current-context: a
clusters: [{name: c, cluster: {server: "https://x", certificate-authority-data: "***"}}]
contexts: [{name: a, context: {cluster: c}}]
)"));
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("certificate-authority-data is not valid base64"),
            std::string::npos);
}

TEST_F(KubeconfigTest, InClusterReadsServiceAccountFiles) {
  Write("token", "tok\n");
  Write("ca.crt", "ca");
  Write("namespace", "harvester-system\n");
  auto c =
      LoadInCluster({{"KUBERNETES_SERVICE_HOST", "10.43.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}},
                    dir_.string());
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->server, "https://10.43.0.1:443");
  EXPECT_EQ(c->token_file, (dir_ / "token").string());
  EXPECT_EQ(c->tls.ca_file, (dir_ / "ca.crt").string());
  EXPECT_EQ(c->namespace_, "harvester-system");

  auto v6 = LoadInCluster(
      {{"KUBERNETES_SERVICE_HOST", "fd00::1"}, {"KUBERNETES_SERVICE_PORT", "443"}}, dir_.string());
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->server, "https://[fd00::1]:443");

  auto none = LoadInCluster({}, dir_.string());
  ASSERT_FALSE(none);
}

TEST_F(KubeconfigTest, DefaultOrderPrefersFlagThenKubeconfigVariable) {
  const std::string path = Write("config", kTwoContexts);
  auto from_env = LoadDefault("", "robot", {{"KUBECONFIG", path + ":/other"}});
  ASSERT_TRUE(from_env) << from_env.error().ToString();
  EXPECT_EQ(from_env->bearer_token, "abc.def");
  auto from_flag = LoadDefault(path, "", {{"KUBECONFIG", "/nonexistent"}});
  ASSERT_TRUE(from_flag) << from_flag.error().ToString();
  EXPECT_EQ(from_flag->server, "https://127.0.0.1:6443");
}

}  // namespace
}  // namespace vmimport::kube
