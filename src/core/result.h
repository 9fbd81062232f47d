#pragma once

// Error values for the whole project: expected failures (API errors, unreachable peers, corrupt
// images) are returned as Result<T>, never thrown. See docs/adr/0001-result-over-exceptions.md.

#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>

namespace vmimport::core {

enum class ErrorCode {
  kInvalidArgument,   // the caller's input (a spec, a flag, a file) is wrong: terminal
  kNotFound,          // the named object does not exist
  kGone,              // a version that existed is no longer available (compacted watch)
  kAlreadyExists,     // create of an object that exists
  kConflict,          // optimistic-concurrency conflict: re-read and retry
  kUnavailable,       // peer unreachable or answered 5xx/429: retry with backoff
  kDeadlineExceeded,  // a timeout
  kUnauthenticated,   // credentials missing, wrong or expired
  kPermissionDenied,  // authenticated but not allowed: terminal
  kCorruptData,       // bytes that do not parse: terminal
  kUnsupported,       // a valid input we do not handle: terminal
  kCancelled,         // a stop was requested
  kInternal,          // a bug or a peer answer that makes no sense
};

std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;  // lowercase, no trailing period, names the object/file/offset

  //! True for errors a retry cannot fix (invalid spec, corrupt image, permission).
  bool Terminal() const;
  //! Prefixes the message with context: "vmware: login: " + message.
  Error Wrap(std::string_view context) const&;
  Error Wrap(std::string_view context) &&;
  std::string ToString() const;
};

template <class T>
using Result = tl::expected<T, Error>;
using Status = Result<void>;

inline tl::unexpected<Error> MakeError(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}
inline tl::unexpected<Error> MakeError(Error error) {
  return tl::unexpected<Error>(std::move(error));
}

inline Status Ok() { return {}; }

}  // namespace vmimport::core
