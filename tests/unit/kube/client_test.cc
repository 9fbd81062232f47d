#include "kube/client.h"

#include <gtest/gtest.h>

namespace vmimport::kube {
namespace {

using core::ErrorCode;

TEST(Resource, BuildsPathsForCoreGroupNamedGroupsAndClusterScope) {
  const Resource pods{"", "v1", "pods", true};
  EXPECT_EQ(pods.Path("default"), "/api/v1/namespaces/default/pods");
  EXPECT_EQ(pods.Path("default", "p1", "status"), "/api/v1/namespaces/default/pods/p1/status");
  const Resource sources{"migration.harvesterhci.io", "v1beta1", "vmwaresources", true};
  EXPECT_EQ(sources.Path("ns", "vc"),
            "/apis/migration.harvesterhci.io/v1beta1/namespaces/ns/vmwaresources/vc");
  EXPECT_EQ(sources.Path(""), "/apis/migration.harvesterhci.io/v1beta1/vmwaresources");
  EXPECT_EQ(sources.ApiVersion(), "migration.harvesterhci.io/v1beta1");
  const Resource classes{"storage.k8s.io", "v1", "storageclasses", false};
  EXPECT_EQ(classes.Path("ignored", "longhorn"), "/apis/storage.k8s.io/v1/storageclasses/longhorn");
}

TEST(ApiStatus, ParsesInvalidWithCauses) {
  const std::string body = R"({"kind":"Status","apiVersion":"v1","status":"Failure",
    "message":"VmwareSource.migration.harvesterhci.io \"x\" is invalid","reason":"Invalid",
    "details":{"causes":[{"reason":"FieldValueTypeInvalid","message":"Invalid value: \"integer\"",
    "field":"spec.endpoint"}]},"code":422})";
  auto s = ParseApiStatus(422, body);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->reason, "Invalid");
  ASSERT_EQ(s->causes.size(), 1U);
  EXPECT_EQ(s->causes[0], "spec.endpoint: Invalid value: \"integer\"");
  EXPECT_EQ(ErrorCodeFor(*s), ErrorCode::kInvalidArgument);
}

TEST(ApiStatus, MapsCodesAndReasons) {
  auto code = [](long http, const std::string& reason) {
    ApiStatus s;
    s.code = http;
    s.reason = reason;
    return ErrorCodeFor(s);
  };
  EXPECT_EQ(code(404, "NotFound"), ErrorCode::kNotFound);
  EXPECT_EQ(code(409, "AlreadyExists"), ErrorCode::kAlreadyExists);
  EXPECT_EQ(code(409, "Conflict"), ErrorCode::kConflict);
  EXPECT_EQ(code(401, "Unauthorized"), ErrorCode::kUnauthenticated);
  EXPECT_EQ(code(403, "Forbidden"), ErrorCode::kPermissionDenied);
  EXPECT_EQ(code(429, "TooManyRequests"), ErrorCode::kUnavailable);
  EXPECT_EQ(code(503, "ServiceUnavailable"), ErrorCode::kUnavailable);
  EXPECT_EQ(code(504, "Timeout"), ErrorCode::kDeadlineExceeded);
  ApiStatus quota;  // what kube-apiserver says when a ResourceQuota refuses a create
  quota.code = 403;
  quota.reason = "Forbidden";
  quota.message =
      "virtualmachineimages.harvesterhci.io \"img\" is forbidden: exceeded quota: hold, "
      "requested: count/virtualmachineimages.harvesterhci.io=1, used: "
      "count/virtualmachineimages.harvesterhci.io=0, limited: "
      "count/virtualmachineimages.harvesterhci.io=0";
  EXPECT_EQ(ErrorCodeFor(quota), ErrorCode::kUnavailable);
}

TEST(ApiStatus, ReadsRetryAfterAndToleratesNonStatusBodies) {
  auto s = ParseApiStatus(
      429, R"({"kind":"Status","reason":"TooManyRequests","details":{"retryAfterSeconds":3}})");
  ASSERT_TRUE(s && s->retry_after);
  EXPECT_EQ(s->retry_after->count(), 3);
  auto html = ParseApiStatus(502, "<html>bad gateway</html>");
  ASSERT_TRUE(html);
  EXPECT_EQ(html->code, 502);
  EXPECT_EQ(html->message, "<html>bad gateway</html>");
}

}  // namespace
}  // namespace vmimport::kube
