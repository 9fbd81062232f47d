// Writes of objects other projects own carry fieldValidation=Strict, and every Warning header the
// API server answers reaches the client's warning handler, unquoted, with the call it answered.

#include <gtest/gtest.h>
#include <httplib.h>

#include <mutex>
#include <string>
#include <vector>

#include "kube/client.h"
#include "unit/http/local_server.h"

namespace vmimport::kube {
namespace {

using testing::LocalServer;

const Resource kOwn{"migration.harvesterhci.io", "v1beta1", "virtualmachineimports", true};
const Resource kForeign{"kubevirt.io", "v1", "virtualmachines", true, FieldValidation::kStrict};

TEST(WarningHeader, UnquotesTheTextOfTheRfcForm) {
  EXPECT_EQ(ParseWarningHeader(R"(299 - "unknown field \"spec.template.spec.domain.foo\"")"),
            R"(unknown field "spec.template.spec.domain.foo")");
  EXPECT_EQ(
      ParseWarningHeader(R"(299 - "kubevirt.io/v1alpha3 is now deprecated" "Sat, 05 Dec 2026")"),
      "kubevirt.io/v1alpha3 is now deprecated");
  EXPECT_EQ(ParseWarningHeader("  299 - \"a\\\\b\"  "), "a\\b");
  // Not the RFC form: kept whole rather than lost.
  EXPECT_EQ(ParseWarningHeader("something odd"), "something odd");
  EXPECT_EQ(ParseWarningHeader("299 - \"unterminated"), "299 - \"unterminated");
  EXPECT_EQ(ParseWarningHeader(""), "");
}

// Records each request's method, path and query; answers with two Warning headers.
class WarningServer {
 public:
  WarningServer() {
    auto handle = [this](const httplib::Request& req, httplib::Response& res) {
      std::string query;
      for (const auto& [k, v] : req.params) {
        query.append(query.empty() ? "?" : "&").append(k).append("=").append(v);
      }
      {
        std::lock_guard lock(mu_);
        requests_.push_back(req.method + " " + req.path + query);
      }
      res.set_header("Warning", R"(299 - "unknown field \"spec.bootorder\"")");
      res.set_header("Warning", R"(299 - "duplicate field \"metadata.name\"")");
      res.set_content(R"({"metadata":{"name":"x"}})", "application/json");
    };
    server_.server().Get(".*", handle);
    server_.server().Post(".*", handle);
    server_.server().Put(".*", handle);
    server_.server().Patch(".*", handle);
  }
  std::vector<std::string> Requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::unique_ptr<Client> NewClient() {
    auto c = Client::Create(Config{.server = server_.Url("")});
    EXPECT_TRUE(c);
    return std::move(*c);
  }

 private:
  LocalServer server_;
  mutable std::mutex mu_;  // guards requests_
  std::vector<std::string> requests_;
};

TEST(FieldValidation, ForeignWritesAreStrictAndOwnWritesUseTheServerDefault) {
  WarningServer server;
  auto client = server.NewClient();
  const Json vm = {{"metadata", {{"name", "x"}}}};
  ASSERT_TRUE(client->Create({}, kForeign, "ns", vm));
  ASSERT_TRUE(client->Update({}, kForeign, "ns", vm));
  ASSERT_TRUE(client->UpdateStatus({}, kForeign, "ns", vm));
  ASSERT_TRUE(client->MergePatch({}, kForeign, "ns", "x", Json{{"metadata", Json::object()}}));
  ASSERT_TRUE(client->Get({}, kForeign, "ns", "x"));
  ASSERT_TRUE(client->Create({}, kOwn, "ns", vm));
  ASSERT_TRUE(client->UpdateStatus({}, kOwn, "ns", vm));
  const std::vector<std::string> want = {
      "POST /apis/kubevirt.io/v1/namespaces/ns/virtualmachines?fieldValidation=Strict",
      "PUT /apis/kubevirt.io/v1/namespaces/ns/virtualmachines/x?fieldValidation=Strict",
      "PUT /apis/kubevirt.io/v1/namespaces/ns/virtualmachines/x/status?fieldValidation=Strict",
      "PATCH /apis/kubevirt.io/v1/namespaces/ns/virtualmachines/x?fieldValidation=Strict",
      "GET /apis/kubevirt.io/v1/namespaces/ns/virtualmachines/x",
      "POST /apis/migration.harvesterhci.io/v1beta1/namespaces/ns/virtualmachineimports",
      "PUT /apis/migration.harvesterhci.io/v1beta1/namespaces/ns/virtualmachineimports/x/status",
  };
  EXPECT_EQ(server.Requests(), want);
}

TEST(Warnings, EveryWarningHeaderReachesTheHandlerWithItsCall) {
  WarningServer server;
  auto client = server.NewClient();
  std::vector<ApiWarning> seen;
  client->SetWarningHandler([&seen](const ApiWarning& w) { seen.push_back(w); });
  ASSERT_TRUE(client->Create({}, kOwn, "ns", Json{{"metadata", {{"name", "x"}}}}));
  ASSERT_EQ(seen.size(), 2U);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path,
            "/apis/migration.harvesterhci.io/v1beta1/namespaces/ns/virtualmachineimports");
  EXPECT_EQ(seen[0].text, R"(unknown field "spec.bootorder")");
  EXPECT_EQ(seen[1].text, R"(duplicate field "metadata.name")");
  EXPECT_EQ(client->WarningCount(), 2U);
}

TEST(Warnings, AreCountedWithoutAHandler) {
  WarningServer server;
  auto client = server.NewClient();
  ASSERT_TRUE(client->Get({}, kOwn, "ns", "x"));
  EXPECT_EQ(client->WarningCount(), 2U);
}

}  // namespace
}  // namespace vmimport::kube
