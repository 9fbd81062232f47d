#include "core/result.h"

#include <gtest/gtest.h>

namespace vmimport::core {
namespace {

Result<int> ParsePositive(int v) {
  if (v <= 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "value must be positive, got " + std::to_string(v));
  }
  return v;
}

TEST(Result, CarriesValueOrError) {
  auto ok = ParsePositive(3);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 3);
  auto bad = ParsePositive(-1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message, "value must be positive, got -1");
}

TEST(Error, WrapAddsContextInFront) {
  Error e{ErrorCode::kNotFound, "vm web-1 not found"};
  EXPECT_EQ(e.Wrap("vmware").Wrap("preflight").message, "preflight: vmware: vm web-1 not found");
  EXPECT_EQ(e.message, "vm web-1 not found");  // the const& overload copies
  EXPECT_EQ(e.ToString(), "NotFound: vm web-1 not found");
}

TEST(Error, TerminalOnlyForErrorsARetryCannotFix) {
  EXPECT_TRUE((Error{ErrorCode::kInvalidArgument, ""}).Terminal());
  EXPECT_TRUE((Error{ErrorCode::kCorruptData, ""}).Terminal());
  EXPECT_TRUE((Error{ErrorCode::kPermissionDenied, ""}).Terminal());
  EXPECT_FALSE((Error{ErrorCode::kUnavailable, ""}).Terminal());
  EXPECT_FALSE((Error{ErrorCode::kConflict, ""}).Terminal());
  EXPECT_FALSE((Error{ErrorCode::kDeadlineExceeded, ""}).Terminal());
}

}  // namespace
}  // namespace vmimport::core
