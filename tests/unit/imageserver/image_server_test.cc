// The image server over real HTTP on 127.0.0.1 (port 0), driven with the project's libcurl
// client: whole streams with checksums, HEAD, 404s, Unpublish mid-stream, the stream limit,
// concurrent GETs, Range (streaming and staged), source errors and dropped consumers.

#include "imageserver/image_server.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

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
  std::ifstream manifest(std::string(VMIMPORT_DISK_CORPUS) + "/manifest.tsv");
  std::string n, rel, sha;
  uint64_t size = 0;
  while (manifest >> n >> rel >> sha >> size) {
    if (n == name) {
      return {std::string(VMIMPORT_DISK_CORPUS) + "/" + rel, sha, size};
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
  void StartServer(ServerConfig config = {}) {
    if (config.staging_dir.empty()) {
      char templ[] = "/tmp/vmimport-staging-XXXXXX";
      ASSERT_NE(mkdtemp(templ), nullptr);
      staging_dir_ = templ;
      config.staging_dir = staging_dir_;
    }
    config.progress_interval = 0ms;
    auto server = ImageServer::Start(config, &observer_, clock_, core::Logger());
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
  RecordingObserver observer_;
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
  StartServer();
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
  EXPECT_EQ(r0->checksums->sha256, image.sha256);
  EXPECT_EQ(r1->checksums->sha256, image.sha256);
}

TEST_F(ImageServerTest, RangeOnAStreamingDiskIsServedBySkipping) {
  StartServer();
  const auto image = Corpus("text.qcow2-zlib");
  const auto raw = RawOf(image);
  auto pub = server_->Publish(FileFactory(image.path), {.name = "d"});
  ASSERT_TRUE(pub);
  Fetched f = Get(pub->url, {{"Range", "bytes=1000000-1065535"}}, true);
  ASSERT_FALSE(f.error) << f.error->ToString();
  EXPECT_EQ(f.status, 206);
  ASSERT_EQ(f.body.size(), 65536u);
  EXPECT_TRUE(std::equal(f.body.begin(), f.body.end(), raw.begin() + 1000000));
  auto result = observer_.Finished(0);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, StreamOutcome::kCompleted);
  EXPECT_FALSE(result->checksums) << "a range does not checksum the disk";
}

TEST_F(ImageServerTest, StagedDiskIsWrittenOnceAndServedWithRanges) {
  StartServer();
  const auto image = Corpus("sparse.qcow2-v3");
  const auto raw = RawOf(image);
  std::atomic<int> opens{0};
  auto pub = server_->Publish(FileFactory(image.path, &opens),
                              {.name = "staged", .mode = PublishMode::kStaged});
  ASSERT_TRUE(pub) << pub.error().ToString();
  // A request that arrives during staging waits for it.
  Fetched whole = Get(pub->url);
  ASSERT_FALSE(whole.error) << whole.error->ToString();
  EXPECT_EQ(whole.status, 200);
  EXPECT_EQ(whole.sha256, image.sha256);
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

}  // namespace
}  // namespace vmimport::imageserver
