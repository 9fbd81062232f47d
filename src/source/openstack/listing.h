// The OpenStack inventory in a constant number of calls: every server of the project described
// from paged listings (Nova's /servers/detail, Cinder's /volumes/detail, Glance's /v2/images),
// never one request per server. Used by `kubectl vmimport list` and a plan's selection.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <vector>

#include "core/result.h"
#include "model/vm.h"
#include "source/openstack/client.h"

namespace vmimport::source::openstack {

//! What a listing cost: requests to the services (the login is not counted) and pages per
//! service. `requests` = `server_pages + volume_pages + image_pages + volume_reads`.
struct ListingStats {
  uint64_t requests = 0;
  int server_pages = 0;
  int volume_pages = 0;
  int image_pages = 0;   //!< 0 when no server boots from an image
  int volume_reads = 0;  //!< volumes attached but absent from the listing (another project's)
};

struct ServerListing {
  std::vector<model::VmDescription> vms;  //!< in Nova's order
  ListingStats stats;
};

//! Every server of the session's project, described from listings: GET /servers/detail
//! (microversion 2.47: flavor, metadata, OS-EXT-SRV-ATTR:host, attached volumes, addresses),
//! GET /volumes/detail (sizes, devices, types, boot-image metadata) and, when a server boots from
//! an image, GET /v2/images (firmware, bus and NIC model properties), each paged by `limit` and
//! `marker` with `page_size` per page. NICs come from the addresses (network name, MAC), not
//! from os-interface. A volume attached to a server but absent from the listing is read on its
//! own. Errors: the session's (ApiError naming the listing), kInternal for an answer that is not
//! a listing. Safe to repeat; reads only.
core::Result<ServerListing> ListServers(std::stop_token stop, Session& session,
                                        int page_size = 1000);

//! Whether a listing page says more follows: Nova's and Cinder's `<key>_links` with rel "next",
//! Glance's `next`.
bool HasNextPage(const nlohmann::json& page, const char* links_key);

}  // namespace vmimport::source::openstack
