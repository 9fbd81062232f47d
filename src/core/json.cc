#include "core/json.h"

#include <limits>

#include "core/strings.h"

namespace vmimport::core {

std::optional<Json> ParseJson(std::string_view text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return std::nullopt;
  }
  return j;
}

std::string DumpJson(const Json& j, int indent) {
  return j.dump(indent, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

void SanitizeJsonStrings(Json& j) {
  if (j.is_string()) {
    auto& text = j.get_ref<std::string&>();
    if (!IsValidUtf8(text)) {
      text = SanitizeUtf8(text);
    }
    return;
  }
  if (j.is_object() || j.is_array()) {
    for (Json& child : j) {
      SanitizeJsonStrings(child);
    }
  }
}

const Json* JsonMember(const Json& j, std::string_view key) {
  if (!j.is_object()) {
    return nullptr;
  }
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string JsonString(const Json& j, std::string_view key, std::string_view fallback) {
  const Json* m = JsonMember(j, key);
  if (m == nullptr || !m->is_string()) {
    return std::string(fallback);
  }
  return m->get_ref<const std::string&>();
}

std::optional<int64_t> JsonInt(const Json& j, std::string_view key) {
  const Json* m = JsonMember(j, key);
  if (m == nullptr) {
    return std::nullopt;
  }
  if (m->is_number_unsigned()) {
    const auto u = m->get_ref<const Json::number_unsigned_t&>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<int64_t>(u);
  }
  if (m->is_number_integer()) {
    return m->get_ref<const Json::number_integer_t&>();
  }
  return std::nullopt;
}

std::optional<uint64_t> JsonUint(const Json& j, std::string_view key) {
  const Json* m = JsonMember(j, key);
  if (m == nullptr || !m->is_number_unsigned()) {
    return std::nullopt;  // a negative number is a number_integer, not a number_unsigned
  }
  return m->get_ref<const Json::number_unsigned_t&>();
}

std::optional<double> JsonNumber(const Json& j, std::string_view key) {
  const Json* m = JsonMember(j, key);
  if (m == nullptr || !m->is_number()) {
    return std::nullopt;
  }
  return m->get<double>();  // is_number(): the conversion cannot throw
}

std::optional<bool> JsonBool(const Json& j, std::string_view key) {
  const Json* m = JsonMember(j, key);
  if (m == nullptr || !m->is_boolean()) {
    return std::nullopt;
  }
  return m->get_ref<const Json::boolean_t&>();
}

const Json& JsonObject(const Json& j, std::string_view key) {
  static const Json kEmpty = Json::object();
  const Json* m = JsonMember(j, key);
  return m != nullptr && m->is_object() ? *m : kEmpty;
}

const Json& JsonArray(const Json& j, std::string_view key) {
  static const Json kEmpty = Json::array();
  const Json* m = JsonMember(j, key);
  return m != nullptr && m->is_array() ? *m : kEmpty;
}

Result<std::string> RequireJsonString(const Json& j, std::string_view key, std::string_view path) {
  const Json* m = JsonMember(j, key);
  if (m == nullptr || !m->is_string()) {
    std::string where(path);
    if (!where.empty()) {
      where += '.';
    }
    where += key;
    return MakeError(ErrorCode::kInvalidArgument, where + ": expected a string");
  }
  return m->get_ref<const std::string&>();
}

}  // namespace vmimport::core
