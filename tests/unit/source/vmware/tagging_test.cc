#include "source/vmware/tagging.h"

#include <gtest/gtest.h>

namespace vmimport::source::vmware {
namespace {

using Json = nlohmann::json;

TEST(RestBaseUrl, TheVapiRootOfAnSdkEndpoint) {
  EXPECT_EQ(RestBaseUrl("https://vc.example/sdk"), "https://vc.example/rest");
  EXPECT_EQ(RestBaseUrl("https://127.0.0.1:8989/sdk"), "https://127.0.0.1:8989/rest");
  EXPECT_EQ(RestBaseUrl("https://vc.example"), "https://vc.example/rest");
}

TEST(JoinVmTags, VirtualMachinesOnlyCategoryQualifiedSorted) {
  const std::map<std::string, TagInfo> tags = {
      {"t1", {"prod", "c1"}}, {"t2", {"web", "c2"}}, {"t3", {"orphan", "c-gone"}}};
  const std::map<std::string, std::string> categories = {{"c1", "env"}, {"c2", "tier"}};
  const Json attached = Json::parse(R"([
    {"tag_id": "t2", "object_ids": [{"id": "vm-1", "type": "VirtualMachine"}]},
    {"tag_id": "t1", "object_ids": [{"id": "vm-1", "type": "VirtualMachine"},
                                    {"id": "vm-2", "type": "VirtualMachine"},
                                    {"id": "host-9", "type": "HostSystem"}]},
    {"tag_id": "t3", "object_ids": [{"id": "vm-2", "type": "VirtualMachine"}]},
    {"tag_id": "t-new", "object_ids": [{"id": "vm-3", "type": "VirtualMachine"}]}
  ])");
  auto joined = JoinVmTags(tags, categories, attached);
  ASSERT_TRUE(joined) << joined.error().ToString();
  EXPECT_EQ(joined->size(), 2u);
  EXPECT_EQ(joined->at("vm-1"), (std::vector<std::string>{"env/prod", "tier/web"}));
  EXPECT_EQ(joined->at("vm-2"), (std::vector<std::string>{"?/orphan", "env/prod"}));
  EXPECT_FALSE(joined->contains("host-9"));
  EXPECT_TRUE(JoinVmTags(tags, categories, Json())->empty());  // vcsim leaves [] out
  EXPECT_FALSE(JoinVmTags(tags, categories, Json::object()));
}

}  // namespace
}  // namespace vmimport::source::vmware
