#pragma once

// The seam between a source that can say what changed on a running VM's disks (libvirt's
// incremental backup today, vSphere change tracking next) and the warm migration flow
// (precopy rounds, cutover). A round is a consistent point in time of every disk of one VM:
// round 0 copies each disk whole, round n only what was written since round n-1.
//
// Checkpoint names are ours and predictable: CheckpointName(import_uid, n). A source must never
// touch a checkpoint or backup job that does not carry the import's prefix.

#include <cstdint>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace vmimport::warm {

using core::Result;
using core::Status;

//! A byte range of one disk. `zero`: the source says the range reads as zeros (the writer may
//! punch or write zeros instead of reading it).
struct ChangedRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool zero = false;
  bool operator==(const ChangedRange&) const = default;
};

//! "vmimport-<import_uid>-<round>": the checkpoint made when round `round` begins.
inline std::string CheckpointName(std::string_view import_uid, int round) {
  return "vmimport-" + std::string(import_uid) + "-" + std::to_string(round);
}

//! One disk of a round: what to copy, and the round's point-in-time bytes to copy it from.
//! Owned by its Round; valid until the Round is finished or destroyed. Not thread-safe: one
//! caller at a time per disk (different disks of a round may be read from different threads).
class RoundDisk {
 public:
  virtual ~RoundDisk() = default;
  //! The disk's target name as the source reports it (e.g. "vda"), and its virtual size.
  virtual const std::string& Target() const = 0;
  virtual uint64_t VirtualSize() const = 0;
  //! Round 0: the ranges that hold data (ranges the source knows are zeros may come with
  //! zero = true or be left out); round n: the ranges written since round n-1's checkpoint.
  //! Sorted, non-overlapping. Errors: Unavailable (the export went away), Internal.
  [[nodiscard]] virtual Result<std::vector<ChangedRange>> Changed(std::stop_token stop) = 0;
  //! Reads 1..out.size() bytes of the round's point in time at `offset`. Errors as Changed.
  [[nodiscard]] virtual Result<size_t> ReadAt(std::stop_token stop, uint64_t offset,
                                              std::span<std::byte> out) = 0;
};

//! A round in progress on the source: its checkpoint exists and its backup job (or the
//! equivalent) exports the disks until Finish. Destroying an unfinished Round finishes it.
class Round {
 public:
  virtual ~Round() = default;
  virtual int Number() const = 0;
  virtual const std::string& Checkpoint() const = 0;
  virtual size_t DiskCount() const = 0;
  virtual RoundDisk& Disk(size_t index) = 0;
  //! Ends the export (stops the backup job); the checkpoint stays (the next round starts from
  //! it). Safe to repeat.
  [[nodiscard]] virtual Status Finish() = 0;
};

//! Threading: one ChangeTracker per source connection; calls for different VMs may overlap,
//! calls for one VM are serialized by the caller.
class ChangeTracker {
 public:
  virtual ~ChangeTracker() = default;
  //! Preflight: can `vm` do incremental backup (versions, disk formats, running state)?
  //! Errors: Unsupported with the reason a user can act on; NotFound; Unavailable.
  [[nodiscard]] virtual Status CheckCapable(std::string_view vm) = 0;
  //! Begins round `number`: makes checkpoint CheckpointName(import_uid, number) and exports
  //! every disk, with the changes since CheckpointName(import_uid, number - 1) (number > 0) or
  //! whole (number == 0). Safe to repeat after a crash: a backup job of ours still running is
  //! stopped and a checkpoint `number` left by an unfinished attempt is removed first (its
  //! changes stay tracked by its parent), so the repeated round loses nothing.
  //! Errors: Gone when checkpoint `number - 1` is no longer on the source (somebody removed it:
  //! the changes since it are unknown, precopy must begin again at round 0); Unsupported,
  //! NotFound (no such VM), Unavailable, Conflict (someone else's backup job runs).
  [[nodiscard]] virtual Result<std::unique_ptr<Round>> BeginRound(std::string_view vm,
                                                                  std::string_view import_uid,
                                                                  int number) = 0;
  //! Removes checkpoint CheckpointName(import_uid, number) once a later round was applied.
  //! Absent is success. Errors: Unavailable, Internal.
  [[nodiscard]] virtual Status RemoveCheckpoint(std::string_view vm, std::string_view import_uid,
                                                int number) = 0;
  //! Cancel: stops any backup job of this import and removes every checkpoint carrying its
  //! prefix; leaves the VM running. Safe to repeat; a VM that no longer exists is success.
  [[nodiscard]] virtual Status RemoveAll(std::string_view vm, std::string_view import_uid) = 0;
  //! Cutover: after the guest shut down, makes its disks readable for the last round without
  //! letting the guest run (libvirt: the domain started paused, as a backup needs qemu). Safe to
  //! repeat (a paused domain is left paused). Default: nothing to do. Errors: Unavailable (also
  //! when the guest runs again: someone started it after the shutdown, and the disks would move
  //! under the last round; retried until it is off), Internal.
  [[nodiscard]] virtual Status HoldForFinalRound(std::string_view /*vm*/) { return {}; }
  //! Cutover: after the last round, turns the source off for good (libvirt: destroys the paused
  //! domain). Safe to repeat; an off VM is success. Default: nothing to do.
  [[nodiscard]] virtual Status ReleaseAfterFinalRound(std::string_view /*vm*/) { return {}; }
};

}  // namespace vmimport::warm
