// harvester-sim: the part of a Harvester cluster that cannot run in the test world, played against
// the world's real kube-apiserver, and no more. Test harness only; the product never links it.
//
//  - Image controller (harvesterhci.io/v1beta1 VirtualMachineImage, sourceType download): fills
//    an empty spec.backend with "backingimage" (Harvester's mutator), marks Initialized, downloads
//    spec.url in full, fails a short body (fewer bytes than Content-Length) or a non-200 answer,
//    checks spec.checksum (backingimage backend, below), reports status.progress while bytes
//    arrive, and on success sets Imported=True (reason Imported), size, virtualSize and
//    storageClassName. A failed download counts status.failed; past spec.retry it sets
//    RetryLimitExceeded=True and Imported=False, with Harvester's own messages ("failed due to
//    error: ...", "retry attempted N/M ..."). The sha256 and sha512 of the bytes it received are
//    written to the annotations harvester-sim.vm-import.test/sha256 and .../sha512, for the tests
//    to compare. backingimage: Longhorn's part is played with its real object: a BackingImage
//    (longhorn.io/v1beta2, CRD copied from longhorn-manager v1.8.2) named vmi-<image uid> in
//    longhorn-system, as Harvester v1.5+ creates it (sourceType download, sourceParameters.url,
//    spec.checksum = the image's spec.checksum). Longhorn's webhook refuses a spec.checksum that is
//    not 128 lower-case hex digits ("invalid checksum ..."), so such an image fails every attempt,
//    for ever (harvester#5578). After the download its status gets checksum = the SHA-512 of the
//    bytes received (what Longhorn computes of the stored file), size, virtualSize, realSize and a
//    diskFileStatusMap entry (ready, or failed with Longhorn's message when spec.checksum differs:
//    then the image fails with that message). --tamper-backingimage-checksum reports a wrong
//    status.checksum instead (a store that corrupted the file), for the controller's
//    DiskChecksumMismatch. The per-image StorageClass longhorn-<image> (parameter backingImage =
//    the BackingImage's name) is created, as Harvester does.
//    cdi: a PVC named like the image, owned by it, in the target class, as CDI's DataVolume does;
//    spec.checksum is ignored there, as current Harvester does.
//    Storage capacity: when the image's spec.targetStorageClassName names a class with the
//    parameter harvester-sim.vm-import.test/capacity-bytes, a download that grows past it fails
//    like a full Longhorn disk does (the write fails with ENOSPC mid-download), and like any
//    failed download it is retried up to spec.retry times.
//  - PVC binding: a Pending PVC whose StorageClass exists becomes Bound with its requested size.
//  - KubeVirt's node side (node_sim.h): KubeVirt's real virt-controller (started by the world)
//    turns a VirtualMachine into its VirtualMachineInstance and virt-launcher Pod and owns
//    VirtualMachine.status; this simulator plays only what would run on a node: kube-scheduler
//    and kubelet for the launcher Pod, and virt-handler for the VMI (Scheduled -> Running, and
//    Succeeded when it is deleted), on the one Node "harvester-sim-node" it registers.
//  - Boot (--boot-dir DIR, optional): every downloaded image is also kept as DIR/<ns>_<image>.raw;
//    once a VM's VMI runs, its first disk in boot order is booted with qemu-system-x86_64 (SeaBIOS,
//    TCG, no network) and the serial port watched for --boot-marker (default VMIMPORT-BOOT-OK,
//    what the seeded bootable disk prints). The outcome goes to the VM's annotation
//    harvester-sim.vm-import.test/boot: "booted", or "no-boot: <why>" after 60 s.
//
// Usage: harvester-sim [--kubeconfig PATH] [--rate BYTES_PER_S] [--workers N] [--log-level L]
//                      [--disconnect-after BYTES] [--boot-dir DIR] [--boot-marker TEXT]
//                      [--tamper-backingimage-checksum]
//   --rate: cap each download's speed (tests that cancel an import mid-download).
//   --disconnect-after: the first download of each image hangs up after BYTES bytes and counts as
//     a failed attempt (a consumer that goes away mid-download); the retry downloads in full.
// The final status of an image (imported or failed) is retried for up to a minute when the
// kube-apiserver cannot be reached (tests that restart it mid-import).
// Logs in logfmt to stderr; SIGTERM/SIGINT stop it.

#include <openssl/evp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/log.h"
#include "http/client.h"
#include "kube/client.h"
#include "kube/config.h"
#include "kube/informer.h"
#include "node_sim.h"

namespace {

using namespace vmimport;
using namespace std::chrono_literals;
using kube::Json;

const kube::Resource kImages{"harvesterhci.io", "v1beta1", "virtualmachineimages", true};
const kube::Resource kPvcs{"", "v1", "persistentvolumeclaims", true};
const kube::Resource kStorageClasses{"storage.k8s.io", "v1", "storageclasses", false};
const kube::Resource kVms{"kubevirt.io", "v1", "virtualmachines", true};
const kube::Resource kBackingImages{"longhorn.io", "v1beta2", "backingimages", true};
constexpr const char* kLonghornNamespace = "longhorn-system";
constexpr const char* kSimDiskUuid = "harvester-sim-disk";  // the one Longhorn disk we play
constexpr const char* kSha256Annotation = "harvester-sim.vm-import.test/sha256";
constexpr const char* kBootAnnotation = "harvester-sim.vm-import.test/boot";
constexpr const char* kSha512Annotation = "harvester-sim.vm-import.test/sha512";
constexpr const char* kCapacityParameter = "harvester-sim.vm-import.test/capacity-bytes";

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

std::string Now() { return core::FormatRfc3339(std::chrono::system_clock::now()); }

std::string Hex(const unsigned char* data, unsigned len) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
  return out;
}

class Digest {
 public:
  explicit Digest(const EVP_MD* md) : ctx_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(ctx_, md, nullptr);
  }
  ~Digest() { EVP_MD_CTX_free(ctx_); }
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;
  void Update(std::string_view bytes) { EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()); }
  std::string Final() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx_, out, &len);
    return Hex(out, len);
  }

 private:
  EVP_MD_CTX* ctx_;
};

//! object[key] when it is a JSON object, else an empty object (never inserts, never throws).
const Json& Field(const Json& object, const char* key) {
  static const Json kEmpty = Json::object();
  if (!object.is_object()) {
    return kEmpty;
  }
  auto it = object.find(key);
  return it != object.end() && it->is_object() ? *it : kEmpty;
}

std::string NamespaceOf(const Json& o) { return Field(o, "metadata").value("namespace", ""); }
std::string NameOf(const Json& o) { return Field(o, "metadata").value("name", ""); }

//! A condition of a wrangler-style conditions array ("True", "False", or "" when absent).
std::string ConditionStatus(const Json& object, const std::string& type) {
  const Json* conds = nullptr;
  if (object.contains("status") && object["status"].contains("conditions")) {
    conds = &object["status"]["conditions"];
  }
  if (conds == nullptr || !conds->is_array()) {
    return "";
  }
  for (const Json& c : *conds) {
    if (c.value("type", "") == type) {
      return c.value("status", "");
    }
  }
  return "";
}

//! Sets one condition in `status` (wrangler's Cond.True/False/Reason/Message in one call).
void SetCondition(Json& status, const std::string& type, const std::string& value,
                  const std::string& reason, const std::string& message) {
  Json& conds = status["conditions"];
  if (!conds.is_array()) {
    conds = Json::array();
  }
  for (Json& c : conds) {
    if (c.value("type", "") == type) {
      if (c.value("status", "") != value) {
        c["lastTransitionTime"] = Now();
      }
      c["status"] = value;
      c["reason"] = reason;
      c["message"] = message;
      c["lastUpdateTime"] = Now();
      return;
    }
  }
  conds.push_back({{"type", type},
                   {"status", value},
                   {"reason", reason},
                   {"message", message},
                   {"lastUpdateTime", Now()},
                   {"lastTransitionTime", Now()}});
}

//! A keyed queue: a key waits at most once; workers take keys in arrival order.
class KeyQueue {
 public:
  void Add(const std::string& key) {
    std::lock_guard lock(mu_);
    if (queued_.insert(key).second) {
      keys_.push_back(key);
      cv_.notify_one();
    }
  }
  void AddAfter(const std::string& key, std::chrono::milliseconds delay) {
    std::thread([this, key, delay] {
      std::this_thread::sleep_for(delay);
      Add(key);
    }).detach();
  }
  //! False once stopped.
  bool Take(std::string& key) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 200ms, [&] { return !keys_.empty() || g_stop; });
    if (g_stop || keys_.empty()) {
      return !g_stop.load();
    }
    key = keys_.front();
    keys_.pop_front();
    queued_.erase(key);
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> keys_;
  std::set<std::string> queued_;
};

class Simulator {
 public:
  Simulator(kube::Client& kube, http::Client& http, core::Logger log, double rate,
            uint64_t disconnect_after, bool tamper_backing_image_checksum)
      : kube_(kube),
        http_(http),
        log_(std::move(log)),
        rate_(rate),
        disconnect_after_(disconnect_after),
        tamper_backing_image_checksum_(tamper_backing_image_checksum),
        images_(kube, kImages, "", log_),
        pvcs_(kube, kPvcs, "", log_),
        vms_(kube, kVms, "", log_),
        node_(kube, log_, g_stop, "harvester-sim-node",
              [this](const Json& vmi) { OnVmiRunning(vmi); }) {
    images_.AddHandlers(
        {.on_add = [this](const Json& o) { image_queue_.Add(kube::ObjectKeyOf(o)); },
         .on_update = [this](const Json&,
                             const Json& o) { image_queue_.Add(kube::ObjectKeyOf(o)); },
         // Harvester removes an image's BackingImage with it (no owner reference can cross
         // namespaces).
         .on_delete = [this](const Json& o) { DeleteBackingImage(o); }});
    auto pvc_changed = [this](const Json& o) { pvc_queue_.Add(kube::ObjectKeyOf(o)); };
    pvcs_.AddHandlers({.on_add = pvc_changed,
                       .on_update = [pvc_changed](const Json&, const Json& o) { pvc_changed(o); },
                       .on_delete = pvc_changed});
  }

  void Run(int workers) {
    images_.Start();
    pvcs_.Start();
    vms_.Start();
    std::vector<std::jthread> threads;
    for (int i = 0; i < workers; ++i) {
      threads.emplace_back([this] { Loop(image_queue_, [this](auto& k) { SyncImage(k); }); });
    }
    threads.emplace_back([this] { Loop(pvc_queue_, [this](auto& k) { SyncPvc(k); }); });
    threads.emplace_back([this] { node_.Run(); });
    log_.Info("harvester-sim running", {{"workers", workers}});
    threads.clear();  // joins once g_stop is set
    images_.Stop();
    pvcs_.Stop();
    vms_.Stop();
  }

 private:
  template <class F>
  void Loop(KeyQueue& queue, F sync) {
    std::string key;
    while (queue.Take(key)) {
      if (!key.empty()) {
        sync(key);
        key.clear();
      }
    }
  }

  // --- images ---------------------------------------------------------------------------------

  void SyncImage(const std::string& key) {
    auto image = images_.Get(key);
    if (!image || Field(*image, "metadata").contains("deletionTimestamp")) {
      return;
    }
    if (ConditionStatus(*image, "Imported") == "True" ||
        ConditionStatus(*image, "RetryLimitExceeded") == "True") {
      return;
    }
    // Like Harvester, a failed download is tried again after a pause, not at once.
    const Json& status = Field(*image, "status");
    std::chrono::system_clock::time_point failed_at;
    if (status.value("failed", 0) > 0 &&
        core::ParseRfc3339(status.value("lastFailedTime", ""), failed_at) &&
        std::chrono::system_clock::now() - failed_at < 2s) {
      image_queue_.AddAfter(key, 1s);
      return;
    }
    {
      std::lock_guard lock(mu_);
      if (!downloading_.insert(key).second) {
        return;
      }
    }
    Download(key, *image);
    std::lock_guard lock(mu_);
    downloading_.erase(key);
  }

  //! Merge-patches the image (the CRD has no status subresource: status goes with the object).
  //! `must_land`: an outcome (imported, failed) that nothing would write again is retried for up
  //! to a minute while the kube-apiserver is unreachable, as Harvester's controller requeues.
  void PatchImage(const Json& image, const Json& patch, bool must_land = false) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (true) {
      auto r = kube_.MergePatch({}, kImages, NamespaceOf(image), NameOf(image), patch);
      if (r) {
        return;
      }
      const bool retry = must_land && !g_stop && !r.error().Terminal() &&
                         r.error().code != core::ErrorCode::kNotFound &&
                         std::chrono::steady_clock::now() < deadline;
      log_.Warn("patching image failed", {{"image", kube::ObjectKeyOf(image)},
                                          {"error", r.error().ToString()},
                                          {"retrying", retry}});
      if (!retry) {
        return;
      }
      std::this_thread::sleep_for(1s);
    }
  }

  void Download(const std::string& key, Json image) {
    const Json spec = Field(image, "spec");
    Json status = image.value("status", Json::object());
    std::string backend = spec.value("backend", "");
    if (backend.empty()) {
      backend = "backingimage";  // Harvester's mutator
      PatchImage(image, {{"spec", {{"backend", backend}}}});
    }
    if (spec.value("sourceType", "") != "download") {
      Fail(image, status, "only sourceType download is simulated");
      return;
    }
    SetCondition(status, "Initialized", "True", "", "");
    PatchImage(image, {{"status", status}});

    const std::string url = spec.value("url", "");
    const std::string wanted = spec.value("checksum", "");
    std::string backing_image;
    if (backend == "backingimage") {
      if (!wanted.empty() && !IsLonghornChecksum(wanted)) {
        // Longhorn's webhook (ValidateChecksumSHA512) refuses the BackingImage: every attempt.
        Fail(image, status,
             "failed to create backing image: admission webhook \"validator.longhorn.io\" denied "
             "the request: invalid checksum " +
                 wanted);
        return;
      }
      auto made = EnsureBackingImage(image, url, wanted);
      if (!made) {
        Fail(image, status, "failed to create backing image: " + made.error().ToString());
        return;
      }
      backing_image = *made;
    }
    log_.Info("downloading image", {{"image", key}});
    const std::string target_class = spec.value("targetStorageClassName", "");
    const uint64_t capacity = CapacityOf(target_class);
    bool full = false;
    Digest sha256(EVP_sha256());
    Digest sha512(EVP_sha512());
    uint64_t bytes = 0;
    uint64_t length = 0;
    bool have_length = false;
    long code = 0;
    auto last_report = std::chrono::steady_clock::now();
    const auto started = last_report;
    bool gone = false;
    // --disconnect-after: only the first attempt of an image hangs up.
    const uint64_t hang_up_at = status.value("failed", 0) == 0 ? disconnect_after_ : 0;
    bool hung_up = false;
    std::ofstream kept;  // --boot-dir: the image's bytes, for booting
    const std::string kept_path = BootFile(NamespaceOf(image), NameOf(image));
    if (!kept_path.empty()) {
      kept.open(kept_path, std::ios::binary | std::ios::trunc);
    }
    http::Request req{.url = url, .timeout = 0ms, .stall_timeout = 30s};
    auto res = http_.Stream(
        {}, req,
        [&](const http::Response& head) {
          code = head.status;
          if (auto cl = head.Header("content-length")) {
            length = std::strtoull(cl->c_str(), nullptr, 10);
            have_length = true;
          }
          return code == 200;
        },
        [&](std::string_view chunk) {
          if (capacity > 0 && bytes + chunk.size() > capacity) {
            full = true;  // the write that does not fit fails, the download with it
            return false;
          }
          sha256.Update(chunk);
          sha512.Update(chunk);
          if (kept.is_open()) {
            kept.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
          }
          bytes += chunk.size();
          if (hang_up_at > 0 && bytes >= hang_up_at) {
            hung_up = true;
            return false;  // curl drops the connection mid-body
          }
          if (rate_ > 0) {
            const auto due =
                started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(double(bytes) / rate_));
            std::this_thread::sleep_until(due);
          }
          const auto now = std::chrono::steady_clock::now();
          if (now - last_report > 1s) {
            last_report = now;
            if (!images_.Get(key)) {  // deleted: stop downloading, as Harvester does
              gone = true;
              return false;
            }
            if (have_length && length > 0) {
              PatchImage(image, {{"status", {{"progress", int(bytes * 100 / length)}}}});
            }
          }
          return !g_stop;
        });
    if (gone || g_stop) {
      log_.Info("download abandoned", {{"image", key}, {"bytes", bytes}});
      return;
    }
    auto fresh = images_.Get(key);
    if (!fresh) {
      return;
    }
    image = *fresh;
    status = image.value("status", Json::object());
    std::string error;
    if (hung_up) {
      error = "the consumer hung up after " + std::to_string(bytes) + " bytes (--disconnect-after)";
    } else if (full) {
      error = "writing the backing image file: no space left on device (storage class " +
              target_class + " holds " + std::to_string(capacity) + " bytes)";
    } else if (code != 0 && code != 200) {
      error = "unexpected status code " + std::to_string(code);
    } else if (!res) {
      error = res.error().ToString();
    } else if (have_length && bytes != length) {
      error =
          "short download: " + std::to_string(bytes) + " of " + std::to_string(length) + " bytes";
    }
    const std::string sum512 = sha512.Final();
    if (error.empty() && !backing_image.empty()) {
      error = ReportBackingImage(backing_image, wanted, sum512, bytes);
    }
    if (!error.empty()) {
      Fail(image, status, error);
      return;
    }
    Succeed(image, status, backend, bytes, sha256.Final(), sum512, backing_image);
  }

  static bool IsLonghornChecksum(const std::string& c) {
    return c.size() == 128 && std::all_of(c.begin(), c.end(), [](char ch) {
             return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
           });
  }

  //! Harvester v1.5+ names an image's BackingImage "vmi-<uid>" (40 characters: Longhorn's limit).
  static std::string BackingImageName(const Json& image) {
    return "vmi-" + Field(image, "metadata").value("uid", "");
  }

  //! The BackingImage of `image`, as Harvester creates it; an existing one (a retry) is kept.
  core::Result<std::string> EnsureBackingImage(const Json& image, const std::string& url,
                                               const std::string& checksum) {
    const std::string name = BackingImageName(image);
    Json spec = {{"sourceType", "download"},
                 {"sourceParameters", {{"url", url}}},
                 {"minNumberOfCopies", 1},
                 {"dataEngine", "v1"}};
    if (!checksum.empty()) {
      spec["checksum"] = checksum;
    }
    Json obj = {{"apiVersion", "longhorn.io/v1beta2"},
                {"kind", "BackingImage"},
                {"metadata",
                 {{"name", name},
                  {"namespace", kLonghornNamespace},
                  {"annotations",
                   {{"harvesterhci.io/imageId", NamespaceOf(image) + "/" + NameOf(image)}}}}},
                {"spec", spec}};
    auto r = kube_.Create({}, kBackingImages, kLonghornNamespace, obj);
    if (!r && r.error().code != core::ErrorCode::kAlreadyExists) {
      return core::MakeError(r.error());
    }
    return name;
  }

  //! Longhorn's outcome of the stored file: status.checksum (immutable once set), sizes, and the
  //! disk file's state. Returns the image's failure, empty on success.
  std::string ReportBackingImage(const std::string& name, const std::string& wanted,
                                 const std::string& sum512, uint64_t bytes) {
    std::string reported = sum512;
    if (tamper_backing_image_checksum_) {
      reported.back() = reported.back() == '0' ? '1' : '0';  // a store that changed the file
    }
    std::string state = "ready";
    std::string message;
    if (!wanted.empty() && wanted != sum512) {
      state = "failed";
      message = "the expected checksum " + wanted + " doesn't match the file checksum " + sum512;
    }
    Json status = {{"checksum", reported},
                   {"size", bytes},
                   {"virtualSize", bytes},
                   {"realSize", bytes},
                   {"uuid", name},
                   {"diskFileStatusMap",
                    {{kSimDiskUuid,
                      {{"state", state},
                       {"progress", state == "ready" ? 100 : 0},
                       {"message", message},
                       {"dataEngine", "v1"},
                       {"lastStateTransitionTime", Now()}}}}}};
    if (state == "failed") {
      status.erase("checksum");  // no file was kept
    }
    // Retried like an image's outcome (Longhorn's own controller retries until it lands): a
    // kube-apiserver restart must not leave a ready image whose BackingImage says nothing.
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (true) {
      auto r = kube_.MergePatch({}, kBackingImages, kLonghornNamespace, name, {{"status", status}},
                                "status");
      if (r || r.error().code == core::ErrorCode::kNotFound ||
          std::chrono::steady_clock::now() > deadline) {
        if (!r) {
          log_.Warn("patching backing image failed",
                    {{"backing_image", name}, {"error", r.error().ToString()}});
        }
        break;
      }
      std::this_thread::sleep_for(200ms);
    }
    if (state == "failed") {
      return "backing image " + name + " failed: " + message;
    }
    return "";
  }

  void DeleteBackingImage(const Json& image) {
    const std::string name = BackingImageName(image);
    if (name == "vmi-") {
      return;
    }
    (void)kube_.Delete({}, kBackingImages, kLonghornNamespace, name);
  }

  void Succeed(const Json& image, Json status, const std::string& backend, uint64_t bytes,
               const std::string& sum256, const std::string& sum512,
               const std::string& backing_image) {
    const std::string ns = NamespaceOf(image);
    const std::string name = NameOf(image);
    const Json& spec = Field(image, "spec");
    std::string sc;
    if (backend == "cdi") {
      sc = spec.value("targetStorageClassName", "");
      if (!EnsureCdiPvc(image, sc, bytes)) {
        Fail(image, status, "cdi: cannot create the volume in storage class " + sc);
        return;
      }
    } else {
      sc = "longhorn-" + name;
      EnsureImageStorageClass(image, sc, backing_image);
    }
    status["progress"] = 100;
    status["size"] = bytes;
    status["virtualSize"] = bytes;
    status["storageClassName"] = sc;
    SetCondition(status, "Imported", "True", "Imported", "");
    SetCondition(status, "RetryLimitExceeded", "False", "", "");
    PatchImage(image,
               {{"metadata",
                 {{"annotations", {{kSha256Annotation, sum256}, {kSha512Annotation, sum512}}}}},
                {"status", status}},
               true);
    log_.Info("image imported",
              {{"image", ns + "/" + name}, {"bytes", bytes}, {"storage_class", sc}});
  }

  //! Harvester's failStateTransit: count, message, and RetryLimitExceeded past spec.retry.
  void Fail(const Json& image, Json status, const std::string& error) {
    const int failed = status.value("failed", 0) + 1;
    const int retry = Field(image, "spec").value("retry", 3);
    std::string msg = "failed due to error: " + error;
    if (failed > 1) {
      msg =
          "retry attempted " + std::to_string(failed - 1) + "/" + std::to_string(retry) + " " + msg;
    }
    status["failed"] = failed;
    status["lastFailedTime"] = Now();
    if (failed > retry) {
      SetCondition(status, "RetryLimitExceeded", "True", "", msg);
      SetCondition(status, "Imported", "False", "", msg);
    } else {
      SetCondition(status, "RetryLimitExceeded", "False", "", msg);
      image_queue_.AddAfter(kube::ObjectKeyOf(image), 2s);
    }
    PatchImage(image, {{"status", status}}, true);
    log_.Warn("image download failed",
              {{"image", kube::ObjectKeyOf(image)}, {"failed", failed}, {"error", error}});
  }

  //! The capacity parameter of storage class `sc` in bytes; 0 when unset (no limit).
  uint64_t CapacityOf(const std::string& sc) {
    if (sc.empty()) {
      return 0;
    }
    auto obj = kube_.Get({}, kStorageClasses, "", sc);
    if (!obj) {
      return 0;
    }
    const Json& parameters = Field(*obj, "parameters");
    const std::string value = parameters.value(kCapacityParameter, "");
    return value.empty() ? 0 : std::strtoull(value.c_str(), nullptr, 10);
  }

  void EnsureImageStorageClass(const Json& /*image*/, const std::string& sc,
                               const std::string& backing_image) {
    Json obj = {
        {"apiVersion", "storage.k8s.io/v1"},
        {"kind", "StorageClass"},
        {"metadata", {{"name", sc}}},
        {"provisioner", "driver.longhorn.io"},
        {"allowVolumeExpansion", true},
        {"volumeBindingMode", "Immediate"},
        {"parameters",
         {{"backingImage", backing_image}, {"migratable", "true"}, {"numberOfReplicas", "3"}}}};
    // Retried like an image's outcome: without its class the image's PVCs never bind.
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (true) {
      auto r = kube_.Create({}, kStorageClasses, "", obj);
      if (r || r.error().code == core::ErrorCode::kAlreadyExists) {
        return;
      }
      const bool retry =
          !g_stop && !r.error().Terminal() && std::chrono::steady_clock::now() < deadline;
      log_.Warn("creating storage class failed",
                {{"error", r.error().ToString()}, {"retrying", retry}});
      if (!retry) {
        return;
      }
      std::this_thread::sleep_for(1s);
    }
  }

  bool EnsureCdiPvc(const Json& image, const std::string& sc, uint64_t bytes) {
    if (sc.empty() || !kube_.Get({}, kStorageClasses, "", sc)) {
      return false;
    }
    Json pvc = {{"apiVersion", "v1"},
                {"kind", "PersistentVolumeClaim"},
                {"metadata",
                 {{"name", NameOf(image)},
                  {"namespace", NamespaceOf(image)},
                  {"ownerReferences",
                   {{{"apiVersion", "harvesterhci.io/v1beta1"},
                     {"kind", "VirtualMachineImage"},
                     {"name", NameOf(image)},
                     {"uid", Field(image, "metadata").value("uid", "")}}}}}},
                {"spec",
                 {{"accessModes", {"ReadWriteMany"}},
                  {"volumeMode", "Block"},
                  {"storageClassName", sc},
                  {"resources", {{"requests", {{"storage", std::to_string(bytes)}}}}}}}};
    auto r = kube_.Create({}, kPvcs, NamespaceOf(image), pvc);
    return r || r.error().code == core::ErrorCode::kAlreadyExists;
  }

  // --- PVCs -----------------------------------------------------------------------------------

  void SyncPvc(const std::string& key) {
    auto pvc = pvcs_.Get(key);
    if (!pvc || Field(*pvc, "metadata").contains("deletionTimestamp")) {
      return;
    }
    if (pvc->value("status", Json::object()).value("phase", "") == "Bound") {
      return;
    }
    const Json& spec = Field(*pvc, "spec");
    const std::string sc = spec.value("storageClassName", "");
    if (sc.empty() || !kube_.Get({}, kStorageClasses, "", sc)) {
      pvc_queue_.AddAfter(key, 1s);  // the class may appear (an image's class is made on import)
      return;
    }
    Json obj = *pvc;
    const Json& requests = Field(Field(spec, "resources"), "requests");
    obj["status"] = {{"phase", "Bound"},
                     {"accessModes", spec.value("accessModes", Json::array())},
                     {"capacity", requests}};
    auto r = kube_.UpdateStatus({}, kPvcs, NamespaceOf(obj), obj);
    if (!r) {
      log_.Warn("binding pvc failed", {{"pvc", key}, {"error", r.error().ToString()}});
      pvc_queue_.AddAfter(key, 1s);
      return;
    }
    log_.Info("pvc bound", {{"pvc", key}, {"storage_class", sc}});
  }

  // --- KubeVirt -------------------------------------------------------------------------------

  // virt-controller makes the VMI and owns VirtualMachine.status; node_ plays the node. Once the
  // VMI runs, the boot check (--boot-dir) boots the VM's disk.
  void OnVmiRunning(const Json& vmi) {
    const std::string ns = NamespaceOf(vmi);
    const std::string name = NameOf(vmi);
    auto vm = vms_.Get(ns + "/" + name);
    if (vm) {
      MaybeBoot(*vm, ns, name);
    }
  }

  std::string BootFile(const std::string& ns, const std::string& image) const {
    return boot_dir_.empty() ? "" : boot_dir_ + "/" + ns + "_" + image + ".raw";
  }

  // --boot-dir: boots the running VM's first disk (lowest bootOrder) once and records the outcome.
  void MaybeBoot(const Json& vm, const std::string& ns, const std::string& name) {
    if (boot_dir_.empty() ||
        Field(Field(vm, "metadata"), "annotations").contains(kBootAnnotation)) {
      return;
    }
    const Json& tspec = Field(Field(Field(vm, "spec"), "template"), "spec");
    std::string volume;
    int best = 0;
    for (const Json& d : Field(Field(tspec, "domain"), "devices").value("disks", Json::array())) {
      const int order = d.value("bootOrder", 1 << 20);
      if (volume.empty() || order < best) {
        best = order;
        volume = d.value("name", "");
      }
    }
    std::string claim;
    for (const Json& v : tspec.value("volumes", Json::array())) {
      if (v.value("name", "") == volume && v.contains("persistentVolumeClaim")) {
        claim = v["persistentVolumeClaim"].value("claimName", "");
      }
    }
    std::string outcome;
    auto pvc = pvcs_.Get(ns + "/" + claim);
    const std::string image_id =
        pvc ? Field(Field(*pvc, "metadata"), "annotations").value("harvesterhci.io/imageId", "")
            : "";
    const auto slash = image_id.find('/');
    if (slash == std::string::npos) {
      outcome = "no-boot: boot disk " + volume + " has no image (claim " + claim + ")";
    } else {
      outcome = Boot(BootFile(image_id.substr(0, slash), image_id.substr(slash + 1)),
                     boot_dir_ + "/" + ns + "_" + name + ".serial");
    }
    log_.Info("boot", {{"vm", ns + "/" + name}, {"outcome", outcome}});
    (void)kube_.MergePatch({}, kVms, ns, name,
                           {{"metadata", {{"annotations", {{kBootAnnotation, outcome}}}}}});
  }

  // Boots a raw disk file with qemu (BIOS, TCG, 64 MiB, no network) until the marker appears on
  // its serial port, 60 s at most.
  std::string Boot(const std::string& disk, const std::string& serial) {
    if (!std::filesystem::exists(disk)) {
      return "no-boot: no downloaded bytes at " + disk;
    }
    std::filesystem::remove(serial);
    const std::string drive = "file=" + disk + ",format=raw,if=ide,snapshot=on";
    const std::string serial_arg = "file:" + serial;
    std::vector<const char*> argv = {"qemu-system-x86_64",
                                     "-machine",
                                     "pc,accel=tcg",
                                     "-m",
                                     "64",
                                     "-display",
                                     "none",
                                     "-nodefaults",
                                     "-no-reboot",
                                     "-monitor",
                                     "none",
                                     "-drive",
                                     drive.c_str(),
                                     "-serial",
                                     serial_arg.c_str(),
                                     nullptr};
    const pid_t pid = ::fork();
    if (pid < 0) {
      return "no-boot: fork failed";
    }
    if (pid == 0) {
      ::execvp(argv[0], const_cast<char* const*>(argv.data()));
      ::_exit(127);
    }
    std::string outcome;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (outcome.empty()) {
      std::ifstream in(serial, std::ios::binary);
      std::ostringstream text;
      text << in.rdbuf();
      int status = 0;
      if (text.str().find(boot_marker_) != std::string::npos) {
        outcome = "booted";
      } else if (::waitpid(pid, &status, WNOHANG) == pid) {
        return "no-boot: qemu exited (status " + std::to_string(status) + ") before printing " +
               boot_marker_;
      } else if (g_stop || std::chrono::steady_clock::now() > deadline) {
        outcome = "no-boot: no " + boot_marker_ + " on the serial port within 60 s";
      } else {
        std::this_thread::sleep_for(200ms);
      }
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return outcome;
  }

 public:
  void SetBoot(std::string dir, std::string marker) {
    boot_dir_ = std::move(dir);
    boot_marker_ = std::move(marker);
  }

 private:
  std::string boot_dir_;
  std::string boot_marker_;
  kube::Client& kube_;
  http::Client& http_;
  core::Logger log_;
  double rate_;
  uint64_t disconnect_after_;
  bool tamper_backing_image_checksum_;
  kube::Informer images_;
  kube::Informer pvcs_;
  kube::Informer vms_;
  sim::NodeSim node_;
  KeyQueue image_queue_;
  KeyQueue pvc_queue_;
  std::mutex mu_;
  std::set<std::string> downloading_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string kubeconfig = std::getenv("KUBECONFIG") ? std::getenv("KUBECONFIG") : "";
  double rate = 0;
  uint64_t disconnect_after = 0;
  int workers = 4;
  std::string level = "info";
  std::string boot_dir;
  std::string boot_marker = "VMIMPORT-BOOT-OK";
  bool tamper = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--kubeconfig" && i + 1 < argc) {
      kubeconfig = argv[++i];
    } else if (arg == "--rate" && i + 1 < argc) {
      rate = std::atof(argv[++i]);
    } else if (arg == "--disconnect-after" && i + 1 < argc) {
      disconnect_after = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--workers" && i + 1 < argc) {
      workers = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--log-level" && i + 1 < argc) {
      level = argv[++i];
    } else if (arg == "--boot-dir" && i + 1 < argc) {
      boot_dir = argv[++i];
    } else if (arg == "--boot-marker" && i + 1 < argc) {
      boot_marker = argv[++i];
    } else if (arg == "--tamper-backingimage-checksum") {
      tamper = true;
    } else {
      std::fprintf(stderr,
                   "usage: harvester-sim [--kubeconfig P] [--rate B/s] [--workers N] "
                   "[--disconnect-after BYTES] [--boot-dir DIR] [--boot-marker TEXT] "
                   "[--tamper-backingimage-checksum]\n");
      return 2;
    }
  }
  http::GlobalInit();
  ::signal(SIGTERM, OnSignal);
  ::signal(SIGINT, OnSignal);
  core::LogLevel parsed_level = core::LogLevel::kInfo;
  if (!core::ParseLogLevel(level, parsed_level)) {
    std::fprintf(stderr, "harvester-sim: unknown log level %s\n", level.c_str());
    return 2;
  }
  core::Logger log(std::make_shared<core::StderrSink>(), parsed_level, core::LogFormat::kLogfmt);
  log = log.With({{"component", "harvester-sim"}});
  auto config = kube::LoadKubeconfig(kubeconfig);
  if (!config) {
    log.Error("kubeconfig", {{"error", config.error().ToString()}});
    return 2;
  }
  auto kube = kube::Client::Create(*config);
  if (!kube) {
    log.Error("kube client", {{"error", kube.error().ToString()}});
    return 2;
  }
  // Image URLs point at the controller's image server: plain HTTP in the world, or HTTPS with a
  // CA the cluster trusts; the simulator trusts the system store like Harvester's downloader.
  auto http = http::Client::Create({});
  if (!http) {
    log.Error("http client", {{"error", http.error().ToString()}});
    return 2;
  }
  Simulator sim(**kube, **http, log, rate, disconnect_after, tamper);
  sim.SetBoot(boot_dir, boot_marker);
  sim.Run(workers);
  log.Info("harvester-sim stopped");
  return 0;
}
