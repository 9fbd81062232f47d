#pragma once

// Unguessable tokens for disk URLs: the URL is the capability, so it carries 256 bits from the
// kernel's CSPRNG (getrandom(2)), hex-encoded.

#include <string>

#include "core/result.h"

namespace vmimport::imageserver {

inline constexpr size_t kTokenBytes = 32;

//! 64 lower-case hex characters. kInternal if the kernel has no randomness to give.
[[nodiscard]] core::Result<std::string> NewToken();

//! True for strings NewToken could have made (length and alphabet).
bool LooksLikeToken(std::string_view s);

}  // namespace vmimport::imageserver
