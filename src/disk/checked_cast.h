#pragma once

// Deliberate narrowing conversions, in one place (-Wconversion is on everywhere).
//  - CheckedCast: for values whose range is an invariant the code already established; a value
//    out of range is a bug, so it aborts with a message (also in release builds).
//  - TryCast: for values that come from untrusted input; nullopt when the value does not fit.

#include <concepts>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <utility>

namespace vmimport::disk {

template <std::integral To, std::integral From>
constexpr To CheckedCast(From value) {
  if (!std::in_range<To>(value)) {
    std::fputs("vmimport: CheckedCast: value out of range (broken invariant)\n", stderr);
    std::abort();
  }
  return static_cast<To>(value);
}

template <std::integral To, std::integral From>
constexpr std::optional<To> TryCast(From value) {
  if (!std::in_range<To>(value)) {
    return std::nullopt;
  }
  return static_cast<To>(value);
}

}  // namespace vmimport::disk
