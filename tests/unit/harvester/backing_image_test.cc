// Longhorn's BackingImage as the controller reads it: the names Harvester gives it, its
// status.checksum, and the comparison with the served SHA-512 (issue 16, "what Harvester stored
// is verified"). The JSON is shaped like longhorn-manager v1.8 writes it.

#include "harvester/backing_image.h"

#include <gtest/gtest.h>

#include "harvester/image.h"

namespace vmimport::harvester {
namespace {

using nlohmann::json;

TEST(BackingImage, AutoCorrectNameIsLonghorns) {
  EXPECT_EQ(LonghornAutoCorrectName("vmi-0f3c2d7e-1111-2222-3333-444455556666"),
            "vmi-0f3c2d7e-1111-2222-3333-444455556666")
      << "40 characters stay";
  // Values computed with longhorn-manager's algorithm (SHA-512 of the original name).
  EXPECT_EQ(LonghornAutoCorrectName("Default-Image-abcdefghijklmnopqrstuvwxyz0123456789"),
            "default-image-abcdefghijklmnopq-1a6b5961");
  EXPECT_EQ(LonghornAutoCorrectName("ns-" + std::string(28, 'a') + std::string(10, '-') + "b"),
            "ns-" + std::string(28, 'a') + "-ea2e3197")
      << "dashes before the suffix are trimmed";
}

TEST(BackingImage, NamesFollowHarvestersLookupOrder) {
  const json image = {{"metadata",
                       {{"namespace", "default"},
                        {"name", "image-x7k2p"},
                        {"uid", "0f3c2d7e-1111-2222-3333-444455556666"}}}};
  EXPECT_EQ(BackingImageNames(image),
            (std::vector<std::string>{"default-image-x7k2p",
                                      "vmi-0f3c2d7e-1111-2222-3333-444455556666"}));
  EXPECT_TRUE(BackingImageNames(json{{"metadata", {{"name", "x"}}}}).empty());
}

TEST(BackingImage, ChecksumAndStateAreReadFromStatus) {
  const std::string sum(128, 'A');
  const json bi = {{"status",
                    {{"checksum", sum},
                     {"diskFileStatusMap",
                      {{"disk-1", {{"state", "ready"}, {"progress", 100}}},
                       {"disk-2", {{"state", "failed"}, {"message", "checksum mismatch"}}}}}}}};
  const BackingImageChecksum c = ReadBackingImageChecksum(bi);
  EXPECT_EQ(c.sha512, std::string(128, 'a'));
  EXPECT_TRUE(c.ready);
  EXPECT_EQ(c.failed_message, "checksum mismatch");
  const BackingImageChecksum empty = ReadBackingImageChecksum(json{{"status", nullptr}});
  EXPECT_EQ(empty.sha512, "");
  EXPECT_FALSE(empty.ready);
}

TEST(BackingImage, StoredChecksumVerdicts) {
  BackingImageChecksum stored{.sha512 = std::string(128, 'a'), .ready = true, .failed_message = ""};
  EXPECT_EQ(CompareStoredChecksum(std::string(128, 'A'), stored), StoredVerdict::kVerified);
  EXPECT_EQ(CompareStoredChecksum(std::string(128, 'b'), stored), StoredVerdict::kMismatch);
  EXPECT_EQ(CompareStoredChecksum("", stored), StoredVerdict::kUnverifiable)
      << "policy none: nothing served to compare";
  EXPECT_EQ(CompareStoredChecksum(std::string(128, 'a'), {}), StoredVerdict::kUnverifiable);
}

TEST(BackingImage, OnlyLowerCaseSha512IsALonghornChecksum) {
  EXPECT_TRUE(IsLonghornChecksum(std::string(128, 'f')));
  EXPECT_FALSE(IsLonghornChecksum(std::string(128, 'F')));
  EXPECT_FALSE(IsLonghornChecksum(std::string(64, 'f'))) << "a SHA-256 fails for ever";
}

}  // namespace
}  // namespace vmimport::harvester
