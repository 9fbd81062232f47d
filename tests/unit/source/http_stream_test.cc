// source::HttpStream, the disk stream of every provider, against a local server: bodies of every
// size around the ring's capacity arrive byte-exact to slow and fast readers, a body cut before
// its Content-Length is an error (never a short disk), HTTP error statuses map to their meaning
// without the URL, 206 is accepted only when asked for, both sides notice a stop promptly, and
// the ring wakes each side far less often than once per chunk.

#include "source/http_stream.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <iostream>
#include <thread>

#include "unit/http/local_server.h"

namespace vmimport::source {
namespace {

using core::ErrorCode;
using namespace std::chrono_literals;

using testing::LocalServer;

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  }
  return s;
}

struct Reader {
  size_t buffer = 10000;
  std::chrono::microseconds pause{0};  // after each Read: a slow consumer
};

// Reads `source` to its end or first error; `got` receives the bytes, `reads` counts the Reads.
core::Status Drain(disk::ByteSource& source, std::string& got, Reader reader = {},
                   uint64_t* reads = nullptr) {
  std::vector<std::byte> buf(reader.buffer);
  while (true) {
    auto n = source.Read({}, buf);
    if (reads != nullptr) {
      ++*reads;
    }
    if (!n) {
      return core::MakeError(n.error());
    }
    if (*n == 0) {
      return {};
    }
    got.append(reinterpret_cast<const char*>(buf.data()), *n);
    if (reader.pause.count() > 0) {
      std::this_thread::sleep_for(reader.pause);
    }
  }
}

std::unique_ptr<http::Client> NewClient() {
  auto c = http::Client::Create({});
  EXPECT_TRUE(c);
  return std::move(*c);
}

// Waits up to 10 s for `done`.
template <typename F>
bool Eventually(F done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Serves /body/<n>: n pattern bytes with a Content-Length.
void ServeBodies(LocalServer& server) {
  server.server().Get(R"(/body/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
    const std::string body = Pattern(std::stoull(req.matches[1].str()));
    res.set_content(body, "application/octet-stream");
  });
}

TEST(HttpStream, BodiesAroundTheRingCapacityArriveWholeForSlowAndFastReaders) {
  LocalServer server;
  ServeBodies(server);
  auto http = NewClient();
  constexpr size_t kCapacity = 64 << 10;
  const Reader slow{.buffer = 3000, .pause = 200us};
  const Reader fast{.buffer = 1 << 20};
  const Reader tiny{.buffer = 1};
  for (const size_t size : {size_t{0}, size_t{1}, kCapacity - 1, kCapacity, 3 * kCapacity + 17}) {
    for (const auto& [what, reader] : {std::pair{"slow", slow}, {"fast", fast}, {"tiny", tiny}}) {
      if (reader.buffer == 1 && size > kCapacity) {
        continue;  // one byte per Read: enough for the sizes up to the capacity
      }
      SCOPED_TRACE(std::string(what) + " reader, " + std::to_string(size) + " bytes");
      std::atomic<uint64_t> position{0};
      auto source = HttpStream::Open(
          {}, *http, http::Request{.url = server.Url("/body/" + std::to_string(size))},
          HttpStreamOptions{.buffer_bytes = kCapacity,
                            .on_position = [&position](uint64_t p) { position.store(p); }});
      ASSERT_TRUE(source) << source.error().ToString();
      EXPECT_EQ((*source)->status(), 200);
      EXPECT_EQ((*source)->content_length(), size);
      std::string got;
      ASSERT_TRUE(Drain(**source, got, reader));
      EXPECT_EQ(got.size(), size);
      EXPECT_TRUE(got == Pattern(size));
      EXPECT_EQ(position.load(), size);
      // The end sticks and never blocks.
      std::vector<std::byte> buf(16);
      auto again = (*source)->Read({}, buf);
      ASSERT_TRUE(again);
      EXPECT_EQ(*again, 0U);
    }
  }
}

TEST(HttpStream, ARingSmallerThanTheLowWatermarkStillFlows) {
  LocalServer server;
  ServeBodies(server);
  auto http = NewClient();
  for (const size_t capacity : {size_t{1}, size_t{2}, size_t{3}, size_t{4096}}) {
    SCOPED_TRACE("capacity " + std::to_string(capacity));
    auto source = HttpStream::Open({}, *http, http::Request{.url = server.Url("/body/20000")},
                                   HttpStreamOptions{.buffer_bytes = capacity});
    ASSERT_TRUE(source) << source.error().ToString();
    std::string got;
    ASSERT_TRUE(Drain(**source, got, Reader{.buffer = 3 * capacity + 1}));
    EXPECT_TRUE(got == Pattern(20000));
  }
}

TEST(HttpStream, ABodyCutBeforeItsContentLengthIsAnErrorNotAShortDisk) {
  const std::string body = Pattern(1 << 20);  // outlives the server threads that send it
  LocalServer server;
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
  for (const size_t reader : {size_t{10000}, size_t{4} << 20}) {
    SCOPED_TRACE("read buffer " + std::to_string(reader));
    auto source = HttpStream::Open({}, *http, http::Request{.url = server.Url("/disk")},
                                   HttpStreamOptions{.buffer_bytes = 64 << 10, .name = "disk 0"});
    ASSERT_TRUE(source) << source.error().ToString();
    std::string got;
    auto drained = Drain(**source, got, Reader{.buffer = reader});
    ASSERT_FALSE(drained) << "ended quietly after " << got.size() << " bytes";
    EXPECT_EQ(drained.error().code, ErrorCode::kUnavailable) << drained.error().ToString();
    EXPECT_TRUE(drained.error().message.starts_with("disk 0: ")) << drained.error().message;
    EXPECT_LT(got.size(), body.size());
    EXPECT_TRUE(got == body.substr(0, got.size()));
    // The error sticks, and never blocks.
    std::vector<std::byte> buf(16);
    EXPECT_FALSE((*source)->Read({}, buf));
  }
}

TEST(HttpStream, AChunkedBodyWithoutLengthEndsAtItsLastChunk) {
  const std::string body = Pattern(200000);  // outlives the server threads that send it
  LocalServer server;
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
  auto source = HttpStream::Open({}, *http, http::Request{.url = server.Url("/disk")}, {});
  ASSERT_TRUE(source) << source.error().ToString();
  EXPECT_FALSE((*source)->content_length());
  std::string got;
  ASSERT_TRUE(Drain(**source, got, Reader{.buffer = 1 << 20}));
  EXPECT_TRUE(got == body);
}

TEST(HttpStream, ErrorStatusesFailTheOpenWithTheirMeaningAndNoUrl) {
  LocalServer server;
  server.server().Get(R"(/status/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
    res.status = std::stoi(req.matches[1].str());
    res.set_content("refused", "text/plain");
  });
  auto http = NewClient();
  const std::pair<int, ErrorCode> cases[] = {
      {404, ErrorCode::kNotFound},        {401, ErrorCode::kUnauthenticated},
      {403, ErrorCode::kUnauthenticated}, {500, ErrorCode::kUnavailable},
      {503, ErrorCode::kUnavailable},     {429, ErrorCode::kUnavailable},
      {418, ErrorCode::kInternal},        {206, ErrorCode::kInternal},  // not asked for
  };
  for (const auto& [status, code] : cases) {
    SCOPED_TRACE(status);
    auto r = HttpStream::Open(
        {}, *http,
        http::Request{.url = server.Url("/status/" + std::to_string(status) + "?token=s3cret")},
        HttpStreamOptions{.name = "disk 1"});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, code) << r.error().ToString();
    EXPECT_EQ(r.error().message, "disk 1: http status " + std::to_string(status));
    EXPECT_EQ(r.error().message.find("s3cret"), std::string::npos) << "the URL must not leak";
  }
  // A provider's own mapping, given the stream's name.
  auto mapped = HttpStream::Open(
      {}, *http, http::Request{.url = server.Url("/status/404")},
      HttpStreamOptions{.name = "lease disk",
                        .status_error = [](const std::string& name, long status) {
                          return core::Error{ErrorCode::kGone,
                                             name + " is gone (" + std::to_string(status) + ")"};
                        }});
  ASSERT_FALSE(mapped);
  EXPECT_EQ(mapped.error().code, ErrorCode::kGone);
  EXPECT_EQ(mapped.error().message, "lease disk is gone (404)");
}

TEST(HttpStream, TransportErrorsNameTheStreamNotTheUrl) {
  auto http = NewClient();
  int port = 0;
  {
    LocalServer closed;  // a port that nothing listens on once it is gone
    port = std::stoi(closed.Url("").substr(std::string("http://127.0.0.1:").size()));
  }
  auto r = HttpStream::Open({}, *http,
                            http::Request{.url = "http://127.0.0.1:" + std::to_string(port) +
                                                 "/nfc/ticket-s3cret/disk-0.vmdk?token=s3cret"},
                            HttpStreamOptions{.name = "disk 2"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().ToString();
  EXPECT_TRUE(r.error().message.starts_with("disk 2: ")) << r.error().message;
  EXPECT_EQ(r.error().message.find("s3cret"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("/nfc/"), std::string::npos) << r.error().message;
}

TEST(HttpStream, PartialContentIsAcceptedWhenAskedForWithItsRange) {
  const std::string body = Pattern(100000);  // outlives the server threads that send it
  LocalServer server;
  server.server().Get("/file", [&body](const httplib::Request&, httplib::Response& res) {
    res.set_content(body, "application/octet-stream");  // httplib answers Range with 206
  });
  auto http = NewClient();
  http::Request request{.url = server.Url("/file"), .headers = {{"Range", "bytes=1000-70999"}}};
  auto refused = HttpStream::Open({}, *http, request, HttpStreamOptions{.name = "ova"});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message, "ova: http status 206");

  auto source = HttpStream::Open({}, *http, request,
                                 HttpStreamOptions{.name = "ova", .accept_partial = true});
  ASSERT_TRUE(source) << source.error().ToString();
  EXPECT_EQ((*source)->status(), 206);
  auto range = (*source)->content_range();
  ASSERT_TRUE(range);
  EXPECT_EQ(range->first, 1000U);
  EXPECT_EQ(range->last, 70999U);
  EXPECT_EQ(range->total, 100000U);
  std::string got;
  ASSERT_TRUE(Drain(**source, got));
  EXPECT_TRUE(got == body.substr(1000, 70000));

  // A whole body is still fine with accept_partial, and has no range.
  auto whole = HttpStream::Open({}, *http, http::Request{.url = server.Url("/file")},
                                HttpStreamOptions{.accept_partial = true});
  ASSERT_TRUE(whole) << whole.error().ToString();
  EXPECT_EQ((*whole)->status(), 200);
  EXPECT_FALSE((*whole)->content_range());
}

TEST(HttpStream, ParsesContentRange) {
  auto r = ParseContentRange(" bytes 0-99/1000 ");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 0U);
  EXPECT_EQ(r->last, 99U);
  EXPECT_EQ(r->total, 1000U);
  r = ParseContentRange("bytes 5-5/*");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->total);
  EXPECT_FALSE(ParseContentRange("bytes */1000"));
  EXPECT_FALSE(ParseContentRange("bytes 10-5/1000"));
  EXPECT_FALSE(ParseContentRange("bytes 0-99/99"));
  EXPECT_FALSE(ParseContentRange("items 0-99/1000"));
  EXPECT_FALSE(ParseContentRange(""));
}

// A body that never ends: 64 KiB writes until the transfer is dropped (or 4 GiB).
void ServeEndless(LocalServer& server, std::atomic<uint64_t>& served) {
  server.server().Get("/big", [&served](const httplib::Request&, httplib::Response& res) {
    res.set_content_provider(uint64_t{1} << 32, "application/octet-stream",
                             [&served](size_t, size_t, httplib::DataSink& sink) {
                               static const std::string chunk(64 << 10, 'x');
                               served += chunk.size();
                               return sink.write(chunk.data(), chunk.size());
                             });
  });
}

TEST(HttpStream, DestroyingAStreamWhoseProducerWaitsOnAFullRingStopsTheTransfer) {
  LocalServer server;
  std::atomic<uint64_t> served{0};
  ServeEndless(server, served);
  auto http = NewClient();
  auto source = HttpStream::Open({}, *http, http::Request{.url = server.Url("/big")},
                                 HttpStreamOptions{.buffer_bytes = 1 << 20});
  ASSERT_TRUE(source) << source.error().ToString();
  std::vector<std::byte> buf(100000);
  ASSERT_TRUE((*source)->Read({}, buf));
  ASSERT_TRUE(Eventually([&] { return (*source)->WakeStatsForTest().producer_sleeps > 0; }))
      << "the producer never waited on the full ring";
  const auto start = std::chrono::steady_clock::now();
  source->reset();  // joins the producer: it must notice the stop although the ring is full
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_LT(served.load(), uint64_t{1} << 30);
}

TEST(HttpStream, DestroyingAnUnreadStreamMidTransferStopsIt) {
  LocalServer server;
  std::atomic<uint64_t> served{0};
  ServeEndless(server, served);
  auto http = NewClient();
  for (int i = 0; i < 5; ++i) {  // at once, and a little later
    auto source = HttpStream::Open({}, *http, http::Request{.url = server.Url("/big")},
                                   HttpStreamOptions{.buffer_bytes = 256 << 10});
    ASSERT_TRUE(source) << source.error().ToString();
    std::this_thread::sleep_for(std::chrono::milliseconds(i * 5));
    const auto start = std::chrono::steady_clock::now();
    source->reset();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  }
}

TEST(HttpStream, StoppingAReadThatWaitsForDataReturnsPromptly) {
  std::atomic<bool> release{false};  // outlives the server: its handler waits for this
  LocalServer server;
  server.server().Get("/slow", [&release](const httplib::Request&, httplib::Response& res) {
    res.set_content_provider(uint64_t{1} << 20, "application/octet-stream",
                             [&release](size_t offset, size_t, httplib::DataSink& sink) {
                               if (offset == 0) {
                                 return sink.write("0123456789", 10);
                               }
                               for (int i = 0; i < 1000 && !release.load(); ++i) {
                                 std::this_thread::sleep_for(10ms);  // then nothing more
                               }
                               return false;
                             });
  });
  auto http = NewClient();
  auto source = HttpStream::Open({}, *http, http::Request{.url = server.Url("/slow")},
                                 HttpStreamOptions{.name = "slow"});
  ASSERT_TRUE(source) << source.error().ToString();
  HttpStream& stream = **source;
  std::stop_source stop;
  core::Result<size_t> result = size_t{0};
  std::jthread reader([&] {
    std::vector<std::byte> buf(1 << 20);
    result = stream.Read(stop.get_token(), buf);  // waits for the low watermark
  });
  ASSERT_TRUE(Eventually([&] { return stream.WakeStatsForTest().consumer_sleeps > 0; }));
  const auto start = std::chrono::steady_clock::now();
  stop.request_stop();
  reader.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kCancelled);

  // A stopped Read leaves the buffered bytes for the next one; a stopped token never blocks.
  std::vector<std::byte> buf(1 << 20);
  std::stop_source stopped;
  stopped.request_stop();
  auto next = stream.Read(stopped.get_token(), buf);
  ASSERT_FALSE(next);
  EXPECT_EQ(next.error().code, ErrorCode::kCancelled);
  std::vector<std::byte> small(4);
  auto some = stream.Read(stopped.get_token(), small);  // enough buffered: no wait needed
  ASSERT_TRUE(some) << some.error().ToString();
  EXPECT_EQ(*some, 4U);

  const auto destroy = std::chrono::steady_clock::now();
  source->reset();  // the server still holds the rest back
  EXPECT_LT(std::chrono::steady_clock::now() - destroy, 3s);
  release = true;
}

TEST(HttpStream, WakesEachSideFarLessOftenThanOncePerChunk) {
  LocalServer server;
  ServeBodies(server);
  auto http = NewClient();
  constexpr size_t kSize = 16 << 20;
  struct Case {
    const char* what;
    Reader reader;
    uint64_t factor;  // wake-ups must be fewer than chunks / factor
  };
  // Read waits for min(read size, 256 KiB): 64 KiB reads may sleep once per four 16 KiB chunks.
  for (const Case& c :
       {Case{"fast reader, 1 MiB reads", Reader{.buffer = 1 << 20}, 8},
        Case{"fast reader, 64 KiB reads", Reader{.buffer = 64 << 10}, 3},
        Case{"slow reader, 64 KiB reads", Reader{.buffer = 64 << 10, .pause = 1ms}, 8}}) {
    SCOPED_TRACE(c.what);
    auto source = HttpStream::Open(
        {}, *http, http::Request{.url = server.Url("/body/" + std::to_string(kSize))}, {});
    ASSERT_TRUE(source) << source.error().ToString();
    std::string got;
    uint64_t reads = 0;
    ASSERT_TRUE(Drain(**source, got, c.reader, &reads));
    ASSERT_EQ(got.size(), kSize);
    const HttpStream::WakeStats s = (*source)->WakeStatsForTest();
    // The deque design notified on every chunk and every Read.
    const uint64_t before = s.chunks + reads;
    std::cout << "[ wakes    ] " << c.what << ": " << kSize / (1 << 20) << " MiB in " << s.chunks
              << " chunks and " << reads << " reads; notifies " << s.notifies
              << " (per-chunk design: " << before << "), producer sleeps " << s.producer_sleeps
              << ", consumer sleeps " << s.consumer_sleeps << "\n";
    EXPECT_GT(s.chunks, 64U);
    EXPECT_LT(s.notifies * c.factor, s.chunks) << "notifies " << s.notifies;
    EXPECT_LT(s.producer_sleeps * c.factor, s.chunks);
    EXPECT_LT(s.consumer_sleeps * c.factor, s.chunks);
  }
}

}  // namespace
}  // namespace vmimport::source
