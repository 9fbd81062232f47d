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

//! `s` with every byte sequence that is not well-formed UTF-8 (RFC 3629: no overlong forms, no
//! surrogates, nothing above U+10FFFF) replaced by U+FFFD: safe to put in JSON, status, Events
//! and logs. Valid text is returned unchanged.
std::string SanitizeUtf8(std::string_view s);
//! Length of the well-formed UTF-8 sequence at the start of `s`; 0 when it is not one.
size_t Utf8SequenceLength(std::string_view s);

}  // namespace vmimport::core
