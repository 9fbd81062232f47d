#pragma once

// The writer of warm migration (issue 22): runs next to the target volumes (a Pod on the node
// that mounts the import's PVCs: a filesystem PVC's disk.img, or a block PVC's device), takes
// rounds of extents from the controller (warm/extent_protocol.h) and writes them. A round is
// acknowledged only after every extent of it was checked (SHA-256), written and every target
// fsync'd; a round cut short is simply sent again (each extent is an absolute write).
//
// One session at a time: a Hello with the right token supersedes any older connection, whose
// later extents are refused, so bytes of a dead controller's connection still buffered in the
// kernel never land after a newer session's round.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <vector>

#include "core/log.h"
#include "core/result.h"
#include "disk/unique_fd.h"

namespace vmimport::warm {

struct WriterTarget {
  std::string path;   //!< a regular file or a block device
  uint64_t size = 0;  //!< > 0: a file, made if missing and extended to this size if shorter;
                      //!< 0: the target must exist (a device), used at its size
};

struct WriterOptions {
  std::string token;  //!< the per-import capability; a Hello with another is refused
  std::vector<WriterTarget> disks;
};

//! Thread-safe: connections are served on threads of their own; writes are serialized.
class Writer {
 public:
  //! Opens every target (O_RDWR; a missing file with a size is made). Errors: InvalidArgument (no
  //! disks, an empty token), NotFound / PermissionDenied / Internal from open, naming the path.
  [[nodiscard]] static core::Result<std::unique_ptr<Writer>> Open(WriterOptions options,
                                                                  core::Logger log);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  //! Serves one connection until the peer closes it (Ok), breaks the protocol, sends a wrong
  //! token or is superseded (the error). `fd` is borrowed.
  [[nodiscard]] core::Status ServeConnection(int fd);

  //! The last round acknowledged (-1: none) and the bytes written since start.
  int64_t LastCommittedRound() const;
  uint64_t BytesWritten() const;
  //! The size of disk `index`'s target.
  uint64_t DiskSize(size_t index) const;

 private:
  struct Disk {
    std::string path;
    disk::UniqueFd fd;
    uint64_t size = 0;
    bool block = false;
  };
  Writer(WriterOptions options, std::vector<Disk> disks, core::Logger log);
  //! Writes one extent if `session` is still the current one. mu_ held inside.
  core::Status Apply(uint64_t session, uint32_t disk, uint64_t offset, uint64_t length, bool zero,
                     std::span<const std::byte> data);
  core::Result<uint64_t> Commit(uint64_t session, uint64_t round);

  const std::string token_;
  core::Logger log_;
  mutable std::mutex mu_;  // guards disks_' writes, session_, last_round_, round_bytes_
  std::vector<Disk> disks_;
  uint64_t session_ = 0;
  int64_t last_round_ = -1;
  uint64_t round_bytes_ = 0;
  std::atomic<uint64_t> bytes_written_{0};
};

//! Listens on `host`:`port` (port 0: any; the bound port is stored in `bound_port` once it
//! listens) and serves each connection on a thread of its own until `stop` (a session that ends
//! with an error is logged to `log`); the connections still open are shut down and joined
//! before it returns. Errors: the bind.
[[nodiscard]] core::Status ServeWriter(std::stop_token stop, Writer& writer,
                                       const std::string& host, uint16_t port,
                                       std::atomic<uint16_t>& bound_port, const core::Logger& log);

}  // namespace vmimport::warm
