#include "disk/vmdk_descriptor.h"

#include <charconv>
#include <memory>

#include "core/strings.h"
#include "disk/extent.h"
#include "disk/vmdk_header.h"
#include "disk/vmdk_sparse.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

namespace {

constexpr size_t kMaxExtents = 100000;

bool ParseU64(std::string_view text, uint64_t& out) {
  if (text.empty()) {
    return false;
  }
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

// Splits the next whitespace-separated token (or a "quoted" one) off `rest`.
bool NextToken(std::string_view& rest, std::string_view& token, bool& quoted) {
  rest = core::TrimSpace(rest);
  if (rest.empty()) {
    return false;
  }
  quoted = rest.front() == '"';
  if (quoted) {
    const size_t close = rest.find('"', 1);
    if (close == std::string_view::npos) {
      return false;
    }
    token = rest.substr(1, close - 1);
    rest.remove_prefix(close + 1);
    return true;
  }
  size_t end = 0;
  while (end < rest.size() && rest[end] != ' ' && rest[end] != '\t') {
    ++end;
  }
  token = rest.substr(0, end);
  rest.remove_prefix(end);
  return true;
}

std::string Unquote(std::string_view v) {
  v = core::TrimSpace(v);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    v = v.substr(1, v.size() - 2);
  }
  return std::string(v);
}

bool IsAccess(std::string_view word) {
  return word == "RW" || word == "RDONLY" || word == "NOACCESS";
}

}  // namespace

bool VmdkDescriptor::HasParent() const {
  if (!parent_file_name_hint.empty()) {
    return true;
  }
  return !parent_cid.empty() && !core::EqualsIgnoreCase(parent_cid, "ffffffff");
}

uint64_t VmdkDescriptor::SizeBytes() const {
  uint64_t total = 0;
  for (const auto& e : extents) {
    total += e.size_sectors * kSectorSize;
  }
  return total;
}

core::Result<VmdkDescriptor> ParseVmdkDescriptor(std::string_view text, std::string_view name) {
  text = text.substr(0, text.find('\0'));
  VmdkDescriptor d;
  uint64_t total_sectors = 0;
  size_t line_no = 0;
  size_t line_offset = 0;
  const std::string prefix = "vmdk: " + std::string(name) + ": descriptor line ";
  while (line_offset < text.size()) {
    size_t nl = text.find('\n', line_offset);
    if (nl == std::string_view::npos) {
      nl = text.size();
    }
    std::string_view line = core::TrimSpace(text.substr(line_offset, nl - line_offset));
    const size_t this_offset = line_offset;
    line_offset = nl + 1;
    ++line_no;
    auto corrupt = [&](const std::string& what) {
      return MakeError(ErrorCode::kCorruptData, prefix + std::to_string(line_no) + " (offset " +
                                                    std::to_string(this_offset) + "): " + what);
    };
    if (line.empty() || line.front() == '#') {
      continue;
    }
    std::string_view rest = line;
    std::string_view first;
    bool quoted = false;
    if (!NextToken(rest, first, quoted)) {
      continue;
    }
    if (!quoted && IsAccess(first) &&
        (rest.empty() || rest.front() == ' ' || rest.front() == '\t')) {
      // Extent line: ACCESS SIZE TYPE ["FILE" [OFFSET]]
      if (first == "NOACCESS") {
        return MakeError(ErrorCode::kUnsupported,
                         prefix + std::to_string(line_no) + ": NOACCESS extent");
      }
      std::string_view size_text;
      std::string_view type_text;
      if (!NextToken(rest, size_text, quoted) || quoted || !NextToken(rest, type_text, quoted) ||
          quoted) {
        return corrupt("malformed extent line");
      }
      VmdkExtentLine e;
      if (!ParseU64(size_text, e.size_sectors)) {
        return corrupt("bad extent size \"" + std::string(size_text) + "\"");
      }
      if (type_text == "FLAT" || type_text == "VMFS") {
        e.type = VmdkExtentType::kFlat;
      } else if (type_text == "SPARSE") {
        e.type = VmdkExtentType::kSparse;
      } else if (type_text == "ZERO") {
        e.type = VmdkExtentType::kZero;
      } else {
        return MakeError(ErrorCode::kUnsupported, prefix + std::to_string(line_no) +
                                                      ": extent type " + std::string(type_text));
      }
      std::string_view file;
      if (e.type != VmdkExtentType::kZero) {
        if (!NextToken(rest, file, quoted) || !quoted || file.empty()) {
          return corrupt("extent without a quoted file name");
        }
        e.file_name = std::string(file);
        std::string_view offset_text;
        if (NextToken(rest, offset_text, quoted)) {
          if (quoted || e.type != VmdkExtentType::kFlat ||
              !ParseU64(offset_text, e.offset_sectors)) {
            return corrupt("bad extent offset \"" + std::string(offset_text) + "\"");
          }
        }
      }
      if (!core::TrimSpace(rest).empty()) {
        return corrupt("trailing text after the extent");
      }
      if (e.size_sectors > kMaxVirtualSize / kSectorSize ||
          total_sectors + e.size_sectors > kMaxVirtualSize / kSectorSize) {
        return MakeError(ErrorCode::kUnsupported,
                         prefix + std::to_string(line_no) + ": extents exceed the size limit");
      }
      if (e.offset_sectors > kMaxVirtualSize / kSectorSize) {
        return corrupt("extent offset out of range");
      }
      if (d.extents.size() >= kMaxExtents) {
        return corrupt("more than " + std::to_string(kMaxExtents) + " extents");
      }
      total_sectors += e.size_sectors;
      d.extents.push_back(std::move(e));
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      continue;  // not ours to judge: unknown lines are ignored, as VMware and qemu do
    }
    const std::string_view key = core::TrimSpace(line.substr(0, eq));
    const std::string value = Unquote(line.substr(eq + 1));
    if (key == "createType") {
      d.create_type = value;
    } else if (key == "parentCID") {
      d.parent_cid = value;
    } else if (key == "parentFileNameHint") {
      d.parent_file_name_hint = value;
    }
  }
  if (d.extents.empty()) {
    return MakeError(ErrorCode::kCorruptData, "vmdk: " + std::string(name) + ": descriptor (" +
                                                  std::to_string(text.size()) +
                                                  " bytes from offset 0) names no extents");
  }
  return d;
}

ExtentFileOpener DirectoryExtentOpener(std::string directory) {
  return [dir = std::move(directory)](
             std::string_view file_name) -> core::Result<RandomAccessSourcePtr> {
    if (file_name.empty() || file_name.front() == '/') {
      return MakeError(ErrorCode::kPermissionDenied,
                       "vmdk: extent file name \"" + std::string(file_name) + "\" is absolute");
    }
    for (std::string_view part : core::Split(file_name, '/')) {
      if (part == "..") {
        return MakeError(ErrorCode::kPermissionDenied, "vmdk: extent file name \"" +
                                                           std::string(file_name) +
                                                           "\" leaves the descriptor's directory");
      }
    }
    auto file =
        FileSource::Open(dir.empty() ? std::string(file_name) : dir + "/" + std::string(file_name));
    if (!file) {
      return MakeError(file.error());
    }
    (*file)->AdviseSequential();
    return RandomAccessSourcePtr(std::move(*file));
  };
}

namespace {

core::Result<ExtentPtr> OpenExtent(std::stop_token stop, const VmdkExtentLine& line,
                                   const ExtentFileOpener& opener, InflateBackend backend) {
  const uint64_t size = line.size_sectors * kSectorSize;
  switch (line.type) {
    case VmdkExtentType::kZero: return ExtentPtr(std::make_unique<ZeroExtent>(size));
    case VmdkExtentType::kFlat: {
      auto source = opener(line.file_name);
      if (!source) {
        return MakeError(source.error());
      }
      auto flat = FlatExtent::Open(std::move(*source), line.offset_sectors * kSectorSize, size);
      if (!flat) {
        return MakeError(flat.error());
      }
      return ExtentPtr(std::move(*flat));
    }
    case VmdkExtentType::kSparse: {
      auto source = opener(line.file_name);
      if (!source) {
        return MakeError(source.error());
      }
      auto sparse = VmdkSparseExtent::Open(stop, std::move(*source), backend);
      if (!sparse) {
        return MakeError(sparse.error());
      }
      return ExtentPtr(std::move(*sparse));
    }
  }
  return MakeError(ErrorCode::kInternal, "vmdk: extent type out of range");
}

}  // namespace

core::Result<DiskReaderPtr> OpenVmdkDescriptor(std::stop_token stop,
                                               const VmdkDescriptor& descriptor,
                                               ExtentFileOpener opener, InflateBackend backend) {
  if (descriptor.HasParent()) {
    return MakeError(ErrorCode::kUnsupported, "vmdk: delta disk with a parent (\"" +
                                                  descriptor.parent_file_name_hint +
                                                  "\"): import the consolidated disk");
  }
  auto shared_opener = std::make_shared<ExtentFileOpener>(std::move(opener));
  std::vector<ExtentSlot> slots;
  slots.reserve(descriptor.extents.size());
  for (const auto& line : descriptor.extents) {
    // Fail early on a missing or short extent, then let go of it.
    auto probe = OpenExtent(stop, line, *shared_opener, backend);
    if (!probe) {
      return MakeError(probe.error());
    }
    const uint64_t size = line.size_sectors * kSectorSize;
    if ((*probe)->Size() < size) {
      return MakeError(ErrorCode::kCorruptData,
                       "vmdk: extent \"" + line.file_name + "\" (offset 0) holds " +
                           std::to_string((*probe)->Size()) + " bytes, the descriptor needs " +
                           std::to_string(size));
    }
    slots.push_back(
        ExtentSlot{.size = size, .open = [line, shared_opener, backend](std::stop_token s) {
                     return OpenExtent(std::move(s), line, *shared_opener, backend);
                   }});
  }
  const std::string format = "vmdk-" + (descriptor.create_type.empty() ? std::string("descriptor")
                                                                       : descriptor.create_type);
  return DiskReaderPtr(std::make_unique<ExtentListReader>(std::move(slots), format));
}

}  // namespace vmimport::disk
