#pragma once

// Pure builders and readers of the XML of libvirt's incremental backup ("Checkpoint XML format",
// "Backup XML format" in libvirt's docs): the checkpoint a round makes, the pull-mode backup job
// that exports the round's point in time over NBD, and the test "is this running backup job one
// of this import's?". No I/O, so that every rule is unit-tested.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace vmimport::source::libvirt {

//! <domaincheckpoint> named `name`, with a bitmap on each of `targets` ("vda", ...).
std::string CheckpointXml(std::string_view name, const std::vector<std::string>& targets);

//! A pull-mode backup of `targets`, exported by qemu's NBD server on the unix socket `socket`
//! (each disk as export `target`, its dirty bitmap as meta context
//! "qemu:dirty-bitmap:backup-<target>"), with scratch file `scratch_dir`/<target>.scratch each;
//! incremental from checkpoint `incremental` unless it is empty (then a full backup).
struct BackupSpec {
  std::vector<std::string> targets;
  std::string socket;
  std::string scratch_dir;
  std::string incremental;
};
std::string BackupXml(const BackupSpec& spec);

//! The meta context of a disk's changes in a pull-mode incremental backup's NBD export.
std::string DirtyBitmapContext(std::string_view target);

//! What virDomainBackupGetXMLDesc says of the running job, as far as ownership goes.
struct RunningBackup {
  std::string socket;       //!< <server socket=...> ("" for TCP or push mode)
  std::string incremental;  //!< <incremental> ("" for a full backup)
  std::vector<std::string> scratch_files;
};
//! Errors: kCorruptData when the XML does not parse or is not a <domainbackup>.
core::Result<RunningBackup> ParseRunningBackup(std::string_view xml);

//! The private directory of an import's exports is named "<ExportDirPrefix(uid)>XXXXXX".
std::string ExportDirPrefix(std::string_view import_uid);

//! True when the running backup is one this import began: its socket or a scratch file lies in
//! a directory named by ExportDirPrefix(uid), or it is incremental from a checkpoint of the
//! import (CheckpointName(uid, n)).
bool IsOurBackup(const RunningBackup& job, std::string_view import_uid);

//! n when `checkpoint` is CheckpointName(import_uid, n), n >= 0; nullopt for any other name.
std::optional<int> CheckpointRound(std::string_view checkpoint, std::string_view import_uid);

}  // namespace vmimport::source::libvirt
