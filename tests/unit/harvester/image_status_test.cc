#include "harvester/image_status.h"

#include <gtest/gtest.h>

namespace vmimport::harvester {
namespace {

using nlohmann::json;

json Cond(const char* type, const char* status, const char* reason = "", const char* message = "") {
  json c = {{"type", type}, {"status", status}};
  if (*reason != '\0') c["reason"] = reason;
  if (*message != '\0') c["message"] = message;
  return c;
}

json Image(json status, json spec = json::object()) {
  return json{{"metadata", {{"name", "image-x"}, {"namespace", "default"}}},
              {"spec", std::move(spec)},
              {"status", std::move(status)}};
}

TEST(InterpretImageStatus, NoStatusYetIsPending) {
  EXPECT_EQ(InterpretImageStatus(json{{"metadata", {{"name", "image-x"}}}}).phase,
            ImagePhase::kPending);
  EXPECT_EQ(InterpretImageStatus(json::array()).phase, ImagePhase::kPending);
  EXPECT_EQ(InterpretImageStatus(Image({{"progress", 0}})).phase, ImagePhase::kPending);
}

TEST(InterpretImageStatus, InitializedAndImportingIsProgressWithThePercent) {
  const ImageState s = InterpretImageStatus(Image(
      {{"progress", 42},
       {"conditions",
        {Cond("Initialized", "True", "Initialized"), Cond("Imported", "Unknown", "Importing")}}}));
  EXPECT_EQ(s.phase, ImagePhase::kProgress);
  EXPECT_EQ(s.percent, 42);
  EXPECT_EQ(s.message, "");
  // Harvester holds 99 until the backing image is ready: still progress, not active.
  const ImageState held = InterpretImageStatus(
      Image({{"progress", 99}, {"conditions", {Cond("Imported", "Unknown", "Importing")}}}));
  EXPECT_EQ(held.phase, ImagePhase::kProgress);
  EXPECT_EQ(held.percent, 99);
}

TEST(InterpretImageStatus, ImportedTrueIsActive) {
  const ImageState s = InterpretImageStatus(Image(
      {{"progress", 100},
       {"conditions",
        {Cond("Imported", "True", "Imported"), Cond("RetryLimitExceeded", "True", "", "old")}}}));
  EXPECT_EQ(s.phase, ImagePhase::kActive);
  EXPECT_EQ(s.percent, 100);
}

TEST(InterpretImageStatus, ImportFailedOfHarvester11IsFailed) {
  const ImageState s = InterpretImageStatus(
      Image({{"conditions", {Cond("Imported", "False", "ImportFailed", "connection refused")}}}));
  EXPECT_EQ(s.phase, ImagePhase::kFailed);
  EXPECT_EQ(s.reason, "ImportFailed");
  EXPECT_EQ(s.message, "connection refused");
}

TEST(InterpretImageStatus, UploadFailedIsFailed) {
  const ImageState s = InterpretImageStatus(
      Image({{"conditions", {Cond("Imported", "False", "UploadFailed", "stream closed")}}}));
  EXPECT_EQ(s.phase, ImagePhase::kFailed);
  EXPECT_EQ(s.reason, "UploadFailed");
}

TEST(InterpretImageStatus, RetryLimitExceededIsFailedWithItsMessage) {
  const ImageState s = InterpretImageStatus(Image(
      {{"failed", 4},
       {"progress", 12},
       {"conditions",
        {Cond("Imported", "Unknown"),
         Cond("RetryLimitExceeded", "True", "", "retry attempted 3/3 failed due to error: 404")}}},
      {{"retry", 3}}));
  EXPECT_EQ(s.phase, ImagePhase::kFailed);
  EXPECT_EQ(s.reason, "RetryLimitExceeded");
  EXPECT_EQ(s.message, "retry attempted 3/3 failed due to error: 404");
  EXPECT_EQ(s.failed_attempts, 4);
  EXPECT_EQ(s.percent, 12);
}

TEST(InterpretImageStatus, InitializedFalseIsFailed) {
  const ImageState s = InterpretImageStatus(
      Image({{"conditions", {Cond("Initialized", "False", "", "failed due to error: no sc")}}}));
  EXPECT_EQ(s.phase, ImagePhase::kFailed);
  EXPECT_EQ(s.reason, "InitializeFailed");
  EXPECT_EQ(s.message, "failed due to error: no sc");
}

TEST(InterpretImageStatus, FailedCountAboveRetryIsFailedBeforeTheConditionLands) {
  const ImageState s = InterpretImageStatus(
      Image({{"failed", 1}, {"conditions", {Cond("Initialized", "True")}}}, {{"retry", 0}}));
  EXPECT_EQ(s.phase, ImagePhase::kFailed);
  EXPECT_EQ(s.reason, "RetryLimitExceeded");
  EXPECT_EQ(s.message, "failed 1 times, retry limit 0");
  // Without spec.retry the CRD default (3) applies: 3 failures are still retried.
  const ImageState retrying = InterpretImageStatus(Image(
      {{"failed", 3},
       {"progress", 5},
       {"conditions",
        {Cond("Initialized", "True"), Cond("RetryLimitExceeded", "False", "",
                                           "retry attempted 2/3 failed due to error: timeout")}}}));
  EXPECT_EQ(retrying.phase, ImagePhase::kProgress);
  EXPECT_EQ(retrying.failed_attempts, 3);
  EXPECT_EQ(retrying.message, "retry attempted 2/3 failed due to error: timeout");
}

TEST(InterpretImageStatus, BackingImageMissingIsFailedEvenWhenImported) {
  const ImageState s = InterpretImageStatus(
      Image({{"conditions",
              {Cond("Imported", "True"),
               Cond("BackingImageMissing", "True", "", "Failed to get backing image: gone")}}}));
  EXPECT_EQ(s.phase, ImagePhase::kFailed);
  EXPECT_EQ(s.reason, "BackingImageMissing");
  EXPECT_EQ(s.message, "Failed to get backing image: gone");
}

TEST(InterpretImageStatus, AnImageBeingDeletedIsFailed) {
  json image = Image({{"conditions", {Cond("Imported", "True")}}});
  image["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  const ImageState s = InterpretImageStatus(image);
  EXPECT_EQ(s.phase, ImagePhase::kFailed);
  EXPECT_EQ(s.reason, "Deleting");
}

TEST(InterpretImageStatus, OddValuesAreClampedNotTrusted) {
  const ImageState s = InterpretImageStatus(
      Image({{"progress", 250}, {"failed", -3}, {"conditions", "not-an-array"}}));
  EXPECT_EQ(s.phase, ImagePhase::kProgress);
  EXPECT_EQ(s.percent, 100);
  EXPECT_EQ(s.failed_attempts, 0);
  EXPECT_STREQ(ImagePhaseName(s.phase), "progress");
}

}  // namespace
}  // namespace vmimport::harvester
