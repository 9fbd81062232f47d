#pragma once

// Reading untrusted JSON without exceptions: every accessor checks the type and falls back to an
// empty value, so a field of the wrong type reads like a missing one.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace vmimport::source::openstack {

//! Parses `text`; nullopt when it is not JSON (never throws).
inline std::optional<nlohmann::json> ParseJson(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return std::nullopt;
  }
  return j;
}

//! j[key] when j is an object that has it, else nullptr.
inline const nlohmann::json* Member(const nlohmann::json& j, std::string_view key) {
  if (!j.is_object()) {
    return nullptr;
  }
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

//! j[key] as a string; "" when missing or not a string.
inline std::string Str(const nlohmann::json& j, std::string_view key) {
  const nlohmann::json* m = Member(j, key);
  return m != nullptr && m->is_string() ? m->get<std::string>() : std::string();
}

//! j[key] as an integer (also from a numeric string, as some APIs send sizes); nullopt otherwise.
inline std::optional<int64_t> Int(const nlohmann::json& j, std::string_view key) {
  const nlohmann::json* m = Member(j, key);
  if (m == nullptr) {
    return std::nullopt;
  }
  if (m->is_number_integer()) {
    return m->get<int64_t>();
  }
  if (m->is_number_float()) {
    return static_cast<int64_t>(m->get<double>());
  }
  if (m->is_string()) {
    const std::string s = m->get<std::string>();
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    return std::stoll(s);
  }
  return std::nullopt;
}

//! j[key] when it is an object or array of the wanted kind, else a static empty one.
inline const nlohmann::json& Obj(const nlohmann::json& j, std::string_view key) {
  static const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json* m = Member(j, key);
  return m != nullptr && m->is_object() ? *m : empty;
}
inline const nlohmann::json& Arr(const nlohmann::json& j, std::string_view key) {
  static const nlohmann::json empty = nlohmann::json::array();
  const nlohmann::json* m = Member(j, key);
  return m != nullptr && m->is_array() ? *m : empty;
}

}  // namespace vmimport::source::openstack
