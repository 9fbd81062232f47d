#include "source/openstack/importer.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/strings.h"
#include "disk/digest.h"
#include "source/openstack/describe.h"
#include "source/openstack/json_util.h"
#include "source/openstack/listing.h"
#include "source/verifying_source.h"

namespace vmimport::source::openstack {

using core::ErrorCode;
using core::MakeError;

namespace {

// Microversion 2.47 embeds the flavor (vcpus, ram) in the server; older Novas ignore the header.
const http::Headers kComputeMicroversion = {{"OpenStack-API-Version", "compute 2.47"},
                                            {"X-OpenStack-Nova-API-Version", "2.47"}};

bool SleepFor(std::stop_token stop, std::chrono::milliseconds duration) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  return !cv.wait_for(lock, stop, duration, [] { return false; }) && !stop.stop_requested();
}

// The image streams' errors: kNotFound (404), kUnauthenticated (401/403), kUnavailable (5xx, 429).
core::Error GlanceStatusError(const std::string& name, long status) {
  const std::string message = name + ": http status " + std::to_string(status);
  if (status == 404) {
    return {ErrorCode::kNotFound, message};
  }
  if (status == 401 || status == 403) {
    return {ErrorCode::kUnauthenticated, message + " (the token was refused)"};
  }
  if (status >= 500 || status == 429) {
    return {ErrorCode::kUnavailable, message};
  }
  return {ErrorCode::kInternal, message};
}

std::string Seconds(std::chrono::milliseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
}

// Reads `path` until its `field` (in `object`) is `want`: "error*" statuses fail at once, so does
// any status in `fail`. Errors: kDeadlineExceeded after `timeout`, kCancelled on stop.
core::Status WaitForStatus(std::stop_token stop, Session& session, Service service,
                           const std::string& path, const std::string& object,
                           const std::string& what, std::string_view want,
                           std::chrono::milliseconds timeout, std::chrono::milliseconds poll,
                           const std::set<std::string>& fail = {}) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string status;
  while (true) {
    auto doc = session.Call(stop, service, "GET", path, "read " + what);
    if (!doc) {
      return MakeError(doc.error());
    }
    status = Str(object.empty() ? *doc : Obj(*doc, object), "status");
    if (status == want) {
      return {};
    }
    if (status.starts_with("error") || fail.contains(status)) {
      return MakeError(ErrorCode::kInternal, std::string(ServiceName(service)) + ": " + what +
                                                 " went to status " + status);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kDeadlineExceeded, std::string(ServiceName(service)) + ": " +
                                                         what + " is still " + status + " after " +
                                                         Seconds(timeout) + " (waiting for " +
                                                         std::string(want) + ")");
    }
    if (!SleepFor(stop, poll)) {
      return MakeError(ErrorCode::kCancelled,
                       std::string(ServiceName(service)) + ": cancelled while waiting for " + what);
    }
  }
}

// Deletes `path` and waits until it answers 404. A delete refused because the object is busy
// (400/409: a volume still uploading) is retried until `timeout`.
core::Status DeleteAndWait(Session& session, Service service, const std::string& path,
                           const std::string& what, std::chrono::milliseconds timeout,
                           std::chrono::milliseconds poll) {
  std::stop_source never;  // cleanup runs to the end, also after a stop
  const auto stop = never.get_token();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool deleted = false;
  std::string last;
  while (true) {
    if (!deleted) {
      auto r = session.Raw(stop, service, "DELETE", path);
      if (!r) {
        last = r.error().message;
      } else if (r->status == 404) {
        return {};
      } else if (r->status >= 200 && r->status < 300) {
        deleted = true;
      } else {
        last = ApiError(ServiceName(service), "delete " + what, r->status, r->body).message;
      }
    }
    if (deleted) {
      auto r = session.Raw(stop, service, "GET", path);
      if (r && r->status == 404) {
        return {};
      }
      if (r) {
        // {"volume": {"status": ...}}, {"snapshot": {...}}, or an image's own fields.
        const auto doc = ParseJson(r->body);
        auto status_of = [&]() -> std::string {
          if (!doc || !doc->is_object()) {
            return "";
          }
          if (service == Service::kImage) {
            return Str(*doc, "status");
          }
          return doc->empty() ? "" : Str(doc->begin().value(), "status");
        };
        const std::string s = status_of();
        if (service == Service::kImage && s == "deleted") {
          return {};
        }
        if (s.starts_with("error")) {  // error_deleting: try the delete again
          deleted = false;
        }
        last = what + " is " + (s.empty() ? "still there" : s);
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kDeadlineExceeded, std::string(ServiceName(service)) +
                                                         ": delete " + what + ": not gone after " +
                                                         Seconds(timeout) +
                                                         (last.empty() ? "" : ": " + last));
    }
    SleepFor(stop, poll);
  }
}

// The temporaries of one disk's export.
struct Temporaries {
  std::string snapshot_id;
  std::string volume_id;
  std::string image_id;
  std::optional<model::SourceDigest> digest;  // Glance's, of the image
};

class OpenstackSourceVm final : public SourceVm {
 public:
  OpenstackSourceVm(std::unique_ptr<Session> session, model::VmDescription description,
                    OpenstackOptions options)
      : session_(std::move(session)),
        description_(std::move(description)),
        options_(std::move(options)) {}

  ~OpenstackSourceVm() override {
    std::stop_source none;
    try {  // a destructor never throws: ending the export here is the best-effort fallback
      (void)FinishExport(none.get_token(), false, "the import stopped before its disks were read");
    } catch (...) {  // nothing more can be done from a destructor
    }
  }

  // source::SourceVm
  const model::VmDescription& Description() const override { return description_; }

  core::Status PowerOff(std::stop_token stop, const PowerOffRequest& request,
                        const SourceActionCallback& on_action) override {
    const std::string path = "/servers/" + description_.id;
    const std::string what = "server " + description_.name + " (" + description_.id + ")";
    auto doc = session_->Call(stop, Service::kCompute, "GET", path, "read " + what);
    if (!doc) {
      return MakeError(doc.error());
    }
    const std::string status = Str(Obj(*doc, "server"), "status");
    if (status == "SHUTOFF") {
      if (on_action) {
        on_action("AlreadyPoweredOff", what + " is already SHUTOFF");
      }
      return {};
    }
    const Json stop_body = {{"os-stop", nullptr}};
    auto r = session_->Raw(stop, Service::kCompute, "POST", path + "/action", &stop_body);
    if (!r) {
      return MakeError(r.error());
    }
    // 409: a stop is already under way (task_state powering-off): wait for it like for ours.
    if (r->status != 202 && r->status != 409) {
      return MakeError(ApiError("nova", "os-stop " + what, r->status, r->body));
    }
    if (on_action && r->status == 202) {
      on_action("PowerOff", "os-stop sent to " + what);
    }
    const auto timeout = std::max<std::chrono::milliseconds>(
        options_.power_off_timeout, request.graceful_timeout + std::chrono::seconds(60));
    auto waited = WaitForStatus(stop, *session_, Service::kCompute, path, "server", what, "SHUTOFF",
                                timeout, options_.poll_interval, {"DELETED"});
    if (!waited) {
      return MakeError(waited.error().Wrap("power off"));
    }
    return {};
  }

  core::Status StartExport(std::stop_token stop, const SourceActionCallback& on_action) override {
    std::lock_guard lock(export_mu_);
    if (finished_) {
      return MakeError(ErrorCode::kGone,
                       "openstack: the export of " + description_.name + " has already finished");
    }
    if (exported_) {
      return {};
    }
    if (description_.disks.empty()) {
      return MakeError(ErrorCode::kUnsupported, "openstack: server " + description_.name +
                                                    " has no attached volume to export");
    }
    SweepStale(stop, on_action);
    std::vector<Temporaries> made(description_.disks.size());
    for (size_t i = 0; i < description_.disks.size(); ++i) {
      auto st = ExportVolume(stop, i, made[i]);
      if (!st) {
        // Nothing of a failed or cancelled export stays behind in OpenStack: neither what it
        // made, nor what a request the stop cut short made without its id coming back (a
        // snapshot Cinder created while our POST was abandoned), found by its name. Neither
        // stops for the stop.
        auto cleaned = Cleanup(made, true);
        SweepStale(std::stop_token{}, {});
        core::Error e = st.error();
        if (!cleaned) {
          e.message += "; cleanup: " + cleaned.error().message;
        }
        return MakeError(std::move(e));
      }
      if (on_action) {
        on_action("ExportStarted", "volume " + description_.disks[i].name + " of " +
                                       description_.name + " is image " + made[i].image_id);
      }
    }
    std::lock_guard images_lock(images_mu_);
    // The images exist only now: their digests complete the description (read by the
    // reconciler on this thread; OpenDisk reads them under images_mu_).
    for (size_t i = 0; i < made.size(); ++i) {
      description_.disks[i].source_digest = made[i].digest;
    }
    images_ = std::move(made);
    exported_ = true;
    return {};
  }

  core::Result<disk::ByteSourcePtr> OpenDisk(std::stop_token stop, size_t index) override {
    if (index >= description_.disks.size()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "openstack: disk " + std::to_string(index) + " out of range (" +
                           description_.name + " has " + std::to_string(description_.disks.size()) +
                           ")");
    }
    std::string image_id;
    std::optional<model::SourceDigest> digest;
    {
      std::lock_guard lock(images_mu_);
      if (finished_images_) {
        return MakeError(ErrorCode::kGone,
                         "openstack: the export of " + description_.name + " has finished");
      }
      if (images_.size() != description_.disks.size()) {
        return MakeError(ErrorCode::kConflict,
                         "openstack: no export of " + description_.name + " is running");
      }
      image_id = images_[index].image_id;
      digest = images_[index].digest;
    }
    auto token = session_->Token(stop);
    if (!token) {
      return MakeError(token.error());
    }
    http::Request request;
    request.url = session_->Endpoint(Service::kImage) + "/v2/images/" + image_id + "/file";
    request.headers = {{"X-Auth-Token", *token}, {"Accept", "application/octet-stream"}};
    HttpStreamOptions options = options_.stream;
    options.name = "glance: image " + image_id + " (disk " + std::to_string(index) + " of " +
                   description_.name + ")";
    options.status_error = &GlanceStatusError;
    const std::string name = options.name;
    auto stream = HttpStream::Open(stop, session_->http(), std::move(request), std::move(options));
    if (!stream) {
      return MakeError(stream.error());
    }
    // A SHA-512 of the raw bytes we serve is Harvester's spec.checksum: Longhorn verifies it
    // (and the served SHA-512 equals it). Any other digest is checked here, as bytes arrive.
    if (!digest || (digest->covers_served_bytes && digest->algorithm == "sha512")) {
      return disk::ByteSourcePtr(std::move(*stream));
    }
    const auto algorithm = disk::ParseDigestAlgorithm(digest->algorithm);
    if (!algorithm) {
      return disk::ByteSourcePtr(std::move(*stream));
    }
    return disk::ByteSourcePtr(std::make_unique<VerifyingSource>(
        std::move(*stream), *algorithm, std::string(disk::kVerifierGlance), name,
        [hex = digest->hex](std::stop_token) -> core::Result<std::optional<std::string>> {
          return std::optional<std::string>(hex);
        }));
  }

  core::Status FinishExport(std::stop_token /*stop*/, bool /*completed*/,
                            std::string_view /*reason*/) override {
    std::lock_guard lock(export_mu_);
    finished_ = true;
    std::vector<Temporaries> images;
    {
      std::lock_guard images_lock(images_mu_);
      finished_images_ = true;
      images = std::move(images_);
      images_.clear();
    }
    return Cleanup(images, false);
  }

 private:
  // A controller killed mid-export leaves its temporaries (named TemporaryName(server, disk))
  // in OpenStack; the next export of the server removes them first. Best effort: what cannot go
  // yet (a volume still uploading) is reported and left; the new export does not depend on it.
  void SweepStale(std::stop_token stop, const SourceActionCallback& on_action) {
    std::vector<Temporaries> stale;
    const auto ids = [&](Service service, const std::string& path, const char* list) {
      std::vector<std::string> out;
      if (auto r = session_->Call(stop, service, "GET", path, "list " + std::string(list))) {
        for (const Json& item : Arr(*r, list)) {
          if (std::string id = Str(item, "id"); !id.empty()) {
            out.push_back(std::move(id));
          }
        }
      }
      return out;
    };
    for (size_t i = 0; i < description_.disks.size(); ++i) {
      const std::string name = core::UrlEncode(TemporaryName(description_.id, i));
      for (const auto& id : ids(Service::kImage, "/v2/images?name=" + name, "images")) {
        stale.push_back({"", "", id});
      }
      for (const auto& id : ids(Service::kBlockStorage, "/volumes?name=" + name, "volumes")) {
        stale.push_back({"", id, ""});
      }
      for (const auto& id : ids(Service::kBlockStorage, "/snapshots?name=" + name, "snapshots")) {
        stale.push_back({id, "", ""});
      }
    }
    if (stale.empty()) {
      return;
    }
    // Volumes before snapshots: a snapshot with a volume made from it cannot go first.
    std::stable_partition(stale.begin(), stale.end(),
                          [](const Temporaries& t) { return t.snapshot_id.empty(); });
    auto st = Cleanup(stale, true);
    if (on_action) {
      on_action("StaleTemporariesRemoved",
                std::to_string(stale.size()) + " temporaries of an earlier export of " +
                    description_.name + (st ? " removed" : " found; " + st.error().message));
    }
  }

  // Snapshot, volume from it, upload to an image, wait for it; then the volume and snapshot go.
  core::Status ExportVolume(std::stop_token stop, size_t index, Temporaries& t) {
    const model::DiskDescription& disk = description_.disks[index];
    const std::string name = TemporaryName(description_.id, index);
    const std::string context =
        "export volume " + disk.name + " (" + disk.id + ") of " + description_.name;
    const auto poll = options_.poll_interval;
    const Json snapshot_body = {{"snapshot",
                                 {{"volume_id", disk.id},
                                  {"force", true},
                                  {"name", name},
                                  {"description", "temporary snapshot of vm-import"}}}};
    auto snap = session_->Call(stop, Service::kBlockStorage, "POST", "/snapshots",
                               "snapshot volume " + disk.id, &snapshot_body);
    if (!snap) {
      return MakeError(snap.error().Wrap(context));
    }
    t.snapshot_id = Str(Obj(*snap, "snapshot"), "id");
    if (t.snapshot_id.empty()) {
      return MakeError(ErrorCode::kInternal, "cinder: " + context + ": no snapshot id");
    }
    if (auto st = WaitForStatus(
            stop, *session_, Service::kBlockStorage, "/snapshots/" + t.snapshot_id, "snapshot",
            "snapshot " + t.snapshot_id, "available", options_.create_timeout, poll);
        !st) {
      return MakeError(st.error().Wrap(context));
    }
    Json volume_body = {{"volume",
                         {{"snapshot_id", t.snapshot_id},
                          {"name", name},
                          {"description", "temporary volume of vm-import"}}}};
    if (disk.capacity_bytes > 0) {
      volume_body["volume"]["size"] = disk.capacity_bytes >> 30;
    }
    auto volume = session_->Call(stop, Service::kBlockStorage, "POST", "/volumes",
                                 "create a volume from snapshot " + t.snapshot_id, &volume_body);
    if (!volume) {
      return MakeError(volume.error().Wrap(context));
    }
    t.volume_id = Str(Obj(*volume, "volume"), "id");
    if (t.volume_id.empty()) {
      return MakeError(ErrorCode::kInternal, "cinder: " + context + ": no volume id");
    }
    const std::string volume_path = "/volumes/" + t.volume_id;
    if (auto st =
            WaitForStatus(stop, *session_, Service::kBlockStorage, volume_path, "volume",
                          "volume " + t.volume_id, "available", options_.create_timeout, poll);
        !st) {
      return MakeError(st.error().Wrap(context));
    }
    const Json upload_body = {{"os-volume_upload_image",
                               {{"image_name", name},
                                {"disk_format", "raw"},
                                {"container_format", "bare"},
                                {"force", false}}}};
    auto upload = session_->Call(stop, Service::kBlockStorage, "POST", volume_path + "/action",
                                 "upload volume " + t.volume_id + " to an image", &upload_body);
    if (!upload) {
      return MakeError(upload.error().Wrap(context));
    }
    t.image_id = Str(Obj(*upload, "os-volume_upload_image"), "image_id");
    if (t.image_id.empty()) {
      return MakeError(ErrorCode::kInternal, "cinder: " + context + ": the upload named no image");
    }
    const auto image_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
        options_.upload_image_retry_delay * std::max(1, options_.upload_image_retry_count));
    if (auto st = WaitForStatus(
            stop, *session_, Service::kImage, "/v2/images/" + t.image_id, "", "image " + t.image_id,
            "active", image_timeout,
            std::min<std::chrono::milliseconds>(poll, options_.upload_image_retry_delay),
            {"killed", "deleted", "deactivated"});
        !st) {
      return MakeError(st.error().Wrap(context));
    }
    // Glance's digest of the image, computed as it stored the upload.
    if (auto image = session_->Call(stop, Service::kImage, "GET", "/v2/images/" + t.image_id,
                                    "read image " + t.image_id);
        image) {
      t.digest = ParseGlanceDigest(*image);
    }
    // The image is complete: the volume goes back to available, then both temporaries go.
    if (auto st =
            WaitForStatus(stop, *session_, Service::kBlockStorage, volume_path, "volume",
                          "volume " + t.volume_id, "available", options_.create_timeout, poll);
        !st) {
      return MakeError(st.error().Wrap(context));
    }
    Temporaries done{t.snapshot_id, t.volume_id, ""};
    if (auto st = Cleanup({done}, true); !st) {
      return MakeError(st.error().Wrap(context));
    }
    t.snapshot_id.clear();
    t.volume_id.clear();
    return {};
  }

  // Deletes images, then volumes (a snapshot with a dependent volume may not be deletable), then
  // snapshots, each confirmed gone. Keeps going after an error; returns the errors joined.
  core::Status Cleanup(const std::vector<Temporaries>& all, bool with_volumes) {
    std::vector<std::string> errors;
    const auto timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.cleanup_timeout);
    const auto poll = options_.poll_interval;
    for (const Temporaries& t : all) {
      if (!t.image_id.empty()) {
        if (auto st = DeleteAndWait(*session_, Service::kImage, "/v2/images/" + t.image_id,
                                    "image " + t.image_id, timeout, poll);
            !st) {
          errors.push_back(st.error().message);
        }
      }
      if (with_volumes && !t.volume_id.empty()) {
        if (auto st = DeleteAndWait(*session_, Service::kBlockStorage, "/volumes/" + t.volume_id,
                                    "volume " + t.volume_id, timeout, poll);
            !st) {
          errors.push_back(st.error().message);
        }
      }
      if (with_volumes && !t.snapshot_id.empty()) {
        if (auto st =
                DeleteAndWait(*session_, Service::kBlockStorage, "/snapshots/" + t.snapshot_id,
                              "snapshot " + t.snapshot_id, timeout, poll);
            !st) {
          errors.push_back(st.error().message);
        }
      }
    }
    if (!errors.empty()) {
      return MakeError(ErrorCode::kUnavailable, "openstack: cleanup of " + description_.name +
                                                    ": " + core::Join(errors, "; "));
    }
    return {};
  }

  std::unique_ptr<Session> session_;
  model::VmDescription description_;  // source_digest of the disks set by StartExport
  const OpenstackOptions options_;
  std::mutex export_mu_;  // serialises StartExport and FinishExport; guards exported_, finished_
  bool exported_ = false;
  bool finished_ = false;
  std::mutex images_mu_;  // guards images_, finished_images_ (read by OpenDisk on many threads)
  std::vector<Temporaries> images_;
  bool finished_images_ = false;
};

}  // namespace

std::string TemporaryName(std::string_view server_id, size_t index) {
  return "vm-import-" + std::string(server_id) + "-" + std::to_string(index);
}

core::Status OpenstackConnectionChecker::CheckConnection(std::stop_token stop,
                                                         const SourceConfig& config) {
  auto session = Session::Login(stop, config, options_);
  if (!session) {
    return MakeError(session.error());
  }
  auto list = (*session)->Call(stop, Service::kCompute, "GET", "/servers?limit=1", "list servers",
                               nullptr, kComputeMicroversion);
  if (!list) {
    return MakeError(list.error());
  }
  return {};
}

core::Result<std::string> FindServer(std::stop_token stop, Session& session,
                                     std::string_view name_or_id) {
  if (name_or_id.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "openstack: the server name is empty");
  }
  if (LooksLikeUuid(name_or_id)) {
    auto r = session.Raw(stop, Service::kCompute, "GET", "/servers/" + std::string(name_or_id));
    if (!r) {
      return MakeError(r.error());
    }
    if (r->status == 200) {
      return std::string(name_or_id);
    }
    if (r->status != 404) {
      return MakeError(
          ApiError("nova", "read server " + std::string(name_or_id), r->status, r->body));
    }
    // 404: a server may still be named like a UUID; look for the name.
  }
  auto list = session.Call(stop, Service::kCompute, "GET",
                           "/servers?name=" + core::UrlEncode(ExactNameRegex(name_or_id)),
                           "list servers named " + std::string(name_or_id));
  if (!list) {
    return MakeError(list.error());
  }
  std::vector<std::string> ids;
  for (const ServerRef& s : ParseServerList(*list)) {
    if (s.name == name_or_id) {
      ids.push_back(s.id);
    }
  }
  if (ids.empty()) {
    return MakeError(ErrorCode::kNotFound,
                     "nova: no server named or with id \"" + std::string(name_or_id) + "\"");
  }
  if (ids.size() > 1) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "nova: " + std::to_string(ids.size()) + " servers are named \"" +
                         std::string(name_or_id) + "\" (ids " + core::Join(ids, ", ") +
                         "): name one by its id");
  }
  return ids.front();
}

core::Result<model::VmDescription> DescribeServer(std::stop_token stop, Session& session,
                                                  std::string_view id) {
  const std::string sid(id);
  auto doc = session.Call(stop, Service::kCompute, "GET", "/servers/" + sid, "read server " + sid,
                          nullptr, kComputeMicroversion);
  if (!doc) {
    return MakeError(doc.error());
  }
  ServerFacts facts;
  auto server = ParseServer(*doc);
  if (!server) {
    return MakeError(server.error());
  }
  facts.server = std::move(*server);
  if (!facts.server.vcpus && !facts.server.flavor_id.empty()) {
    auto flavor = session.Call(stop, Service::kCompute, "GET", "/flavors/" + facts.server.flavor_id,
                               "read flavor " + facts.server.flavor_id);
    if (!flavor) {
      return MakeError(flavor.error());
    }
    if (auto st = ApplyFlavor(*flavor, facts.server); !st) {
      return MakeError(st.error());
    }
  }
  for (const std::string& vid : facts.server.volume_ids) {
    auto v = session.Call(stop, Service::kBlockStorage, "GET", "/volumes/" + vid,
                          "read volume " + vid + " of server " + facts.server.name);
    if (!v) {
      return MakeError(v.error());
    }
    auto volume = ParseVolume(*v, sid);
    if (!volume) {
      return MakeError(volume.error());
    }
    facts.volumes.push_back(std::move(*volume));
  }
  auto interfaces =
      session.Call(stop, Service::kCompute, "GET", "/servers/" + sid + "/os-interface",
                   "list the ports of server " + facts.server.name);
  if (interfaces) {
    facts.interfaces = ParseInterfaces(*interfaces);
  }  // else: the addresses give the NICs (a Nova without Neutron has no os-interface)
  if (!session.Endpoint(Service::kNetwork).empty()) {
    for (const Interface& i : facts.interfaces) {
      if (i.net_id.empty() || facts.network_names.contains(i.net_id)) {
        continue;
      }
      auto net = session.Call(stop, Service::kNetwork, "GET", "/v2.0/networks/" + i.net_id,
                              "read network " + i.net_id);
      if (!net) {
        return MakeError(net.error());
      }
      facts.network_names[i.net_id] = Str(Obj(*net, "network"), "name");
    }
  }
  if (!facts.server.image_id.empty()) {
    auto image = session.Call(stop, Service::kImage, "GET", "/v2/images/" + facts.server.image_id,
                              "read image " + facts.server.image_id);
    if (image) {
      facts.image_properties = ParseImageProperties(*image);
    } else if (image.error().code != ErrorCode::kNotFound) {  // a deleted image: defaults
      return MakeError(image.error());
    }
  } else {
    facts.image_properties = BootImageMetadata(facts.volumes, facts.server.root_device_name);
  }
  return Describe(facts);
}

core::Result<std::vector<model::VmDescription>> OpenstackImporter::ListVms(
    std::stop_token stop, const SourceConfig& config, const std::string& /*folder*/) {
  auto session = Session::Login(stop, config, options_.session);
  if (!session) {
    return MakeError(session.error());
  }
  auto listing = ListServers(stop, **session);
  if (!listing) {
    return MakeError(listing.error());
  }
  return std::move(listing->vms);
}

core::Result<SourceVmPtr> OpenstackImporter::Open(std::stop_token stop, const SourceConfig& config,
                                                  const ImportRequest& request) {
  auto session = Session::Login(stop, config, options_.session);
  if (!session) {
    return MakeError(session.error());
  }
  auto id = FindServer(stop, **session, request.vm_name);
  if (!id) {
    return MakeError(id.error());
  }
  auto description = DescribeServer(stop, **session, *id);
  if (!description) {
    return MakeError(description.error());
  }
  // The source's own upload wait, when its spec sets one (the reference's uploadImageRetry*).
  OpenstackOptions options = options_;
  if (config.upload_image_retry_count > 0) {
    options.upload_image_retry_count = config.upload_image_retry_count;
  }
  if (config.upload_image_retry_delay_seconds > 0) {
    options.upload_image_retry_delay =
        std::chrono::seconds(config.upload_image_retry_delay_seconds);
  }
  return std::make_unique<OpenstackSourceVm>(std::move(*session), std::move(*description), options);
}

}  // namespace vmimport::source::openstack
