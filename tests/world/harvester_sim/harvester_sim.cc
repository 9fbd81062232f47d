// harvester-sim: the part of a Harvester cluster that cannot run in the test world, played against
// the world's real kube-apiserver, and no more. Test harness only; the product never links it.
// README.md next to this file has the table of what is real and what is played, with figures.
//
//  - Image controller (harvesterhci.io/v1beta1 VirtualMachineImage, sourceType download): fills
//    an empty spec.backend with "backingimage" (Harvester's mutator), then per attempt writes the
//    status as Harvester v1.6's image controller does (pkg/image/common/operator.go, rules in
//    status_rules.cc): Initialized (progress 0, Imported=Unknown), then progress, then
//    Imported=True with size and virtualSize, or a failed attempt: status.failed counted,
//    "failed due to error: ..." / "retry attempted N/M ...", and past spec.retry
//    RetryLimitExceeded=True and Imported=False. A failed attempt is retried after 2 s (Harvester
//    waits 10 s). The sha256 and sha512 of the stored file go to the annotations
//    harvester-sim.vm-import.test/sha256 and .../sha512, for the tests to compare.
//  - backingimage backend: what downloads is Longhorn's own code. Per attempt, as Harvester v1.5+
//    does, the image's BackingImage (longhorn.io/v1beta2, real CRD) vmi-<image uid> in
//    longhorn-system is deleted and made again (sourceType download, sourceParameters.url,
//    spec.checksum = the image's spec.checksum); as longhorn-manager v1.8 does, it gets a
//    status.uuid and one backing-image-manager v1.8.1 `data-source` process downloads it
//    (data_source.h: a private mount namespace and chroot whose /data is its disk; started with
//    --checksum when spec.checksum is set; ended by PID). Its GET /v1/file reports (state,
//    progress, message, the SHA-512 it computed) go into the BackingImage's status
//    (diskFileStatusMap entry, checksum, size) and from there into the image's status by
//    Harvester's backingImageHandler rules. Once it is ready-for-transfer, the sim plays the
//    backing image manager taking the file over: it reads the file (the annotations; its SHA-512
//    must equal Longhorn's), tells the data source (transfer), stops it, and the BackingImage's
//    file becomes ready with virtualSize (qemu-img's, as Longhorn reports it) and realSize. Then
//    the per-image StorageClass longhorn-<image> (parameter backingImage) is made and the image
//    is Imported. Longhorn's webhook is played: a spec.checksum that is not 128 lower-case hex
//    digits is refused ("invalid checksum ..."), so such an image fails every attempt, for ever
//    (harvester#5578). --tamper-backingimage-checksum reports a wrong status.checksum instead of
//    Longhorn's (a store that corrupted the file), for the controller's DiskChecksumMismatch.
//    Storage capacity: when the image's spec.targetStorageClassName names a class with the
//    parameter harvester-sim.vm-import.test/capacity-bytes, the data source's /data is a tmpfs of
//    that size, so a download that outgrows it fails with Longhorn's own "no space left on
//    device" (like a full Longhorn disk; Longhorn writes sparse files, so zeros do not count).
//  - cdi backend: still the sim's own HTTP download (a real CDI importer is a later issue): the
//    whole of spec.url (a non-200 answer or a short body fails), progress, then a PVC named like
//    the image, owned by it, in the target class, as CDI's DataVolume does; spec.checksum is
//    ignored there, as current Harvester does. --rate, --disconnect-after and capacity-bytes do
//    not apply to it.
//  - PVC binding: a Pending PVC whose StorageClass exists becomes Bound with its requested size
//    (not for a kubernetes.io/no-provisioner class: the world's real node binds those).
//  - KubeVirt's node side (node_sim.h): KubeVirt's real virt-controller (started by the world)
//    turns a VirtualMachine into its VirtualMachineInstance and virt-launcher Pod and owns
//    VirtualMachine.status; this simulator plays only what would run on a node: kube-scheduler
//    and kubelet for the launcher Pod, and virt-handler for the VMI (Scheduled -> Running, and
//    Succeeded when it is deleted), on the one Node "harvester-sim-node" it registers.
//  - Boot (--boot-dir DIR, optional): every downloaded image is also kept as DIR/<ns>_<image>.raw;
//    when virt-controller hands a VMI to the node, the VirtualMachine is booted as its spec says
//    (boot_check.h: qemu-system-x86_64 under TCG, SeaBIOS or OVMF with secure boot as set, every
//    disk on its bus in boot order, every NIC with its model and MAC on qemu's user-mode network
//    with restrict=on) and the serial console watched for --boot-marker (default
//    VMIMPORT-BOOT-OK, what the seeded bootable disk and the world's guests print). The VMI is
//    reported Running only after the marker; a guest that does not boot within --boot-timeout
//    (default 240 s) or whose qemu exits leaves the VMI Failed (reason BootFailed) with a Warning
//    Event holding the console's tail. The outcome also goes to the VM's annotation
//    harvester-sim.vm-import.test/boot: "booted", or "no-boot: <why>"; the console stays in
//    DIR/<ns>_<vm>.serial.
//
// Usage: harvester-sim [--kubeconfig PATH] [--rate BYTES_PER_S] [--workers N] [--log-level L]
//                      [--disconnect-after BYTES] [--boot-dir DIR] [--boot-marker TEXT]
//                      [--boot-timeout SECONDS]
//                      [--tamper-backingimage-checksum] [--bim PATH] [--longhorn-dir DIR]
//   --bim: backing-image-manager (default $VMIMPORT_BIM_BINARY, which tools/world.sh up writes
//     to the world's env.sh; tests/world/target/longhorn/longhorn-world.sh path builds it).
//   --longhorn-dir: where the data sources' roots go, one directory each, removed when it ends
//     (default $VMIMPORT_LONGHORN_DIR, else a directory of its own under $TMPDIR). Needs root.
//   --rate, --disconnect-after (backingimage): a relay on 127.0.0.1 between the data source and
//     the image server (world/tcp_proxy.h) caps each download's speed (tests that cancel an import
//     mid-download), or, on the first attempt of each image, hangs up after BYTES bytes from the
//     server (headers included; a consumer that goes away mid-download): the attempt fails with
//     Longhorn's message and the retry downloads in full.
//   --workers: images downloaded at once (one data source process each), default 8 (Longhorn runs
//     one data source per backing image, with no limit).
// The final status of an image (imported or failed) and of its BackingImage is retried for up to
// a minute when the kube-apiserver cannot be reached (tests that restart it mid-import).
// Logs in logfmt to stderr; SIGTERM/SIGINT stop it (and its data sources; if it is killed, the
// kernel kills them: PR_SET_PDEATHSIG).

#include <arpa/inet.h>
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
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/log.h"
#include "core/strings.h"
#include "http/client.h"
#include "kube/client.h"
#include "kube/config.h"
#include "kube/informer.h"
#include "world/harvester_sim/boot_check.h"
#include "world/harvester_sim/data_source.h"
#include "world/harvester_sim/node_sim.h"
#include "world/harvester_sim/status_rules.h"
#include "world/tcp_proxy.h"

namespace {

using namespace vmimport;
using namespace vmimport::harvester_sim;
using namespace std::chrono_literals;

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

std::string EnvOr(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

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

class Simulator {
 public:
  Simulator(kube::Client& kube, http::Client& http, core::Logger log, double rate,
            uint64_t disconnect_after, bool tamper_backing_image_checksum, std::string bim_binary,
            std::string longhorn_dir)
      : kube_(kube),
        http_(http),
        log_(std::move(log)),
        rate_(rate),
        disconnect_after_(disconnect_after),
        tamper_backing_image_checksum_(tamper_backing_image_checksum),
        bim_binary_(std::move(bim_binary)),
        longhorn_dir_(std::move(longhorn_dir)),
        images_(kube, kImages, "", log_),
        pvcs_(kube, kPvcs, "", log_),
        vms_(kube, kVms, "", log_),
        node_(kube, log_, g_stop, "harvester-sim-node") {
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
    auto cached = images_.Get(key);
    if (!cached || !WantsAttempt(*cached)) {
      return;
    }
    {
      std::lock_guard lock(mu_);
      if (!downloading_.insert(key).second) {
        return;
      }
    }
    // The cache may not have seen this sim's own last write yet (the key was queued by an event
    // of an earlier write): an attempt starts only from what the kube-apiserver holds now, so
    // that an image just Imported is never initialized again.
    auto [ns, name] = SplitKey(key);
    auto image = kube_.Get({}, kImages, ns, name);
    if (image && WantsAttempt(*image)) {
      // Like Harvester, a failed download is tried again after a pause, not at once.
      const Json& status = Field(*image, "status");
      std::chrono::system_clock::time_point failed_at;
      if (status.value("failed", 0) > 0 &&
          core::ParseRfc3339(status.value("lastFailedTime", ""), failed_at) &&
          std::chrono::system_clock::now() - failed_at < 2s) {
        image_queue_.AddAfter(key, 1s);
      } else {
        Download(key, *image);
      }
    }
    std::lock_guard lock(mu_);
    downloading_.erase(key);
  }

  //! Not deleted, not Imported, retries not used up.
  static bool WantsAttempt(const Json& image) {
    return !Field(image, "metadata").contains("deletionTimestamp") &&
           ConditionStatus(image, "Imported") != "True" &&
           ConditionStatus(image, "RetryLimitExceeded") != "True";
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
      Fail(image, status, "only sourceType download is simulated", "Initialized");
      return;
    }
    if (backend == "cdi") {
      DownloadForCdi(key, image, status);
      return;
    }
    DownloadWithLonghorn(key, image, status);
  }

  // --- backingimage: Longhorn's downloader -----------------------------------------------------

  //! One attempt, as Harvester's image controller and longhorn-manager make it: the BackingImage
  //! of an earlier attempt goes and a new one (new uuid) is made, Longhorn's data source
  //! downloads it, its reports go to the BackingImage's status and from there to the image's.
  void DownloadWithLonghorn(const std::string& key, const Json& image, Json status) {
    const Json& spec = Field(image, "spec");
    const std::string url = spec.value("url", "");
    const std::string wanted = spec.value("checksum", "");
    if (!wanted.empty() && !IsLonghornChecksum(wanted)) {
      // Longhorn's webhook (ValidateChecksumSHA512) refuses the BackingImage: every attempt.
      Fail(image, status,
           "failed to create backing image: admission webhook \"validator.longhorn.io\" denied "
           "the request: invalid checksum " +
               wanted,
           "Initialized");
      return;
    }
    DeleteBackingImage(image);  // Harvester's Initialize: a retry starts from a new one
    auto made = CreateBackingImage(image, url, wanted);
    if (!made) {
      Fail(image, status, "failed to create backing image: " + made.error().ToString(),
           "Initialized");
      return;
    }
    const std::string bi_name = *made;
    // longhorn-manager gives the BackingImage its uuid (util.RandomID: 8 hex digits).
    const std::string uuid = RandomId();
    Json bi_status = {{"uuid", uuid}, {"diskFileStatusMap", Json::object()}};
    PatchBackingImageStatus(bi_name, bi_status, false);
    ImageInitialized(status, url, "longhorn-" + NameOf(image), Now());
    PatchImage(image, {{"status", status}});

    // --rate and --disconnect-after (first attempt only): a relay between the data source and
    // the image server that throttles, or hangs up after N bytes from the server.
    const bool hang_up = disconnect_after_ > 0 && status.value("failed", 0) == 0;
    std::unique_ptr<testing::TcpProxy> relay;
    std::string source_url = url;
    if (rate_ > 0 || hang_up) {
      auto endpoint = ParseEndpoint(url);
      if (!endpoint) {
        Fail(image, status, endpoint.error().message);
        return;
      }
      relay = std::make_unique<testing::TcpProxy>(endpoint->ip, endpoint->port);
      relay->LimitRate(rate_);
      if (hang_up) {
        relay->CutAfter(disconnect_after_, 1);
      }
      source_url = endpoint->prefix + std::to_string(relay->port()) + endpoint->rest;
    }
    const std::string target_class = spec.value("targetStorageClassName", "");
    const uint64_t capacity = CapacityOf(target_class);
    auto started = DataSource::Start({.binary = bim_binary_,
                                      .work_dir = longhorn_dir_ + "/" + bi_name + "-" + uuid,
                                      .name = bi_name,
                                      .uuid = uuid,
                                      .disk_uuid = kSimDiskUuid,
                                      .url = source_url,
                                      .checksum = wanted,
                                      .capacity_bytes = capacity},
                                     http_);
    if (!started) {
      FailBackingImage(image, status, bi_name, bi_status, started.error().ToString());
      return;
    }
    std::unique_ptr<DataSource> ds = std::move(*started);
    log_.Info("backing image data source started", {{"image", key},
                                                    {"backing_image", bi_name},
                                                    {"pid", static_cast<int64_t>(ds->pid())},
                                                    {"relay", relay != nullptr}});
    const auto t0 = std::chrono::steady_clock::now();
    auto last_write = t0 - 1h;
    DataSourceFileInfo last;
    bool answered = false;
    uint64_t peak_rss = 0;
    std::string error;
    DataSourceFileInfo info;
    while (true) {
      if (g_stop) {
        return;  // ~DataSource stops it
      }
      auto fresh = images_.Get(key);
      if (!fresh || Field(*fresh, "metadata").value("uid", "") != UidOf(image) ||
          Field(*fresh, "metadata").contains("deletionTimestamp")) {
        log_.Info("download abandoned: image deleted",
                  {{"image", key}, {"bytes", last.processed_size}});
        return;
      }
      auto got = ds->Get();
      if (!got) {
        if (auto code = ds->Exited()) {
          error = "backing-image-manager data-source exited with code " + std::to_string(*code) +
                  ": " + LastLine(ds->LogTail());
          break;
        }
        if (!answered && std::chrono::steady_clock::now() - t0 > 60s) {
          error = "backing-image-manager data-source did not answer within 60 s: " +
                  got.error().ToString();
          break;
        }
        std::this_thread::sleep_for(200ms);
        continue;
      }
      answered = true;
      peak_rss = std::max(peak_rss, ds->RssBytes());  // not before: until its exec, it is our copy
      info = *got;
      const bool terminal = info.state == "failed" || info.state == "ready-for-transfer";
      const bool changed = info.state != last.state || info.progress != last.progress ||
                           info.message != last.message ||
                           info.current_checksum != last.current_checksum;
      const auto now = std::chrono::steady_clock::now();
      if (changed && (terminal || now - last_write >= 1s)) {
        last = info;
        last_write = now;
        ApplyDataSourceInfo(bi_status, kSimDiskUuid, info, Now());
        PatchBackingImageStatus(bi_name, bi_status, terminal);
        if (!terminal && ApplyBackingImageToImage(bi_status, status, RetryOf(image), Now(),
                                                  nullptr) == ImageUpdate::kImporting) {
          PatchImage(image, {{"status", status}});
        }
      }
      if (info.state == "failed") {
        error = info.message;
        break;
      }
      if (info.state == "ready-for-transfer") {
        break;
      }
      std::this_thread::sleep_for(250ms);
    }
    if (!error.empty()) {
      log_.Warn("backing image data source failed",
                {{"image", key}, {"error", error}, {"log", LastLine(ds->LogTail())}});
      ds->Stop();
      if (info.state != "failed") {
        FailBackingImage(image, status, bi_name, bi_status, error);
      } else {
        ReactToBackingImage(image, status, bi_status);
      }
      return;
    }
    // What longhorn-manager's backing image manager does next: take the file over. Here the sim
    // reads it for the test annotations (and --boot-dir) and tells the data source it is taken.
    const std::string path = ds->HostPath(info.file_path);
    auto kept = ReadStoredFile(path, BootFile(NamespaceOf(image), NameOf(image)));
    if (!kept) {
      FailBackingImage(image, status, bi_name, bi_status, kept.error().ToString());
      return;
    }
    if (kept->sha512 != info.current_checksum) {
      log_.Error("the file read back differs from what backing-image-manager hashed",
                 {{"image", key}, {"sha512", kept->sha512}, {"bim", info.current_checksum}});
    }
    if (auto t = ds->Transfer(); !t) {
      log_.Warn("data source transfer", {{"image", key}, {"error", t.error().ToString()}});
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ds->Stop();
    log_.Info("backing image file ready", {{"image", key},
                                           {"backing_image", bi_name},
                                           {"bytes", info.size},
                                           {"seconds", seconds},
                                           {"bim_peak_rss_bytes", peak_rss}});
    ApplyFileTransferred(bi_status, kSimDiskUuid, info, Now());
    if (tamper_backing_image_checksum_) {
      std::string& sum = bi_status["checksum"].get_ref<std::string&>();
      sum.back() = sum.back() == '0' ? '1' : '0';  // a store that changed the file
    }
    PatchBackingImageStatus(bi_name, bi_status, true);
    EnsureImageStorageClass("longhorn-" + NameOf(image), bi_name);
    ReactToBackingImage(image, status, bi_status,
                        Json{{kSha256Annotation, kept->sha256}, {kSha512Annotation, kept->sha512}});
  }

  //! Harvester's backingImageHandler on the final BackingImage status, applied to the image's
  //! `status` of this attempt: Imported (with the test annotations) or a failed attempt (retried
  //! after a pause unless the retries are used up).
  void ReactToBackingImage(const Json& image, Json status, const Json& bi_status,
                           const Json& annotations = Json::object()) {
    bool exhausted = false;
    const ImageUpdate update =
        ApplyBackingImageToImage(bi_status, status, RetryOf(image), Now(), &exhausted);
    Json patch = {{"status", status}};
    if (!annotations.empty()) {
      patch["metadata"] = {{"annotations", annotations}};
    }
    PatchImage(image, patch, true);
    if (update == ImageUpdate::kFailed) {
      if (!exhausted) {
        image_queue_.AddAfter(kube::ObjectKeyOf(image), 2s);
      }
      log_.Warn("image download failed", {{"image", kube::ObjectKeyOf(image)},
                                          {"failed", status.value("failed", 0)},
                                          {"exhausted", exhausted}});
      return;
    }
    log_.Info("image imported",
              {{"image", kube::ObjectKeyOf(image)}, {"bytes", status.value("size", int64_t{0})}});
  }

  //! A failure the data source did not report itself (it could not start, or died): the disk's
  //! file fails with `error`, as longhorn-manager marks a BackingImageDataSource whose pod failed.
  void FailBackingImage(const Json& image, const Json& status, const std::string& bi_name,
                        Json bi_status, const std::string& error) {
    DataSourceFileInfo failed;
    failed.state = "failed";
    failed.message = error;
    ApplyDataSourceInfo(bi_status, kSimDiskUuid, failed, Now());
    PatchBackingImageStatus(bi_name, bi_status, true);
    ReactToBackingImage(image, status, bi_status);
  }

  struct StoredFile {
    std::string sha256;
    std::string sha512;
  };

  //! Hashes the stored file and, with --boot-dir, copies it to `boot_path`.
  core::Result<StoredFile> ReadStoredFile(const std::string& path, const std::string& boot_path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return core::MakeError(core::ErrorCode::kNotFound,
                             "reading the backing image file " + path + ": cannot open it");
    }
    std::ofstream kept;
    if (!boot_path.empty()) {
      kept.open(boot_path, std::ios::binary | std::ios::trunc);
    }
    Digest sha256(EVP_sha256());
    Digest sha512(EVP_sha512());
    std::vector<char> buf(1 << 20);
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const auto n = static_cast<size_t>(in.gcount());
      if (n == 0) {
        break;
      }
      sha256.Update({buf.data(), n});
      sha512.Update({buf.data(), n});
      if (kept.is_open()) {
        kept.write(buf.data(), static_cast<std::streamsize>(n));
      }
    }
    if (in.bad()) {
      return core::MakeError(core::ErrorCode::kUnavailable,
                             "reading the backing image file " + path + " failed");
    }
    return StoredFile{sha256.Final(), sha512.Final()};
  }

  //! Retried like an image's outcome when `must_land` (Longhorn's own controller retries until it
  //! lands): a kube-apiserver restart must not leave a ready image whose BackingImage says
  //! nothing.
  void PatchBackingImageStatus(const std::string& name, const Json& status, bool must_land) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (true) {
      auto r = kube_.MergePatch({}, kBackingImages, kLonghornNamespace, name, {{"status", status}},
                                "status");
      if (r || r.error().code == core::ErrorCode::kNotFound || !must_land || g_stop ||
          std::chrono::steady_clock::now() > deadline) {
        if (!r) {
          log_.Warn("patching backing image failed",
                    {{"backing_image", name}, {"error", r.error().ToString()}});
        }
        return;
      }
      std::this_thread::sleep_for(200ms);
    }
  }

  static int RetryOf(const Json& image) { return Field(image, "spec").value("retry", 3); }
  static std::string UidOf(const Json& image) { return Field(image, "metadata").value("uid", ""); }

  static std::string RandomId() {
    static const char* kDigits = "0123456789abcdef";
    std::random_device rd;
    std::string out;
    for (int i = 0; i < 8; ++i) {
      out += kDigits[rd() % 16];
    }
    return out;
  }

  static std::string LastLine(const std::string& text) {
    std::string t = text;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) {
      t.pop_back();
    }
    const auto nl = t.rfind('\n');
    return nl == std::string::npos ? t : t.substr(nl + 1);
  }

  struct Endpoint {
    std::string ip;  // what the relay connects to
    int port = 0;
    std::string prefix;  // "http://host:" (the URL up to its port)
    std::string rest;    // "/path..." after the port
  };

  //! The image server's address in an http(s) URL on this host (an IPv4 literal or localhost).
  static core::Result<Endpoint> ParseEndpoint(const std::string& url) {
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string::npos) {
      return core::MakeError(core::ErrorCode::kInvalidArgument, "relay: not a URL: " + url);
    }
    const std::string scheme = url.substr(0, scheme_end);
    const auto host_begin = scheme_end + 3;
    const auto path_begin = std::min(url.find('/', host_begin), url.size());
    const std::string authority = url.substr(host_begin, path_begin - host_begin);
    const auto colon = authority.rfind(':');
    Endpoint e;
    std::string host = colon == std::string::npos ? authority : authority.substr(0, colon);
    e.port = colon == std::string::npos ? (scheme == "https" ? 443 : 80)
                                        : std::atoi(authority.c_str() + colon + 1);
    e.prefix = scheme + "://" + host + ":";
    e.rest = url.substr(path_begin);
    in_addr addr{};
    if (host == "localhost") {
      e.ip = "127.0.0.1";
    } else if (::inet_pton(AF_INET, host.c_str(), &addr) == 1) {
      e.ip = host;
    } else {
      return core::MakeError(core::ErrorCode::kInvalidArgument,
                             "relay (--rate, --disconnect-after): the image URL's host " + host +
                                 " is not an IPv4 address or localhost");
    }
    return e;
  }

  // --- cdi: the sim's own download (a real CDI importer is a later issue) -----------------------

  //! Downloads spec.url in full (non-200 and short bodies fail), reports progress, and on success
  //! makes the image's PVC as CDI's DataVolume does. spec.checksum is ignored, as current
  //! Harvester does; --rate, --disconnect-after and capacity-bytes apply to backingimage only.
  void DownloadForCdi(const std::string& key, Json image, Json status) {
    SetCondition(status, "Initialized", "True", "Initialized", "", Now());
    PatchImage(image, {{"status", status}});
    Digest sha256(EVP_sha256());
    Digest sha512(EVP_sha512());
    uint64_t bytes = 0;
    uint64_t length = 0;
    long code = 0;
    bool gone = false;
    auto last_report = std::chrono::steady_clock::now();
    std::ofstream kept;  // --boot-dir
    if (const std::string p = BootFile(NamespaceOf(image), NameOf(image)); !p.empty()) {
      kept.open(p, std::ios::binary | std::ios::trunc);
    }
    http::Request req{
        .url = Field(image, "spec").value("url", ""), .timeout = 0ms, .stall_timeout = 30s};
    auto res = http_.Stream(
        {}, req,
        [&](const http::Response& head) {
          code = head.status;
          if (auto cl = head.Header("content-length")) {
            length = std::strtoull(cl->c_str(), nullptr, 10);
          }
          return code == 200;
        },
        [&](std::string_view chunk) {
          sha256.Update(chunk);
          sha512.Update(chunk);
          if (kept.is_open()) {
            kept.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
          }
          bytes += chunk.size();
          if (const auto now = std::chrono::steady_clock::now(); now - last_report > 1s) {
            last_report = now;
            if (!images_.Get(key)) {
              gone = true;
              return false;
            }
            if (length > 0) {
              PatchImage(image, {{"status", {{"progress", int(bytes * 100 / length)}}}});
            }
          }
          return !g_stop;
        });
    if (gone || g_stop) {
      return;
    }
    auto fresh = images_.Get(key);
    if (!fresh) {
      return;
    }
    image = *fresh;
    status = image.value("status", Json::object());
    std::string error;
    if (code != 0 && code != 200) {
      error = "unexpected status code " + std::to_string(code);
    } else if (!res) {
      error = res.error().ToString();
    } else if (length > 0 && bytes != length) {
      error =
          "short download: " + std::to_string(bytes) + " of " + std::to_string(length) + " bytes";
    }
    if (!error.empty()) {
      Fail(image, status, error);
      return;
    }
    const std::string sc = Field(image, "spec").value("targetStorageClassName", "");
    if (!EnsureCdiPvc(image, sc, bytes)) {
      Fail(image, status, "cdi: cannot create the volume in storage class " + sc);
      return;
    }
    status["progress"] = 100;
    status["size"] = bytes;
    status["virtualSize"] = bytes;
    status["storageClassName"] = sc;
    SetCondition(status, "Imported", "True", "Imported", "", Now());
    SetCondition(status, "RetryLimitExceeded", "False", "", "", Now());
    PatchImage(image,
               {{"metadata",
                 {{"annotations",
                   {{kSha256Annotation, sha256.Final()}, {kSha512Annotation, sha512.Final()}}}}},
                {"status", status}},
               true);
    log_.Info("image imported", {{"image", key}, {"bytes", bytes}, {"storage_class", sc}});
  }

  static bool IsLonghornChecksum(const std::string& c) {
    return c.size() == 128 && std::all_of(c.begin(), c.end(), [](char ch) {
             return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
           });
  }

  //! Harvester v1.5+ names an image's BackingImage "vmi-<uid>" (40 characters: Longhorn's limit).
  static std::string BackingImageName(const Json& image) { return "vmi-" + UidOf(image); }

  //! The BackingImage of `image`, as Harvester's backend creates it.
  core::Result<std::string> CreateBackingImage(const Json& image, const std::string& url,
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

  void DeleteBackingImage(const Json& image) {
    const std::string name = BackingImageName(image);
    if (name == "vmi-") {
      return;
    }
    (void)kube_.Delete({}, kBackingImages, kLonghornNamespace, name);
  }

  //! Harvester's failStateTransit on `cond` ("Imported", or "Initialized" for what failed before
  //! the download): count, message, and RetryLimitExceeded past spec.retry; else a retry later.
  void Fail(const Json& image, Json status, const std::string& error,
            const std::string& cond = "Imported") {
    const bool exhausted = ImageFailStateTransit(status, cond, RetryOf(image), error,
                                                 status.value("progress", 0), Now());
    if (!exhausted) {
      image_queue_.AddAfter(kube::ObjectKeyOf(image), 2s);
    }
    PatchImage(image, {{"status", status}}, true);
    log_.Warn("image download failed", {{"image", kube::ObjectKeyOf(image)},
                                        {"failed", status.value("failed", 0)},
                                        {"error", error}});
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

  void EnsureImageStorageClass(const std::string& sc, const std::string& backing_image) {
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
    auto sc_obj = sc.empty() ? core::Result<Json>(core::MakeError(core::ErrorCode::kNotFound, ""))
                             : kube_.Get({}, kStorageClasses, "", sc);
    if (!sc_obj) {
      pvc_queue_.AddAfter(key, 1s);  // the class may appear (an image's class is made on import)
      return;
    }
    // The world's real node binds the claims of its local classes (the real PV controller, with
    // a volumeName): never play that part for them.
    if (sc_obj->value("provisioner", "") == "kubernetes.io/no-provisioner") {
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

  // virt-controller makes the VMI and owns VirtualMachine.status; node_ plays the node. With
  // --boot-dir, node_ reports a VMI Running only once BootGuest booted its VM's guest.

  std::string BootFile(const std::string& ns, const std::string& image) const {
    return boot_dir_.empty() ? "" : boot_dir_ + "/" + ns + "_" + image + ".raw";
  }

  // The boot check (boot_check.h) of the VirtualMachine that owns `vmi`: qemu from its spec, each
  // volume's bytes as Longhorn stored them. The outcome also goes to the VM's annotation
  // harvester-sim.vm-import.test/boot ("booted" or "no-boot: <why>") for the tests; the console
  // stays in <boot-dir>/<ns>_<vm>.serial.
  NodeSim::BootResult BootGuest(std::stop_token stop, const Json& vmi) {
    const std::string ns = NamespaceOf(vmi);
    const std::string name = NameOf(vmi);
    NodeSim::BootResult result;
    std::optional<Json> vm = vms_.Get(ns + "/" + name);
    if (!vm) {
      if (auto live = kube_.Get({}, kVms, ns, name)) {
        vm = std::move(*live);
      }
    }
    if (!vm) {
      result.reason = "no VirtualMachine " + ns + "/" + name;
      return result;
    }
    const Json& tspec = Field(Field(Field(*vm, "spec"), "template"), "spec");
    std::map<std::string, std::string> files;
    for (const Json& v : tspec.value("volumes", Json::array())) {
      if (!v.is_object() || !v.contains("persistentVolumeClaim")) {
        continue;
      }
      const std::string claim = Field(v, "persistentVolumeClaim").value("claimName", "");
      auto pvc = pvcs_.Get(ns + "/" + claim);
      const std::string image_id =
          pvc ? Field(Field(*pvc, "metadata"), "annotations").value("harvesterhci.io/imageId", "")
              : "";
      const auto slash = image_id.find('/');
      if (slash != std::string::npos) {
        const std::string file = BootFile(image_id.substr(0, slash), image_id.substr(slash + 1));
        if (std::filesystem::exists(file)) {
          files[v.value("name", "")] = file;
        }
      }
    }
    QemuOptions options;
    options.serial_path = boot_dir_ + "/" + ns + "_" + name + ".serial";
    options.vars_path = boot_dir_ + "/" + ns + "_" + name + ".efivars";
    auto plan = QemuCommandFor(tspec, files, options);
    if (!plan) {
      result.reason = plan.error().message;
    } else {
      log_.Info("boot started", {{"vm", ns + "/" + name},
                                 {"firmware", plan->firmware},
                                 {"devices", core::Join(plan->devices, "; ")}});
      const BootOutcome outcome =
          RunBoot(stop, *plan, options, boot_marker_, std::chrono::seconds(boot_timeout_s_));
      result.booted = outcome.booted;
      result.reason = outcome.reason;
      result.message = outcome.booted ? outcome.marker_line : outcome.console_tail;
      log_.Info("boot", {{"vm", ns + "/" + name},
                         {"booted", outcome.booted ? "true" : "false"},
                         {"seconds", std::to_string(outcome.seconds)},
                         {"reason", outcome.reason}});
    }
    const std::string annotation = result.booted ? "booted" : "no-boot: " + result.reason;
    (void)kube_.MergePatch({}, kVms, ns, name,
                           {{"metadata", {{"annotations", {{kBootAnnotation, annotation}}}}}});
    return result;
  }

 public:
  void SetBoot(std::string dir, std::string marker, int timeout_s) {
    boot_dir_ = std::move(dir);
    boot_marker_ = std::move(marker);
    boot_timeout_s_ = timeout_s;
    if (!boot_dir_.empty()) {
      node_.SetBootCheck(
          [this](std::stop_token stop, const Json& vmi) { return BootGuest(stop, vmi); });
    }
  }

 private:
  std::string boot_dir_;
  std::string boot_marker_;
  int boot_timeout_s_ = 240;
  kube::Client& kube_;
  http::Client& http_;
  core::Logger log_;
  double rate_;
  uint64_t disconnect_after_;
  bool tamper_backing_image_checksum_;
  std::string bim_binary_;    // backing-image-manager
  std::string longhorn_dir_;  // one directory per data source process below it
  kube::Informer images_;
  kube::Informer pvcs_;
  kube::Informer vms_;
  NodeSim node_;
  KeyQueue image_queue_{g_stop};
  KeyQueue pvc_queue_{g_stop};
  std::mutex mu_;
  std::set<std::string> downloading_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string kubeconfig = std::getenv("KUBECONFIG") ? std::getenv("KUBECONFIG") : "";
  double rate = 0;
  uint64_t disconnect_after = 0;
  int workers = 8;
  std::string level = "info";
  std::string boot_dir;
  std::string boot_marker = "VMIMPORT-BOOT-OK";
  int boot_timeout = 240;
  bool tamper = false;
  std::string bim = EnvOr("VMIMPORT_BIM_BINARY");
  std::string longhorn_dir = EnvOr("VMIMPORT_LONGHORN_DIR");
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
    } else if (arg == "--boot-timeout" && i + 1 < argc) {
      boot_timeout = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--tamper-backingimage-checksum") {
      tamper = true;
    } else if (arg == "--bim" && i + 1 < argc) {
      bim = argv[++i];
    } else if (arg == "--longhorn-dir" && i + 1 < argc) {
      longhorn_dir = argv[++i];
    } else {
      std::fprintf(
          stderr,
          "usage: harvester-sim [--kubeconfig P] [--rate B/s] [--workers N] "
          "[--disconnect-after BYTES] [--boot-dir DIR] [--boot-marker TEXT] [--boot-timeout S] "
          "[--tamper-backingimage-checksum] [--bim PATH] [--longhorn-dir DIR]\n");
      return 2;
    }
  }
  if (bim.empty() || ::access(bim.c_str(), X_OK) != 0) {
    std::fprintf(stderr,
                 "harvester-sim: no backing-image-manager at '%s' (--bim or VMIMPORT_BIM_BINARY; "
                 "tests/world/target/longhorn/longhorn-world.sh path builds it)\n",
                 bim.c_str());
    return 2;
  }
  // The data sources' roots: the given directory, or one of our own under $TMPDIR, removed at
  // exit.
  std::string own_dir;
  if (longhorn_dir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "harvester-sim-longhorn-XXXXXX");
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("harvester-sim: mkdtemp");
      return 2;
    }
    longhorn_dir = own_dir = tmpl;
  }
  std::error_code ec;
  std::filesystem::create_directories(longhorn_dir, ec);
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
  {
    Simulator sim(**kube, **http, log, rate, disconnect_after, tamper, bim, longhorn_dir);
    sim.SetBoot(boot_dir, boot_marker, boot_timeout);
    sim.Run(workers);
  }
  if (!own_dir.empty()) {
    std::filesystem::remove_all(own_dir, ec);
  }
  log.Info("harvester-sim stopped");
  return 0;
}
