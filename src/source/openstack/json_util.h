#pragma once

// Reading untrusted JSON without exceptions: every accessor checks the type and falls back to an
// empty value, so a field of the wrong type reads like a missing one. Thin names over core/json.h
// plus the one OpenStack habit it lacks (numbers sent as strings).

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/json.h"

namespace vmimport::source::openstack {

//! Parses `text`; nullopt when it is not JSON (never throws).
inline std::optional<nlohmann::json> ParseJson(std::string_view text) {
  return core::ParseJson(text);
}

//! j[key] when j is an object that has it, else nullptr.
inline const nlohmann::json* Member(const nlohmann::json& j, std::string_view key) {
  return core::JsonMember(j, key);
}

//! j[key] as a string; "" when missing or not a string.
inline std::string Str(const nlohmann::json& j, std::string_view key) {
  return core::JsonString(j, key);
}

//! j[key] as an integer (also from a numeric string, as some APIs send sizes); nullopt otherwise
//! (also for a float out of int64 range).
inline std::optional<int64_t> Int(const nlohmann::json& j, std::string_view key) {
  if (auto i = core::JsonInt(j, key)) {
    return i;
  }
  const nlohmann::json* m = Member(j, key);
  if (m == nullptr) {
    return std::nullopt;
  }
  if (m->is_number_float()) {
    const double d = m->get<double>();
    // 2^63 is exact as a double; the cast of anything outside [-2^63, 2^63) is undefined.
    if (!std::isfinite(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) {
      return std::nullopt;
    }
    return static_cast<int64_t>(d);
  }
  if (m->is_string()) {
    const auto& s = m->get_ref<const std::string&>();
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    return std::stoll(s);  // at most 18 digits: in range
  }
  return std::nullopt;
}

//! j[key] when it is an object or array of the wanted kind, else a static empty one.
inline const nlohmann::json& Obj(const nlohmann::json& j, std::string_view key) {
  return core::JsonObject(j, key);
}
inline const nlohmann::json& Arr(const nlohmann::json& j, std::string_view key) {
  return core::JsonArray(j, key);
}

}  // namespace vmimport::source::openstack
