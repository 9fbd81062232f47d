// Longhorn's real downloader as harvester-sim runs it (DataSource): backing-image-manager v1.8.1's
// data-source in a private mount namespace, chrooted, against a local HTTP server. Needs the
// world's VMIMPORT_BIM_BINARY (tools/world.sh up) and root.
//
// With VMIMPORT_BIM_MEASURE_MIB=N, the measuring test downloads N MiB (default 64) both ways and
// prints the figures README quotes.

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "http/local_server.h"
#include "world/harvester_sim/data_source.h"
#include "world/tcp_proxy.h"
#include "world/world_env.h"

namespace vmimport::harvester_sim {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string Sha512Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha512(), nullptr);
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kDigits[md[i] >> 4];
    out += kDigits[md[i] & 15];
  }
  return out;
}

std::string RandomBytes(size_t n) {
  std::mt19937_64 rng(42);
  std::string out(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  return out;
}

bool MountedUnder(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(dir) != std::string::npos) {
      return true;
    }
  }
  return false;
}

class DataSourceWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = testing::WorldVar("VMIMPORT_BIM_BINARY");
    ASSERT_FALSE(binary_.empty());
    auto http = http::Client::Create({});
    ASSERT_TRUE(http);
    http_ = std::move(*http);
    dir_ = fs::temp_directory_path() /
           ("vmimport-bim-" + std::to_string(std::random_device{}() % 1000000));
    fs::create_directories(dir_);
    server_.server().Get("/disk", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(body_, "application/octet-stream");
    });
  }
  void TearDown() override { fs::remove_all(dir_); }

  DataSourceOptions Options(const std::string& name, const std::string& url) {
    return {.binary = binary_,
            .work_dir = (dir_ / name).string(),
            .name = name,
            .uuid = "u1",
            .url = url,
            .checksum = "",
            .capacity_bytes = 0};
  }

  // Polls until ready-for-transfer or failed (or `limit`).
  DataSourceFileInfo WaitDone(DataSource& ds, std::chrono::seconds limit = 60s,
                              uint64_t* peak_rss = nullptr) {
    DataSourceFileInfo last;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto info = ds.Get()) {
        if (peak_rss != nullptr) {  // once it answers: before its exec, the child is our copy
          *peak_rss = std::max(*peak_rss, ds.RssBytes());
        }
        last = *info;
        if (last.state == "ready-for-transfer" || last.state == "failed") {
          return last;
        }
      } else if (ds.Exited()) {
        ADD_FAILURE() << "backing-image-manager exited: " << ds.LogTail();
        return last;
      }
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "no final state; last " << last.state << "; log: " << ds.LogTail();
    return last;
  }

  void ExpectGone(DataSource& ds, const std::string& work_dir) {
    const pid_t pid = ds.pid();
    ds.Stop();
    EXPECT_NE(::kill(pid, 0), 0) << "pid " << pid << " still runs";
    EXPECT_FALSE(fs::exists(work_dir));
    EXPECT_FALSE(MountedUnder(work_dir));
  }

  std::string binary_;
  std::unique_ptr<http::Client> http_;
  fs::path dir_;
  std::string body_;
  testing::LocalServer server_;
};

TEST_F(DataSourceWorldTest, DownloadsVerifiesAndReportsTheSha512ItComputed) {
  body_ = RandomBytes(8 << 20);
  const std::string sum = Sha512Hex(body_);
  DataSourceOptions o = Options("ok", server_.Url("/disk"));
  o.checksum = sum;
  auto ds = DataSource::Start(o, *http_);
  ASSERT_TRUE(ds) << ds.error().ToString();
  const DataSourceFileInfo info = WaitDone(**ds);
  ASSERT_EQ(info.state, "ready-for-transfer") << info.message << (*ds)->LogTail();
  EXPECT_EQ(info.current_checksum, sum);
  EXPECT_EQ(info.progress, 100);
  EXPECT_EQ(info.size, int64_t{8} << 20);
  EXPECT_EQ(info.virtual_size, int64_t{8} << 20);  // qemu-img info, in the root
  EXPECT_EQ(info.file_path, "/data/tmp/ok-u1");
  std::ifstream in((*ds)->HostPath(info.file_path), std::ios::binary);
  std::stringstream stored;
  stored << in.rdbuf();
  EXPECT_EQ(Sha512Hex(stored.str()), sum);
  ASSERT_TRUE((*ds)->Transfer());
  auto after = (*ds)->Get();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->state, "ready");
  ExpectGone(**ds, o.work_dir);
}

TEST_F(DataSourceWorldTest, AWrongChecksumFailsWithLonghornsMessage) {
  body_ = RandomBytes(1 << 20);
  DataSourceOptions o = Options("wrong", server_.Url("/disk"));
  o.checksum = std::string(128, 'a');
  auto ds = DataSource::Start(o, *http_);
  ASSERT_TRUE(ds) << ds.error().ToString();
  const DataSourceFileInfo info = WaitDone(**ds);
  EXPECT_EQ(info.state, "failed");
  EXPECT_NE(info.message.find("doesn't match the file actual checksum " + Sha512Hex(body_)),
            std::string::npos)
      << info.message;
  ExpectGone(**ds, o.work_dir);
}

TEST_F(DataSourceWorldTest, ANotFoundUrlFails) {
  DataSourceOptions o = Options("missing", server_.Url("/nothing-here"));
  auto ds = DataSource::Start(o, *http_);
  ASSERT_TRUE(ds) << ds.error().ToString();
  const DataSourceFileInfo info = WaitDone(**ds);
  EXPECT_EQ(info.state, "failed");
  EXPECT_NE(info.message.find("404"), std::string::npos) << info.message;
  ExpectGone(**ds, o.work_dir);
}

TEST_F(DataSourceWorldTest, ADiskThatOutgrowsTheCapacityFailsWithNoSpaceLeft) {
  body_ = RandomBytes(4 << 20);
  DataSourceOptions o = Options("full", server_.Url("/disk"));
  o.capacity_bytes = 1 << 20;
  auto ds = DataSource::Start(o, *http_);
  ASSERT_TRUE(ds) << ds.error().ToString();
  const DataSourceFileInfo info = WaitDone(**ds);
  EXPECT_EQ(info.state, "failed");
  EXPECT_NE(info.message.find("no space left on device"), std::string::npos) << info.message;
  ExpectGone(**ds, o.work_dir);
}

TEST_F(DataSourceWorldTest, ACutDownloadFailsAndStopEndsASlowOne) {
  body_ = RandomBytes(4 << 20);
  const int port = std::stoi(server_.Url("").substr(std::string("http://127.0.0.1:").size()));
  testing::TcpProxy relay("127.0.0.1", port);
  relay.CutAfter(1 << 20, 1);
  const std::string via = "http://127.0.0.1:" + std::to_string(relay.port()) + "/disk";
  {
    DataSourceOptions o = Options("cut", via);
    auto ds = DataSource::Start(o, *http_);
    ASSERT_TRUE(ds) << ds.error().ToString();
    const DataSourceFileInfo info = WaitDone(**ds);
    EXPECT_EQ(info.state, "failed");
    EXPECT_NE(info.message.find("unexpected EOF"), std::string::npos) << info.message;
    EXPECT_EQ(relay.cuts_done(), 1);
    ExpectGone(**ds, o.work_dir);
  }
  relay.LimitRate(512 << 10);  // 4 MiB at 512 KiB/s: 8 s
  DataSourceOptions o = Options("slow", via);
  auto ds = DataSource::Start(o, *http_);
  ASSERT_TRUE(ds) << ds.error().ToString();
  EXPECT_TRUE(testing::Eventually(
      [&] {
        auto info = (*ds)->Get();
        return info && info->state == "in-progress" && info->progress > 0;
      },
      20s, 100ms))
      << (*ds)->LogTail();
  ExpectGone(**ds, o.work_dir);
}

// The figures for README: Longhorn's path (download to a file, SHA-512 of the file, qemu-img
// info, then the sim reading the file back for its own sha256/sha512) against the old sim's
// (one streamed download hashed on the fly with sha256 and sha512).
TEST_F(DataSourceWorldTest, MeasureAgainstTheOldDownload) {
  const char* mib_env = std::getenv("VMIMPORT_BIM_MEASURE_MIB");
  const size_t mib = mib_env != nullptr ? std::strtoul(mib_env, nullptr, 10) : 64;
  body_ = RandomBytes(mib << 20);
  DataSourceOptions o = Options("measure", server_.Url("/disk"));
  o.checksum = Sha512Hex(body_);
  const auto t0 = std::chrono::steady_clock::now();
  auto ds = DataSource::Start(o, *http_);
  ASSERT_TRUE(ds) << ds.error().ToString();
  uint64_t peak = 0;
  const DataSourceFileInfo info = WaitDone(**ds, 600s, &peak);
  ASSERT_EQ(info.state, "ready-for-transfer") << info.message;
  const double bim_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // The sim's read-back (sha256 + sha512 of the stored file).
  const auto t1 = std::chrono::steady_clock::now();
  {
    std::ifstream in((*ds)->HostPath(info.file_path), std::ios::binary);
    EVP_MD_CTX* a = EVP_MD_CTX_new();
    EVP_MD_CTX* b = EVP_MD_CTX_new();
    EVP_DigestInit_ex(a, EVP_sha256(), nullptr);
    EVP_DigestInit_ex(b, EVP_sha512(), nullptr);
    std::vector<char> buf(1 << 20);
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
      EVP_DigestUpdate(a, buf.data(), static_cast<size_t>(in.gcount()));
      EVP_DigestUpdate(b, buf.data(), static_cast<size_t>(in.gcount()));
    }
    EVP_MD_CTX_free(a);
    EVP_MD_CTX_free(b);
  }
  const double readback_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  ExpectGone(**ds, o.work_dir);
  // The old path: curl streaming, sha256 and sha512 on the fly.
  const auto t2 = std::chrono::steady_clock::now();
  EVP_MD_CTX* a = EVP_MD_CTX_new();
  EVP_MD_CTX* b = EVP_MD_CTX_new();
  EVP_DigestInit_ex(a, EVP_sha256(), nullptr);
  EVP_DigestInit_ex(b, EVP_sha512(), nullptr);
  uint64_t got = 0;
  auto res = http_->Stream(
      {}, {.url = server_.Url("/disk"), .timeout = 0ms}, [](const http::Response&) { return true; },
      [&](std::string_view chunk) {
        EVP_DigestUpdate(a, chunk.data(), chunk.size());
        EVP_DigestUpdate(b, chunk.data(), chunk.size());
        got += chunk.size();
        return true;
      });
  EVP_MD_CTX_free(a);
  EVP_MD_CTX_free(b);
  const double old_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
  ASSERT_TRUE(res);
  EXPECT_EQ(got, body_.size());
  std::cout << "measure: mib=" << mib << " bim_ready_s=" << bim_s
            << " sim_readback_s=" << readback_s << " old_download_s=" << old_s
            << " bim_peak_rss_mib=" << (peak >> 20) << "\n";
}

}  // namespace
}  // namespace vmimport::harvester_sim
