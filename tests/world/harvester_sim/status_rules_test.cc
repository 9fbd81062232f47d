#include "world/harvester_sim/status_rules.h"

#include <gtest/gtest.h>

namespace vmimport::harvester_sim {
namespace {

const std::string kDisk = "disk-1";
const std::string kT0 = "2026-12-01T00:00:00Z";
const std::string kT1 = "2026-12-01T00:00:05Z";
const std::string kSum(128, 'a');

DataSourceFileInfo Info(std::string state, int progress, int64_t size = 0) {
  DataSourceFileInfo i;
  i.state = std::move(state);
  i.progress = progress;
  i.size = size;
  return i;
}

TEST(DataSourceFileInfo, ParsesWhatBackingImageManagerAnswers) {
  // A /v1/file answer of backing-image-manager v1.8.1, measured.
  auto info = ParseDataSourceFileInfo(
      R"({"sourceType":"download","parameters":{"url":"http://127.0.0.1:1/d"},"name":"bi1",)"
      R"("diskUUID":"d","expectedChecksum":"","filePath":"/data/tmp/bi1-u1","uuid":"u1",)"
      R"("size":20000000,"virtualSize":20000256,"realSize":20000768,"state":"ready-for-transfer",)"
      R"("progress":100,"processedSize":20000000,"modificationTime":"x","currentChecksum":"ab",)"
      R"("message":"","sendingReference":0})");
  ASSERT_TRUE(info) << info.error().ToString();
  EXPECT_EQ(info->state, "ready-for-transfer");
  EXPECT_EQ(info->progress, 100);
  EXPECT_EQ(info->size, 20000000);
  EXPECT_EQ(info->virtual_size, 20000256);
  EXPECT_EQ(info->real_size, 20000768);
  EXPECT_EQ(info->processed_size, 20000000);
  EXPECT_EQ(info->current_checksum, "ab");
  EXPECT_EQ(info->file_path, "/data/tmp/bi1-u1");
}

TEST(DataSourceFileInfo, RefusesWhatIsNotAJsonObject) {
  EXPECT_FALSE(ParseDataSourceFileInfo("404 page not found"));
  EXPECT_FALSE(ParseDataSourceFileInfo("[1]"));
  // Fields of the wrong type read as absent.
  auto info = ParseDataSourceFileInfo(R"({"state":3,"progress":"x"})");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->state, "");
  EXPECT_EQ(info->progress, 0);
}

TEST(LonghornStatus, DataSourceProgressGoesToTheDiskFileEntry) {
  Json bi = {{"uuid", "u1"}, {"diskFileStatusMap", Json::object()}};
  ApplyDataSourceInfo(bi, kDisk, Info("in-progress", 40, 1000), kT0);
  const Json& file = bi["diskFileStatusMap"][kDisk];
  EXPECT_EQ(file["state"], "in-progress");
  EXPECT_EQ(file["progress"], 40);
  EXPECT_EQ(file["message"], "");
  EXPECT_EQ(file["dataEngine"], "v1");
  EXPECT_EQ(file["lastStateTransitionTime"], kT0);
  EXPECT_EQ(bi["size"], 1000);
  EXPECT_FALSE(bi.contains("checksum"));
  // Same state later: the transition time stays.
  ApplyDataSourceInfo(bi, kDisk, Info("in-progress", 80, 1000), kT1);
  EXPECT_EQ(bi["diskFileStatusMap"][kDisk]["lastStateTransitionTime"], kT0);
  EXPECT_EQ(bi["diskFileStatusMap"][kDisk]["progress"], 80);
}

TEST(LonghornStatus, ChecksumIsSetOnceAndAnotherOneFailsTheFile) {
  Json bi = Json::object();
  DataSourceFileInfo ready = Info("ready-for-transfer", 100, 1000);
  ready.current_checksum = kSum;
  ApplyDataSourceInfo(bi, kDisk, ready, kT0);
  EXPECT_EQ(bi["checksum"], kSum);
  ready.current_checksum = std::string(128, 'b');
  ApplyDataSourceInfo(bi, kDisk, ready, kT1);
  EXPECT_EQ(bi["checksum"], kSum);
  EXPECT_EQ(bi["diskFileStatusMap"][kDisk]["state"], "failed");
  EXPECT_NE(bi["diskFileStatusMap"][kDisk]["message"].get<std::string>().find(
                "doesn't match the file checksum"),
            std::string::npos);
}

TEST(LonghornStatus, TransferredFileIsReadyWithItsSizes) {
  Json bi = Json::object();
  DataSourceFileInfo info = Info("ready-for-transfer", 100, 20000000);
  info.current_checksum = kSum;
  info.virtual_size = 20000256;
  info.real_size = 20000768;
  ApplyFileTransferred(bi, kDisk, info, kT0);
  EXPECT_EQ(bi["diskFileStatusMap"][kDisk]["state"], "ready");
  EXPECT_EQ(bi["diskFileStatusMap"][kDisk]["progress"], 100);
  EXPECT_EQ(bi["size"], 20000000);
  EXPECT_EQ(bi["virtualSize"], 20000256);
  EXPECT_EQ(bi["realSize"], 20000768);
  EXPECT_EQ(bi["checksum"], kSum);
}

Json InitializedImage() {
  Json status = Json::object();
  ImageInitialized(status, "http://x/d", "longhorn-img", kT0);
  return status;
}

TEST(HarvesterStatus, InitializedStartsAnAttempt) {
  const Json status = InitializedImage();
  EXPECT_EQ(status["progress"], 0);
  EXPECT_EQ(status["appliedUrl"], "http://x/d");
  EXPECT_EQ(status["storageClassName"], "longhorn-img");
  EXPECT_EQ(ConditionStatus({{"status", status}}, "Initialized"), "True");
  EXPECT_EQ(ConditionStatus({{"status", status}}, "Imported"), "Unknown");
}

TEST(HarvesterStatus, ProgressFollowsTheBackingImageAndShows99UntilReady) {
  Json image = InitializedImage();
  Json bi = Json::object();
  ApplyDataSourceInfo(bi, kDisk, Info("in-progress", 50), kT0);
  EXPECT_EQ(ApplyBackingImageToImage(bi, image, 3, kT0, nullptr), ImageUpdate::kImporting);
  EXPECT_EQ(image["progress"], 50);
  EXPECT_EQ(ApplyBackingImageToImage(bi, image, 3, kT0, nullptr), ImageUpdate::kNone);
  ApplyDataSourceInfo(bi, kDisk, Info("ready-for-transfer", 100), kT0);
  EXPECT_EQ(ApplyBackingImageToImage(bi, image, 3, kT0, nullptr), ImageUpdate::kImporting);
  EXPECT_EQ(image["progress"], 99);
  EXPECT_EQ(ApplyBackingImageToImage(bi, image, 3, kT0, nullptr), ImageUpdate::kNone);
}

TEST(HarvesterStatus, ReadyBackingImageImportsTheImageWithItsSizes) {
  Json image = InitializedImage();
  Json bi = Json::object();
  DataSourceFileInfo info = Info("ready-for-transfer", 100, 1000);
  info.virtual_size = 1024;
  ApplyFileTransferred(bi, kDisk, info, kT0);
  EXPECT_EQ(ApplyBackingImageToImage(bi, image, 3, kT1, nullptr), ImageUpdate::kImported);
  EXPECT_EQ(image["progress"], 100);
  EXPECT_EQ(image["size"], 1000);
  EXPECT_EQ(image["virtualSize"], 1024);
  EXPECT_EQ(ConditionStatus({{"status", image}}, "Imported"), "True");
  EXPECT_EQ(ConditionStatus({{"status", image}}, "RetryLimitExceeded"), "False");
}

TEST(HarvesterStatus, FailedBackingImageCountsAttemptsUntilTheRetryLimit) {
  Json image = InitializedImage();
  Json bi = Json::object();
  DataSourceFileInfo failed = Info("failed", 12);
  failed.message = "failed to process sync file: unexpected EOF";
  ApplyDataSourceInfo(bi, kDisk, failed, kT0);
  bool exhausted = true;
  EXPECT_EQ(ApplyBackingImageToImage(bi, image, 1, kT0, &exhausted), ImageUpdate::kFailed);
  EXPECT_FALSE(exhausted);
  EXPECT_EQ(image["failed"], 1);
  EXPECT_EQ(image["progress"], 12);
  const Json wrapped = {{"status", image}};
  EXPECT_EQ(ConditionStatus(wrapped, "RetryLimitExceeded"), "False");
  std::string message;
  for (const Json& c : image["conditions"]) {
    if (c["type"] == "RetryLimitExceeded") {
      message = c["message"];
    }
  }
  EXPECT_EQ(message, "failed due to error: failed to process sync file: unexpected EOF");
  EXPECT_EQ(ApplyBackingImageToImage(bi, image, 1, kT1, &exhausted), ImageUpdate::kFailed);
  EXPECT_TRUE(exhausted);
  EXPECT_EQ(image["failed"], 2);
  EXPECT_EQ(ConditionStatus({{"status", image}}, "RetryLimitExceeded"), "True");
  EXPECT_EQ(ConditionStatus({{"status", image}}, "Imported"), "False");
  for (const Json& c : image["conditions"]) {
    if (c["type"] == "Imported") {
      EXPECT_EQ(c["message"].get<std::string>().rfind("retry attempted 1/1 failed due to", 0), 0U)
          << c.dump();
    }
  }
}

TEST(HarvesterStatus, NothingHappensWithoutExactlyOneDiskFile) {
  Json image = InitializedImage();
  const Json before = image;
  EXPECT_EQ(
      ApplyBackingImageToImage({{"diskFileStatusMap", Json::object()}}, image, 3, kT0, nullptr),
      ImageUpdate::kNone);
  EXPECT_EQ(image, before);
}

}  // namespace
}  // namespace vmimport::harvester_sim
