#include "source/libvirt/change_tracker.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "core/strings.h"
#include "source/libvirt/backup_xml.h"
#include "source/libvirt/domain_xml.h"

namespace vmimport::source::libvirt {

using core::ErrorCode;
using core::MakeError;
using core::Result;
using core::Status;

namespace {

struct CheckpointDeleter {
  void operator()(virDomainCheckpointPtr c) const noexcept { virDomainCheckpointFree(c); }
};
using CheckpointPtr = std::unique_ptr<virDomainCheckpoint, CheckpointDeleter>;

std::string VersionText(unsigned long v) {
  return std::to_string(v / 1000000) + "." + std::to_string(v / 1000 % 1000) + "." +
         std::to_string(v % 1000);
}

Result<DomainPtr> LookupDomain(virConnectPtr conn, std::string_view vm) {
  const std::string name(vm);
  DomainPtr dom(virDomainLookupByName(conn, name.c_str()));
  if (!dom) {
    core::Error e = LastError("domain '" + name + "'");
    if (e.code != ErrorCode::kNotFound) {
      return MakeError(std::move(e));
    }
    dom.reset(virDomainLookupByUUIDString(conn, name.c_str()));
    if (!dom) {
      virResetLastError();
      return MakeError(ErrorCode::kNotFound,
                       "libvirt: no domain named or with UUID '" + name + "'");
    }
  }
  return dom;
}

// The running job of the domain, if a backup: nullopt when none runs.
Result<std::optional<RunningBackup>> RunningBackupOf(virDomainPtr dom) {
  char* xml = virDomainBackupGetXMLDesc(dom, 0);
  if (xml == nullptr) {
    const virErrorPtr e = virGetLastError();
    if (e != nullptr && e->code == VIR_ERR_NO_DOMAIN_BACKUP) {
      virResetLastError();
      return std::optional<RunningBackup>();
    }
    return MakeError(LastError("backup job of domain " + std::string(virDomainGetName(dom))));
  }
  auto parsed = ParseRunningBackup(TakeString(xml));
  if (!parsed) {
    return MakeError(parsed.error());
  }
  return std::optional<RunningBackup>(std::move(*parsed));
}

struct OurCheckpoint {
  int round = 0;
  CheckpointPtr cp;
};

// The import's checkpoints of the domain, newest (highest round) first.
Result<std::vector<OurCheckpoint>> OurCheckpoints(virDomainPtr dom, std::string_view uid) {
  virDomainCheckpointPtr* list = nullptr;
  const int n = virDomainListAllCheckpoints(dom, &list, 0);
  if (n < 0) {
    return MakeError(LastError("checkpoints of domain " + std::string(virDomainGetName(dom))));
  }
  std::vector<OurCheckpoint> out;
  for (int i = 0; i < n; ++i) {
    CheckpointPtr cp(list[i]);
    const char* name = virDomainCheckpointGetName(cp.get());
    if (auto round = CheckpointRound(name != nullptr ? name : "", uid)) {
      out.push_back({*round, std::move(cp)});
    }
  }
  // NOLINTNEXTLINE(cppcoreguidelines-no-malloc,cppcoreguidelines-owning-memory): libvirt's array
  std::free(list);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.round > b.round; });
  return out;
}

Status DeleteCheckpoint(virDomainCheckpointPtr cp) {
  const std::string name = virDomainCheckpointGetName(cp);
  if (virDomainCheckpointDelete(cp, 0) < 0) {
    const virErrorPtr e = virGetLastError();
    if (e != nullptr && e->code == VIR_ERR_NO_DOMAIN_CHECKPOINT) {
      virResetLastError();
      return {};
    }
    return MakeError(LastError("delete checkpoint " + name));
  }
  return {};
}

std::filesystem::path ExportParent(const ChangeTrackerOptions& options) {
  return options.export_parent.empty() ? std::filesystem::temp_directory_path()
                                       : std::filesystem::path(options.export_parent);
}

// Removes the private directories of the import's earlier attempts (their jobs are stopped).
void RemoveExportDirs(const std::filesystem::path& parent, std::string_view uid) {
  const std::string prefix = ExportDirPrefix(uid);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(parent, ec)) {
    if (entry.path().filename().string().starts_with(prefix)) {
      std::error_code rm;
      std::filesystem::remove_all(entry.path(), rm);
    }
  }
}

// Stops the import's backup job if one runs and waits for it to end. kConflict for a backup
// job of someone else.
Status StopOurJob(virDomainPtr dom, std::string_view uid, std::chrono::milliseconds timeout) {
  const std::string name = virDomainGetName(dom);
  auto job = RunningBackupOf(dom);
  if (!job) {
    return MakeError(job.error());
  }
  if (!job->has_value()) {
    return {};
  }
  if (!IsOurBackup(**job, uid)) {
    return MakeError(ErrorCode::kConflict,
                     "libvirt: domain " + name +
                         " runs a backup job that is not this import's (socket '" + (*job)->socket +
                         "'): a domain has one backup job at a time; wait for it to end or stop "
                         "it (virsh domjobabort " +
                         name + ")");
  }
  if (virDomainAbortJob(dom) < 0) {
    core::Error e = LastError("stop the backup job of domain " + name);
    // The job may have ended between the two calls: only a job still running is an error.
    auto again = RunningBackupOf(dom);
    if (!again || again->has_value()) {
      return MakeError(std::move(e));
    }
    return {};
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto again = RunningBackupOf(dom);
    if (!again) {
      return MakeError(again.error());
    }
    if (!again->has_value()) {
      return {};
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return MakeError(ErrorCode::kUnavailable, "libvirt: the backup job of domain " + name +
                                                    " did not end after it was stopped");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// A private directory (0700) for a round's socket and scratch files; removed with this object.
class ExportDir {
 public:
  static Result<std::unique_ptr<ExportDir>> Create(const std::filesystem::path& parent,
                                                   std::string_view uid) {
    std::string templ = (parent / (ExportDirPrefix(uid) + "XXXXXX")).string();
    if (templ.size() + sizeof("/nbd.sock") > 107) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "warm: the export directory '" + templ +
                           "' is too long for a unix socket path (at most 107 bytes)");
    }
    if (mkdtemp(templ.data()) == nullptr) {
      return MakeError(ErrorCode::kInternal, "warm: cannot make the export directory '" + templ +
                                                 "': " + std::strerror(errno));
    }
    return std::unique_ptr<ExportDir>(new ExportDir(templ));
  }
  ~ExportDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ExportDir(const ExportDir&) = delete;
  ExportDir& operator=(const ExportDir&) = delete;
  const std::string& path() const { return path_; }
  std::string socket() const { return path_ + "/nbd.sock"; }

 private:
  explicit ExportDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

class LibvirtRoundDisk final : public warm::RoundDisk {
 public:
  LibvirtRoundDisk(std::string target, std::unique_ptr<NbdExport> nbd)
      : target_(std::move(target)), nbd_(std::move(nbd)) {}
  // warm::RoundDisk
  const std::string& Target() const override { return target_; }
  uint64_t VirtualSize() const override { return nbd_->Size(); }
  Result<std::vector<warm::ChangedRange>> Changed(std::stop_token stop) override {
    return nbd_->Ranges(stop);
  }
  Result<size_t> ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out) override {
    return nbd_->ReadAt(stop, offset, out);
  }
  void Close() { nbd_.reset(); }
  bool closed() const { return !nbd_; }

 private:
  std::string target_;
  std::unique_ptr<NbdExport> nbd_;
};

class LibvirtRound final : public warm::Round {
 public:
  LibvirtRound(DomainPtr dom, std::string uid, int number, std::unique_ptr<ExportDir> dir,
               std::vector<std::unique_ptr<LibvirtRoundDisk>> disks,
               std::chrono::milliseconds job_end_timeout)
      : dom_(std::move(dom)),
        uid_(std::move(uid)),
        number_(number),
        checkpoint_(warm::CheckpointName(uid_, number)),
        dir_(std::move(dir)),
        disks_(std::move(disks)),
        job_end_timeout_(job_end_timeout) {}
  ~LibvirtRound() override { (void)Finish(); }
  LibvirtRound(const LibvirtRound&) = delete;
  LibvirtRound& operator=(const LibvirtRound&) = delete;

  // warm::Round
  int Number() const override { return number_; }
  const std::string& Checkpoint() const override { return checkpoint_; }
  size_t DiskCount() const override { return disks_.size(); }
  warm::RoundDisk& Disk(size_t index) override { return *disks_.at(index); }
  Status Finish() override {
    if (finished_) {
      return {};
    }
    for (auto& d : disks_) {
      d->Close();  // NBD clients first: the job's end closes the server under them otherwise
    }
    if (auto s = StopOurJob(dom_.get(), uid_, job_end_timeout_); !s) {
      return s;  // the directory stays until the job is gone (a repeat finishes it)
    }
    dir_.reset();
    finished_ = true;
    return {};
  }

 private:
  DomainPtr dom_;
  std::string uid_;
  int number_;
  std::string checkpoint_;
  std::unique_ptr<ExportDir> dir_;
  std::vector<std::unique_ptr<LibvirtRoundDisk>> disks_;
  std::chrono::milliseconds job_end_timeout_;
  bool finished_ = false;
};

class LibvirtChangeTracker final : public warm::ChangeTracker {
 public:
  LibvirtChangeTracker(SourceConfig config, ChangeTrackerOptions options)
      : config_(std::move(config)), options_(std::move(options)) {}

  // warm::ChangeTracker
  Status CheckCapable(std::string_view vm) override {
    auto d = Domain(vm);
    if (!d) {
      return MakeError(d.error());
    }
    auto targets = CapableTargets(d->conn.get(), d->dom.get());
    if (!targets) {
      return MakeError(targets.error());
    }
    return {};
  }

  Result<std::unique_ptr<warm::Round>> BeginRound(std::string_view vm, std::string_view import_uid,
                                                  int number) override {
    if (number < 0 || import_uid.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "warm: a round needs an import uid and a number >= 0");
    }
    auto d = Domain(vm);
    if (!d) {
      return MakeError(d.error());
    }
    const std::string name = virDomainGetName(d->dom.get());
    auto targets = CapableTargets(d->conn.get(), d->dom.get());
    if (!targets) {
      return MakeError(targets.error());
    }
    // What an earlier attempt left: its job, its directories, its checkpoints >= number.
    if (auto s = StopOurJob(d->dom.get(), import_uid, options_.job_end_timeout); !s) {
      return MakeError(s.error());
    }
    RemoveExportDirs(ExportParent(options_), import_uid);
    auto ours = OurCheckpoints(d->dom.get(), import_uid);
    if (!ours) {
      return MakeError(ours.error());
    }
    bool have_previous = false;
    for (OurCheckpoint& c : *ours) {
      if (c.round >= number) {
        if (auto s = DeleteCheckpoint(c.cp.get()); !s) {
          return MakeError(s.error());
        }
      } else if (c.round == number - 1) {
        have_previous = true;
      }
    }
    const std::string previous = number > 0 ? warm::CheckpointName(import_uid, number - 1) : "";
    if (number > 0 && !have_previous) {
      return MakeError(ErrorCode::kGone,
                       "libvirt: checkpoint " + previous + " is gone from domain " + name +
                           ": the changes since round " + std::to_string(number - 1) +
                           " are unknown; begin again at round 0");
    }

    auto dir = ExportDir::Create(ExportParent(options_), import_uid);
    if (!dir) {
      return MakeError(dir.error());
    }
    const std::string checkpoint = warm::CheckpointName(import_uid, number);
    const std::string backup_xml =
        BackupXml({*targets, (*dir)->socket(), (*dir)->path(), previous});
    const std::string checkpoint_xml = CheckpointXml(checkpoint, *targets);
    if (virDomainBackupBegin(d->dom.get(), backup_xml.c_str(), checkpoint_xml.c_str(), 0) < 0) {
      core::Error e = LastError("begin round " + std::to_string(number) + " (checkpoint " +
                                checkpoint + ") of domain " + name);
      const std::string lower = core::ToLower(e.message);
      if (lower.find("not supported") != std::string::npos ||
          lower.find("unsupported") != std::string::npos) {
        e.code = ErrorCode::kUnsupported;
      }
      return MakeError(std::move(e));
    }
    std::vector<std::unique_ptr<LibvirtRoundDisk>> disks;
    for (const std::string& t : *targets) {
      const StatusContext context =
          number == 0 ? StatusContext::kAllocation : StatusContext::kDirtyBitmap;
      const std::string context_name =
          number == 0 ? std::string("base:allocation") : DirtyBitmapContext(t);
      auto nbd = NbdExport::Open((*dir)->socket(), t, context, context_name, options_.nbd);
      if (!nbd) {
        // Undo: the job, and the checkpoint (its bitmap merges into its parent: nothing lost).
        (void)StopOurJob(d->dom.get(), import_uid, options_.job_end_timeout);
        if (CheckpointPtr cp(virDomainCheckpointLookupByName(d->dom.get(), checkpoint.c_str(), 0));
            cp) {
          (void)DeleteCheckpoint(cp.get());
        }
        virResetLastError();
        return MakeError(
            nbd.error().Wrap("round " + std::to_string(number) + " of domain " + name));
      }
      disks.push_back(std::make_unique<LibvirtRoundDisk>(t, std::move(*nbd)));
    }
    return std::unique_ptr<warm::Round>(new LibvirtRound(std::move(d->dom), std::string(import_uid),
                                                         number, std::move(*dir), std::move(disks),
                                                         options_.job_end_timeout));
  }

  Status RemoveCheckpoint(std::string_view vm, std::string_view import_uid, int number) override {
    auto d = Domain(vm);
    if (!d) {
      return d.error().code == ErrorCode::kNotFound ? Status{} : MakeError(d.error());
    }
    const std::string name = warm::CheckpointName(import_uid, number);
    CheckpointPtr cp(virDomainCheckpointLookupByName(d->dom.get(), name.c_str(), 0));
    if (!cp) {
      const virErrorPtr e = virGetLastError();
      if (e != nullptr && e->code == VIR_ERR_NO_DOMAIN_CHECKPOINT) {
        virResetLastError();
        return {};
      }
      return MakeError(LastError("checkpoint " + name));
    }
    return DeleteCheckpoint(cp.get());
  }

  Status RemoveAll(std::string_view vm, std::string_view import_uid) override {
    auto d = Domain(vm);
    if (!d) {
      return d.error().code == ErrorCode::kNotFound ? Status{} : MakeError(d.error());
    }
    if (auto s = StopOurJob(d->dom.get(), import_uid, options_.job_end_timeout); !s) {
      // Someone else's job (kConflict) does not stop us removing our checkpoints, unless it
      // reads from one of them: then the delete fails and says so.
      if (s.error().code != ErrorCode::kConflict) {
        return s;
      }
    }
    RemoveExportDirs(ExportParent(options_), import_uid);
    auto ours = OurCheckpoints(d->dom.get(), import_uid);
    if (!ours) {
      return MakeError(ours.error());
    }
    for (OurCheckpoint& c : *ours) {
      if (auto s = DeleteCheckpoint(c.cp.get()); !s) {
        return s;
      }
    }
    return {};
  }

  Status HoldForFinalRound(std::string_view vm) override {
    auto d = Domain(vm);
    if (!d) {
      return MakeError(d.error());
    }
    const int active = virDomainIsActive(d->dom.get());
    if (active < 0) {
      return MakeError(LastError("is domain active"));
    }
    if (active == 1) {
      // Started paused by an earlier attempt: fine. Running: somebody started the guest after
      // the cutover's shutdown, and a last round of a running guest would not be its last.
      int state = VIR_DOMAIN_NOSTATE;
      int reason = 0;
      if (virDomainGetState(d->dom.get(), &state, &reason, 0) < 0) {
        return MakeError(LastError("domain state"));
      }
      if (state == VIR_DOMAIN_PAUSED) {
        return {};
      }
      return MakeError(ErrorCode::kUnavailable,
                       "libvirt: domain " + std::string(vm) +
                           " runs again after the cutover's shutdown (somebody started it): "
                           "the last round needs it off; shut it down and the cutover goes on");
    }
    if (virDomainCreateWithFlags(d->dom.get(), VIR_DOMAIN_START_PAUSED) < 0) {
      return MakeError(LastError("start the domain paused for the last round"));
    }
    return {};
  }

  Status ReleaseAfterFinalRound(std::string_view vm) override {
    auto d = Domain(vm);
    if (!d) {
      return d.error().code == ErrorCode::kNotFound ? Status{} : MakeError(d.error());
    }
    if (virDomainIsActive(d->dom.get()) == 1 && virDomainDestroy(d->dom.get()) < 0) {
      return MakeError(LastError("destroy the paused domain after the last round"));
    }
    return {};
  }

 private:
  struct OpenDomain {
    ConnectPtr conn;
    DomainPtr dom;
  };
  // The connection and the domain `vm` (by name or UUID); kNotFound only when there is no such
  // domain (a connection error is never kNotFound).
  Result<OpenDomain> Domain(std::string_view vm) {
    auto conn = Connection();
    if (!conn) {
      return MakeError(conn.error());
    }
    auto dom = LookupDomain(conn->get(), vm);
    if (!dom) {
      return MakeError(dom.error());
    }
    return OpenDomain{std::move(*conn), std::move(*dom)};
  }

  // The connection, opened at the first call and again when libvirt closed it. Each caller gets
  // a reference of its own (virConnectRef), so a reconnect by another thread never closes a
  // connection under a call.
  Result<ConnectPtr> Connection() {
    std::lock_guard lock(mu_);
    if (conn_) {
      if (virConnectIsAlive(conn_.get()) == 1) {
        virConnectRef(conn_.get());
        return ConnectPtr(conn_.get());
      }
      virResetLastError();  // (libvirt is initialized once a connection was made)
    }
    auto c = Connect(std::stop_token(), config_, options_.connect);
    if (!c) {
      return MakeError(c.error());
    }
    conn_ = std::move(*c);
    virConnectRef(conn_.get());
    return ConnectPtr(conn_.get());
  }

  // The disk targets when the domain can do incremental backup; kUnsupported with every reason
  // otherwise.
  Result<std::vector<std::string>> CapableTargets(virConnectPtr conn, virDomainPtr dom) {
    const std::string name = virDomainGetName(dom);
    std::vector<std::string> reasons;
    unsigned long lib = 0;
    unsigned long hv = 0;
    if (virConnectGetLibVersion(conn, &lib) < 0 || virConnectGetVersion(conn, &hv) < 0) {
      return MakeError(LastError("versions of the libvirt host"));
    }
    const char* type = virConnectGetType(conn);
    if (type == nullptr || std::string(type) != "QEMU") {
      virResetLastError();
      reasons.push_back("the hypervisor is " + std::string(type != nullptr ? type : "unknown") +
                        ", not qemu: only qemu has libvirt's incremental backup");
    } else if (hv < kMinQemuVersion) {
      reasons.push_back("qemu " + VersionText(hv) + " is older than " +
                        VersionText(kMinQemuVersion) + " (persistent dirty bitmaps)");
    }
    if (lib < kMinLibvirtVersion) {
      reasons.push_back("libvirt " + VersionText(lib) + " is older than " +
                        VersionText(kMinLibvirtVersion) +
                        " (the first with incremental backup enabled)");
    }
    int state = 0;
    int reason = 0;
    if (virDomainGetState(dom, &state, &reason, 0) < 0) {
      return MakeError(LastError("state of domain " + name));
    }
    if (state != VIR_DOMAIN_RUNNING && state != VIR_DOMAIN_PAUSED) {
      reasons.push_back("domain " + name +
                        " is not running: warm migration copies a running VM (start it, or "
                        "import it cold)");
    }
    std::vector<std::string> targets;
    auto xml = ParseDomainXml(TakeString(virDomainGetXMLDesc(dom, 0)));
    if (!xml) {
      return MakeError(xml.error().Wrap("domain " + name));
    }
    for (const DiskSource& d : xml->disks) {
      if (!d.refusal.empty()) {
        reasons.push_back(d.refusal);
      } else if (d.driver_format != "qcow2") {
        reasons.push_back(
            "disk " + d.target + " (" + d.path + ") is " +
            (d.driver_format.empty() ? std::string("of no declared format") : d.driver_format) +
            ": libvirt tracks changes only in qcow2 images (persistent dirty "
            "bitmaps); convert it to qcow2 (qemu-img convert -O qcow2 while the "
            "VM is off, then point the disk at the new file) or import the VM "
            "cold");
      }
      targets.push_back(d.target);
    }
    if (targets.empty()) {
      reasons.push_back("domain " + name + " has no disk");
    }
    if (!reasons.empty()) {
      std::string all = "libvirt: domain " + name + " cannot be migrated warm: ";
      for (size_t i = 0; i < reasons.size(); ++i) {
        all += (i > 0 ? "; " : "") + reasons[i];
      }
      return MakeError(ErrorCode::kUnsupported, all);
    }
    return targets;
  }

  const SourceConfig config_;
  const ChangeTrackerOptions options_;
  std::mutex mu_;
  ConnectPtr conn_;
};

}  // namespace

std::unique_ptr<warm::ChangeTracker> MakeLibvirtChangeTracker(SourceConfig config,
                                                              ChangeTrackerOptions options) {
  return std::make_unique<LibvirtChangeTracker>(std::move(config), std::move(options));
}

}  // namespace vmimport::source::libvirt
