#include "controller/runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace vmimport::controller {
namespace {

using namespace std::chrono_literals;

class ScriptedReconciler final : public Reconciler {
 public:
  std::function<core::Result<ReconcileResult>(const std::string&)> script;
  std::atomic<int> calls{0};
  // controller::Reconciler
  core::Result<ReconcileResult> Reconcile(std::stop_token, const std::string& key) override {
    calls++;
    return script(key);
  }
};

core::Logger QuietLog() {
  return core::Logger(std::make_shared<core::MemorySink>(), core::LogLevel::kDebug,
                      core::LogFormat::kLogfmt);
}

void WaitFor(const std::function<bool()>& pred) {
  for (int i = 0; i < 2000 && !pred(); ++i) {
    std::this_thread::sleep_for(1ms);
  }
}

TEST(Runner, SuccessForgetsTheKey) {
  core::SystemClock clock;
  WorkQueue q(clock);
  ScriptedReconciler r;
  r.script = [](const std::string&) { return ReconcileResult{}; };
  Runner runner("test", q, r, QuietLog());
  runner.Start(2);
  q.Add("ns/a");
  WaitFor([&] { return r.calls.load() == 1; });
  runner.Stop();
  EXPECT_EQ(r.calls.load(), 1);
  EXPECT_EQ(q.NumRequeues("ns/a"), 0);
}

TEST(Runner, RetryableErrorBacksOffAndRetries) {
  core::SystemClock clock;
  WorkQueue q(clock);
  ScriptedReconciler r;
  r.script = [&r](const std::string&) -> core::Result<ReconcileResult> {
    if (r.calls.load() < 3) {
      return core::MakeError(core::ErrorCode::kUnavailable, "peer down");
    }
    return ReconcileResult{};
  };
  Runner runner("test", q, r, QuietLog());
  runner.Start(1);
  q.Add("ns/a");
  WaitFor([&] { return r.calls.load() >= 3; });
  runner.Stop();
  EXPECT_EQ(r.calls.load(), 3);
  EXPECT_EQ(runner.stats().errors.load(), 2U);
}

TEST(Runner, TerminalErrorIsNotRetried) {
  core::SystemClock clock;
  WorkQueue q(clock);
  ScriptedReconciler r;
  r.script = [](const std::string&) -> core::Result<ReconcileResult> {
    return core::MakeError(core::ErrorCode::kInvalidArgument, "bad spec");
  };
  Runner runner("test", q, r, QuietLog());
  runner.Start(1);
  q.Add("ns/a");
  WaitFor([&] { return r.calls.load() >= 1; });
  std::this_thread::sleep_for(50ms);  // a retry would come after 5 ms
  runner.Stop();
  EXPECT_EQ(r.calls.load(), 1);
  EXPECT_EQ(q.DelayedLen(), 0U);
}

TEST(Runner, RequeueAfterSchedulesTheKeyAgain) {
  core::FakeClock clock;
  WorkQueue q(clock);
  ScriptedReconciler r;
  r.script = [](const std::string&) { return ReconcileResult{.requeue_after = 30s}; };
  Runner runner("test", q, r, QuietLog());
  runner.Start(1);
  q.Add("ns/a");
  WaitFor([&] { return q.DelayedLen() == 1; });
  EXPECT_EQ(r.calls.load(), 1);
  clock.Advance(30s);
  q.Tick();
  WaitFor([&] { return r.calls.load() == 2; });
  runner.Stop();
  EXPECT_EQ(r.calls.load(), 2);
}

TEST(Runner, AnExceptionIsCaughtCountedAndRetried) {
  core::SystemClock clock;
  WorkQueue q(clock);
  ScriptedReconciler r;
  r.script = [&r](const std::string&) -> core::Result<ReconcileResult> {
    if (r.calls.load() == 1) {
      throw std::runtime_error("boom");
    }
    return ReconcileResult{};
  };
  Runner runner("test", q, r, QuietLog());
  runner.Start(1);
  q.Add("ns/a");
  WaitFor([&] { return r.calls.load() >= 2; });
  runner.Stop();
  EXPECT_EQ(runner.stats().panics.load(), 1U);
  EXPECT_EQ(r.calls.load(), 2);
}

}  // namespace
}  // namespace vmimport::controller
