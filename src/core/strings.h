#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmimport::core {

std::string_view TrimSpace(std::string_view s);
std::vector<std::string_view> Split(std::string_view s, char sep);
std::string ToLower(std::string_view s);
//! The parts with `sep` between them.
std::string Join(const std::vector<std::string>& parts, std::string_view sep);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

//! Standard base64 (RFC 4648 §4); padding optional, whitespace ignored. nullopt on a bad character.
std::optional<std::string> Base64Decode(std::string_view in);
std::string Base64Encode(std::string_view in);

//! Lower-case hex of `bytes`.
std::string HexEncode(std::string_view bytes);

//! Percent-encodes everything except RFC 3986 unreserved characters (for URL path segments and
//! query values).
std::string UrlEncode(std::string_view s);

}  // namespace vmimport::core
