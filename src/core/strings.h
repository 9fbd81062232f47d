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

//! The length (1-4) of the well-formed UTF-8 sequence that starts at s[pos] (RFC 3629: no
//! overlong forms, no surrogates, nothing above U+10FFFF); 0 when the bytes there are not one.
size_t Utf8SequenceLength(std::string_view s, size_t pos);
bool IsValidUtf8(std::string_view s);
//! `s` with each byte that does not belong to a well-formed UTF-8 sequence replaced by U+FFFD:
//! text from a source (VM names, fault messages, peer errors) made safe for status, Events, logs.
std::string SanitizeUtf8(std::string_view s);
//! At most `max_bytes` of `s`, cut before a UTF-8 sequence that would not fit whole.
std::string_view TruncateUtf8(std::string_view s, size_t max_bytes);

}  // namespace vmimport::core
