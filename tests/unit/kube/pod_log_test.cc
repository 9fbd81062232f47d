// The text GET of the pods/log subresource (what `kubectl vmimport bundle` reads the controller's
// logs with), against a real HTTP server on 127.0.0.1 that answers as kube-apiserver does: the
// query parameters and credentials it sends, a text body kept whole or cut to its last lines or
// its first bytes, and the Status answers mapped onto error codes.

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <mutex>
#include <string>

#include "kube/client.h"
#include "unit/http/local_server.h"

namespace vmimport::kube {
namespace {

using core::ErrorCode;
using testing::LocalServer;

//! kube-apiserver's answer to a log request it refuses.
std::string Status(int code, const std::string& reason, const std::string& message) {
  return R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":")" + message +
         R"(","reason":")" + reason + R"(","code":)" + std::to_string(code) + "}";
}

//! `n` numbered log lines ("line 0000\n" ... ), 10 bytes each.
std::string Lines(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    const std::string number = std::to_string(i);
    out += "line " + std::string(4 - std::min<size_t>(4, number.size()), '0') + number + "\n";
  }
  return out;
}

class LogServer {
 public:
  //! Serves `body` (text/plain, in chunks of `chunk` bytes) for every Pod log path; records the
  //! last request.
  explicit LogServer(std::string body, size_t chunk = 4096) : body_(std::move(body)) {
    server_.server().Get(
        R"(/api/v1/namespaces/([^/]+)/pods/([^/]+)/log)",
        [this, chunk](const httplib::Request& req, httplib::Response& res) {
          {
            std::lock_guard lock(mu_);
            path_ = req.path;
            params_ = req.params;
            accept_ = req.get_header_value("Accept");
            authorization_ = req.get_header_value("Authorization");
          }
          if (req.matches[2] == "gone") {
            res.status = 404;
            res.set_content(Status(404, "NotFound", R"(pods \"gone\" not found)"),
                            "application/json");
            return;
          }
          if (req.matches[1] == "locked") {
            res.status = 403;
            res.set_content(Status(403, "Forbidden",
                                   R"(pods \"p\" is forbidden: User \"u\" cannot get resource )"
                                   R"(\"pods/log\" in API group \"\" in the namespace \"locked\")"),
                            "application/json");
            return;
          }
          if (req.has_param("previous")) {
            res.status = 400;
            res.set_content(
                Status(400, "BadRequest",
                       R"(previous terminated container \"controller\" in pod \"p\" not found)"),
                "application/json");
            return;
          }
          if (req.matches[2] == "unreachable") {  // what a proxy in front says
            res.status = 502;
            res.set_content("<html>bad gateway</html>", "text/html");
            return;
          }
          res.set_chunked_content_provider(
              "text/plain", [this, chunk](size_t offset, httplib::DataSink& sink) {
                if (offset >= body_.size()) {
                  sink.done();
                  return true;
                }
                return sink.write(body_.data() + offset, std::min(chunk, body_.size() - offset));
              });
        });
  }

  std::unique_ptr<Client> NewClient() {
    auto c = Client::Create(Config{.server = server_.Url(""), .bearer_token = "tok-123"});
    EXPECT_TRUE(c);
    return std::move(*c);
  }
  std::string Path() const {
    std::lock_guard lock(mu_);
    return path_;
  }
  std::string Param(const std::string& key) const {
    std::lock_guard lock(mu_);
    auto it = params_.find(key);
    return it == params_.end() ? "<none>" : it->second;
  }
  std::string Accept() const {
    std::lock_guard lock(mu_);
    return accept_;
  }
  std::string Authorization() const {
    std::lock_guard lock(mu_);
    return authorization_;
  }

 private:
  std::string body_;
  LocalServer server_;
  mutable std::mutex mu_;  // guards the request fields below
  std::string path_;
  httplib::Params params_;
  std::string accept_;
  std::string authorization_;
};

TEST(PodLog, SendsTheQueryAndCredentialsAndReturnsTheTextWhole) {
  LogServer server("level=info msg=\"started\"\nnot json at all: {\n");
  auto client = server.NewClient();
  auto log = client->PodLog({}, "harvester-system", "vmic-7d9f", {.container = "controller"});
  ASSERT_TRUE(log) << log.error().ToString();
  EXPECT_EQ(log->text, "level=info msg=\"started\"\nnot json at all: {\n");
  EXPECT_EQ(log->total_bytes, log->text.size());
  EXPECT_FALSE(log->truncated);
  EXPECT_EQ(server.Path(), "/api/v1/namespaces/harvester-system/pods/vmic-7d9f/log");
  EXPECT_EQ(server.Param("container"), "controller");
  EXPECT_EQ(server.Param("previous"), "<none>");
  EXPECT_EQ(server.Param("tailLines"), "<none>");
  EXPECT_EQ(server.Param("limitBytes"), "<none>");
  EXPECT_EQ(server.Authorization(), "Bearer tok-123");
  EXPECT_NE(server.Accept().find("text/plain"), std::string::npos);

  auto tail =
      client->PodLog({}, "ns", "p", {.container = "c d", .tail_lines = 100, .limit_bytes = 4096});
  ASSERT_TRUE(tail) << tail.error().ToString();
  EXPECT_EQ(server.Param("container"), "c d");  // encoded on the way, decoded by the server
  EXPECT_EQ(server.Param("tailLines"), "100");
  EXPECT_EQ(server.Param("limitBytes"), "4096");
}

TEST(PodLog, KeepsTheLastWholeLinesOfALongLog) {
  const std::string body = Lines(5000);  // 50,000 bytes in 4 KiB chunks
  LogServer server(body);
  auto client = server.NewClient();
  // 1,005 bytes kept: the cut falls inside a line, which is dropped whole.
  auto log = client->PodLog({}, "ns", "p", {.keep = {.max_bytes = 1005, .keep_tail = true}});
  ASSERT_TRUE(log) << log.error().ToString();
  EXPECT_TRUE(log->truncated);
  EXPECT_EQ(log->total_bytes, body.size());
  EXPECT_EQ(log->text, body.substr(body.size() - 1000));
  EXPECT_EQ(log->text.substr(0, 10), "line 4900\n");

  // Exactly at the limit: whole, not truncated.
  auto whole = client->PodLog({}, "ns", "p", {.keep = {.max_bytes = body.size()}});
  ASSERT_TRUE(whole);
  EXPECT_FALSE(whole->truncated);
  EXPECT_EQ(whole->text, body);
}

TEST(PodLog, KeepsTheFirstBytesAndEndsTheTransferThere) {
  const std::string body = Lines(9000);  // 90,000 bytes in 1,000-byte chunks
  LogServer server(body, 1000);
  auto client = server.NewClient();
  auto log = client->GetText({}, "/api/v1/namespaces/ns/pods/p/log",
                             {.max_bytes = 2500, .keep_tail = false});
  ASSERT_TRUE(log) << log.error().ToString();
  EXPECT_TRUE(log->truncated);
  EXPECT_EQ(log->text, body.substr(0, 2500));
  EXPECT_LT(log->total_bytes, body.size());  // not read to the end
}

TEST(PodLog, MapsTheApiServersRefusals) {
  LogServer server("x\n");
  auto client = server.NewClient();
  auto forbidden = client->PodLog({}, "locked", "p", {});
  ASSERT_FALSE(forbidden);
  EXPECT_EQ(forbidden.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(forbidden.error().message.find("403 Forbidden: pods \"p\" is forbidden"),
            std::string::npos)
      << forbidden.error().message;
  EXPECT_NE(forbidden.error().message.find("GET /api/v1/namespaces/locked/pods/p/log"),
            std::string::npos);

  auto gone = client->PodLog({}, "ns", "gone", {});
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);

  auto previous = client->PodLog({}, "ns", "p", {.container = "controller", .previous = true});
  ASSERT_FALSE(previous);
  EXPECT_EQ(previous.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(previous.error().message.find("previous terminated container"), std::string::npos);
  EXPECT_EQ(server.Param("previous"), "true");

  auto proxy = client->PodLog({}, "ns", "unreachable", {});
  ASSERT_FALSE(proxy);
  EXPECT_EQ(proxy.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(proxy.error().message.find("bad gateway"), std::string::npos);
}

TEST(PodLog, ATransportFailureIsUnavailable) {
  auto client = Client::Create(Config{.server = "http://127.0.0.1:1"});
  ASSERT_TRUE(client);
  auto log = (*client)->PodLog({}, "ns", "p", {});
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code, ErrorCode::kUnavailable) << log.error().ToString();
}

}  // namespace
}  // namespace vmimport::kube
