#include "api/conditions.h"

#include <gtest/gtest.h>

#include "core/clock.h"

namespace vmimport::api {
namespace {

using namespace std::chrono_literals;

TEST(Conditions, TransitionTimeMovesOnlyWhenStatusFlips) {
  core::FakeClock clock;
  std::vector<Condition> conds;
  const auto t0 = clock.WallNow();
  EXPECT_TRUE(SetCondition(conds, {"ClusterReady", "False", "LoginFailed", "bad password"}, t0));
  ASSERT_EQ(conds.size(), 1U);
  EXPECT_EQ(conds[0].last_transition_time, core::FormatRfc3339(t0));

  // Same status, new message: update time moves, transition time stays.
  const auto t1 = t0 + 10s;
  EXPECT_TRUE(SetCondition(conds, {"ClusterReady", "False", "Unreachable", "refused"}, t1));
  EXPECT_EQ(conds[0].last_transition_time, core::FormatRfc3339(t0));
  EXPECT_EQ(conds[0].last_update_time, core::FormatRfc3339(t1));
  EXPECT_EQ(conds[0].reason, "Unreachable");

  // Nothing new: no change at all (no status write, no watch event).
  EXPECT_FALSE(SetCondition(conds, {"ClusterReady", "False", "Unreachable", "refused"}, t1 + 5s));
  EXPECT_EQ(conds[0].last_update_time, core::FormatRfc3339(t1));

  // The flip moves both.
  const auto t2 = t1 + 20s;
  EXPECT_TRUE(SetCondition(conds, {"ClusterReady", "True", "", ""}, t2));
  EXPECT_EQ(conds[0].last_transition_time, core::FormatRfc3339(t2));
  EXPECT_TRUE(IsConditionTrue(conds, "ClusterReady"));
  EXPECT_FALSE(IsConditionTrue(conds, "ClusterError"));
}

TEST(Conditions, JsonRoundTripKeepsTheReferenceFieldNames) {
  std::vector<Condition> conds{{"ClusterError", "True", "InvalidLogin", "login failed",
                                "2026-11-24T00:00:00Z", "2026-11-23T00:00:00Z"}};
  const auto j = ConditionsToJson(conds);
  EXPECT_EQ(j[0]["lastTransitionTime"], "2026-11-23T00:00:00Z");
  EXPECT_EQ(j[0]["lastUpdateTime"], "2026-11-24T00:00:00Z");
  const auto back = ConditionsFromJson(j);
  ASSERT_EQ(back.size(), 1U);
  EXPECT_EQ(back[0].reason, "InvalidLogin");
  EXPECT_EQ(back[0].last_update_time, "2026-11-24T00:00:00Z");
  EXPECT_TRUE(ConditionsFromJson(nlohmann::json::object()).empty());
}

}  // namespace
}  // namespace vmimport::api
