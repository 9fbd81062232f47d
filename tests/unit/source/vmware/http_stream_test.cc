// OpenHttpStream, the byte stream under ExportLease::OpenDisk, against a local server: a whole
// body arrives whole, a body cut before its Content-Length is an error (never a short disk), and
// an HTTP error status fails the open.

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <thread>

#include "source/vmware/export.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;

class LocalServer {
 public:
  LocalServer() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::jthread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~LocalServer() { server_.stop(); }
  httplib::Server& server() { return server_; }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::jthread thread_;
};

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  }
  return s;
}

// Reads `source` to its end or first error; `got` receives the bytes.
core::Status Drain(disk::ByteSource& source, std::string& got) {
  std::vector<std::byte> buf(10000);
  while (true) {
    auto n = source.Read({}, buf);
    if (!n) {
      return core::MakeError(n.error());
    }
    if (*n == 0) {
      return {};
    }
    got.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
}

std::unique_ptr<http::Client> NewClient() {
  auto c = http::Client::Create({});
  EXPECT_TRUE(c);
  return std::move(*c);
}

TEST(HttpStream, ReadsAWholeBodyThroughASmallBufferAndReportsThePosition) {
  LocalServer server;
  const std::string body = Pattern(3 << 20);
  server.server().Get("/disk", [&body](const httplib::Request&, httplib::Response& res) {
    res.set_content(body, "application/octet-stream");
  });
  auto http = NewClient();
  std::atomic<uint64_t> position{0};
  auto source = OpenHttpStream({}, *http, http::Request{.url = server.Url("/disk")},
                               HttpStreamOptions{.buffer_bytes = 64 << 10},
                               [&position](uint64_t p) { position.store(p); });
  ASSERT_TRUE(source) << source.error().ToString();
  std::string got;
  ASSERT_TRUE(Drain(**source, got));
  EXPECT_EQ(got.size(), body.size());
  EXPECT_TRUE(got == body);
  EXPECT_EQ(position.load(), body.size());
}

TEST(HttpStream, ABodyCutBeforeItsContentLengthIsAnErrorNotAShortDisk) {
  LocalServer server;
  const std::string body = Pattern(1 << 20);
  server.server().Get("/disk", [&body](const httplib::Request&, httplib::Response& res) {
    res.set_content_provider(body.size(), "application/octet-stream",
                             [&body](size_t offset, size_t, httplib::DataSink& sink) {
                               if (offset >= body.size() / 2) {
                                 return false;  // the connection drops halfway
                               }
                               sink.write(body.data() + offset, body.size() / 2);
                               return true;
                             });
  });
  auto http = NewClient();
  auto source = OpenHttpStream({}, *http, http::Request{.url = server.Url("/disk")},
                               HttpStreamOptions{.name = "disk 0"});
  ASSERT_TRUE(source) << source.error().ToString();
  std::string got;
  auto drained = Drain(**source, got);
  ASSERT_FALSE(drained) << "ended quietly after " << got.size() << " bytes";
  EXPECT_EQ(drained.error().code, ErrorCode::kUnavailable) << drained.error().ToString();
  EXPECT_TRUE(drained.error().message.starts_with("disk 0: ")) << drained.error().message;
  EXPECT_LT(got.size(), body.size());
  // The error sticks.
  std::vector<std::byte> buf(16);
  EXPECT_FALSE((*source)->Read({}, buf));
}

TEST(HttpStream, AChunkedBodyWithoutLengthEndsAtItsLastChunk) {
  LocalServer server;
  const std::string body = Pattern(200000);
  server.server().Get("/disk", [&body](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider(
        "application/octet-stream", [&body](size_t offset, httplib::DataSink& sink) {
          if (offset >= body.size()) {
            sink.done();
            return true;
          }
          sink.write(body.data() + offset, std::min<size_t>(7000, body.size() - offset));
          return true;
        });
  });
  auto http = NewClient();
  auto source = OpenHttpStream({}, *http, http::Request{.url = server.Url("/disk")}, {});
  ASSERT_TRUE(source) << source.error().ToString();
  std::string got;
  ASSERT_TRUE(Drain(**source, got));
  EXPECT_TRUE(got == body);
}

TEST(HttpStream, ErrorStatusesFailTheOpenWithTheirMeaning) {
  LocalServer server;
  server.server().Get("/gone", [](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content("no such ticket", "text/plain");
  });
  server.server().Get("/denied",
                      [](const httplib::Request&, httplib::Response& res) { res.status = 403; });
  auto http = NewClient();
  auto gone = OpenHttpStream({}, *http, http::Request{.url = server.Url("/gone")},
                             HttpStreamOptions{.name = "disk 1"});
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
  EXPECT_NE(gone.error().message.find("404"), std::string::npos) << gone.error().message;
  EXPECT_EQ(gone.error().message.find("/gone"), std::string::npos) << "the URL must not leak";
  auto denied = OpenHttpStream({}, *http, http::Request{.url = server.Url("/denied")}, {});
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ErrorCode::kUnauthenticated);
}

TEST(HttpStream, DestroyingAnUnreadStreamStopsTheTransfer) {
  LocalServer server;
  std::atomic<bool> served_all{false};
  server.server().Get("/big", [&served_all](const httplib::Request&, httplib::Response& res) {
    res.set_content_provider(uint64_t{1} << 32, "application/octet-stream",
                             [&served_all](size_t offset, size_t, httplib::DataSink& sink) {
                               static const std::string chunk(64 << 10, 'x');
                               if (offset + chunk.size() >= (uint64_t{1} << 32)) {
                                 served_all = true;
                               }
                               return sink.write(chunk.data(), chunk.size());
                             });
  });
  auto http = NewClient();
  auto source = OpenHttpStream({}, *http, http::Request{.url = server.Url("/big")},
                               HttpStreamOptions{.buffer_bytes = 1 << 20});
  ASSERT_TRUE(source) << source.error().ToString();
  const auto start = std::chrono::steady_clock::now();
  source->reset();  // joins the producer: it must notice the stop although the buffer is full
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_FALSE(served_all.load());
}

}  // namespace
}  // namespace vmimport::source::vmware
