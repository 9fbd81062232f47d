#pragma once

// warm::ChangeTracker for libvirt (warm/change_tracker.h): libvirt's incremental backup on a
// running qemu domain.
//
// A round n is one virDomainBackupBegin with both XMLs (backup_xml.h): the checkpoint
// CheckpointName(uid, n) (a persistent qcow2 dirty bitmap on every disk) is made atomically
// with a pull-mode backup job, so the checkpoint and the exported point in time are the same
// instant. The job exports each disk over qemu's NBD server on a unix socket in a private
// directory (0700, "<export_parent>/vmimport-warm-<uid>-XXXXXX", also holding the job's scratch
// files: qemu's copy-before-write keeps there the old bytes of what the guest overwrites while
// the round is read); round n > 0 is incremental from checkpoint n-1, and the export carries the
// changes as the meta context "qemu:dirty-bitmap:backup-<target>". Each disk is read with libnbd
// (nbd_export.h): block status for the ranges (base:allocation in round 0, so that holes are
// zero ranges), pread for the bytes. Finish ends the job (virDomainAbortJob: how a pull-mode
// backup ends) and removes the directory; the checkpoint stays.
//
// Safe to repeat (the seam's contract): BeginRound first stops a backup job of this import that
// still runs (its socket, scratch files or <incremental> carry the import's names), removes the
// private directories of earlier attempts, and deletes every checkpoint of the import numbered
// >= n, newest first: libvirt merges a deleted checkpoint's bitmap into its parent, so the
// changes since checkpoint n-1 stay tracked. A backup job that is not this import's is kConflict.
//
// The unix socket and the scratch files are paths on the libvirt host: this tracker reads the
// export locally, so it needs libvirtd on the controller's host (the test world's case). A
// remote host needs the export over TCP (with TLS): not done.
//
// Threading: one tracker per source; calls for different domains may overlap (the connection is
// opened once, under a mutex, and reopened when libvirt's keepalive closed it). libvirt calls
// are bounded by the connection's keepalive; NBD requests by NbdExport's deadline.

#include <memory>

#include "source/libvirt/connection.h"
#include "source/libvirt/nbd_export.h"
#include "source/provider.h"
#include "warm/change_tracker.h"

namespace vmimport::source::libvirt {

struct ChangeTrackerOptions {
  ConnectOptions connect;
  //! Where the private export directories are made (a local path; qemu must reach it, and a
  //! unix socket path is at most 107 bytes). Empty: the system's temp directory.
  std::string export_parent;
  NbdExport::Options nbd;
  //! How long a stopped backup job may take to end (virDomainAbortJob returns before).
  std::chrono::milliseconds job_end_timeout{std::chrono::seconds(60)};
};

//! libvirt at least 7.6.0 (incremental backup enabled by default) and qemu at least 6.0.0.
inline constexpr unsigned long kMinLibvirtVersion = 7006000;
inline constexpr unsigned long kMinQemuVersion = 6000000;

//! The tracker for the libvirt source `config` (its endpoint and Secret, as LibvirtImporter
//! takes them). Connects at the first call. Never fails: connection errors come from the calls.
std::unique_ptr<warm::ChangeTracker> MakeLibvirtChangeTracker(SourceConfig config,
                                                              ChangeTrackerOptions options = {});

}  // namespace vmimport::source::libvirt
