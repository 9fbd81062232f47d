#include "source/libvirt/backup_xml.h"

#include <charconv>
#include <pugixml.hpp>
#include <sstream>

#include "warm/change_tracker.h"

namespace vmimport::source::libvirt {

using core::ErrorCode;
using core::MakeError;

namespace {

std::string Escaped(std::string_view text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\'': out += "&apos;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

std::string CheckpointXml(std::string_view name, const std::vector<std::string>& targets) {
  std::ostringstream out;
  out << "<domaincheckpoint><name>" << Escaped(name)
      << "</name><description>vm-import warm migration round</description><disks>";
  for (const std::string& t : targets) {
    out << "<disk name='" << Escaped(t) << "' checkpoint='bitmap'/>";
  }
  out << "</disks></domaincheckpoint>";
  return out.str();
}

std::string BackupXml(const BackupSpec& spec) {
  std::ostringstream out;
  out << "<domainbackup mode='pull'>";
  if (!spec.incremental.empty()) {
    out << "<incremental>" << Escaped(spec.incremental) << "</incremental>";
  }
  out << "<server transport='unix' socket='" << Escaped(spec.socket) << "'/><disks>";
  for (const std::string& t : spec.targets) {
    out << "<disk name='" << Escaped(t) << "' backup='yes' type='file' exportname='" << Escaped(t)
        << "'><scratch file='" << Escaped(spec.scratch_dir + "/" + t + ".scratch") << "'/></disk>";
  }
  out << "</disks></domainbackup>";
  return out.str();
}

std::string DirtyBitmapContext(std::string_view target) {
  return "qemu:dirty-bitmap:backup-" + std::string(target);
}

core::Result<RunningBackup> ParseRunningBackup(std::string_view xml) {
  pugi::xml_document doc;
  if (!doc.load_buffer(xml.data(), xml.size())) {
    return MakeError(ErrorCode::kCorruptData, "libvirt: the backup job's XML does not parse");
  }
  const pugi::xml_node root = doc.child("domainbackup");
  if (!root) {
    return MakeError(ErrorCode::kCorruptData, "libvirt: the backup job's XML is no <domainbackup>");
  }
  RunningBackup out;
  out.socket = root.child("server").attribute("socket").as_string();
  out.incremental = root.child_value("incremental");
  for (const pugi::xml_node d : root.child("disks").children("disk")) {
    const std::string scratch = d.child("scratch").attribute("file").as_string();
    if (!scratch.empty()) {
      out.scratch_files.push_back(scratch);
    }
  }
  return out;
}

std::string ExportDirPrefix(std::string_view import_uid) {
  return "vmimport-warm-" + std::string(import_uid) + "-";
}

namespace {

// True when `path`'s directory's name starts with `prefix`.
bool InDirNamed(std::string_view path, std::string_view prefix) {
  const auto slash = path.rfind('/');
  if (slash == std::string_view::npos || slash == 0) {
    return false;
  }
  const std::string_view dir = path.substr(0, slash);
  const auto start = dir.rfind('/');
  const std::string_view name = start == std::string_view::npos ? dir : dir.substr(start + 1);
  return name.starts_with(prefix);
}

}  // namespace

bool IsOurBackup(const RunningBackup& job, std::string_view import_uid) {
  const std::string prefix = ExportDirPrefix(import_uid);
  if (InDirNamed(job.socket, prefix)) {
    return true;
  }
  for (const std::string& f : job.scratch_files) {
    if (InDirNamed(f, prefix)) {
      return true;
    }
  }
  return CheckpointRound(job.incremental, import_uid).has_value();
}

std::optional<int> CheckpointRound(std::string_view checkpoint, std::string_view import_uid) {
  const std::string prefix = warm::CheckpointName(import_uid, 0);  // "vmimport-<uid>-0"
  const std::string_view stem = std::string_view(prefix).substr(0, prefix.size() - 1);
  if (!checkpoint.starts_with(stem)) {
    return std::nullopt;
  }
  const std::string_view digits = checkpoint.substr(stem.size());
  if (digits.empty() || digits.size() > 9 || (digits.size() > 1 && digits[0] == '0')) {
    return std::nullopt;
  }
  int n = 0;
  const auto* end = digits.data() + digits.size();
  auto [p, ec] = std::from_chars(digits.data(), end, n);
  if (ec != std::errc() || p != end || n < 0) {
    return std::nullopt;
  }
  return n;
}

}  // namespace vmimport::source::libvirt
