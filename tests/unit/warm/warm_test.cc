// Warm migration apart from Kubernetes: the extent protocol, the writer over real TCP on
// 127.0.0.1 (port 0) into files of a temp dir, precopy rounds from a fake ChangeTracker over local
// files, resume after a failure at every step, cancel, the estimate and the cutover rule.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "core/clock.h"
#include "core/log.h"
#include "warm/extent_protocol.h"
#include "warm/fake_change_tracker.h"
#include "warm/precopy.h"
#include "warm/writer.h"
#include "warm/writer_client.h"

namespace vmimport::warm {
namespace {

namespace fs = std::filesystem;
using testing::FakeChangeTracker;

constexpr uint64_t kDiskSize = 1u << 20;
const std::string kToken = "0123456789abcdef0123456789abcdef";

std::vector<std::byte> Pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) {
    b = std::byte(rng() & 0xff);
  }
  return out;
}

std::vector<std::byte> ReadFile(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<std::byte> out(fs::file_size(p));
  f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
  return out;
}

core::Logger QuietLog() {
  return core::Logger(std::make_shared<core::StderrSink>(), core::LogLevel::kError,
                      core::LogFormat::kLogfmt);
}

// Two source disks, two target files, a writer serving on 127.0.0.1:<any>.
class WarmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("warm-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    tracker_ = std::make_unique<FakeChangeTracker>(
        std::vector<std::string>{(dir_ / "src0").string(), (dir_ / "src1").string()}, kDiskSize);
    StartWriter();
  }
  void TearDown() override {
    StopWriter();
    fs::remove_all(dir_);
  }
  void StartWriter() {
    WriterOptions opt;
    opt.token = kToken;
    opt.disks = {{(dir_ / "dst0").string(), kDiskSize}, {(dir_ / "dst1").string(), kDiskSize}};
    auto w = Writer::Open(opt, QuietLog());
    ASSERT_TRUE(w) << w.error().ToString();
    writer_ = std::move(*w);
    port_ = 0;
    server_ = std::jthread([this](std::stop_token stop) {
      auto ok = ServeWriter(stop, *writer_, "127.0.0.1", 0, port_, QuietLog());
      EXPECT_TRUE(ok) << ok.error().ToString();
    });
    while (port_.load() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  void StopWriter() {
    server_ = std::jthread();
    writer_.reset();
  }
  std::unique_ptr<WriterClient> Client() {
    auto c = WriterClient::Connect("127.0.0.1", port_.load(), kToken, std::chrono::seconds(10));
    EXPECT_TRUE(c) << c.error().ToString();
    return c ? std::move(*c) : nullptr;
  }
  // The guest writes a few 4 KiB pieces at places that depend on `seed`.
  void GuestWrites(uint32_t seed) {
    std::mt19937 rng(seed);
    for (int i = 0; i < 6; ++i) {
      const uint64_t offset = (rng() % (kDiskSize / 4096)) * 4096;
      tracker_->Write(rng() % 2, offset, Pattern(4096, seed * 31 + static_cast<uint32_t>(i)));
    }
  }
  void ExpectTargetsEqualSources() {
    EXPECT_EQ(ReadFile(dir_ / "dst0"), tracker_->Contents(0));
    EXPECT_EQ(ReadFile(dir_ / "dst1"), tracker_->Contents(1));
  }

  fs::path dir_;
  std::unique_ptr<FakeChangeTracker> tracker_;
  std::unique_ptr<Writer> writer_;
  std::atomic<uint16_t> port_{0};
  std::jthread server_;
  core::SystemClock clock_;
};

TEST(ExtentProtocol, HeaderRoundTripsAndBadHeadersAreRefused) {
  FrameHeader h;
  h.type = FrameType::kExtent;
  h.disk = 3;
  h.payload_length = 4096;
  h.a = 1ULL << 40;
  h.b = 4096;
  h.sha256 = Sha256(std::as_bytes(std::span("abc", 3)));
  auto raw = EncodeFrameHeader(h);
  auto back = DecodeFrameHeader(raw);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->disk, 3u);
  EXPECT_EQ(back->a, 1ULL << 40);
  EXPECT_EQ(back->sha256, h.sha256);

  auto bad = raw;
  bad[0] = std::byte{0};
  EXPECT_EQ(DecodeFrameHeader(bad).error().code, core::ErrorCode::kCorruptData);
  h.payload_length = kMaxPayload + 1;
  EXPECT_NE(DecodeFrameHeader(EncodeFrameHeader(h)).error().message.find("over the limit"),
            std::string::npos);
  h.payload_length = 1;
  h.flags = kFlagZero;
  EXPECT_NE(DecodeFrameHeader(EncodeFrameHeader(h)).error().message.find("zero extent"),
            std::string::npos);
  h.type = FrameType::kAck;
  h.flags = 0;
  h.payload_length = 0;
  raw = EncodeFrameHeader(h);
  raw[4] = std::byte{9};
  EXPECT_NE(DecodeFrameHeader(raw).error().message.find("unknown frame type"), std::string::npos);
}

TEST_F(WarmTest, WriterWritesARoundAndAcknowledgesItAfterCommit) {
  auto c = Client();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->WriterLastRound(), -1);
  const auto data = Pattern(8192, 1);
  ASSERT_TRUE(c->Begin(0));
  ASSERT_TRUE(c->Extent(1, 65536, data.size(), false, data));
  ASSERT_TRUE(c->Extent(0, 0, 4096, true, {}));
  auto bytes = c->Commit(0);
  ASSERT_TRUE(bytes) << bytes.error().ToString();
  EXPECT_EQ(*bytes, 8192u + 4096u);
  EXPECT_EQ(writer_->LastCommittedRound(), 0);
  auto dst = ReadFile(dir_ / "dst1");
  EXPECT_EQ(dst.size(), kDiskSize);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), dst.begin() + 65536));
  // A new session learns the round the writer committed last.
  c.reset();
  auto again = Client();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->WriterLastRound(), 0);
}

TEST_F(WarmTest, WriterRefusesAWrongTokenAChecksumMismatchAndAnExtentPastTheEnd) {
  auto wrong =
      WriterClient::Connect("127.0.0.1", port_.load(), "not-the-token", std::chrono::seconds(10));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, core::ErrorCode::kUnauthenticated);

  // A frame whose bytes do not match its sha256: no ack, the writer says why.
  auto c = Client();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Begin(0));
  const auto data = Pattern(4096, 2);
  ASSERT_TRUE(c->Extent(0, 0, data.size(), false, data));
  // Past the end of the disk.
  ASSERT_TRUE(c->Extent(0, kDiskSize - 4096, 8192, true, {}));
  auto ack = c->Commit(0);
  ASSERT_FALSE(ack);
  EXPECT_NE(ack.error().message.find("past the end of disk 0"), std::string::npos)
      << ack.error().message;
  EXPECT_EQ(writer_->LastCommittedRound(), -1);

  disk::UniqueFd fd(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_.load());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  FrameConnection raw(fd.get());
  FrameHeader hello;
  hello.type = FrameType::kHello;
  ASSERT_TRUE(raw.Send(hello, std::as_bytes(std::span(kToken.data(), kToken.size()))));
  std::vector<std::byte> payload;
  ASSERT_TRUE(raw.Receive(payload));
  FrameHeader begin;
  begin.type = FrameType::kRoundBegin;
  ASSERT_TRUE(raw.Send(begin, {}));
  FrameHeader extent;
  extent.type = FrameType::kExtent;
  extent.b = data.size();
  extent.sha256 = Sha256(Pattern(4096, 3));  // not the sha256 of `data`
  ASSERT_TRUE(raw.Send(extent, data));
  auto reply = raw.Receive(payload);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->type, FrameType::kError);
  EXPECT_NE(std::string(reinterpret_cast<const char*>(payload.data()), payload.size())
                .find("sha256 mismatch"),
            std::string::npos);
}

TEST(Writer, ATargetWithoutASizeMustExistAndIsNeverMade) {
  const fs::path missing =
      fs::temp_directory_path() / ("warm-no-device-" + std::to_string(getpid()));
  WriterOptions opt;
  opt.token = kToken;
  opt.disks = {{missing.string(), 0}};
  auto w = Writer::Open(opt, QuietLog());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, core::ErrorCode::kNotFound) << w.error().ToString();
  EXPECT_FALSE(fs::exists(missing));
  opt.token.clear();
  EXPECT_EQ(Writer::Open(opt, QuietLog()).error().code, core::ErrorCode::kInvalidArgument);
}

TEST_F(WarmTest, ARoundCutShortIsSentAgainWholeOnANewConnection) {
  const auto first = Pattern(65536, 4);
  {
    auto c = Client();
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->Begin(0));
    ASSERT_TRUE(c->Extent(0, 0, first.size(), false, first));
  }  // closed before its commit: the round did not happen
  auto c = Client();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->WriterLastRound(), -1);
  const auto second = Pattern(65536, 5);
  ASSERT_TRUE(c->Begin(0));
  ASSERT_TRUE(c->Extent(0, 0, second.size(), false, second));
  ASSERT_TRUE(c->Commit(0));
  auto dst = ReadFile(dir_ / "dst0");
  EXPECT_TRUE(std::equal(second.begin(), second.end(), dst.begin()));
}

TEST_F(WarmTest, AnOlderSessionsExtentsAreRefusedOnceANewerOneStarted) {
  auto old_session = Client();
  ASSERT_TRUE(old_session);
  auto new_session = Client();
  ASSERT_TRUE(new_session);
  const auto data = Pattern(4096, 6);
  ASSERT_TRUE(old_session->Begin(0));
  ASSERT_TRUE(old_session->Extent(0, 0, data.size(), false, data));
  auto ack = old_session->Commit(0);
  ASSERT_FALSE(ack);
  EXPECT_NE(ack.error().message.find("newer session"), std::string::npos) << ack.error().message;
  EXPECT_EQ(ReadFile(dir_ / "dst0"), std::vector<std::byte>(kDiskSize));
}

TEST_F(WarmTest, PrecopyRoundsThenCutoverLeaveTheTargetsEqualToTheSourcesAndNoCheckpoint) {
  tracker_->Write(0, 0, Pattern(300 * 1024, 7));
  tracker_->Write(1, 512 * 1024, Pattern(200 * 1024, 8));
  std::vector<RoundRecord> recorded;
  auto c = Client();
  ASSERT_TRUE(c);
  for (int round = 0; round < 4; ++round) {
    auto r = NextRound({}, *tracker_, "vm", "uid1", recorded, *c, clock_);
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(r->number, round);
    recorded.push_back(*r);
    GuestWrites(100 + static_cast<uint32_t>(round));
  }
  EXPECT_EQ(recorded[0].bytes_changed, 2 * kDiskSize);
  EXPECT_EQ(recorded[0].bytes_moved, 2 * kDiskSize);
  EXPECT_LE(recorded[1].bytes_changed, 6 * FakeChangeTracker::kBlock);
  EXPECT_GT(recorded[1].bytes_changed, 0u);
  // Round n's checkpoint and its parent only: older ones are removed as rounds are recorded.
  EXPECT_EQ(tracker_->Checkpoints(),
            (std::vector<std::string>{"vmimport-uid1-2", "vmimport-uid1-3"}));
  // Cutover: the guest is off (no more writes), a last round, RemoveAll.
  auto last = NextRound({}, *tracker_, "vm", "uid1", recorded, *c, clock_);
  ASSERT_TRUE(last) << last.error().ToString();
  recorded.push_back(*last);
  ASSERT_TRUE(tracker_->RemoveAll("vm", "uid1"));
  EXPECT_TRUE(tracker_->Checkpoints().empty());
  EXPECT_FALSE(tracker_->backup_running);
  ExpectTargetsEqualSources();
  EXPECT_EQ(writer_->LastCommittedRound(), 4);
}

// The controller's flow with a failure injected at call k of the tracker (a dropped source, or
// the controller killed there: the next attempt is a new process with a new connection that knows
// only the recorded rounds). `lose_ack`: the writer acknowledged the round but the status write
// recording it was lost, so the round is done again.
void RunWithFailureAt(WarmTest& t, int k, bool lose_ack,
                      std::unique_ptr<FakeChangeTracker>& tracker,
                      const std::function<std::unique_ptr<WriterClient>()>& client,
                      const std::function<void(uint32_t)>& guest, const core::Clock& clock,
                      bool& failed) {
  (void)t;
  std::vector<RoundRecord> recorded;
  tracker->FailAt(k);
  auto c = client();
  int attempts = 0;
  while (recorded.size() < 4 && attempts++ < 20) {
    auto r = NextRound({}, *tracker, "vm", "uid1", recorded, *c, clock);
    if (!r) {
      failed = true;
      c = client();  // a new process: a new session
      continue;
    }
    if (lose_ack && r->number == 1 && !failed) {
      failed = true;
      c = client();
      continue;  // acknowledged, never recorded
    }
    recorded.push_back(*r);
    if (recorded.size() < 3) {
      guest(200 + static_cast<uint32_t>(recorded.size()));  // the last round has the guest off
    }
  }
  ASSERT_EQ(recorded.size(), 4u);
  if (!tracker->RemoveAll("vm", "uid1")) {
    failed = true;
    ASSERT_TRUE(tracker->RemoveAll("vm", "uid1"));  // safe to repeat
  }
}

TEST_F(WarmTest, AFailureOrKillBetweenAnyTwoStepsLosesNoRound) {
  // A clean run counts the tracker calls; then one run per call with that call failing.
  int clean_calls = 0;
  {
    bool failed = false;
    tracker_->Write(0, 4096, Pattern(100000, 9));
    RunWithFailureAt(
        *this, 0, false, tracker_, [this] { return Client(); },
        [this](uint32_t s) { GuestWrites(s); }, clock_, failed);
    clean_calls = tracker_->Calls();
    ExpectTargetsEqualSources();
  }
  ASSERT_GT(clean_calls, 10);
  // k = 0 with lose_ack: no injected failure, the status write of round 1 is lost instead.
  for (int k = 0; k <= clean_calls; ++k) {
    for (bool lose_ack : {k == 0}) {
      SCOPED_TRACE("failure at call " + std::to_string(k) + (lose_ack ? ", ack lost" : ""));
      for (const char* name : {"dst0", "dst1"}) {  // the same files the writer holds open
        fs::resize_file(dir_ / name, 0);
        fs::resize_file(dir_ / name, kDiskSize);
      }
      tracker_ = std::make_unique<FakeChangeTracker>(
          std::vector<std::string>{(dir_ / "src0").string(), (dir_ / "src1").string()}, kDiskSize);
      tracker_->Write(0, 4096, Pattern(100000, 9));
      bool failed = false;
      RunWithFailureAt(
          *this, k, lose_ack, tracker_, [this] { return Client(); },
          [this](uint32_t s) { GuestWrites(s); }, clock_, failed);
      EXPECT_TRUE(failed);
      ExpectTargetsEqualSources();
      EXPECT_TRUE(tracker_->Checkpoints().empty());
    }
  }
}

TEST_F(WarmTest, CancelDuringPrecopyLeavesNoCheckpointOrBackupJob) {
  auto c = Client();
  ASSERT_TRUE(c);
  std::vector<RoundRecord> recorded;
  for (int i = 0; i < 2; ++i) {
    auto r = NextRound({}, *tracker_, "vm", "uid1", recorded, *c, clock_);
    ASSERT_TRUE(r);
    recorded.push_back(*r);
  }
  // A round begun and never finished (the cancel arrives mid-round).
  auto open = tracker_->BeginRound("vm", "uid1", 2);
  ASSERT_TRUE(open);
  EXPECT_TRUE(tracker_->backup_running);
  ASSERT_TRUE(tracker_->RemoveAll("vm", "uid1"));
  EXPECT_TRUE(tracker_->Checkpoints().empty());
  EXPECT_FALSE(tracker_->backup_running);
  ASSERT_TRUE(tracker_->RemoveAll("vm", "uid1"));  // safe to repeat
}

TEST(Precopy, EstimateIsTheLastRoundsBytesAtTheMeasuredRatePlusTheFixedCost) {
  EXPECT_FALSE(EstimateDowntimeSeconds({}, 10));
  std::vector<RoundRecord> rounds = {{0, {}, 100'000'000, 100'000'000, 10.0},
                                     {1, {}, 5'000'000, 5'000'000, 0.5}};
  // 105 MB in 10.5 s: 10 MB/s; round 1 changed 5 MB: 0.5 s + 20 s.
  auto e = EstimateDowntimeSeconds(rounds, 20);
  ASSERT_TRUE(e);
  EXPECT_NEAR(*e, 20.5, 1e-9);
  // The last round's bytes moved count, not its bytes changed (zero ranges cost nothing).
  rounds.back().bytes_changed = 50'000'000;
  e = EstimateDowntimeSeconds(rounds, 20);
  ASSERT_TRUE(e);
  EXPECT_NEAR(*e, 20.5, 1e-9);
  rounds = {{0, {}, 0, 0, 0.0}};
  EXPECT_FALSE(EstimateDowntimeSeconds(rounds, 20));
}

TEST(Precopy, CutoverRule) {
  using std::chrono::hours;
  const auto now = std::chrono::system_clock::time_point(hours(1000));
  const std::vector<RoundRecord> one = {{0, {}, 1, 1, 1}};
  const std::vector<RoundRecord> two = {{0, {}, 1, 1, 1}, {1, {}, 1, 1, 1}};
  CutoverPolicy none;
  EXPECT_FALSE(DecideCutover(none, now, {}, std::nullopt).cut_over);
  EXPECT_FALSE(DecideCutover(none, now, two, 1.0).cut_over);
  CutoverPolicy at_time{now + hours(1), std::nullopt};
  EXPECT_EQ(DecideCutover(at_time, now, two, 1.0).why, "waiting for spec.cutoverTime");
  EXPECT_TRUE(DecideCutover(at_time, now + hours(1), one, std::nullopt).cut_over);
  CutoverPolicy budget{std::nullopt, 30.0};
  EXPECT_FALSE(DecideCutover(budget, now, one, 1.0).cut_over);  // round 0's estimate only
  EXPECT_TRUE(DecideCutover(budget, now, two, 29.0).cut_over);
  auto over = DecideCutover(budget, now, two, 31.0);
  EXPECT_FALSE(over.cut_over);
  EXPECT_EQ(over.why, "estimated downtime 31.0 s is over the budget of 30.0 s");
  CutoverPolicy both{now + hours(1), 30.0};
  EXPECT_FALSE(DecideCutover(both, now, two, 1.0).cut_over);
  EXPECT_TRUE(DecideCutover(both, now + hours(2), two, 1.0).cut_over);
  EXPECT_FALSE(DecideCutover(both, now + hours(2), two, 60.0).cut_over);
}

}  // namespace
}  // namespace vmimport::warm
