#include "api/conditions.h"

#include "core/clock.h"
#include "core/json.h"

namespace vmimport::api {

bool SetCondition(std::vector<Condition>& conditions, Condition c,
                  std::chrono::system_clock::time_point now) {
  const std::string stamp = core::FormatRfc3339(now);
  for (Condition& existing : conditions) {
    if (existing.type != c.type) {
      continue;
    }
    if (existing.status == c.status && existing.reason == c.reason &&
        existing.message == c.message) {
      return false;  // nothing to write: keeps status updates (and watch events) quiet
    }
    if (existing.status != c.status) {
      existing.last_transition_time = stamp;
    }
    existing.status = std::move(c.status);
    existing.reason = std::move(c.reason);
    existing.message = std::move(c.message);
    existing.last_update_time = stamp;
    return true;
  }
  c.last_update_time = stamp;
  c.last_transition_time = stamp;
  conditions.push_back(std::move(c));
  return true;
}

const Condition* FindCondition(const std::vector<Condition>& conditions, const std::string& type) {
  for (const Condition& c : conditions) {
    if (c.type == type) {
      return &c;
    }
  }
  return nullptr;
}

bool IsConditionTrue(const std::vector<Condition>& conditions, const std::string& type) {
  const Condition* c = FindCondition(conditions, type);
  return c != nullptr && c->status == "True";
}

nlohmann::json ConditionsToJson(const std::vector<Condition>& conditions) {
  nlohmann::json out = nlohmann::json::array();
  for (const Condition& c : conditions) {
    nlohmann::json j = {{"type", c.type}, {"status", c.status}};
    if (!c.last_update_time.empty()) {
      j["lastUpdateTime"] = c.last_update_time;
    }
    if (!c.last_transition_time.empty()) {
      j["lastTransitionTime"] = c.last_transition_time;
    }
    if (!c.reason.empty()) {
      j["reason"] = c.reason;
    }
    if (!c.message.empty()) {
      j["message"] = c.message;
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::vector<Condition> ConditionsFromJson(const nlohmann::json& array) {
  std::vector<Condition> out;
  if (!array.is_array()) {
    return out;
  }
  auto str = [](const nlohmann::json& j, const char* key) { return core::JsonString(j, key); };
  for (const auto& j : array) {
    if (!j.is_object()) {
      continue;
    }
    out.push_back(Condition{str(j, "type"), str(j, "status"), str(j, "reason"), str(j, "message"),
                            str(j, "lastUpdateTime"), str(j, "lastTransitionTime")});
  }
  return out;
}

}  // namespace vmimport::api
