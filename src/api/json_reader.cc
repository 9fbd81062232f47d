#include "api/json_reader.h"

#include <limits>
#include <utility>

namespace vmimport::api {

using nlohmann::json;

ObjectReader::ObjectReader(const json& object, std::string path)
    : object_(object), path_(std::move(path)) {}

std::string ObjectReader::PathOf(std::string_view key) const {
  std::string out = path_;
  if (!out.empty()) {
    out += '.';
  }
  out += key;
  return out;
}

void ObjectReader::Fail(std::string_view key, std::string_view expected) {
  if (!error_) {
    error_ = core::Error{core::ErrorCode::kInvalidArgument,
                         PathOf(key) + ": expected " + std::string(expected)};
  }
}

const json* ObjectReader::Lookup(std::string_view key) {
  known_.emplace(key);
  if (error_ || !object_.is_object()) {
    return nullptr;
  }
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) {
    return nullptr;
  }
  return &*it;
}

void ObjectReader::String(std::string_view key, std::string& out) {
  const json* v = Lookup(key);
  if (v == nullptr) {
    return;
  }
  if (!v->is_string()) {
    return Fail(key, "a string");
  }
  out = v->get_ref<const std::string&>();
}

void ObjectReader::OptString(std::string_view key, std::optional<std::string>& out) {
  const json* v = Lookup(key);
  if (v == nullptr) {
    return;
  }
  if (!v->is_string()) {
    return Fail(key, "a string");
  }
  out = v->get_ref<const std::string&>();
}

void ObjectReader::OptBool(std::string_view key, std::optional<bool>& out) {
  const json* v = Lookup(key);
  if (v == nullptr) {
    return;
  }
  if (!v->is_boolean()) {
    return Fail(key, "a boolean");
  }
  out = v->get<bool>();
}

void ObjectReader::Int64(std::string_view key, int64_t& out) {
  const json* v = Lookup(key);
  if (v == nullptr) {
    return;
  }
  if (v->is_number_unsigned()) {
    const auto u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Fail(key, "a 64-bit signed integer");
    }
    out = static_cast<int64_t>(u);
    return;
  }
  if (!v->is_number_integer()) {
    return Fail(key, "an integer");
  }
  out = v->get<int64_t>();
}

void ObjectReader::Int32(std::string_view key, int32_t& out) {
  int64_t wide = out;
  Int64(key, wide);
  if (wide < std::numeric_limits<int32_t>::min() || wide > std::numeric_limits<int32_t>::max()) {
    return Fail(key, "a 32-bit integer");
  }
  out = static_cast<int32_t>(wide);
}

void ObjectReader::Uint64(std::string_view key, uint64_t& out) {
  const json* v = Lookup(key);
  if (v == nullptr) {
    return;
  }
  // A negative number is a number_integer but not a number_unsigned.
  if (!v->is_number_unsigned()) {
    return Fail(key, "a non-negative integer");
  }
  out = v->get<uint64_t>();
}

void ObjectReader::OptDouble(std::string_view key, std::optional<double>& out) {
  const json* v = Lookup(key);
  if (v == nullptr) {
    return;
  }
  if (!v->is_number()) {
    return Fail(key, "a number");
  }
  out = v->get<double>();
}

const json* ObjectReader::Child(std::string_view key, json::value_t type) {
  const json* v = Lookup(key);
  if (v == nullptr) {
    return nullptr;
  }
  if (v->type() != type) {
    Fail(key, type == json::value_t::array ? "an array" : "an object");
    return nullptr;
  }
  return v;
}

json ObjectReader::Unknown() const {
  json out = json::object();
  if (!object_.is_object()) {
    return out;
  }
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (known_.find(it.key()) == known_.end()) {
      out[it.key()] = it.value();
    }
  }
  return out;
}

core::Status ObjectReader::Finish() const {
  if (error_) {
    return core::MakeError(*error_);
  }
  return core::Ok();
}

core::Status ExpectObject(const json& j, std::string_view path) {
  if (!j.is_object()) {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           std::string(path) + ": expected an object");
  }
  return core::Ok();
}

void MergeUnknown(json& out, const json& extra) {
  if (!extra.is_object()) {
    return;
  }
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    if (!out.contains(it.key())) {
      out[it.key()] = it.value();
    }
  }
}

}  // namespace vmimport::api
