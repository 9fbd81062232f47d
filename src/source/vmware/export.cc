#include "source/vmware/export.h"

#include <algorithm>
#include <map>

#include "core/strings.h"
#include "disk/digest.h"
#include "source/verifying_source.h"
#include "source/vmware/properties.h"
#include "source/vmware/task.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;
using core::MakeError;

// scheme://host[:port] of a URL, and where its host part starts and ends.
struct UrlParts {
  size_t host_begin = std::string_view::npos;
  size_t host_end = std::string_view::npos;
};

UrlParts SplitHost(std::string_view url) {
  UrlParts p;
  const size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) {
    return p;
  }
  p.host_begin = scheme + 3;
  p.host_end = url.find('/', p.host_begin);
  if (p.host_end == std::string_view::npos) {
    p.host_end = url.size();
  }
  return p;
}

// The disk streams' errors speak of the lease: its URLs die with it.
core::Error NfcStatusError(const std::string& name, long status) {
  const std::string message = name + ": http status " + std::to_string(status);
  if (status == 404) {
    return {ErrorCode::kNotFound,
            message + " (the URL is gone: the lease was completed, aborted or has expired)"};
  }
  if (status == 401 || status == 403) {
    return {ErrorCode::kUnauthenticated, message + " (the session or ticket was refused)"};
  }
  if (status >= 500 || status == 429) {
    return {ErrorCode::kUnavailable, message};
  }
  return {ErrorCode::kInternal, message};
}

std::string VmName(const VmRef& vm) {
  if (!vm.inventory_path.empty()) {
    return vm.inventory_path;
  }
  if (!vm.name.empty()) {
    return vm.name;
  }
  return vm.ref.value;
}

}  // namespace

LeaseInfo ParseLeaseInfo(pugi::xml_node info) {
  // <val xsi:type="HttpNfcLeaseInfo">
  //   <lease type="HttpNfcLease">session[...]...</lease><entity
  //   type="VirtualMachine">vm-70</entity> <deviceUrl>                                  one per
  //   file, disks in device order
  //     <key>/vm-70/VirtualLsiLogicController0:0</key>
  //     <importKey>/web/VirtualLsiLogicController0:0</importKey>
  //     <url>https://*/nfc/52a1.../disk-0.vmdk</url>
  //     <sslThumbprint>AB:CD:...</sslThumbprint>
  //     <disk>true</disk>
  //     <fileSize>123</fileSize>                   optional
  //   </deviceUrl>
  //   <totalDiskCapacityInKB>33792</totalDiskCapacityInKB>
  //   <leaseTimeout>300</leaseTimeout>
  // </val>
  LeaseInfo out;
  for (auto d : info.children("deviceUrl")) {
    LeaseDeviceUrl u;
    u.key = d.child_value("key");
    u.import_key = d.child_value("importKey");
    u.url = d.child_value("url");
    u.ssl_thumbprint = d.child_value("sslThumbprint");
    u.disk = std::string_view(d.child_value("disk")) == "true";
    if (const pugi::xml_node size = d.child("fileSize"); size) {
      u.file_size = size.text().as_ullong(0);
    }
    out.device_urls.push_back(std::move(u));
  }
  out.total_disk_capacity_kb = info.child("totalDiskCapacityInKB").text().as_ullong(0);
  out.lease_timeout_seconds = info.child("leaseTimeout").text().as_int(0);
  return out;
}

std::vector<ManifestEntry> ParseManifest(pugi::xml_node response) {
  // <HttpNfcLeaseGetManifestResponse>
  //   <returnval>                                    one per file of the lease
  //     <key>/vm-70/VirtualLsiLogicController0:0</key>
  //     <sha1>9f1c...</sha1>                         always (the digest before 6.7)
  //     <checksum>3b2a...</checksum>                 6.7+: in the type SetManifestChecksumType
  //     <checksumType>sha256</checksumType>          asked for ("sha1" or "sha256")
  //     <size>123</size><disk>true</disk><capacity>...</capacity><populatedSize>...</populatedSize>
  //   </returnval>
  std::vector<ManifestEntry> out;
  for (auto e : response.children("returnval")) {
    ManifestEntry m;
    m.key = e.child_value("key");
    m.size = e.child("size").text().as_ullong(0);
    const std::string checksum = e.child_value("checksum");
    const std::string type = e.child_value("checksumType");
    const auto algorithm = disk::ParseDigestAlgorithm(type);
    if (!checksum.empty() && algorithm && disk::IsDigestHex(*algorithm, checksum)) {
      m.algorithm = disk::DigestAlgorithmLowerName(*algorithm);
      m.hex = core::ToLower(checksum);
    } else if (const std::string sha1 = e.child_value("sha1");
               disk::IsDigestHex(disk::DigestAlgorithm::kSha1, sha1)) {
      m.algorithm = "sha1";
      m.hex = core::ToLower(sha1);
    } else {
      continue;
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::string ManifestChecksumTypeBody(const MoRef& lease, const std::vector<std::string>& keys,
                                     std::string_view algorithm) {
  std::string body = lease.Xml("_this");
  for (const std::string& key : keys) {
    body += "<deviceUrlsToChecksumTypes><key>" + XmlEscape(key) + "</key><value>" +
            XmlEscape(algorithm) + "</value></deviceUrlsToChecksumTypes>";
  }
  return body;
}

std::vector<VirtualDiskDevice> ParseVirtualDisks(std::string_view vm_moref,
                                                 pugi::xml_node devices) {
  // <val xsi:type="ArrayOfVirtualDevice">
  //   <VirtualDevice xsi:type="VirtualLsiLogicController">
  //     <key>1000</key><busNumber>0</busNumber>...
  //   </VirtualDevice>
  //   <VirtualDevice xsi:type="VirtualDisk">
  //     <key>2000</key><deviceInfo><label>Hard disk 1</label>...</deviceInfo>
  //     <controllerKey>1000</controllerKey><unitNumber>0</unitNumber>
  //     <capacityInKB>8192</capacityInKB><capacityInBytes>8388608</capacityInBytes>...
  //   </VirtualDevice>
  // </val>
  // A disk's lease key is "/<vm moref>/<controller type><bus number>:<unit number>".
  struct Controller {
    std::string type;
    std::string bus;
  };
  std::map<std::string, Controller> controllers;
  for (auto dev : devices.children()) {
    if (const pugi::xml_node bus = dev.child("busNumber"); bus) {
      controllers[dev.child_value("key")] = Controller{XsiType(dev), bus.child_value()};
    }
  }
  std::vector<VirtualDiskDevice> disks;
  for (auto dev : devices.children()) {
    if (XsiType(dev) != "VirtualDisk") {
      continue;
    }
    VirtualDiskDevice d;
    d.device_key = dev.child_value("key");
    d.label = dev.child("deviceInfo").child_value("label");
    d.capacity_bytes = dev.child("capacityInBytes").text().as_ullong(0);
    if (d.capacity_bytes == 0) {
      d.capacity_bytes = dev.child("capacityInKB").text().as_ullong(0) * 1024;
    }
    auto c = controllers.find(dev.child_value("controllerKey"));
    const std::string unit = dev.child("unitNumber") ? dev.child_value("unitNumber") : "0";
    if (c != controllers.end()) {
      d.lease_key = "/" + std::string(vm_moref) + "/" + c->second.type + c->second.bus + ":" + unit;
    }
    disks.push_back(std::move(d));
  }
  return disks;
}

std::string ResolveLeaseUrl(std::string_view url, std::string_view sdk_url) {
  const UrlParts u = SplitHost(url);
  if (u.host_begin == std::string_view::npos) {
    return std::string(url);
  }
  std::string_view host = url.substr(u.host_begin, u.host_end - u.host_begin);
  if (host != "*" && !host.starts_with("*:")) {
    return std::string(url);
  }
  const UrlParts s = SplitHost(sdk_url);
  if (s.host_begin == std::string_view::npos) {
    return std::string(url);
  }
  std::string_view sdk_host = sdk_url.substr(s.host_begin, s.host_end - s.host_begin);
  if (host.starts_with("*:")) {  // keep the lease's port, take the SDK's host name
    const size_t colon = sdk_host.rfind(':');
    if (colon != std::string_view::npos && sdk_host.find(']', colon) == std::string_view::npos) {
      sdk_host = sdk_host.substr(0, colon);
    }
    return std::string(url.substr(0, u.host_begin)) + std::string(sdk_host) +
           std::string(host.substr(1)) + std::string(url.substr(u.host_end));
  }
  return std::string(url.substr(0, u.host_begin)) + std::string(sdk_host) +
         std::string(url.substr(u.host_end));
}

core::Result<std::vector<ExportDisk>> MapDeviceUrls(const std::vector<VirtualDiskDevice>& disks,
                                                    const std::vector<LeaseDeviceUrl>& urls,
                                                    std::string_view sdk_url) {
  std::vector<const LeaseDeviceUrl*> disk_urls;
  for (const LeaseDeviceUrl& u : urls) {
    if (u.disk) {
      disk_urls.push_back(&u);
    }
  }
  if (disk_urls.empty()) {  // a lease that flags no URL as a disk: take them all
    for (const LeaseDeviceUrl& u : urls) {
      disk_urls.push_back(&u);
    }
  }
  if (disk_urls.size() != disks.size()) {
    std::string keys;
    for (const LeaseDeviceUrl* u : disk_urls) {
      keys += (keys.empty() ? "" : ", ") + u->key;
    }
    return MakeError(ErrorCode::kInternal, "vsphere: the export lease has " +
                                               std::to_string(disk_urls.size()) + " disk URLs (" +
                                               keys + ") for " + std::to_string(disks.size()) +
                                               " disks");
  }
  std::vector<const LeaseDeviceUrl*> chosen(disks.size(), nullptr);
  bool all_by_key = true;
  for (size_t i = 0; i < disks.size(); ++i) {
    for (const LeaseDeviceUrl* u : disk_urls) {
      if (!disks[i].lease_key.empty() && u->key == disks[i].lease_key) {
        chosen[i] = u;
        break;
      }
    }
    all_by_key = all_by_key && chosen[i] != nullptr;
  }
  if (!all_by_key) {  // keys in another scheme: vSphere lists disk URLs in device order
    std::copy(disk_urls.begin(), disk_urls.end(), chosen.begin());
  }
  std::vector<ExportDisk> out;
  for (size_t i = 0; i < disks.size(); ++i) {
    ExportDisk d;
    d.index = i;
    d.device_key = disks[i].device_key;
    d.lease_key = chosen[i]->key;
    d.label = disks[i].label;
    d.capacity_bytes = disks[i].capacity_bytes;
    d.url = ResolveLeaseUrl(chosen[i]->url, sdk_url);
    out.push_back(std::move(d));
  }
  return out;
}

ExportLease::ExportLease(Session& session, MoRef lease, std::string vm_name, ExportOptions options)
    : session_(session),
      lease_(std::move(lease)),
      vm_name_(std::move(vm_name)),
      options_(std::move(options)) {}

ExportLease::~ExportLease() {
  StopKeepAlive();
  if (!ended_.load()) {
    (void)Abort({}, "the export of " + vm_name_ + " ended without completing");
  }
}

core::Result<std::unique_ptr<ExportLease>> ExportLease::Start(std::stop_token stop,
                                                              Session& session, const VmRef& vm,
                                                              ExportOptions options) {
  const std::string name = VmName(vm);
  const std::string context = "vsphere: export " + name;
  auto exported = session.soap().Call(stop, "ExportVm", vm.ref.Xml("_this"));
  if (!exported) {
    return MakeError(exported.error().Wrap(context));
  }
  const pugi::xml_node rv = exported->ReturnVal();
  MoRef lease_ref{rv.attribute("type").as_string(), rv.child_value()};
  if (lease_ref.empty()) {
    return MakeError(ErrorCode::kInternal, context + ": ExportVm returned no lease");
  }
  // From here on the destructor aborts the lease if anything fails.
  std::unique_ptr<ExportLease> lease(
      new ExportLease(session, std::move(lease_ref), name, std::move(options)));
  if (auto ready = lease->WaitReady(stop, vm); !ready) {
    return MakeError(ready.error().Wrap(context));
  }
  lease->SetManifestChecksumType(stop);
  lease->StartKeepAlive();
  return lease;
}

core::Status ExportLease::WaitReady(std::stop_token stop, const VmRef& vm) {
  const auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
  ObjectProperties props;
  while (true) {
    auto p = RetrieveProperties(stop, session_, lease_, {"state", "error", "info"});
    if (!p) {
      return MakeError(p.error());
    }
    props = std::move(*p);
    const std::string state = props.Text("state");
    if (state == "ready") {
      break;
    }
    if (state == "error") {
      ended_.store(true);  // a failed lease needs no abort
      const pugi::xml_node e = props["error"];
      return MakeError(
          FaultError("lease " + lease_.value + " failed",
                     ParseMethodFault(e.child("fault"), e.child_value("localizedMessage"))));
    }
    if (state != "initializing") {
      return MakeError(ErrorCode::kInternal,
                       "lease " + lease_.value + " is in unknown state \"" + state + "\"");
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeError(ErrorCode::kDeadlineExceeded,
                       "lease " + lease_.value + " was not ready within " +
                           std::to_string(options_.ready_timeout.count()) + " ms");
    }
    if (!SleepFor(stop, options_.ready_poll_interval)) {
      return MakeError(ErrorCode::kCancelled, "cancelled while the lease initialised");
    }
  }
  auto devices = RetrieveProperties(stop, session_, vm.ref, {"config.hardware.device"});
  if (!devices) {
    return MakeError(devices.error());
  }
  const auto vm_disks = ParseVirtualDisks(vm.ref.value, (*devices)["config.hardware.device"]);
  auto mapped =
      MapDeviceUrls(vm_disks, ParseLeaseInfo(props["info"]).device_urls, session_.soap().sdk_url());
  if (!mapped) {
    return MakeError(mapped.error());
  }
  disks_ = std::move(*mapped);
  for (const ExportDisk& d : disks_) {
    auto p = std::make_shared<DiskProgress>();
    p->expected.store(d.capacity_bytes);
    progress_.push_back(std::move(p));
  }
  return {};
}

void ExportLease::SetManifestChecksumType(std::stop_token stop) {
  // Before any byte is sent, as vSphere wants. Hosts before 6.7 do not know the method (or
  // sha256): their manifest carries SHA-1, which we check then.
  std::vector<std::string> keys;
  for (const ExportDisk& d : disks_) {
    keys.push_back(d.lease_key);
  }
  auto r = session_.soap().Call(stop, "HttpNfcLeaseSetManifestChecksumType",
                                ManifestChecksumTypeBody(lease_, keys, "sha256"));
  manifest_algorithm_ = r ? "sha256" : "sha1";
}

namespace {

// HttpNfcLeaseGetManifest's entry for `key`. Free-standing: a disk stream asks for it at its end,
// possibly after its ExportLease object is gone (the session is kept by the stream's owner).
core::Result<std::optional<ManifestEntry>> FetchManifestEntry(std::stop_token stop,
                                                              Session& session, const MoRef& lease,
                                                              const std::string& key,
                                                              const std::string& vm_name) {
  auto r = session.soap().Call(stop, "HttpNfcLeaseGetManifest", lease.Xml("_this"));
  if (!r) {
    return MakeError(r.error().Wrap("vsphere: get the manifest of the export lease of " + vm_name));
  }
  for (ManifestEntry& e : ParseManifest(r->Body())) {
    if (e.key == key) {
      return std::optional<ManifestEntry>(std::move(e));
    }
  }
  return std::optional<ManifestEntry>();
}

}  // namespace

core::Result<std::optional<ManifestEntry>> ExportLease::GetManifestEntry(std::stop_token stop,
                                                                         size_t index) const {
  if (index >= disks_.size()) {
    return MakeError(ErrorCode::kInvalidArgument, "vsphere: no disk " + std::to_string(index));
  }
  return FetchManifestEntry(std::move(stop), session_, lease_, disks_[index].lease_key, vm_name_);
}

void ExportLease::StartKeepAlive() {
  keep_alive_ = std::jthread([this](std::stop_token stop) {
    while (SleepFor(stop, options_.keep_alive_interval)) {
      auto r = session_.soap().Call(
          stop, "HttpNfcLeaseProgress",
          lease_.Xml("_this") + "<percent>" + std::to_string(ProgressPercent()) + "</percent>");
      std::lock_guard lock(mu_);
      if (r) {
        keep_alive_calls_.fetch_add(1);
        keep_alive_error_.reset();
      } else if (!stop.stop_requested()) {
        keep_alive_error_ = r.error().Wrap("vsphere: keep lease " + lease_.value + " alive");
      }
    }
  });
}

void ExportLease::StopKeepAlive() {
  if (keep_alive_.joinable()) {
    keep_alive_.request_stop();
    keep_alive_.join();
  }
}

bool ExportLease::MarkEnded() { return !ended_.exchange(true); }

core::Status ExportLease::KeepAliveStatus() const {
  std::lock_guard lock(mu_);
  if (keep_alive_error_) {
    return MakeError(*keep_alive_error_);
  }
  return {};
}

uint64_t ExportLease::BytesRead(size_t index) const {
  return index < progress_.size() ? progress_[index]->bytes.load() : 0;
}

int ExportLease::ProgressPercent() const {
  uint64_t done = 0;
  uint64_t expected = 0;
  for (const auto& p : progress_) {
    const uint64_t e = p->expected.load();
    done += std::min(p->bytes.load(), e);
    expected += e;
  }
  if (expected == 0) {
    return 0;
  }
  return static_cast<int>(std::min<uint64_t>(99, done * 100 / expected));
}

core::Result<disk::ByteSourcePtr> ExportLease::OpenDisk(std::stop_token stop, size_t index) {
  if (index >= disks_.size()) {
    return MakeError(ErrorCode::kInvalidArgument, "vsphere: " + vm_name_ + " has no disk " +
                                                      std::to_string(index) + " (it has " +
                                                      std::to_string(disks_.size()) + ")");
  }
  if (ended_.load()) {
    return MakeError(ErrorCode::kGone,
                     "vsphere: the export lease of " + vm_name_ + " was completed or aborted");
  }
  const ExportDisk& d = disks_[index];
  http::Request request;
  request.url = d.url;
  if (const std::string cookie = session_.soap().SessionCookie(); !cookie.empty()) {
    request.headers.emplace_back("Cookie", "vmware_soap_session=" + cookie);
  }
  HttpStreamOptions options = options_.stream;
  options.name =
      "vsphere: export " + vm_name_ + " disk " + std::to_string(index) + " (" + d.lease_key + ")";
  options.status_error = &NfcStatusError;
  std::shared_ptr<DiskProgress> progress = progress_[index];
  options.on_position = [progress](uint64_t position) {
    uint64_t current = progress->bytes.load();
    while (position > current && !progress->bytes.compare_exchange_weak(current, position)) {
    }
  };
  auto source = HttpStream::Open(std::move(stop), session_.soap().http(), std::move(request),
                                 std::move(options));
  if (!source) {
    return MakeError(source.error());
  }
  if (auto length = (*source)->content_length(); length && *length > 0) {
    progress->expected.store(*length);
  }
  const auto algorithm =
      disk::ParseDigestAlgorithm(manifest_algorithm_).value_or(disk::DigestAlgorithm::kSha1);
  // The manifest is asked for when the stream ended. Its entry must be in the algorithm we
  // hash with; one in another (a host that ignored the request) is reported as such.
  auto expected = [session = &session_, lease = lease_, key = d.lease_key, vm = vm_name_, index,
                   want = std::string(disk::DigestAlgorithmLowerName(algorithm))](
                      std::stop_token s) -> core::Result<std::optional<std::string>> {
    auto entry = FetchManifestEntry(std::move(s), *session, lease, key, vm);
    if (!entry) {
      return MakeError(entry.error());
    }
    if (!*entry) {
      return std::optional<std::string>();
    }
    if ((*entry)->algorithm != want) {
      return MakeError(ErrorCode::kInternal, "vsphere: the manifest of disk " +
                                                 std::to_string(index) + " is " +
                                                 (*entry)->algorithm + ", we hashed " + want);
    }
    return std::optional<std::string>((*entry)->hex);
  };
  return disk::ByteSourcePtr(std::make_unique<VerifyingSource>(
      std::move(*source), algorithm, std::string(disk::kVerifierVsphereManifest),
      "vsphere: export " + vm_name_ + " disk " + std::to_string(index), std::move(expected)));
}

core::Status ExportLease::Complete(std::stop_token stop) {
  if (!MarkEnded()) {
    return MakeError(ErrorCode::kGone, "vsphere: the export lease of " + vm_name_ +
                                           " was already completed or aborted");
  }
  StopKeepAlive();
  auto r = session_.soap().Call(stop, "HttpNfcLeaseComplete", lease_.Xml("_this"));
  if (!r) {
    return MakeError(r.error().Wrap("vsphere: complete the export lease of " + vm_name_));
  }
  return {};
}

core::Status ExportLease::Abort(std::stop_token stop, std::string_view reason) {
  if (!MarkEnded()) {
    return {};  // already ended: nothing to abort
  }
  StopKeepAlive();
  const std::string text = XmlEscape(reason);
  auto r = session_.soap().Call(
      stop, "HttpNfcLeaseAbort",
      lease_.Xml("_this") + "<fault><fault xsi:type=\"SystemError\"><reason>" + text +
          "</reason></fault><localizedMessage>" + text + "</localizedMessage></fault>");
  if (!r) {
    return MakeError(r.error().Wrap("vsphere: abort the export lease of " + vm_name_));
  }
  return {};
}

}  // namespace vmimport::source::vmware
