#include "source/openstack/listing.h"

#include <algorithm>
#include <map>
#include <string>

#include "core/strings.h"
#include "source/openstack/describe.h"
#include "source/openstack/json_util.h"

namespace vmimport::source::openstack {

using core::ErrorCode;
using core::MakeError;
using nlohmann::json;

namespace {

// Microversion 2.47 embeds the flavor (vcpus, ram) in each server; older Novas ignore it (then
// the server has a flavor id only and counts 1 vCPU and 0 MiB, as the listing reads no flavor).
const http::Headers kComputeMicroversion = {{"OpenStack-API-Version", "compute 2.47"},
                                            {"X-OpenStack-Nova-API-Version", "2.47"}};

// Every page of `path` (no query of its own): `limit`, then `marker` = the last item's id while
// the page says more follows. Appends the items to `out`; returns the page count.
core::Result<int> ReadPages(std::stop_token stop, Session& session, Service service,
                            const std::string& path, const char* items_key, const char* links_key,
                            int page_size, const http::Headers& headers, std::vector<json>& out) {
  std::string marker;
  int pages = 0;
  for (;;) {
    std::string query = path + "?limit=" + std::to_string(page_size);
    if (!marker.empty()) {
      query += "&marker=" + core::UrlEncode(marker);
    }
    auto page = session.Call(stop, service, "GET", query, "list " + std::string(items_key), nullptr,
                             headers);
    if (!page) {
      return MakeError(page.error());
    }
    ++pages;
    const json* items = Member(*page, items_key);
    if (items == nullptr || !items->is_array()) {
      return MakeError(ErrorCode::kInternal, std::string(ServiceName(service)) + ": GET " + path +
                                                 ": the answer has no \"" + items_key + "\"");
    }
    out.insert(out.end(), items->begin(), items->end());
    if (items->empty() || !HasNextPage(*page, links_key)) {
      return pages;
    }
    std::string next = Str(items->back(), "id");
    if (next.empty() || next == marker) {
      return MakeError(ErrorCode::kInternal, std::string(ServiceName(service)) + ": GET " + path +
                                                 ": a page ends without a new marker");
    }
    marker = std::move(next);
  }
}

}  // namespace

bool HasNextPage(const json& page, const char* links_key) {
  for (const json& link : Arr(page, links_key)) {
    if (Str(link, "rel") == "next") {
      return true;
    }
  }
  return !Str(page, "next").empty();  // Glance
}

core::Result<ServerListing> ListServers(std::stop_token stop, Session& session, int page_size) {
  ServerListing listing;
  const uint64_t requests_before = session.requests();
  page_size = std::max(page_size, 1);

  std::vector<json> servers;
  auto server_pages = ReadPages(stop, session, Service::kCompute, "/servers/detail", "servers",
                                "servers_links", page_size, kComputeMicroversion, servers);
  if (!server_pages) {
    return MakeError(server_pages.error());
  }
  listing.stats.server_pages = *server_pages;
  std::vector<Server> parsed;
  bool any_image = false;
  bool any_volume = false;
  for (const json& s : servers) {
    auto server = ParseServerObject(s);
    if (!server) {
      return MakeError(server.error());
    }
    any_image |= !server->image_id.empty();
    any_volume |= !server->volume_ids.empty();
    parsed.push_back(std::move(*server));
  }

  std::map<std::string, json> volumes;  // id → volume object
  if (any_volume) {
    std::vector<json> items;
    auto pages = ReadPages(stop, session, Service::kBlockStorage, "/volumes/detail", "volumes",
                           "volumes_links", page_size, {}, items);
    if (!pages) {
      return MakeError(pages.error());
    }
    listing.stats.volume_pages = *pages;
    for (json& v : items) {
      std::string id = Str(v, "id");
      volumes.emplace(std::move(id), std::move(v));
    }
  }
  std::map<std::string, std::map<std::string, std::string>> images;  // id → properties
  if (any_image) {
    std::vector<json> items;
    auto pages = ReadPages(stop, session, Service::kImage, "/v2/images", "images", "images_links",
                           page_size, {}, items);
    if (!pages) {
      return MakeError(pages.error());
    }
    listing.stats.image_pages = *pages;
    for (const json& i : items) {
      images.emplace(Str(i, "id"), ParseImageProperties(i));
    }
  }

  for (Server& server : parsed) {
    ServerFacts facts;
    for (const std::string& vid : server.volume_ids) {
      auto it = volumes.find(vid);
      if (it == volumes.end()) {  // not in the project's listing: read it on its own
        auto doc = session.Call(stop, Service::kBlockStorage, "GET", "/volumes/" + vid,
                                "read volume " + vid + " of server " + server.name);
        if (!doc) {
          return MakeError(doc.error());
        }
        ++listing.stats.volume_reads;
        it = volumes.emplace(vid, Obj(*doc, "volume")).first;
      }
      auto volume = ParseVolumeObject(it->second, server.id);
      if (!volume) {
        return MakeError(volume.error());
      }
      facts.volumes.push_back(std::move(*volume));
    }
    if (!server.image_id.empty()) {
      if (auto it = images.find(server.image_id); it != images.end()) {
        facts.image_properties = it->second;
      }  // else: a deleted image: defaults, as for one server
    } else {
      facts.image_properties = BootImageMetadata(facts.volumes, server.root_device_name);
    }
    facts.server = std::move(server);
    listing.vms.push_back(Describe(facts));
  }
  listing.stats.requests = session.requests() - requests_before;
  return listing;
}

}  // namespace vmimport::source::openstack
