// The asynchronous EventRecorder: Record never waits for the API server, repeats bump a count,
// a full queue drops and counts, invalid UTF-8 is replaced.

#include "kube/events.h"

#include <gtest/gtest.h>

#include <thread>

#include "core/strings.h"
#include "tests/unit/fakes/fake_kube.h"

namespace vmimport::testing {
namespace {

using std::chrono::milliseconds;

const Json kObject = {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                      {"kind", "VirtualMachineImport"},
                      {"metadata", {{"name", "imp"}, {"namespace", "ns"}, {"uid", "u1"}}}};

TEST(EventRecorderTest, RecordsAndCountsRepeats) {
  FakeApi api;
  core::FakeClock clock;
  kube::EventRecorder recorder(api, "vm-import-controller", clock, core::Logger());
  recorder.Record(kObject, "Normal", "Valid", "the import spec is valid");
  recorder.Record(kObject, "Normal", "Valid", "the import spec is valid");
  ASSERT_TRUE(recorder.Flush(milliseconds(2000)));
  const auto events = api.All("events");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].value("count", 0), 2);
  EXPECT_EQ(events[0]["involvedObject"].value("uid", ""), "u1");
}

TEST(EventRecorderTest, SlowApiServerNeverBlocksTheCaller) {
  FakeApi api;
  std::atomic<bool> release{false};
  api.SetInjector([&release](const FakeCall&) -> std::optional<core::Error> {
    while (!release) std::this_thread::sleep_for(milliseconds(1));
    return std::nullopt;
  });
  core::FakeClock clock;
  kube::EventRecorder recorder(api, "c", clock, core::Logger(), {.queue_size = 3});
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    recorder.Record(kObject, "Normal", "R", "message " + std::to_string(i));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(500));
  EXPECT_GE(recorder.DroppedEvents(), 6u);  // one in flight, three queued
  release = true;
  ASSERT_TRUE(recorder.Flush(milliseconds(2000)));
  EXPECT_EQ(api.All("events").size() + recorder.DroppedEvents(), 10u);
}

TEST(EventRecorderTest, InvalidUtf8IsReplacedNotThrown) {
  FakeApi api;
  core::FakeClock clock;
  kube::EventRecorder recorder(api, "c", clock, core::Logger());
  recorder.Record(kObject, "Warning", "Bad", std::string("vm-\xc3 name \xff"));
  ASSERT_TRUE(recorder.Flush(milliseconds(2000)));
  const auto events = api.All("events");
  ASSERT_EQ(events.size(), 1u);
  const std::string message = events[0].value("message", "");
  EXPECT_EQ(core::SanitizeUtf8(message), message);
  EXPECT_NE(message.find("\xef\xbf\xbd"), std::string::npos);
  EXPECT_NO_THROW((void)events[0].dump());
}

TEST(EventRecorderTest, FailedWritesAreCountedAndLogged) {
  FakeApi api;
  api.FailNext("create", "events", core::Error{core::ErrorCode::kUnavailable, "down"});
  core::FakeClock clock;
  kube::EventRecorder recorder(api, "c", clock, core::Logger());
  recorder.Record(kObject, "Normal", "R", "m");
  ASSERT_TRUE(recorder.Flush(milliseconds(2000)));
  EXPECT_EQ(recorder.FailedEvents(), 1u);
}

TEST(Utf8Test, SanitizeKeepsValidTextAndReplacesBadSequences) {
  EXPECT_EQ(core::SanitizeUtf8("vm-\xc3\xb1"
                               "and\xc3\xba"),
            "vm-\xc3\xb1"
            "and\xc3\xba");
  EXPECT_EQ(core::SanitizeUtf8("a\xc3"), "a\xef\xbf\xbd");
  EXPECT_EQ(core::SanitizeUtf8("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");  // overlong '/'
  EXPECT_EQ(core::SanitizeUtf8("\xed\xa0\x80"),
            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");                           // surrogate
  EXPECT_EQ(core::SanitizeUtf8("\xf4\x90\x80\x80").find("\xef\xbf\xbd"), 0u);  // > U+10FFFF
  EXPECT_EQ(core::SanitizeUtf8("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
}

}  // namespace
}  // namespace vmimport::testing
