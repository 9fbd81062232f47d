// The informer against the real kube-apiserver: every change arrives, a restart of the API server
// loses nothing, and after a partition long enough for 410 Gone the informer lists again and ends
// up with exactly the server's state (deletes it missed included).

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "build_paths.h"
#include "kube/client.h"
#include "kube/informer.h"
#include "world/tcp_proxy.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::WorldVar;

const Resource kConfigMaps{"", "v1", "configmaps", true};

core::Logger TestLog() {
  return core::Logger(std::make_shared<core::StderrSink>(), core::LogLevel::kWarn,
                      core::LogFormat::kLogfmt);
}

bool Eventually(const std::function<bool()>& pred, std::chrono::seconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

class InformerWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = WorldVar("KUBECONFIG");
    ASSERT_FALSE(path.empty());
    auto config = LoadKubeconfig(path);
    ASSERT_TRUE(config) << config.error().ToString();
    config_ = *config;
    auto c = Client::Create(config_);
    ASSERT_TRUE(c);
    client_ = std::move(*c);
    label_ = "t" + std::to_string(std::random_device{}() % 1000000);
  }
  void TearDown() override {
    auto list =
        client_->List({}, kConfigMaps, "default", {.label_selector = "vmimport-test=" + label_});
    if (list) {
      for (const Json& item : (*list)["items"]) {
        (void)client_->Delete({}, kConfigMaps, "default", item["metadata"]["name"]);
      }
    }
  }
  Json ConfigMap(const std::string& name, const std::string& value) {
    return {{"apiVersion", "v1"},
            {"kind", "ConfigMap"},
            {"metadata", {{"name", name}, {"labels", {{"vmimport-test", label_}}}}},
            {"data", {{"v", value}}}};
  }
  void Put(const std::string& name, const std::string& value) {
    auto got = client_->Get({}, kConfigMaps, "default", name);
    if (got) {
      (*got)["data"]["v"] = value;
      ASSERT_TRUE(client_->Update({}, kConfigMaps, "default", *got));
    } else {
      ASSERT_TRUE(client_->Create({}, kConfigMaps, "default", ConfigMap(name, value)));
    }
  }
  // name -> data.v on the server.
  std::map<std::string, std::string> ServerState() {
    std::map<std::string, std::string> out;
    auto list =
        client_->List({}, kConfigMaps, "default", {.label_selector = "vmimport-test=" + label_});
    EXPECT_TRUE(list);
    for (const Json& item : (*list)["items"]) {
      out[item["metadata"]["name"]] = item["data"]["v"];
    }
    return out;
  }
  static std::map<std::string, std::string> CacheState(const Informer& informer) {
    std::map<std::string, std::string> out;
    for (const Json& item : informer.List()) {
      out[item["metadata"]["name"]] = item["data"]["v"];
    }
    return out;
  }
  InformerOptions Options() const {
    return {.label_selector = "vmimport-test=" + label_, .min_backoff = 100ms, .max_backoff = 1s};
  }

  Config config_;
  std::unique_ptr<Client> client_;
  std::string label_;
};

TEST_F(InformerWorldTest, SeesEveryAddUpdateAndDelete) {
  Informer informer(*client_, kConfigMaps, "default", TestLog(), Options());
  std::atomic<int> adds{0}, updates{0}, deletes{0};
  informer.AddHandlers({.on_add = [&](const Json&) { adds++; },
                        .on_update = [&](const Json&, const Json&) { updates++; },
                        .on_delete = [&](const Json&) { deletes++; }});
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync({}, 30s));
  for (int i = 0; i < 20; ++i) {
    Put("cm-" + std::to_string(i), "a");
  }
  for (int i = 0; i < 20; ++i) {
    Put("cm-" + std::to_string(i), "b");
  }
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(client_->Delete({}, kConfigMaps, "default", "cm-" + std::to_string(i)));
  }
  ASSERT_TRUE(Eventually([&] { return deletes.load() == 10; }));
  EXPECT_EQ(adds.load(), 20);
  EXPECT_EQ(updates.load(), 20);
  EXPECT_EQ(CacheState(informer), ServerState());
  EXPECT_EQ(informer.Size(), 10U);
}

TEST_F(InformerWorldTest, MissesNothingAcrossAnApiServerRestart) {
  Informer informer(*client_, kConfigMaps, "default", TestLog(), Options());
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync({}, 30s));
  for (int i = 0; i < 5; ++i) {
    Put("before-" + std::to_string(i), "1");
  }
  ASSERT_TRUE(Eventually([&] { return informer.Size() == 5; }));
  std::string out;
  ASSERT_EQ(testing::RunCommand(std::string(vmimport::build_paths::SourceDir()) +
                                    "/tests/world/kube/kube-world.sh restart-apiserver 2>&1",
                                &out),
            0)
      << out;
  for (int i = 0; i < 5; ++i) {
    Put("before-" + std::to_string(i), "2");
    Put("after-" + std::to_string(i), "1");
  }
  ASSERT_TRUE(client_->Delete({}, kConfigMaps, "default", "before-0"));
  ASSERT_TRUE(Eventually([&] { return CacheState(informer) == ServerState(); }))
      << "cache never caught up after the restart";
  EXPECT_EQ(informer.Size(), 9U);
  EXPECT_GE(informer.stats().watches.load(), 2U) << "the watch was never re-established";
}

TEST_F(InformerWorldTest, ListsAgainAfterGoneAndReportsWhatItMissed) {
  // The informer talks through a proxy we can cut: a partition.
  const std::string server = config_.server;  // https://127.0.0.1:PORT
  const int port = std::stoi(server.substr(server.rfind(':') + 1));
  testing::TcpProxy proxy("127.0.0.1", port);
  Config via_proxy = config_;
  via_proxy.server = "https://127.0.0.1:" + std::to_string(proxy.port());
  auto proxied = Client::Create(via_proxy);
  ASSERT_TRUE(proxied);

  Informer informer(**proxied, kConfigMaps, "default", TestLog(), Options());
  std::mutex mu;
  std::set<std::string> deleted;
  informer.AddHandlers({.on_delete = [&](const Json& o) {
    std::lock_guard lock(mu);
    deleted.insert(o["metadata"]["name"].get<std::string>());
  }});
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync({}, 30s));
  for (int i = 0; i < 5; ++i) {
    Put("old-" + std::to_string(i), "1");
  }
  ASSERT_TRUE(Eventually([&] { return informer.Size() == 5; }));
  const uint64_t lists_before = informer.stats().lists.load();

  proxy.Cut();
  // While partitioned: changes the informer cannot see, then history is compacted away and the
  // API server restarts with a fresh watch cache, so the informer's resourceVersion is gone.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client_->Delete({}, kConfigMaps, "default", "old-" + std::to_string(i)));
  }
  for (int i = 0; i < 30; ++i) {
    Put("new-" + std::to_string(i), "1");
  }
  std::string out;
  ASSERT_EQ(testing::RunCommand(std::string(vmimport::build_paths::SourceDir()) +
                                    "/tests/world/kube/kube-world.sh compact 2>&1",
                                &out),
            0)
      << out;
  ASSERT_EQ(testing::RunCommand(std::string(vmimport::build_paths::SourceDir()) +
                                    "/tests/world/kube/kube-world.sh restart-apiserver 2>&1",
                                &out),
            0)
      << out;
  proxy.Restore();

  ASSERT_TRUE(Eventually([&] { return CacheState(informer) == ServerState(); }))
      << "cache never caught up after the partition";
  EXPECT_GT(informer.stats().lists.load(), lists_before) << "no re-list happened";
  std::lock_guard lock(mu);
  EXPECT_EQ(deleted, (std::set<std::string>{"old-0", "old-1", "old-2"}));
}

}  // namespace
}  // namespace vmimport::kube
