// Warm migration's preflight on the in-memory Kubernetes (issue 22): a warm import is refused
// with the source's reason before the source is touched, or imported cold when the user asked
// for that; a warm import into images is invalid.

#include <gtest/gtest.h>

#include "tests/unit/controller/import_fixture.h"

namespace vmimport::testing {
namespace {

// A tracker that answers CheckCapable with `error` (or Ok) and is never asked for more.
class RefusingTracker final : public warm::ChangeTracker {
 public:
  explicit RefusingTracker(std::optional<core::Error> error) : error_(std::move(error)) {}
  core::Status CheckCapable(std::string_view) override {
    if (error_) {
      return core::MakeError(*error_);
    }
    return core::Ok();
  }
  core::Result<std::unique_ptr<warm::Round>> BeginRound(std::string_view, std::string_view,
                                                        int) override {
    return core::MakeError(core::ErrorCode::kInternal, "not expected");
  }
  core::Status RemoveCheckpoint(std::string_view, std::string_view, int) override {
    return core::MakeError(core::ErrorCode::kInternal, "not expected");
  }
  core::Status RemoveAll(std::string_view, std::string_view) override {
    return core::MakeError(core::ErrorCode::kInternal, "not expected");
  }

 private:
  std::optional<core::Error> error_;
};

class WarmReconcilerTest : public ImportFixture {
 protected:
  std::string FailedMessage(const std::string& name) {
    for (const Json& c : ImportOf(name)["status"].value("importConditions", Json::array())) {
      if (c.value("status", "") == "True" &&
          c.value("type", "").find("Failed") != std::string::npos) {
        return c.value("message", "");
      }
    }
    return ImportOf(name)["status"].dump();
  }
  void UseTracker(std::optional<core::Error> capable) {
    options_.change_trackers[source::SourceKind::kVmware] =
        [capable](const source::SourceConfig&) -> std::unique_ptr<warm::ChangeTracker> {
      return std::make_unique<RefusingTracker>(capable);
    };
    Restart();
  }
};

TEST_F(WarmReconcilerTest, WarmIntoImagesIsInvalid) {
  CreateReadySource();
  CreateImport("imp", "web", {{"migrationMode", "warm"}});
  ASSERT_EQ(RunUntil("imp", "virtualMachineImportInvalid"), "virtualMachineImportInvalid");
  const auto events = events_.WithReason("InvalidSpec");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].message.find("warm needs spec.diskTarget: volume"), std::string::npos)
      << events[0].message;
  EXPECT_EQ(source_->power_offs, 0);
}

TEST_F(WarmReconcilerTest, ASourceKindWithoutATrackerIsRefusedBeforeTheSourceIsTouched) {
  CreateReadySource();
  CreateImport("imp", "web", {{"migrationMode", "warm"}, {"diskTarget", "volume"}});
  ASSERT_EQ(RunUntil("imp", "virtualMachineImportInvalid"), "virtualMachineImportInvalid");
  const auto events = events_.WithReason("WarmNotPossible");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].message.find("vmware sources cannot say what changed"), std::string::npos)
      << events[0].message;
  EXPECT_NE(events[0].message.find("spec.warmFallbackToCold"), std::string::npos);
  EXPECT_EQ(source_->power_offs, 0);
  EXPECT_TRUE(api_.All("datavolumes").empty());
}

TEST_F(WarmReconcilerTest, AVmThatCannotTrackChangesIsRefusedWithTheSourcesReason) {
  UseTracker(core::Error{core::ErrorCode::kUnsupported,
                         "domain web: disk vda is raw: no persistent dirty bitmaps"});
  CreateReadySource();
  CreateImport("imp", "web", {{"migrationMode", "warm"}, {"diskTarget", "volume"}});
  ASSERT_EQ(RunUntil("imp", "virtualMachineImportInvalid"), "virtualMachineImportInvalid");
  const auto events = events_.WithReason("WarmNotPossible");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].message.find("disk vda is raw"), std::string::npos) << events[0].message;
  EXPECT_EQ(source_->power_offs, 0);
}

TEST_F(WarmReconcilerTest, AnUnreachableSourceIsRetriedNotRefused) {
  UseTracker(core::Error{core::ErrorCode::kUnavailable, "libvirtd: connection refused"});
  CreateReadySource();
  CreateImport("imp", "web", {{"migrationMode", "warm"}, {"diskTarget", "volume"}});
  int retried = 0;
  for (int i = 0; i < 5; ++i) {
    auto r = Step("imp");  // an error: the runner retries it with backoff
    if (!r) {
      EXPECT_NE(r.error().message.find("connection refused"), std::string::npos)
          << r.error().message;
      ++retried;
    }
  }
  EXPECT_GE(retried, 3);
  EXPECT_EQ(StatusOf("imp"), "virtualMachineImportValid");
  EXPECT_TRUE(events_.WithReason("WarmNotPossible").empty());
}

TEST_F(WarmReconcilerTest, WarmFallsBackToColdWhenTheUserAskedForIt) {
  CreateReadySource();
  CreateImport("imp", "web",
               {{"migrationMode", "warm"}, {"diskTarget", "volume"}, {"warmFallbackToCold", true}});
  ASSERT_EQ(RunUntil("imp", "diskImageSubmitted"), "diskImageSubmitted");
  const auto events = events_.WithReason("WarmFallbackToCold");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].message.find("importing cold"), std::string::npos) << events[0].message;
  EXPECT_EQ(ImportOf("imp")["status"].value("migrationMode", ""), "cold");
  EXPECT_EQ(api_.All("datavolumes").size(), 2u);  // the cold volume-mode import goes on
}

}  // namespace
}  // namespace vmimport::testing
