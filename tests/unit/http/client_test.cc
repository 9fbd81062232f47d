#include "http/client.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "unit/http/local_server.h"

namespace vmimport::http {
namespace {

using namespace std::chrono_literals;
using core::ErrorCode;

using testing::LocalServer;

std::unique_ptr<Client> NewClient() {
  auto c = Client::Create({});
  EXPECT_TRUE(c);
  return std::move(*c);
}

TEST(HttpClient, GetsBodyStatusAndHeaders) {
  LocalServer s;
  s.server().Get("/x", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("X-Thing", "v1");
    res.set_content("hello", "text/plain");
    res.status = 203;
  });
  auto client = NewClient();
  auto resp = client->Do({}, Request{.url = s.Url("/x")});
  ASSERT_TRUE(resp) << resp.error().ToString();
  EXPECT_EQ(resp->status, 203);
  EXPECT_EQ(resp->body, "hello");
  EXPECT_EQ(resp->Header("x-thing").value_or(""), "v1");
  EXPECT_EQ(resp->Header("X-THING").value_or(""), "v1");
  EXPECT_FALSE(resp->Header("missing").has_value());
}

TEST(HttpClient, SendsMethodHeadersAndBody) {
  LocalServer s;
  s.server().Patch("/echo", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(req.get_header_value("Content-Type") + "|" + req.body, "text/plain");
  });
  auto client = NewClient();
  Request req{.method = "PATCH", .url = s.Url("/echo")};
  req.headers.emplace_back("Content-Type", "application/merge-patch+json");
  req.body = R"({"a":1})";
  auto resp = client->Do({}, req);
  ASSERT_TRUE(resp) << resp.error().ToString();
  EXPECT_EQ(resp->body, R"(application/merge-patch+json|{"a":1})");
}

TEST(HttpClient, HttpErrorStatusIsAResponseNotAnError) {
  LocalServer s;
  s.server().Get("/missing", [](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content("nope", "text/plain");
  });
  auto resp = NewClient()->Do({}, Request{.url = s.Url("/missing")});
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->status, 404);
}

TEST(HttpClient, StreamsBodyInChunksAndReusesConnections) {
  LocalServer s;
  const std::string payload(3 * 1024 * 1024 + 17, 'z');
  s.server().Get("/big", [&payload](const httplib::Request&, httplib::Response& res) {
    res.set_content(payload, "application/octet-stream");
  });
  auto client = NewClient();
  for (int round = 0; round < 2; ++round) {
    size_t received = 0;
    int chunks = 0;
    long head_status = 0;
    auto resp = client->Stream(
        {}, Request{.url = s.Url("/big")},
        [&](const Response& head) {
          head_status = head.status;
          return true;
        },
        [&](std::string_view chunk) {
          received += chunk.size();
          ++chunks;
          return true;
        });
    ASSERT_TRUE(resp) << resp.error().ToString();
    EXPECT_EQ(head_status, 200);
    EXPECT_EQ(received, payload.size());
    EXPECT_GT(chunks, 1);
    EXPECT_TRUE(resp->body.empty());
  }
}

TEST(HttpClient, AnyReceiveBufferMovesTheWholeBodyInCallbacksOfAtMost16KiB) {
  LocalServer s;
  std::string payload(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < payload.size(); ++i) {
    payload[i] = static_cast<char>((i * 7 + i / 4096) & 0xff);
  }
  s.server().Get("/big", [&payload](const httplib::Request&, httplib::Response& res) {
    res.set_content(payload, "application/octet-stream");
  });
  auto client = NewClient();
  // Below the 1 KiB floor, curl's default, the product's 512 KiB, above the 10 MiB ceiling; then
  // the default again on a reused handle.
  for (const size_t bytes :
       {size_t{1}, size_t{0}, size_t{512} << 10, size_t{64} << 20, size_t{0}}) {
    std::string received;
    size_t largest = 0;
    Request request{.url = s.Url("/big")};
    request.receive_buffer_bytes = bytes;
    auto resp = client->Stream({}, request, HeadCallback{}, [&](std::string_view chunk) {
      received.append(chunk);
      largest = std::max(largest, chunk.size());
      return true;
    });
    ASSERT_TRUE(resp) << bytes << ": " << resp.error().ToString();
    EXPECT_EQ(resp->status, 200) << bytes;
    EXPECT_TRUE(received == payload) << bytes << ": " << received.size() << " bytes received";
    EXPECT_LE(largest, size_t{16384}) << bytes;
  }
}

TEST(HttpClient, BodyCallbackReturningFalseCancels) {
  LocalServer s;
  s.server().Get("/big", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(1 << 20, 'a'), "application/octet-stream");
  });
  auto resp = NewClient()->Stream({}, Request{.url = s.Url("/big")}, {},
                                  [](std::string_view) { return false; });
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code, ErrorCode::kCancelled);
}

// An exception in a head or body callback must not unwind through libcurl's C frames: the
// transfer ends with kInternal naming the throw, and the client stays usable.
TEST(HttpClient, ACallbackThatThrowsEndsTheTransferWithAnError) {
  LocalServer s;
  s.server().Get("/big", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(1 << 16, 'a'), "application/octet-stream");
  });
  auto client = NewClient();
  auto body_throws = client->Stream(
      {}, Request{.url = s.Url("/big")}, {},
      [](std::string_view) -> bool { throw std::runtime_error("body \xFF handler bug"); });
  ASSERT_FALSE(body_throws);
  EXPECT_EQ(body_throws.error().code, ErrorCode::kInternal);
  EXPECT_NE(body_throws.error().message.find("callback threw: body \xEF\xBF\xBD handler bug"),
            std::string::npos)
      << body_throws.error().message;
  auto head_throws = client->Stream(
      {}, Request{.url = s.Url("/big")}, [](const Response&) -> bool { throw 42; },
      [](std::string_view) { return true; });
  ASSERT_FALSE(head_throws);
  EXPECT_EQ(head_throws.error().code, ErrorCode::kInternal);
  EXPECT_NE(head_throws.error().message.find("unknown exception"), std::string::npos);
  auto ok = client->Do({}, Request{.url = s.Url("/big")});
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->body.size(), 1U << 16);
}

TEST(HttpClient, StopTokenAbortsARunningTransfer) {
  LocalServer s;
  std::atomic<bool> served{false};
  s.server().Get("/slow", [&served](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("text/plain", [&served](size_t, httplib::DataSink& sink) {
      served = true;
      sink.write("x", 1);
      std::this_thread::sleep_for(20ms);
      return true;  // never ends on its own
    });
  });
  std::stop_source stop;
  std::jthread canceller([&] {
    while (!served) {
      std::this_thread::sleep_for(5ms);
    }
    std::this_thread::sleep_for(50ms);
    stop.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  auto resp = NewClient()->Stream(stop.get_token(), Request{.url = s.Url("/slow")}, {},
                                  [](std::string_view) { return true; });
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code, ErrorCode::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(HttpClient, TimeoutIsDeadlineExceeded) {
  LocalServer s;
  s.server().Get("/hang", [](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(1500ms);
    res.set_content("late", "text/plain");
  });
  auto resp = NewClient()->Do({}, Request{.url = s.Url("/hang"), .timeout = 200ms});
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code, ErrorCode::kDeadlineExceeded);
}

TEST(HttpClient, RefusedConnectionIsUnavailable) {
  int port = 0;
  {
    LocalServer s;  // take a free port, then close it
    port = std::stoi(s.Url("").substr(std::string("http://127.0.0.1:").size()));
  }
  auto resp = NewClient()->Do(
      {}, Request{.url = "http://127.0.0.1:" + std::to_string(port) + "/", .timeout = 2s});
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code, ErrorCode::kUnavailable);
}

TEST(HttpClient, ErrorsNeverEchoCredentialsOrQueries) {
  auto resp = NewClient()->Do(
      {}, Request{.url = "http://user:s3cret@127.0.0.1:1/path?token=abc", .timeout = 1s});
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().message.find("s3cret"), std::string::npos) << resp.error().message;
  EXPECT_EQ(resp.error().message.find("token=abc"), std::string::npos) << resp.error().message;
}

TEST(HttpClient, MissingCaFileIsRejectedAtCreate) {
  auto c = Client::Create(TlsConfig{.ca_file = "/nonexistent/ca.pem"});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace vmimport::http
