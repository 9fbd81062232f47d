#pragma once

// vSphere tags (issue 23: a plan may select VMs by tag). vim25's SOAP API has no tags: vCenter
// serves them on the vAPI REST endpoints (/rest/com/vmware/cis/session and
// /rest/com/vmware/cis/tagging/{tag,category,tag-association}). Reading the tags of every VM
// costs a constant number of calls whatever the VM count: a session, the tag list, one read per
// tag and per category, one list-attached-objects-on-tags for all tags at once, the logout
// (5 + tags + categories).

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <string>
#include <vector>

#include "core/result.h"
#include "http/client.h"

namespace vmimport::source::vmware {

//! VM moref value -> its tags, each "category/tag", sorted.
using VmTagMap = std::map<std::string, std::vector<std::string>>;

//! The vAPI REST base of a vCenter endpoint: "https://vc/sdk" or "https://vc" -> "https://vc/rest".
std::string RestBaseUrl(const std::string& endpoint);

struct TagInfo {
  std::string name;
  std::string category_id;
};

//! Joins the answers: `tags` by tag id, `category_names` by category id, and `attached` (the
//! value of list-attached-objects-on-tags: [{tag_id, object_ids: [{id, type}]}]). Only objects of
//! type VirtualMachine count; a tag whose category is unknown is "?/tag". Errors:
//! kInvalidArgument when `attached` is not that shape.
core::Result<VmTagMap> JoinVmTags(const std::map<std::string, TagInfo>& tags,
                                  const std::map<std::string, std::string>& category_names,
                                  const nlohmann::json& attached);

//! Logs in to the vAPI endpoint of `endpoint` with `user`/`password` (HTTP basic, once), reads
//! every tag, its category and what each is attached to, logs out. `calls`, when given, receives
//! the number of REST requests sent. Errors: kUnauthenticated for a refused login, kUnsupported
//! when the endpoint serves no vAPI (404 on the session), the transport's otherwise, each
//! message starting "vsphere tags: ". Thread-safe as `http` is (one call at a time on it).
core::Result<VmTagMap> ListVmTags(std::stop_token stop, http::Client& http,
                                  const std::string& endpoint, const std::string& user,
                                  const std::string& password, uint64_t* calls = nullptr);

}  // namespace vmimport::source::vmware
