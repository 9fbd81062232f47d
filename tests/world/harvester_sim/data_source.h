#pragma once

// Longhorn's own downloader of a BackingImage, `backing-image-manager data-source` (v1.8.1, built
// by tests/world/target/longhorn/longhorn-world.sh), run the way longhorn-manager's
// BackingImageDataSource controller runs it in a pod: one process per backing image, with the
// image's name and uuid, `--source-type download --parameters url=<url>` and `--checksum` when the
// BackingImage has spec.checksum. It downloads, checks and SHA-512s the file itself and reports
// on GET /v1/file.
//
// The binary hard-codes its disk at /data/ (it needs /data/longhorn-disk.cfg and writes
// /data/tmp/<name>-<uuid>), so each process gets a root of its own, `work_dir`/root, in a private
// mount namespace (no network namespace: it must reach the image server on the host's 127.0.0.1,
// and it listens on 127.0.0.1 only):
//   root/bim        the binary (bind mount, read-only)
//   root/usr, etc   the host's, read-only (qemu-img for the virtual size; CA certificates)
//   root/lib, lib64, bin -> usr/...   (Debian's merged /usr)
//   root/dev        a small tmpfs with null, zero, random and urandom bound in
//   root/proc       procfs
//   root/data       `work_dir`/root/data on the host, or, with capacity_bytes, a tmpfs of that size
//                   (a download that outgrows it fails with ENOSPC, as on a full Longhorn disk)
// Nothing is mounted in the host's namespace; the mounts end with the process. Stop() ends the
// process (its own process group) by PID and removes `work_dir`. If harvester-sim dies first, the
// kernel kills the process (PR_SET_PDEATHSIG). Needs root (CAP_SYS_ADMIN for the mounts).

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/result.h"
#include "http/client.h"
#include "world/harvester_sim/status_rules.h"

namespace vmimport::harvester_sim {

struct DataSourceOptions {
  std::string binary;    //!< backing-image-manager
  std::string work_dir;  //!< a directory for this process alone (made by Start, removed by Stop)
  std::string name;      //!< the BackingImage's name (--name)
  std::string uuid;      //!< its status.uuid (--uuid)
  std::string disk_uuid = "harvester-sim-disk";  //!< /data/longhorn-disk.cfg's diskUUID
  std::string url;                               //!< what to download
  std::string checksum;                          //!< spec.checksum; empty: none
  uint64_t capacity_bytes = 0;                   //!< > 0: /data holds this many bytes
};

class DataSource {
 public:
  //! Starts the process; fails when the directory cannot be made or fork fails. A process that
  //! cannot set itself up (mounts, exec) exits at once with the reason in its log.
  [[nodiscard]] static core::Result<std::unique_ptr<DataSource>> Start(DataSourceOptions options,
                                                                       http::Client& http);
  ~DataSource();  //!< Stop()
  DataSource(const DataSource&) = delete;
  DataSource& operator=(const DataSource&) = delete;

  //! GET /v1/file. kUnavailable while it does not listen yet (or any more).
  [[nodiscard]] core::Result<DataSourceFileInfo> Get();
  //! POST /v1/file?action=transfer: what the backing image manager does once it has taken the
  //! file (the data source then reports "ready").
  [[nodiscard]] core::Status Transfer();
  //! Where the sim reads a file of the process's root while it runs: /proc/<pid>/root/<path>.
  std::string HostPath(const std::string& path_in_root) const;
  //! Its exit code (128 + signal when killed) once it has ended; nullopt while it runs. Does not
  //! reap it: Stop() does, after signalling its process group.
  std::optional<int> Exited();
  //! The last `bytes` of its stdout and stderr.
  std::string LogTail(size_t bytes = 2000) const;
  //! Resident memory of the process (VmRSS), 0 once it has ended. Meaningful once it answers
  //! Get(): until its exec the child is a copy of the caller.
  uint64_t RssBytes() const;
  pid_t pid() const { return pid_; }
  //! SIGTERM to its process group, SIGKILL after `grace`, reaped; then work_dir is removed.
  //! Idempotent.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(2));

 private:
  DataSource(DataSourceOptions options, http::Client& http)
      : options_(std::move(options)), http_(http) {}

  DataSourceOptions options_;
  http::Client& http_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  std::optional<int> exit_code_;
  int listen_port_ = 0;
  int sync_port_ = 0;
  std::string log_path_;
};

}  // namespace vmimport::harvester_sim
