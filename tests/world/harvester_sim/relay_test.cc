// The relay harvester-sim puts between Longhorn's downloader and the image server (--rate,
// --disconnect-after): testing::TcpProxy with a rate cap and a cut after N bytes.

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "http/local_server.h"
#include "world/tcp_proxy.h"

namespace vmimport::testing {
namespace {

using namespace std::chrono_literals;

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    body_ = std::string(1 << 20, 'x');
    server_.server().Get("/d", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(body_, "application/octet-stream");
    });
    port_ = std::stoi(server_.Url("").substr(std::string("http://127.0.0.1:").size()));
  }

  std::string body_;
  LocalServer server_;
  int port_ = 0;
};

TEST_F(RelayTest, LimitRateCapsTheBytesPerSecondFromTheTarget) {
  TcpProxy relay("127.0.0.1", port_);
  relay.LimitRate(4 << 20);  // 1 MiB at 4 MiB/s: about 250 ms
  httplib::Client client("127.0.0.1", relay.port());
  const auto t0 = std::chrono::steady_clock::now();
  auto res = client.Get("/d");
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body.size(), body_.size());
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 5s);
}

TEST_F(RelayTest, CutAfterHangsUpTheNextConnectionOnlyAtThatByte) {
  TcpProxy relay("127.0.0.1", port_);
  relay.CutAfter(100000, 1);
  httplib::Client client("127.0.0.1", relay.port());
  auto cut = client.Get("/d");
  EXPECT_TRUE(!cut || cut->body.size() < body_.size());
  EXPECT_EQ(relay.cuts_done(), 1);
  auto whole = client.Get("/d");  // the retry goes through
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->body.size(), body_.size());
  EXPECT_EQ(relay.cuts_done(), 1);
}

}  // namespace
}  // namespace vmimport::testing
