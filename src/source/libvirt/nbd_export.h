#pragma once

// One disk of a pull-mode backup, read over NBD with Debian's libnbd (libnbd-dev): qemu's NBD
// server exports the round's point in time (copy-before-write keeps it while the guest writes)
// and, for an incremental backup, the disk's changes as the meta context
// "qemu:dirty-bitmap:backup-<target>".
//
// Every request is libnbd's asynchronous call driven by nbd_poll in slices of 100 ms, so that a
// stop or the deadline ends the wait. A request abandoned that way leaves the handle broken (it
// is never polled again, so libnbd never writes into the caller's buffer later); every later
// call fails with kUnavailable.
//
// Not thread-safe: one caller at a time (the seam's RoundDisk contract). The handle is closed
// with this object.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <vector>

#include "core/result.h"
#include "source/libvirt/extents.h"
#include "warm/change_tracker.h"

struct nbd_handle;

namespace vmimport::source::libvirt {

class NbdExport {
 public:
  struct Options {
    std::chrono::milliseconds timeout{std::chrono::seconds(60)};  //!< each request and the open
    uint64_t status_chunk = uint64_t{1} << 30;  //!< bytes asked per block status request
    size_t max_read = size_t{32} << 20;         //!< qemu's NBD server refuses larger reads
  };
  //! Connects to the unix socket, export `export_name`, asking for `context` (base:allocation
  //! or the dirty bitmap's). Errors: kUnavailable (cannot connect; the server does not offer
  //! the context).
  static core::Result<std::unique_ptr<NbdExport>> Open(const std::string& socket,
                                                       const std::string& export_name,
                                                       StatusContext context,
                                                       const std::string& context_name,
                                                       Options options);
  ~NbdExport();
  NbdExport(const NbdExport&) = delete;
  NbdExport& operator=(const NbdExport&) = delete;

  uint64_t Size() const { return size_; }
  //! The whole disk's block status in the context: see AddBlockStatus. Errors: kCancelled,
  //! kUnavailable (the export went away, the deadline passed), kInternal.
  core::Result<std::vector<warm::ChangedRange>> Ranges(std::stop_token stop);
  //! Reads min(out.size(), max_read, Size() - offset) bytes at offset. Errors as Ranges;
  //! kInvalidArgument for an offset at or past the end.
  core::Result<size_t> ReadAt(std::stop_token stop, uint64_t offset, std::span<std::byte> out);

 private:
  NbdExport(nbd_handle* h, std::string name, StatusContext context, std::string context_name,
            uint64_t size, Options options);
  core::Status Wait(std::stop_token stop, int64_t cookie, const char* what);

  nbd_handle* h_;
  std::string name_;
  StatusContext context_;
  std::string context_name_;
  uint64_t size_;
  Options options_;
  bool broken_ = false;
};

}  // namespace vmimport::source::libvirt
