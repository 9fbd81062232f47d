// Warm migration's precopy and cutover phases on the in-memory Kubernetes (issue 22): a fake
// change tracker over local files (tests/unit/warm/fake_change_tracker.h) is the running source,
// the real writer on 127.0.0.1 plays the writer Pod (the test marks the Pod Running). Rounds are
// recorded in status.warm one by one, the cutover copies the disks as they were at shutdown, the
// downtime is measured; cancel leaves the source running without checkpoints and removes the
// writer and its volumes.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <thread>

#include "tests/unit/controller/import_fixture.h"
#include "tests/unit/warm/fake_change_tracker.h"
#include "warm/writer.h"

namespace vmimport::testing {
namespace {

constexpr uint64_t kDiskSize = 256 * 1024;

// The reconciler makes a tracker per source; every one forwards to the test's.
class ForwardingTracker final : public warm::ChangeTracker {
 public:
  explicit ForwardingTracker(std::shared_ptr<warm::ChangeTracker> t) : t_(std::move(t)) {}
  core::Status CheckCapable(std::string_view vm) override { return t_->CheckCapable(vm); }
  core::Result<std::unique_ptr<warm::Round>> BeginRound(std::string_view vm, std::string_view uid,
                                                        int n) override {
    return t_->BeginRound(vm, uid, n);
  }
  core::Status RemoveCheckpoint(std::string_view vm, std::string_view uid, int n) override {
    return t_->RemoveCheckpoint(vm, uid, n);
  }
  core::Status RemoveAll(std::string_view vm, std::string_view uid) override {
    return t_->RemoveAll(vm, uid);
  }

 private:
  std::shared_ptr<warm::ChangeTracker> t_;
};

uint16_t FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::vector<std::byte> Pattern(size_t n, int seed) {
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::byte>((i * 7 + static_cast<size_t>(seed) * 13) & 0xff);
  }
  return out;
}

std::vector<std::byte> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<std::byte> out(kDiskSize);
  f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(kDiskSize));
  return out;
}

class WarmPhasesTest : public ImportFixture {
 protected:
  void SetUp() override {
    ImportFixture::SetUp();
    dir_ = std::filesystem::temp_directory_path() /
           ("warm-phases-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    for (auto& d : source_->description.disks) {
      d.capacity_bytes = kDiskSize;
      d.format = "qcow2";
    }
    tracker_ = std::make_shared<warm::testing::FakeChangeTracker>(
        std::vector<std::string>{dir_ / "src-0", dir_ / "src-1"}, kDiskSize);
    options_.change_trackers[source::SourceKind::kVmware] =
        [t = tracker_](const source::SourceConfig&) -> std::unique_ptr<warm::ChangeTracker> {
      return std::make_unique<ForwardingTracker>(t);
    };
    port_ = FreePort();
    options_.writer_port = port_;
    Restart();
  }
  void TearDown() override {
    serve_ = {};
    reconciler_.reset();
    ImportFixture::TearDown();
    std::filesystem::remove_all(dir_);
  }

  //! Plays the kubelet: once the writer Pod exists, the real writer serves its targets with the
  //! token from its Secret, and the Pod is Running.
  void RunWriterPod() {
    const auto pods = api_.All("pods");
    ASSERT_EQ(pods.size(), 1u);
    std::string token;
    for (const Json& s : api_.All("secrets")) {
      if (s["metadata"]["name"] == pods[0]["metadata"]["name"]) {
        token = s["stringData"]["token"];
      }
    }
    ASSERT_FALSE(token.empty());
    auto writer = warm::Writer::Open(
        {.token = token,
         .disks = {{(dir_ / "dst-0").string(), kDiskSize}, {(dir_ / "dst-1").string(), kDiskSize}}},
        core::Logger());
    ASSERT_TRUE(writer) << writer.error().ToString();
    writer_ = std::move(*writer);
    serve_ = std::jthread([this](std::stop_token stop) {
      std::atomic<uint16_t> bound{0};
      (void)warm::ServeWriter(stop, *writer_, "127.0.0.1", port_, bound, core::Logger());
    });
    Json pod = pods[0];
    pod["status"] = {{"phase", "Running"}};
    api_.Put("pods", pod);
  }

  size_t Rounds() {
    return ImportOf("imp")["status"]
        .value("warm", Json::object())
        .value("rounds", Json::array())
        .size();
  }
  //! Reconciles until status.warm has `n` rounds (the round runs on the import's task).
  bool RunUntilRounds(size_t n) {
    for (int i = 0; i < 400 && Rounds() < n; ++i) {
      (void)Step("imp");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return Rounds() >= n;
  }

  void StartWarm(const Json& extra) {
    CreateReadySource();
    Json spec = {
        {"migrationMode", "warm"}, {"diskTarget", "volume"}, {"precopyIntervalSeconds", 10}};
    spec.update(extra);
    CreateImport("imp", "web", spec);
    ASSERT_EQ(RunUntil("imp", "precopy"), "precopy");
    ASSERT_TRUE(Step("imp"));  // the PVCs, the Secret, the Pod
    EXPECT_EQ(api_.All("persistentvolumeclaims").size(), 2u);
    RunWriterPod();
  }

  std::filesystem::path dir_;
  std::shared_ptr<warm::testing::FakeChangeTracker> tracker_;
  uint16_t port_ = 0;
  std::unique_ptr<warm::Writer> writer_;
  std::jthread serve_;
};

TEST_F(WarmPhasesTest, RoundsAreRecordedOneByOneThenTheCutoverCopiesTheDisksAsAtShutdown) {
  tracker_->Write(0, 0, Pattern(100'000, 1));
  tracker_->Write(1, 70'000, Pattern(50'000, 2));
  StartWarm({{"cutoverTime", core::FormatRfc3339(clock_.WallNow() + std::chrono::seconds(25))}});
  ASSERT_TRUE(RunUntilRounds(1));
  for (int round = 1; round <= 2; ++round) {
    tracker_->Write(static_cast<size_t>(round % 2), 65'536 * static_cast<uint64_t>(round),
                    Pattern(1000, round + 10));
    // The next round waits for the interval.
    ASSERT_TRUE(Step("imp"));
    EXPECT_EQ(Rounds(), static_cast<size_t>(round));
    clock_.Advance(std::chrono::seconds(10));
    ASSERT_TRUE(RunUntilRounds(static_cast<size_t>(round) + 1));
    EXPECT_EQ(StatusOf("imp"), "precopy");
    // Checkpoint n-2 is gone once round n-1 is recorded: at most two are kept.
    EXPECT_LE(tracker_->Checkpoints().size(), 2u);
  }
  const Json warm = ImportOf("imp")["status"]["warm"];
  EXPECT_EQ(warm["rounds"][1]["bytesMoved"], 65'536);
  EXPECT_EQ(warm["waitingFor"], "waiting for spec.cutoverTime");
  // Written while the source still runs, then the cutover time is reached.
  tracker_->Write(1, 200'000, Pattern(3000, 30));
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_EQ(RunUntil("imp", "diskImagesReady", 400), "diskImagesReady");
  EXPECT_EQ(source_->power_offs, 1);
  EXPECT_TRUE(tracker_->Checkpoints().empty());
  EXPECT_TRUE(api_.All("pods").empty());
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(ReadFile((dir_ / ("dst-" + std::to_string(i))).string()), tracker_->Contents(i))
        << "disk " << i;
  }
  ASSERT_EQ(RunUntil("imp", "virtualMachineCreated"), "virtualMachineCreated");
  const Json vm = api_.All("virtualmachines").at(0);
  EXPECT_NE(vm.dump().find(ImportOf("imp")["status"]["warm"]["volumes"][0].get<std::string>()),
            std::string::npos);
  clock_.Advance(std::chrono::seconds(7));
  MarkVmiRunning(vm["metadata"]["name"]);
  ASSERT_EQ(RunUntil("imp", "virtualMachineRunning"), "virtualMachineRunning");
  const Json done = ImportOf("imp")["status"]["warm"];
  EXPECT_EQ(done["rounds"].size(), 4u);
  EXPECT_NEAR(done.value("downtimeSeconds", 0.0), 7.0, 0.01);
  EXPECT_EQ(events_.WithReason("WarmDowntime").size(), 1u);
  EXPECT_FALSE(api_.All("persistentvolumeclaims").empty());  // the VM's disks
}

// A controller killed during the cutover resumes at the step it was in: after the source went
// off (no second shutdown), after the last round was recorded (the checkpoints are still there
// until then, and go after it), and in precopy without losing or repeating a recorded round.
TEST_F(WarmPhasesTest, ARestartAtEveryStepResumesThereWithoutLosingARound) {
  tracker_->Write(0, 0, Pattern(100'000, 1));
  StartWarm({{"cutoverTime", core::FormatRfc3339(clock_.WallNow() + std::chrono::seconds(15))}});
  ASSERT_TRUE(RunUntilRounds(1));
  tracker_->Write(1, 4096, Pattern(5000, 2));
  Restart();  // between rounds
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(RunUntilRounds(2));
  auto warm = [&] { return ImportOf("imp")["status"].value("warm", Json::object()); };
  auto run_until = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 400 && !done(); ++i) {
      (void)Step("imp");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return done();
  };
  tracker_->Write(0, 200'000, Pattern(3000, 3));
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(run_until([&] { return warm().contains("sourceOffAt"); }));
  EXPECT_EQ(StatusOf("imp"), "cutover");
  Restart();  // the source is off, the last round not copied
  ASSERT_TRUE(run_until([&] { return warm().contains("finalRound"); }));
  EXPECT_EQ(warm()["finalRound"], 2);
  EXPECT_FALSE(tracker_->Checkpoints().empty());  // removed only once the round is recorded
  Restart();  // the last round recorded, the checkpoints not removed yet
  ASSERT_EQ(RunUntil("imp", "diskImagesReady", 400), "diskImagesReady");
  EXPECT_EQ(source_->power_offs, 1);
  EXPECT_TRUE(tracker_->Checkpoints().empty());
  const Json rounds = warm()["rounds"];
  ASSERT_EQ(rounds.size(), 3u) << rounds.dump();
  for (size_t i = 0; i < rounds.size(); ++i) {
    EXPECT_EQ(rounds[i]["round"], i);
  }
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(ReadFile((dir_ / ("dst-" + std::to_string(i))).string()), tracker_->Contents(i))
        << "disk " << i;
  }
}

// Somebody removes our checkpoints from the source during precopy: the next round finds its base
// gone, precopy begins again at round 0 (a whole copy) with a PrecopyRestarted Event, and the
// cutover still leaves the targets equal to the sources.
TEST_F(WarmPhasesTest, ACheckpointRemovedBehindOurBackBeginsPrecopyAgainAtRoundZero) {
  tracker_->Write(0, 0, Pattern(100'000, 1));
  StartWarm({{"cutoverTime", core::FormatRfc3339(clock_.WallNow() + std::chrono::seconds(25))}});
  ASSERT_TRUE(RunUntilRounds(1));
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(RunUntilRounds(2));
  ASSERT_FALSE(tracker_->Checkpoints().empty());
  ASSERT_TRUE(tracker_->RemoveAll("web", ""));  // as `virsh checkpoint-delete` would
  tracker_->Write(1, 8192, Pattern(4000, 5));
  clock_.Advance(std::chrono::seconds(10));
  for (int i = 0; i < 400 && events_.WithReason("PrecopyRestarted").empty(); ++i) {
    (void)Step("imp");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(events_.WithReason("PrecopyRestarted").size(), 1u);
  EXPECT_NE(events_.WithReason("PrecopyRestarted")[0].message.find(
                "the 2 rounds recorded no longer count"),
            std::string::npos);
  ASSERT_TRUE(RunUntilRounds(1));  // round 0 again
  EXPECT_EQ(ImportOf("imp")["status"]["warm"]["rounds"][0]["bytesChanged"], 2 * kDiskSize);
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_EQ(RunUntil("imp", "diskImagesReady", 400), "diskImagesReady");
  EXPECT_TRUE(tracker_->Checkpoints().empty());
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(ReadFile((dir_ / ("dst-" + std::to_string(i))).string()), tracker_->Contents(i))
        << "disk " << i;
  }
}

TEST_F(WarmPhasesTest, ABudgetWithoutAnEstimateKeepsPrecopyGoing) {
  tracker_->Write(0, 0, Pattern(100'000, 1));
  StartWarm({{"downtimeBudgetSeconds", 1}});
  ASSERT_TRUE(RunUntilRounds(1));
  clock_.Advance(std::chrono::seconds(10));
  // With the fake clock every round takes 0 s: no estimate, so no cutover by budget.
  ASSERT_TRUE(RunUntilRounds(2));
  EXPECT_EQ(StatusOf("imp"), "precopy");
  EXPECT_EQ(ImportOf("imp")["status"]["warm"]["waitingFor"], "no downtime estimate yet");
}

TEST_F(WarmPhasesTest, CancelDuringPrecopyLeavesTheSourceRunningAndRemovesTheWriterAndVolumes) {
  StartWarm(Json::object());
  ASSERT_TRUE(RunUntilRounds(1));
  EXPECT_FALSE(tracker_->Checkpoints().empty());
  std::stop_source none;
  ASSERT_TRUE(api_.Delete(none.get_token(), controller::ImportResource(), "ns", "imp"));
  ASSERT_TRUE(Step("imp"));
  EXPECT_EQ(StatusOf("imp"), "<gone>");
  EXPECT_TRUE(tracker_->Checkpoints().empty());
  EXPECT_FALSE(tracker_->backup_running);
  EXPECT_EQ(source_->power_offs, 0);
  EXPECT_TRUE(api_.All("pods").empty());
  EXPECT_TRUE(api_.All("persistentvolumeclaims").empty());
}

}  // namespace
}  // namespace vmimport::testing
