#pragma once

// Reading and writing JSON without exceptions. nlohmann's accessors throw on a wrong type
// (value() on a non-object, get<> of another type, const operator[] of a missing key) and dump()
// throws on invalid UTF-8; a throw from a libcurl callback, an informer handler or a reconcile is
// a crash or a silent retry loop. Code outside a parser adapter reads untrusted JSON only through
// these: a missing key, a null and a value of the wrong type all read as absent.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace vmimport::core {

using Json = nlohmann::json;

//! Parses `text`; nullopt when it is not JSON (also when a string in it is not UTF-8).
std::optional<Json> ParseJson(std::string_view text);

//! Serializes `j` (compact, or indented by `indent` spaces when >= 0). Never throws: a string
//! that is not valid UTF-8 is written with U+FFFD in place of each bad byte.
std::string DumpJson(const Json& j, int indent = -1);

//! Replaces, in every string value of `j` (recursively), each byte that is not UTF-8 by U+FFFD:
//! after it, even a strict dump() of `j` cannot throw (object keys are left as they are).
void SanitizeJsonStrings(Json& j);

//! j[key] when `j` is an object that has `key`, else nullptr (never inserts, never throws).
const Json* JsonMember(const Json& j, std::string_view key);

//! j[key] as a string; `fallback` when `j` is not an object or the key is missing or not a string.
std::string JsonString(const Json& j, std::string_view key, std::string_view fallback = {});
//! j[key] as a signed integer; nullopt when missing, not an integer or out of int64 range.
std::optional<int64_t> JsonInt(const Json& j, std::string_view key);
//! j[key] as an unsigned integer; nullopt when missing, not an integer or negative.
std::optional<uint64_t> JsonUint(const Json& j, std::string_view key);
//! j[key] as a number (integer or float); nullopt otherwise.
std::optional<double> JsonNumber(const Json& j, std::string_view key);
//! j[key] as a boolean; nullopt otherwise.
std::optional<bool> JsonBool(const Json& j, std::string_view key);
//! j[key] when it is an object (resp. array); otherwise a shared empty object (resp. array).
const Json& JsonObject(const Json& j, std::string_view key);
const Json& JsonArray(const Json& j, std::string_view key);

//! j[key] as a string, or kInvalidArgument "<path>.<key>: expected a string" when it is missing
//! or of another type (`path` names `j`, e.g. "watch event").
[[nodiscard]] Result<std::string> RequireJsonString(const Json& j, std::string_view key,
                                                    std::string_view path);

}  // namespace vmimport::core
