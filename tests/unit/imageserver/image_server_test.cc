// The image server over real HTTP on 127.0.0.1 (port 0), driven with the project's libcurl
// client: whole streams with checksums, HEAD, 404s, Unpublish mid-stream, the stream limit,
// concurrent GETs, Range (streaming and staged), source errors and dropped consumers.

#include "imageserver/image_server.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "build_paths.h"
#include "disk/byte_source.h"
#include "disk/hashing_reader.h"
#include "disk/open.h"
#include "http/client.h"
#include "imageserver/token.h"

namespace vmimport::imageserver {
namespace {

using namespace std::chrono_literals;
using core::ErrorCode;

struct CorpusImage {
  std::string path;
  std::string sha256;
  uint64_t size = 0;
};

CorpusImage Corpus(const std::string& name) {
  std::ifstream manifest(std::string(vmimport::build_paths::DiskCorpus()) + "/manifest.tsv");
  std::string n, rel, sha;
  uint64_t size = 0;
  while (manifest >> n >> rel >> sha >> size) {
    if (n == name) {
      return {std::string(vmimport::build_paths::DiskCorpus()) + "/" + rel, sha, size};
    }
  }
  ADD_FAILURE() << "no corpus image " << name;
  return {};
}

std::vector<std::byte> RawOf(const CorpusImage& image) {
  auto reader = disk::OpenDiskFile({}, image.path);
  EXPECT_TRUE(reader);
  std::vector<std::byte> raw;
  EXPECT_TRUE(disk::DrainDisk({}, **reader, 1 << 20, [&](std::span<const std::byte> chunk) {
    raw.insert(raw.end(), chunk.begin(), chunk.end());
    return core::Ok();
  }));
  return raw;
}

DiskReaderFactory FileFactory(const std::string& path, std::atomic<int>* opens = nullptr) {
  return [path, opens](std::stop_token stop) {
    if (opens != nullptr) {
      ++*opens;
    }
    return disk::OpenDiskFile(std::move(stop), path);
  };
}

// Records observer events; tests wait for them with a timeout (streams finish on server threads
// after the client has its last byte).
class RecordingObserver final : public StreamObserver {
 public:
  void OnStreamStarted(const StreamInfo& info) override {
    std::lock_guard lock(mu_);
    started_.push_back(info);
    cv_.notify_all();
  }
  void OnProgress(const StreamProgress& progress) override {
    std::lock_guard lock(mu_);
    progress_.push_back(progress);
  }
  void OnStreamFinished(const StreamResult& result) override {
    std::lock_guard lock(mu_);
    finished_.push_back(result);
    cv_.notify_all();
  }
  //! The `n`th finished stream (in finishing order), waiting up to 10 s for it.
  std::optional<StreamResult> Finished(size_t n) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, 10s, [&] { return finished_.size() > n; })) {
      return std::nullopt;
    }
    return finished_[n];
  }
  std::vector<StreamResult> AllFinished() {
    std::lock_guard lock(mu_);
    return finished_;
  }
  std::vector<StreamProgress> Progress() {
    std::lock_guard lock(mu_);
    return progress_;
  }
  size_t StartedCount() {
    std::lock_guard lock(mu_);
    return started_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<StreamInfo> started_;
  std::vector<StreamProgress> progress_;
  std::vector<StreamResult> finished_;
};

// A disk of `size` pattern bytes whose readers stop after `block_after` bytes until the gate
// opens (or their stop token fires).
struct Gate {
  std::mutex mu;
  std::condition_variable_any cv;
  bool open = false;
  int blocked = 0;

  void Open() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
  bool WaitBlocked(int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] { return blocked >= n; });
  }
};

class GatedReader final : public disk::DiskReader {
 public:
  GatedReader(uint64_t size, uint64_t block_after, std::shared_ptr<Gate> gate)
      : size_(size), block_after_(block_after), gate_(std::move(gate)) {}
  uint64_t VirtualSize() const override { return size_; }
  std::string_view FormatName() const override { return "gated"; }
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override {
    if (pos_ >= block_after_ && !passed_) {
      std::unique_lock lock(gate_->mu);
      ++gate_->blocked;
      gate_->cv.notify_all();
      gate_->cv.wait(lock, stop, [&] { return gate_->open; });
      --gate_->blocked;
      if (!gate_->open) {
        return core::MakeError(ErrorCode::kCancelled, "gated read cancelled");
      }
      passed_ = true;
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), size_ - pos_));
    for (size_t i = 0; i < n; ++i) {
      out[i] = static_cast<std::byte>((pos_ + i) % 253);
    }
    pos_ += n;
    return n;
  }

 private:
  uint64_t size_;
  uint64_t block_after_;
  std::shared_ptr<Gate> gate_;
  uint64_t pos_ = 0;
  bool passed_ = false;
};

DiskReaderFactory GatedFactory(uint64_t size, uint64_t block_after, std::shared_ptr<Gate> gate) {
  return [=](std::stop_token) -> core::Result<disk::DiskReaderPtr> {
    return disk::DiskReaderPtr(std::make_unique<GatedReader>(size, block_after, gate));
  };
}

struct Fetched {
  long status = 0;
  std::optional<core::Error> error;
  http::Headers headers;
  uint64_t bytes = 0;
  std::string sha256;
  std::string sha512;
  std::vector<std::byte> body;  // kept when asked
};

class ImageServerTest : public ::testing::Test {
 protected:
  void StartServer(ServerConfig config = {}, const core::Clock* clock = nullptr) {
    if (config.staging_dir.empty()) {
      char templ[] = "/tmp/vmimport-staging-XXXXXX";
      ASSERT_NE(mkdtemp(templ), nullptr);
      staging_dir_ = templ;
      config.staging_dir = staging_dir_;
    }
    config.progress_interval = 0ms;
    auto server =
        ImageServer::Start(config, &observer_, clock != nullptr ? *clock : clock_, core::Logger());
    ASSERT_TRUE(server) << server.error().ToString();
    server_ = std::move(*server);
    auto client = http::Client::Create({});
    ASSERT_TRUE(client);
    client_ = std::move(*client);
  }
  void TearDown() override {
    client_.reset();  // close kept-alive connections first: the server waits for them
    server_.reset();
    if (!staging_dir_.empty()) {
      std::filesystem::remove_all(staging_dir_);
    }
  }

  Fetched Get(const std::string& url, http::Headers headers = {}, bool keep_body = false,
              std::function<bool(uint64_t)> keep_going = nullptr, std::string method = "GET") {
    Fetched f;
    disk::Hasher hasher;
    http::Request req{.method = method, .url = url, .headers = std::move(headers)};
    req.timeout = 60s;
    auto resp = client_->Stream(
        {}, req,
        [&](const http::Response& head) {
          f.status = head.status;
          f.headers = head.headers;
          return true;
        },
        [&](std::string_view chunk) {
          auto bytes = std::as_bytes(std::span<const char>(chunk.data(), chunk.size()));
          hasher.Update(bytes);
          if (keep_body) {
            f.body.insert(f.body.end(), bytes.begin(), bytes.end());
          }
          f.bytes += chunk.size();
          return keep_going ? keep_going(f.bytes) : true;
        });
    if (!resp) {
      f.error = resp.error();
    } else {
      f.status = resp->status;
      f.headers = resp->headers;
    }
    auto sums = hasher.Finish();
    f.sha256 = sums.sha256;
    f.sha512 = sums.sha512;
    return f;
  }

  static std::string Header(const Fetched& f, const std::string& name) {
    for (const auto& [k, v] : f.headers) {
      if (k == name) {
        return v;
      }
    }
    return "";
  }

  core::SystemClock clock_;
  // Downloads `nothing` then `both` (the server's first two streams), each `image`'s bytes: the
  // first hashed nothing (policy none), the second both digests of what it served.
  void ExpectNothingHashedThenBoth(const CorpusImage& image, const std::string& nothing,
                                   const std::string& both) {
    Fetched a = Get(nothing);
    ASSERT_FALSE(a.error);
    EXPECT_EQ(a.sha256, image.sha256);
    auto r0 = observer_.Finished(0);
    ASSERT_TRUE(r0);
    EXPECT_EQ(r0->outcome, StreamOutcome::kCompleted);
    EXPECT_EQ(r0->checksum_policy, ChecksumPolicy::kNone);
    EXPECT_FALSE(r0->checksums);
    Fetched b = Get(both);
    ASSERT_FALSE(b.error);
    auto r1 = observer_.Finished(1);
    ASSERT_TRUE(r1 && r1->checksums);
    EXPECT_EQ(r1->checksums->sha256, image.sha256);
    EXPECT_EQ(r1->checksums->sha512, b.sha512);
  }

  RecordingObserver observer_;
  //! For tests that move time; declared before server_ so that it outlives the server's threads
  //! (a stream's last progress report may read it after the client has the whole body).
  core::FakeClock fake_clock_;
  std::unique_ptr<ImageServer> server_;
  std::unique_ptr<http::Client> client_;
  std::string staging_dir_;
};

TEST(Token, Has256RandomBitsInHex) {
  auto a = NewToken();
  auto b = NewToken();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->size(), 64u);
  EXPECT_TRUE(LooksLikeToken(*a));
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(LooksLikeToken("abc"));
  EXPECT_FALSE(LooksLikeToken(std::string(64, 'g')));
}

TEST_F(ImageServerTest, StreamsTheWholeDecodedDiskWithChecksums) {
  StartServer({.checksums = ChecksumPolicy::kAll});
  const auto image = Corpus("sparse.vmdk-streamOptimized");
  auto pub = server_->Publish(FileFactory(image.path), {.name = "default/vm/disk-0"});
  ASSERT_TRUE(pub) << pub.error().ToString();
  EXPECT_EQ(pub->url, server_->base_url() + "/disks/" + pub->token);
  EXPECT_TRUE(LooksLikeToken(pub->token));

  Fetched f = Get(pub->url);
  ASSERT_FALSE(f.error) << f.error->ToString();
  EXPECT_EQ(f.status, 200);
  EXPECT_EQ(Header(f, "content-length"), std::to_string(image.size));
  EXPECT_EQ(Header(f, "content-type"), "application/octet-stream");
  EXPECT_EQ(f.bytes, image.size);
  EXPECT_EQ(f.sha256, image.sha256);

  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kCompleted);
  EXPECT_EQ(result->info.disk_name, "default/vm/disk-0");
  EXPECT_EQ(result->info.total_bytes, image.size);
  EXPECT_EQ(result->bytes, image.size);
  EXPECT_GT(result->bytes_per_second, 0.0);
  ASSERT_TRUE(result->checksums);
  EXPECT_EQ(result->checksums->sha256, image.sha256);
  EXPECT_EQ(result->checksums->sha512, f.sha512);
  // Progress came in order and never past the size.
  auto progress = observer_.Progress();
  ASSERT_FALSE(progress.empty());
  for (size_t i = 1; i < progress.size(); ++i) {
    EXPECT_GE(progress[i].bytes, progress[i - 1].bytes);
  }
  EXPECT_LE(progress.back().bytes, image.size);
  EXPECT_EQ(server_->ActiveStreams(), 0u);
}

TEST_F(ImageServerTest, HeadAnswersTheVirtualSizeWithoutStreaming) {
  StartServer();
  const auto image = Corpus("text.qcow2-zstd");
  auto pub = server_->Publish(FileFactory(image.path), {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url, {}, false, nullptr, "HEAD");
  ASSERT_FALSE(f.error) << f.error->ToString();
  EXPECT_EQ(f.status, 200);
  EXPECT_EQ(Header(f, "content-length"), std::to_string(image.size));
  EXPECT_EQ(Header(f, "accept-ranges"), "none") << "a streaming disk cannot seek";
  EXPECT_EQ(f.bytes, 0u);
  EXPECT_EQ(observer_.StartedCount(), 0u);
}

TEST_F(ImageServerTest, UnknownTokensAndOtherPathsAre404) {
  StartServer();
  auto token = NewToken();
  ASSERT_TRUE(token);
  EXPECT_EQ(Get(server_->base_url() + "/disks/" + *token).status, 404);
  EXPECT_EQ(Get(server_->base_url() + "/disks/" + *token, {}, false, nullptr, "HEAD").status, 404);
  EXPECT_EQ(Get(server_->base_url() + "/disks/short").status, 404);
  EXPECT_EQ(Get(server_->base_url() + "/").status, 404);
  EXPECT_FALSE(server_->Unpublish(*token));
}

TEST_F(ImageServerTest, UnpublishCutsARunningStreamAndThenAnswers404) {
  StartServer();
  auto gate = std::make_shared<Gate>();
  const uint64_t size = uint64_t{64} << 20;
  auto pub = server_->Publish(GatedFactory(size, 3 << 20, gate), {.name = "gated"});
  ASSERT_TRUE(pub);
  Fetched f;
  std::jthread client([&] { f = Get(pub->url); });
  ASSERT_TRUE(gate->WaitBlocked(1));
  ASSERT_TRUE(server_->Unpublish(pub->token));
  client.join();
  EXPECT_TRUE(f.error || f.bytes < size) << "the consumer must see a short body";
  EXPECT_LT(f.bytes, size);
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kUnpublished);
  EXPECT_FALSE(result->checksums);
  EXPECT_EQ(Get(pub->url).status, 404);
  EXPECT_EQ(server_->ActiveStreams(), 0u);
}

TEST_F(ImageServerTest, StreamsBeyondTheLimitGet503) {
  StartServer({.max_streams = 2});
  auto gate = std::make_shared<Gate>();
  const uint64_t size = uint64_t{8} << 20;
  auto pub = server_->Publish(GatedFactory(size, 1 << 20, gate), {.name = "gated"});
  ASSERT_TRUE(pub);
  Fetched a, b;
  std::jthread ta([&] { a = Get(pub->url); });
  std::jthread tb([&] { b = Get(pub->url); });
  ASSERT_TRUE(gate->WaitBlocked(2));
  EXPECT_EQ(server_->ActiveStreams(), 2u);
  Fetched c = Get(pub->url);
  EXPECT_EQ(c.status, 503);
  EXPECT_EQ(Header(c, "retry-after"), "10");
  // HEAD still answers while both slots are taken.
  EXPECT_EQ(Get(pub->url, {}, false, nullptr, "HEAD").status, 200);
  gate->Open();
  ta.join();
  tb.join();
  EXPECT_EQ(a.bytes, size);
  EXPECT_EQ(b.bytes, size);
  ASSERT_TRUE(observer_.Finished(1));
  EXPECT_EQ(server_->ActiveStreams(), 0u);
  Fetched d = Get(pub->url);
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(d.bytes, size);
}

TEST_F(ImageServerTest, TwoConcurrentGetsEachGetTheWholeDisk) {
  StartServer();
  const auto image = Corpus("text.vmdk-streamOptimized");
  std::atomic<int> opens{0};
  auto pub = server_->Publish(FileFactory(image.path, &opens), {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched a, b;
  {
    std::jthread ta([&] { a = Get(pub->url); });
    std::jthread tb([&] { b = Get(pub->url); });
  }
  EXPECT_EQ(a.sha256, image.sha256);
  EXPECT_EQ(b.sha256, image.sha256);
  EXPECT_EQ(opens.load(), 2);
  auto r0 = observer_.Finished(0);
  auto r1 = observer_.Finished(1);
  ASSERT_TRUE(r0 && r1);
  EXPECT_NE(r0->info.stream_id, r1->info.stream_id);
  ASSERT_TRUE(r0->checksums && r1->checksums);
  EXPECT_EQ(r0->checksums->sha512, a.sha512);
  EXPECT_EQ(r1->checksums->sha512, a.sha512);
}

TEST_F(ImageServerTest, RangeFromTheStartOfAStreamingDiskIs206WithTheFirstBytes) {
  StartServer();
  const auto image = Corpus("text.qcow2-zlib");
  const auto raw = RawOf(image);
  auto pub = server_->Publish(FileFactory(image.path), {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url, {{"Range", "bytes=0-65535"}}, true);
  ASSERT_FALSE(f.error) << f.error->ToString();
  EXPECT_EQ(f.status, 206);
  EXPECT_EQ(Header(f, "content-range"), "bytes 0-65535/" + std::to_string(image.size));
  ASSERT_EQ(f.body.size(), 65536u);
  EXPECT_TRUE(std::equal(f.body.begin(), f.body.end(), raw.begin()));
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kCompleted);
  EXPECT_FALSE(result->checksums) << "a range does not checksum the disk";
  EXPECT_TRUE(result->source_digests.empty());
}

TEST_F(ImageServerTest, RangeFromTheStartPastTheEndIsClampedToTheDisk) {
  StartServer();
  const auto image = Corpus("text.qcow2-zlib");
  auto pub = server_->Publish(FileFactory(image.path), {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url, {{"Range", "bytes=0-" + std::to_string(image.size + 4096)}});
  ASSERT_FALSE(f.error) << f.error->ToString();
  EXPECT_EQ(f.status, 206);
  EXPECT_EQ(Header(f, "content-range"),
            "bytes 0-" + std::to_string(image.size - 1) + "/" + std::to_string(image.size));
  EXPECT_EQ(f.bytes, image.size);
  EXPECT_EQ(f.sha256, image.sha256);
}

// A streaming disk decodes front to back: a range further in is ignored, as RFC 9110 allows, and
// the whole disk comes with 200; never bytes from the wrong offset.
TEST_F(ImageServerTest, OtherRangesOnAStreamingDiskGetTheWholeDiskWith200) {
  StartServer();
  const auto image = Corpus("text.qcow2-zlib");
  auto pub = server_->Publish(FileFactory(image.path), {.name = "d"});
  ASSERT_TRUE(pub);
  for (const std::string range : {"bytes=1000000-1065535", "bytes=-100", "bytes=0-99,200-299"}) {
    Fetched f = Get(pub->url, {{"Range", range}});
    ASSERT_FALSE(f.error) << range << ": " << f.error->ToString();
    EXPECT_EQ(f.status, 200) << range;
    EXPECT_EQ(Header(f, "content-range"), "") << range;
    EXPECT_EQ(Header(f, "accept-ranges"), "none") << range;
    EXPECT_EQ(Header(f, "content-length"), std::to_string(image.size)) << range;
    EXPECT_EQ(f.bytes, image.size) << range;
    EXPECT_EQ(f.sha256, image.sha256) << range;
  }
}

TEST_F(ImageServerTest, RangePastTheEndIs416WithTheSize) {
  StartServer();
  const auto image = Corpus("text.qcow2-zlib");
  auto pub = server_->Publish(FileFactory(image.path), {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url, {{"Range", "bytes=" + std::to_string(image.size) + "-"}});
  EXPECT_EQ(f.status, 416);
  EXPECT_EQ(Header(f, "content-range"), "bytes */" + std::to_string(image.size));
  EXPECT_EQ(f.bytes, 0u);
  EXPECT_EQ(server_->ActiveStreams(), 0u);
}

TEST_F(ImageServerTest, StagedDiskIsWrittenOnceAndServedWithRanges) {
  StartServer();
  const auto image = Corpus("sparse.qcow2-v3");
  const auto raw = RawOf(image);
  std::atomic<int> opens{0};
  auto pub = server_->Publish(
      FileFactory(image.path, &opens),
      {.name = "staged", .mode = PublishMode::kStaged, .checksums = ChecksumPolicy::kAll});
  ASSERT_TRUE(pub) << pub.error().ToString();
  // A request that arrives during staging waits for it.
  Fetched whole = Get(pub->url);
  ASSERT_FALSE(whole.error) << whole.error->ToString();
  EXPECT_EQ(whole.status, 200);
  EXPECT_EQ(Header(whole, "accept-ranges"), "bytes");
  EXPECT_EQ(whole.sha256, image.sha256);
  Fetched head = Get(pub->url, {}, false, nullptr, "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(Header(head, "accept-ranges"), "bytes");
  EXPECT_EQ(Header(head, "content-length"), std::to_string(image.size));
  // A last position past the end is clamped; a first one past it is 416.
  Fetched tail = Get(pub->url,
                     {{"Range", "bytes=" + std::to_string(image.size - 10) + "-" +
                                    std::to_string(image.size + 1000)}},
                     true);
  EXPECT_EQ(tail.status, 206);
  ASSERT_EQ(tail.body.size(), 10u);
  EXPECT_TRUE(std::equal(tail.body.begin(), tail.body.end(), raw.end() - 10));
  EXPECT_EQ(Get(pub->url, {{"Range", "bytes=" + std::to_string(image.size) + "-"}}).status, 416);
  const uint64_t at = (uint64_t{33} << 20) - 4000;
  Fetched part = Get(
      pub->url, {{"Range", "bytes=" + std::to_string(at) + "-" + std::to_string(at + 9999)}}, true);
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(Header(part, "content-range"), "bytes " + std::to_string(at) + "-" +
                                               std::to_string(at + 9999) + "/" +
                                               std::to_string(image.size));
  ASSERT_EQ(part.body.size(), 10000u);
  EXPECT_TRUE(
      std::equal(part.body.begin(), part.body.end(), raw.begin() + static_cast<ptrdiff_t>(at)));
  EXPECT_EQ(opens.load(), 1) << "staged disks are decoded once";

  // The staging pass reported the checksums; the staged file is sparse.
  bool saw_staging = false;
  for (const auto& r : observer_.AllFinished()) {
    if (r.info.kind == StreamKind::kStaging) {
      saw_staging = true;
      EXPECT_EQ(r.outcome, StreamOutcome::kCompleted);
      ASSERT_TRUE(r.checksums);
      EXPECT_EQ(r.checksums->sha256, image.sha256);
    }
  }
  EXPECT_TRUE(saw_staging);
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(staging_dir_)) {
    files.push_back(e.path());
  }
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].string().find(pub->token), std::string::npos) << "token leaks into a name";
  struct stat st {};
  ASSERT_EQ(stat(files[0].c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), image.size);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, image.size / 4) << "not sparse";

  ASSERT_TRUE(server_->Unpublish(pub->token));
  EXPECT_EQ(Get(pub->url).status, 404);
  // The file goes with the last user of the disk; once the server has stopped there is none.
  client_.reset();
  server_.reset();
  EXPECT_FALSE(std::filesystem::exists(files[0]));
}

TEST_F(ImageServerTest, CorruptSourceCutsTheStreamAndReportsTheOffset) {
  StartServer();
  const auto image = Corpus("text.vmdk-streamOptimized");
  char templ[] = "/tmp/vmimport-cut-XXXXXX";
  ASSERT_NE(mkdtemp(templ), nullptr);
  const std::string cut = std::string(templ) + "/cut.vmdk";
  std::filesystem::copy_file(image.path, cut);
  std::filesystem::resize_file(cut, std::filesystem::file_size(cut) * 2 / 3);
  auto pub = server_->Publish(FileFactory(cut), {.name = "cut"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url);
  EXPECT_TRUE(f.error || f.bytes < image.size);
  EXPECT_LT(f.bytes, image.size);
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kSourceError);
  ASSERT_TRUE(result->error);
  EXPECT_EQ(result->error->code, ErrorCode::kCorruptData);
  EXPECT_NE(result->error->message.find("offset"), std::string::npos) << result->error->ToString();
  std::filesystem::remove_all(templ);
}

TEST_F(ImageServerTest, SourceThatCannotOpenIsAnErrorStatus) {
  StartServer();
  auto pub = server_->Publish(
      [](std::stop_token) -> core::Result<disk::DiskReaderPtr> {
        return core::MakeError(ErrorCode::kUnavailable, "nfc lease expired");
      },
      {.name = "gone"});
  ASSERT_TRUE(pub);
  EXPECT_EQ(Get(pub->url).status, 502);
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kSourceError);
  EXPECT_EQ(server_->ActiveStreams(), 0u);
}

// A reader that throws (a bug, or an allocation that failed) mid-stream: cpp-httplib calls the
// content provider outside any try, so the server turns the throw into a source error instead of
// ending the process.
class ThrowingReader final : public disk::DiskReader {
 public:
  uint64_t VirtualSize() const override { return uint64_t{1} << 20; }
  std::string_view FormatName() const override { return "throwing"; }
  core::Result<size_t> Read(std::stop_token, std::span<std::byte>) override {
    throw std::runtime_error("reader bug \xFF");
  }
};

TEST_F(ImageServerTest, AReaderThatThrowsEndsItsStreamAsASourceError) {
  StartServer();
  auto pub = server_->Publish(
      [](std::stop_token) -> core::Result<disk::DiskReaderPtr> {
        return disk::DiskReaderPtr(std::make_unique<ThrowingReader>());
      },
      {.name = "throws"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url);
  EXPECT_TRUE(f.error || f.bytes < (uint64_t{1} << 20));
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kSourceError);
  ASSERT_TRUE(result->error);
  EXPECT_EQ(result->error->code, ErrorCode::kInternal);
  EXPECT_EQ(result->error->message, "disk stream threw: reader bug \xEF\xBF\xBD");
  EXPECT_EQ(server_->ActiveStreams(), 0u);
}

TEST_F(ImageServerTest, ConsumerThatHangsUpIsReportedAndFreesItsSlot) {
  StartServer();
  const auto image = Corpus("sparse.vmdk-streamOptimized");
  auto pub = server_->Publish(FileFactory(image.path), {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url, {}, false, [](uint64_t got) { return got < (uint64_t{2} << 20); });
  ASSERT_TRUE(f.error);
  EXPECT_EQ(f.error->code, ErrorCode::kCancelled);
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kClientGone);
  EXPECT_LT(result->bytes, image.size);
  EXPECT_EQ(server_->ActiveStreams(), 0u);
}

TEST_F(ImageServerTest, ShutdownCutsRunningStreams) {
  StartServer();
  auto gate = std::make_shared<Gate>();
  auto pub = server_->Publish(GatedFactory(uint64_t{16} << 20, 1 << 20, gate), {.name = "g"});
  ASSERT_TRUE(pub);
  Fetched f;
  std::jthread client([&] { f = Get(pub->url); });
  ASSERT_TRUE(gate->WaitBlocked(1));
  server_.reset();  // must not hang on the blocked stream
  client.join();
  EXPECT_LT(f.bytes, uint64_t{16} << 20);
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kShuttingDown);
}

TEST_F(ImageServerTest, StagedWithoutAStagingDirIsRefused) {
  ServerConfig config;
  auto server = ImageServer::Start(config, nullptr, clock_, core::Logger());
  ASSERT_TRUE(server);
  auto pub = (*server)->Publish(FileFactory("/dev/null"), {.mode = PublishMode::kStaged});
  ASSERT_FALSE(pub);
  EXPECT_EQ(pub.error().code, ErrorCode::kInvalidArgument);
}

// --- Checksum policies -------------------------------------------------------------------------

TEST(ChecksumPolicy, NamesParseBackAndOthersAreRefused) {
  for (auto p : {ChecksumPolicy::kVerify, ChecksumPolicy::kAll, ChecksumPolicy::kNone}) {
    EXPECT_EQ(ParseChecksumPolicy(ChecksumPolicyName(p)), p);
  }
  EXPECT_FALSE(ParseChecksumPolicy("sha256"));
  EXPECT_FALSE(ParseChecksumPolicy(""));
  EXPECT_EQ(ServerConfig{}.checksums, ChecksumPolicy::kVerify) << "verify is the default";
}

TEST_F(ImageServerTest, VerifyPolicyComputesOnlyTheSha512LonghornCompares) {
  StartServer();  // the default
  const auto image = Corpus("sparse.vmdk-streamOptimized");
  auto pub = server_->Publish(FileFactory(image.path), {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url);
  ASSERT_FALSE(f.error) << f.error->ToString();
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->checksum_policy, ChecksumPolicy::kVerify);
  ASSERT_TRUE(result->checksums);
  EXPECT_EQ(result->checksums->sha512, f.sha512);
  EXPECT_EQ(result->checksums->sha256, "") << "nobody compares a SHA-256: not computed";
  EXPECT_EQ(result->checksums->bytes, image.size);
}

TEST_F(ImageServerTest, NonePolicyComputesNothingAndAPublishCanOverrideTheDefault) {
  StartServer({.checksums = ChecksumPolicy::kNone});
  const auto image = Corpus("sparse.vmdk-streamOptimized");
  auto none = server_->Publish(FileFactory(image.path), {.name = "none"});
  auto all =
      server_->Publish(FileFactory(image.path), {.name = "all", .checksums = ChecksumPolicy::kAll});
  ASSERT_TRUE(none && all);
  ExpectNothingHashedThenBoth(image, none->url, all->url);
}

// A consumer that checks the source's own digest of these bytes (Longhorn with Glance's SHA-512 as
// spec.checksum): the default policy "verify" computes nothing for it; "all" still computes both.
TEST_F(ImageServerTest, VerifyComputesNothingWhenTheConsumerChecksTheSourcesDigest) {
  StartServer();
  const auto image = Corpus("sparse.vmdk-streamOptimized");
  auto checked = server_->Publish(FileFactory(image.path),
                                  {.name = "checked", .consumer_checks_source_digest = true});
  auto all = server_->Publish(
      FileFactory(image.path),
      {.name = "all", .checksums = ChecksumPolicy::kAll, .consumer_checks_source_digest = true});
  ASSERT_TRUE(checked && all);
  ExpectNothingHashedThenBoth(image, checked->url, all->url);
}

// --- What the consumers send --------------------------------------------------------------------

// Longhorn's backing-image-manager (pkg/util/http_util.go, GetSizeFromURL then DownloadFromURL):
// a HEAD with Go's default client (it wants 200 and reads Content-Length), then one GET without
// Range (Go adds Accept-Encoding: gzip), wanting 200, reading to EOF; it then computes SHA-512 of
// the file, which must be the served SHA-512 the verify policy reports.
TEST_F(ImageServerTest, LonghornDownloaderRequestsGetTheSizeThenTheWholeDisk) {
  StartServer();
  const auto image = Corpus("text.vmdk-streamOptimized");
  auto pub = server_->Publish(FileFactory(image.path), {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched head = Get(pub->url, {{"User-Agent", "Go-http-client/1.1"}}, false, nullptr, "HEAD");
  ASSERT_FALSE(head.error) << head.error->ToString();
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(Header(head, "content-length"), std::to_string(image.size));
  Fetched get = Get(pub->url, {{"User-Agent", "Go-http-client/1.1"}, {"Accept-Encoding", "gzip"}});
  ASSERT_FALSE(get.error) << get.error->ToString();
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(Header(get, "content-encoding"), "") << "Go would gunzip; we never compress";
  EXPECT_EQ(Header(get, "content-length"), std::to_string(image.size));
  EXPECT_EQ(get.bytes, image.size);
  EXPECT_EQ(get.sha256, image.sha256);
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result && result->checksums);
  EXPECT_EQ(result->checksums->sha512, get.sha512);
}

// Issue 20 (Longhorn's real downloader in the world): its HEAD then GET must read the source
// once. The HEAD's reader (opened to learn the size) serves the GET; before, the source's first
// bytes were read twice (the NFC stream's first 4 MiB, an OVA's ranges).
TEST_F(ImageServerTest, HeadThenGetOpensTheSourceOnce) {
  StartServer({.checksums = ChecksumPolicy::kAll});
  const auto image = Corpus("text.vmdk-streamOptimized");
  std::atomic<int> opens{0};
  auto pub = server_->Publish(FileFactory(image.path, &opens), {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched head = Get(pub->url, {}, false, nullptr, "HEAD");
  ASSERT_EQ(head.status, 200);
  EXPECT_EQ(opens.load(), 1);
  Fetched get = Get(pub->url);
  ASSERT_FALSE(get.error) << get.error->ToString();
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.sha256, image.sha256);
  EXPECT_EQ(opens.load(), 1) << "the GET opened the source again";
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result && result->checksums);
  EXPECT_EQ(result->outcome, StreamOutcome::kCompleted);
  EXPECT_EQ(result->checksums->sha256, image.sha256);
  // A later HEAD knows the size; a later GET opens afresh.
  EXPECT_EQ(Get(pub->url, {}, false, nullptr, "HEAD").status, 200);
  EXPECT_EQ(Get(pub->url).sha256, image.sha256);
  EXPECT_EQ(opens.load(), 2);
}

TEST_F(ImageServerTest, AReaderAHeadOpenedIsNotUsedPastItsTtl) {
  StartServer({}, &fake_clock_);
  const auto image = Corpus("text.vmdk-streamOptimized");
  std::atomic<int> opens{0};
  auto pub = server_->Publish(FileFactory(image.path, &opens), {.name = "d"});
  ASSERT_TRUE(pub);
  ASSERT_EQ(Get(pub->url, {}, false, nullptr, "HEAD").status, 200);
  fake_clock_.Advance(kProbedReaderTtl + 1s);
  Fetched get = Get(pub->url);
  EXPECT_EQ(get.sha256, image.sha256);
  EXPECT_EQ(opens.load(), 2);
}

// A consumer that HEADs first never GETs after an error answer: the HEAD reports why, like a GET
// that could not start, so that the import can say CorruptDisk instead of Harvester's "500".
TEST_F(ImageServerTest, AHeadThatCannotOpenTheSourceReportsWhy) {
  StartServer();
  auto pub = server_->Publish(
      [](std::stop_token) -> core::Result<disk::DiskReaderPtr> {
        return core::MakeError(ErrorCode::kCorruptData, "vmdk: bad magic");
      },
      {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched head = Get(pub->url, {}, false, nullptr, "HEAD");
  EXPECT_EQ(head.status, 500);
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kSourceError);
  ASSERT_TRUE(result->error);
  EXPECT_EQ(result->error->code, ErrorCode::kCorruptData);
  EXPECT_EQ(result->info.disk_name, "d");
}

// CDI's HTTP importer (pkg/importer/http-datasource.go): a HEAD for Content-Length (User-Agent
// cdi-golang-importer), then a GET without Range wanting 200. It reads Accept-Ranges of that GET:
// absent or "none" keeps qemu-img (which would read the URL with ranges) away and streams the
// body through scratch space. A staged disk says "bytes": qemu-img's ranged reads are served.
TEST_F(ImageServerTest, CdiImporterRequestsAreToldWhetherRangesWork) {
  StartServer();
  const auto image = Corpus("sparse.qcow2-v3");
  const auto raw = RawOf(image);
  const http::Headers cdi = {{"User-Agent", "cdi-golang-importer"}};
  auto streaming = server_->Publish(FileFactory(image.path), {.name = "s"});
  auto staged =
      server_->Publish(FileFactory(image.path), {.name = "t", .mode = PublishMode::kStaged});
  ASSERT_TRUE(streaming && staged);
  Fetched head = Get(streaming->url, cdi, false, nullptr, "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(Header(head, "content-length"), std::to_string(image.size));
  Fetched get =
      Get(streaming->url, {{"User-Agent", "cdi-golang-importer"}, {"Accept-Encoding", "gzip"}});
  ASSERT_FALSE(get.error) << get.error->ToString();
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(Header(get, "accept-ranges"), "none");
  EXPECT_EQ(get.sha256, image.sha256);

  Fetched staged_get = Get(staged->url, cdi);
  EXPECT_EQ(staged_get.status, 200);
  EXPECT_EQ(Header(staged_get, "accept-ranges"), "bytes");
  // qemu-img's curl driver reads 256 KiB ranges wherever the image needs them.
  const uint64_t at = (uint64_t{17} << 20) + 12345;
  Fetched part = Get(staged->url,
                     {{"User-Agent", "cdi-golang-importer"},
                      {"Range", "bytes=" + std::to_string(at) + "-" + std::to_string(at + 262143)}},
                     true);
  EXPECT_EQ(part.status, 206);
  ASSERT_EQ(part.body.size(), 262144u);
  EXPECT_TRUE(
      std::equal(part.body.begin(), part.body.end(), raw.begin() + static_cast<ptrdiff_t>(at)));
}

// --- Source digests -----------------------------------------------------------------------------

// A reader of `bytes` pattern bytes whose source declared a digest: `fail_at_end` fails the read
// that would hand out the last bytes with kCorruptData (what source::OpenDiskReader does when the
// source's digest did not match); otherwise its SourceDigests() reports the match.
class DigestReader final : public disk::DiskReader {
 public:
  DigestReader(uint64_t size, bool fail_at_end) : size_(size), fail_at_end_(fail_at_end) {}
  uint64_t VirtualSize() const override { return size_; }
  core::Result<size_t> Read(std::stop_token, std::span<std::byte> out) override {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), size_ - pos_));
    if (n > 0 && pos_ + n == size_ && fail_at_end_) {
      return core::MakeError(ErrorCode::kCorruptData, "sha256 of the source does not match");
    }
    std::memset(out.data(), 0x5a, n);
    pos_ += n;
    return n;
  }
  std::string_view FormatName() const override { return "raw"; }
  std::vector<disk::VerifiedDigest> SourceDigests() const override {
    if (pos_ < size_ || fail_at_end_) {
      return {};
    }
    return {{.algorithm = "sha256", .hex = "ab", .verifier = "vsphere-manifest", .bytes = 7}};
  }

 private:
  uint64_t size_;
  bool fail_at_end_;
  uint64_t pos_ = 0;
};

TEST_F(ImageServerTest, SourceDigestsThatMatchedAreReportedWithTheStream) {
  StartServer();
  const uint64_t size = uint64_t{3} << 20;
  auto pub = server_->Publish(
      [size](std::stop_token) -> core::Result<disk::DiskReaderPtr> {
        return disk::DiskReaderPtr(std::make_unique<DigestReader>(size, false));
      },
      {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url);
  ASSERT_FALSE(f.error);
  EXPECT_EQ(f.bytes, size);
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kCompleted);
  ASSERT_EQ(result->source_digests.size(), 1u);
  EXPECT_EQ(result->source_digests[0].verifier, "vsphere-manifest");
}

// The consumer of a disk whose source bytes did not match its digest must see a failed download:
// the connection ends before Content-Length bytes came, so Longhorn and CDI fail the image.
TEST_F(ImageServerTest, SourceDigestMismatchCutsTheResponseBeforeItsLastBytes) {
  StartServer();
  const uint64_t size = uint64_t{3} << 20;
  auto pub = server_->Publish(
      [size](std::stop_token) -> core::Result<disk::DiskReaderPtr> {
        return disk::DiskReaderPtr(std::make_unique<DigestReader>(size, true));
      },
      {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url);
  EXPECT_EQ(f.status, 200);
  EXPECT_TRUE(f.error) << "the body must not look complete";
  EXPECT_LT(f.bytes, size);
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kSourceError);
  ASSERT_TRUE(result->error);
  EXPECT_EQ(result->error->code, ErrorCode::kCorruptData);
  EXPECT_FALSE(result->checksums);
  EXPECT_TRUE(result->source_digests.empty());
}

//! zlib's gzip decoder: the decoded bytes, and whether the member ended with a good trailer.
std::pair<std::vector<std::byte>, bool> Gunzip(const std::vector<std::byte>& in) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 16 + 15), Z_OK);
  std::vector<std::byte> out;
  std::vector<std::byte> chunk(1 << 20);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(chunk.data());
    z.avail_out = static_cast<uInt>(chunk.size());
    rc = inflate(&z, Z_NO_FLUSH);
    out.insert(out.end(), chunk.begin(),
               chunk.begin() + static_cast<std::ptrdiff_t>(chunk.size() - z.avail_out));
  }
  inflateEnd(&z);
  return {out, rc == Z_STREAM_END};
}

TEST_F(ImageServerTest, SparseGzipBodyDecodesToTheDiskAndCarriesZerosCheaply) {
  StartServer({.checksums = ChecksumPolicy::kAll});
  const auto image = Corpus("sparse.vmdk-streamOptimized");
  auto pub =
      server_->Publish(FileFactory(image.path), {.name = "d", .encoding = Encoding::kSparseGzip});
  ASSERT_TRUE(pub) << pub.error().ToString();
  Fetched head = Get(pub->url, {}, false, nullptr, "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(Header(head, "content-type"), "application/gzip");
  EXPECT_EQ(Header(head, "content-length"), "");
  // A Range is ignored: the whole member.
  Fetched f = Get(pub->url, {{"Range", "bytes=100-"}}, /*keep_body=*/true);
  ASSERT_FALSE(f.error) << f.error->ToString();
  EXPECT_EQ(f.status, 200);
  EXPECT_EQ(Header(f, "content-type"), "application/gzip");
  EXPECT_EQ(Header(f, "accept-ranges"), "none");
  const auto [raw, whole] = Gunzip(f.body);
  EXPECT_TRUE(whole);
  EXPECT_EQ(raw, RawOf(image));
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kCompleted);
  EXPECT_EQ(result->bytes, image.size);
  EXPECT_EQ(result->wire_bytes, f.bytes);
  EXPECT_LT(result->wire_bytes, image.size / 2) << "a sparse disk must cost less than its size";
  ASSERT_TRUE(result->checksums);
  EXPECT_EQ(result->checksums->sha256, image.sha256);  // of the raw disk, not of the wire
}

TEST_F(ImageServerTest, SparseGzipOfATamperedSourceNeverDecodesWhole) {
  StartServer();
  const uint64_t size = uint64_t{3} << 20;
  auto pub = server_->Publish(
      [size](std::stop_token) -> core::Result<disk::DiskReaderPtr> {
        return disk::DiskReaderPtr(std::make_unique<DigestReader>(size, true));
      },
      {.name = "d", .encoding = Encoding::kSparseGzip});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url, {}, /*keep_body=*/true);
  EXPECT_TRUE(f.error) << "the chunked body must not end cleanly";
  EXPECT_FALSE(Gunzip(f.body).second) << "no gzip trailer may follow a digest mismatch";
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kSourceError);
}

TEST_F(ImageServerTest, StagedDisksAreServedRawOnly) {
  StartServer();
  auto pub = server_->Publish(
      FileFactory(Corpus("sparse.vmdk-streamOptimized").path),
      {.name = "d", .mode = PublishMode::kStaged, .encoding = Encoding::kSparseGzip});
  ASSERT_FALSE(pub);
  EXPECT_EQ(pub.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace vmimport::imageserver
