#include "core/result.h"

namespace vmimport::core {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "InvalidArgument";
    case ErrorCode::kNotFound: return "NotFound";
    case ErrorCode::kGone: return "Gone";
    case ErrorCode::kAlreadyExists: return "AlreadyExists";
    case ErrorCode::kConflict: return "Conflict";
    case ErrorCode::kUnavailable: return "Unavailable";
    case ErrorCode::kDeadlineExceeded: return "DeadlineExceeded";
    case ErrorCode::kUnauthenticated: return "Unauthenticated";
    case ErrorCode::kPermissionDenied: return "PermissionDenied";
    case ErrorCode::kCorruptData: return "CorruptData";
    case ErrorCode::kUnsupported: return "Unsupported";
    case ErrorCode::kCancelled: return "Cancelled";
    case ErrorCode::kInternal: return "Internal";
  }
  return "Unknown";
}

bool Error::Terminal() const {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kPermissionDenied:
    case ErrorCode::kCorruptData:
    case ErrorCode::kUnsupported: return true;
    case ErrorCode::kNotFound:
    case ErrorCode::kGone:
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kConflict:
    case ErrorCode::kUnavailable:
    case ErrorCode::kDeadlineExceeded:
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kCancelled:
    case ErrorCode::kInternal: return false;
  }
  return false;
}

Error Error::Wrap(std::string_view context) const& {
  Error copy = *this;
  return std::move(copy).Wrap(context);
}

Error Error::Wrap(std::string_view context) && {
  std::string wrapped;
  wrapped.reserve(context.size() + 2 + message.size());
  wrapped.append(context).append(": ").append(message);
  message = std::move(wrapped);
  return std::move(*this);
}

std::string Error::ToString() const {
  std::string out(ErrorCodeName(code));
  out.append(": ").append(message);
  return out;
}

}  // namespace vmimport::core
