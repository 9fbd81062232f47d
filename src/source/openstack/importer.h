#pragma once

// The OpenStack side of an import: source::ConnectionChecker and source::Importer over a
// Keystone session (client.h).
//
// Open finds the server (by id, or by exact name: Nova's name filter is a regex, so the list is
// filtered again here) and describes it (describe.h) from the server, its flavor, its attached
// volumes, its ports and the image properties of its boot image or boot volume.
//
// The export is per attached volume, in the description's disk order:
//   snapshot (force: the volume is in use) → volume from the snapshot → os-volume_upload_image
//   (raw, bare) → wait until the Glance image is active → the temporary volume and snapshot are
//   deleted → OpenDisk streams GET /v2/images/{id}/file, a fresh GET each time.
// Every temporary is named TemporaryName(server, i). FinishExport deletes the images; a failed or
// cancelled StartExport deletes everything it made before returning, and so does the SourceVm's
// destructor for whatever is left.

#include <chrono>
#include <string>
#include <string_view>

#include "source/http_stream.h"
#include "source/importer.h"
#include "source/openstack/client.h"
#include "source/provider.h"

namespace vmimport::source::openstack {

struct OpenstackOptions {
  //! Glance image wait: at most retry_count x retry_delay (spec.uploadImageRetryCount and
  //! spec.uploadImageRetryDelay of the reference; defaults 30 x 10 s), polled every poll_interval.
  int upload_image_retry_count = 30;
  std::chrono::seconds upload_image_retry_delay{10};
  std::chrono::milliseconds poll_interval{1000};
  //! Snapshot and volume creation (the reference waits 2 h).
  std::chrono::seconds create_timeout{7200};
  //! os-stop until SHUTOFF (the reference waits forever).
  std::chrono::seconds power_off_timeout{600};
  //! Per temporary object: until its deletion is confirmed (404).
  std::chrono::seconds cleanup_timeout{300};
  SessionOptions session;
  //! Buffering and stall timeout of the image streams; OpenDisk sets the name and the status
  //! mapping of each.
  HttpStreamOptions stream{.stall_timeout = std::chrono::seconds(120)};
};

//! "vm-import-<server id>-<index>": the name of every temporary snapshot, volume and image.
std::string TemporaryName(std::string_view server_id, size_t index);

//! Ready when Keystone accepts the credentials, the catalog has compute, block-storage and image
//! endpoints in the region, and Nova answers a server list.
class OpenstackConnectionChecker final : public ConnectionChecker {
 public:
  explicit OpenstackConnectionChecker(SessionOptions options = {}) : options_(options) {}
  // source::ConnectionChecker
  core::Status CheckConnection(std::stop_token stop, const SourceConfig& config) override;

 private:
  const SessionOptions options_;
};

class OpenstackImporter final : public Importer {
 public:
  explicit OpenstackImporter(OpenstackOptions options = {}) : options_(std::move(options)) {}
  // source::Importer
  core::Result<SourceVmPtr> Open(std::stop_token stop, const SourceConfig& config,
                                 const ImportRequest& request) override;
  //! Every server of the project, described from paged listings (ListServers in listing.h):
  //! a constant number of requests whatever the server count.
  core::Result<std::vector<model::VmDescription>> ListVms(std::stop_token stop,
                                                          const SourceConfig& config,
                                                          const std::string& folder) override;

 private:
  const OpenstackOptions options_;
};

//! Finds the id of the server named `name_or_id`. Errors: kNotFound, kInvalidArgument for an
//! ambiguous name (listing the candidate ids), the session's.
core::Result<std::string> FindServer(std::stop_token stop, Session& session,
                                     std::string_view name_or_id);

//! Reads everything Describe needs about server `id` and describes it.
core::Result<model::VmDescription> DescribeServer(std::stop_token stop, Session& session,
                                                  std::string_view id);

}  // namespace vmimport::source::openstack
