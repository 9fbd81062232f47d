#pragma once

// Conditions as our CRDs write them (the reference's common.Condition): type, status
// (True/False/Unknown), lastUpdateTime, lastTransitionTime, reason, message.
// Unlike the reference, lastTransitionTime moves only when status flips (the apimachinery
// SetStatusCondition rule); lastUpdateTime moves whenever anything else changes.

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace vmimport::api {

struct Condition {
  std::string type;
  std::string status;  //!< "True", "False" or "Unknown"
  std::string reason;
  std::string message;
  std::string last_update_time;      //!< RFC 3339
  std::string last_transition_time;  //!< RFC 3339
};

//! Sets `c` into `conditions` (matched on type). Returns true when anything changed.
bool SetCondition(std::vector<Condition>& conditions, Condition c,
                  std::chrono::system_clock::time_point now);
const Condition* FindCondition(const std::vector<Condition>& conditions, const std::string& type);
bool IsConditionTrue(const std::vector<Condition>& conditions, const std::string& type);

nlohmann::json ConditionsToJson(const std::vector<Condition>& conditions);
//! Reads a conditions array; entries that are not objects are skipped.
std::vector<Condition> ConditionsFromJson(const nlohmann::json& array);

}  // namespace vmimport::api
