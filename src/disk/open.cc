#include "disk/open.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <vector>

#include "core/strings.h"
#include "disk/checked_cast.h"
#include "disk/extent.h"
#include "disk/format.h"
#include "disk/qcow2.h"
#include "disk/vmdk_header.h"
#include "disk/vmdk_sparse.h"
#include "disk/vmdk_stream.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

namespace {

constexpr uint64_t kMaxDescriptorFileBytes = uint64_t{1} << 20;

tl::unexpected<core::Error> UnsupportedFormat(const std::string& name,
                                              std::span<const std::byte> head) {
  return MakeError(ErrorCode::kUnsupported, "disk: " + name + ": " +
                                                std::string(UnsupportedFormatName(head)) +
                                                " images are not supported");
}

Result<DiskReaderPtr> OpenSparse(std::stop_token stop, RandomAccessSourcePtr source,
                                 const OpenOptions& options) {
  std::array<std::byte, kSectorSize> sector{};
  auto st = source->ReadAt(stop, 0, sector);
  if (!st) {
    return MakeError(st.error());
  }
  auto header = ParseVmdkSparseHeader(sector, source->Name(), 0);
  if (!header) {
    return MakeError(header.error());
  }
  auto embedded = ReadEmbeddedDescriptor(stop, *source, *header);
  if (!embedded) {
    return MakeError(embedded.error());
  }
  if (!embedded->empty()) {
    auto descriptor = ParseVmdkDescriptor(*embedded, source->Name());
    // A broken embedded descriptor does not stop reading the data (qemu ignores it too), but a
    // parent does: the data alone is not the disk.
    if (descriptor && descriptor->HasParent()) {
      return MakeError(ErrorCode::kUnsupported,
                       "vmdk: " + source->Name() + ": delta disk with a parent (\"" +
                           descriptor->parent_file_name_hint + "\"): import the consolidated disk");
    }
  }
  if (header->compressed() && header->has_markers()) {
    // streamOptimized: decode front to back, the fast path. The footer, when the header
    // defers to it, gives the capacity.
    StreamOptimizedOptions stream_options{.name = source->Name(),
                                          .inflate_backend = options.inflate_backend};
    if (header->gd_at_end()) {
      auto footer = ReadVmdkFooter(stop, *source);
      if (!footer) {
        return MakeError(footer.error());
      }
      stream_options.footer_capacity_sectors = footer->capacity_sectors;
    }
    source->AdviseSequential();
    auto reader = StreamOptimizedVmdk::Open(
        stop, std::make_unique<SequentialSource>(std::move(source)), std::move(stream_options));
    if (!reader) {
      return MakeError(reader.error());
    }
    return DiskReaderPtr(std::move(*reader));
  }
  auto extent = VmdkSparseExtent::Open(stop, std::move(source), options.inflate_backend);
  if (!extent) {
    return MakeError(extent.error());
  }
  const uint64_t size = (*extent)->Size();
  auto shared = std::make_shared<ExtentPtr>(std::move(*extent));
  std::vector<ExtentSlot> slots;
  slots.push_back(ExtentSlot{.size = size, .open = [shared](std::stop_token) -> Result<ExtentPtr> {
                               if (!*shared) {
                                 return MakeError(ErrorCode::kInternal,
                                                  "vmdk: sparse extent opened twice");
                               }
                               return std::move(*shared);
                             }});
  return DiskReaderPtr(
      std::make_unique<ExtentListReader>(std::move(slots), "vmdk-monolithicSparse"));
}

Result<DiskReaderPtr> OpenDescriptor(std::stop_token stop, const RandomAccessSource& source,
                                     ExtentFileOpener opener, const OpenOptions& options) {
  if (!opener) {
    return MakeError(ErrorCode::kUnsupported,
                     "vmdk: " + source.Name() + ": descriptor without a way to open its extents");
  }
  if (source.Size() > kMaxDescriptorFileBytes) {
    return MakeError(ErrorCode::kUnsupported, "vmdk: " + source.Name() + ": descriptor file of " +
                                                  std::to_string(source.Size()) +
                                                  " bytes is too large");
  }
  std::string text(CheckedCast<size_t>(source.Size()), '\0');
  auto st = source.ReadAt(stop, 0, std::as_writable_bytes(std::span<char>(text)));
  if (!st) {
    return MakeError(st.error());
  }
  auto descriptor = ParseVmdkDescriptor(text, source.Name());
  if (!descriptor) {
    return MakeError(descriptor.error());
  }
  return OpenVmdkDescriptor(stop, *descriptor, std::move(opener), options.inflate_backend);
}

}  // namespace

Result<DiskReaderPtr> OpenDisk(std::stop_token stop, RandomAccessSourcePtr source,
                               ExtentFileOpener opener, OpenOptions options) {
  std::array<std::byte, kDetectBytes> head{};
  const auto n = CheckedCast<size_t>(std::min<uint64_t>(head.size(), source->Size()));
  auto st = source->ReadAt(stop, 0, std::span<std::byte>(head).first(n));
  if (!st) {
    return MakeError(st.error());
  }
  const auto magic = std::span<const std::byte>(head).first(n);
  switch (DetectFormat(magic)) {
    case DiskFormat::kRaw: return DiskReaderPtr(std::make_unique<RawReader>(std::move(source)));
    case DiskFormat::kVmdkSparse: return OpenSparse(stop, std::move(source), options);
    case DiskFormat::kVmdkDescriptor:
      return OpenDescriptor(stop, *source, std::move(opener), options);
    case DiskFormat::kQcow2: return OpenQcow2(stop, std::move(source), options.inflate_backend);
    case DiskFormat::kUnsupported: return UnsupportedFormat(source->Name(), magic);
  }
  return MakeError(ErrorCode::kInternal, "disk: format out of range");
}

Result<DiskReaderPtr> OpenDiskFile(std::stop_token stop, const std::string& path,
                                   OpenOptions options) {
  auto file = FileSource::Open(path);
  if (!file) {
    return MakeError(file.error());
  }
  // Extents are named relative to the descriptor's directory.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) {
    dir.push_back('.');
  }
  return OpenDisk(stop, std::move(*file), DirectoryExtentOpener(std::move(dir)), options);
}

Result<DiskReaderPtr> OpenDiskStream(std::stop_token stop, ByteSourcePtr source,
                                     std::optional<uint64_t> raw_size, OpenOptions options) {
  std::vector<std::byte> head(kDetectBytes);
  auto n = ReadFull(stop, *source, head);
  if (!n) {
    return MakeError(n.error());
  }
  head.resize(*n);
  // A declared raw stream is raw whatever its first bytes say: a guest may well have written a
  // VMDK or qcow2 header to the start of its disk.
  const DiskFormat format =
      options.declared == DiskFormat::kRaw ? DiskFormat::kRaw : DetectFormat(head);
  // Declared as an image but no known magic: a damaged header, not raw bytes. (Another known
  // format gets that format's own answer below.)
  if (options.declared && *options.declared != DiskFormat::kRaw && format == DiskFormat::kRaw) {
    std::string hex;
    for (size_t i = 0; i < std::min<size_t>(head.size(), 8); ++i) {
      hex += (i == 0 ? "" : " ") +
             core::HexEncode(std::string_view(reinterpret_cast<const char*>(&head[i]), 1));
    }
    return MakeError(ErrorCode::kCorruptData, "disk: the source declares a " +
                                                  std::string(DiskFormatName(*options.declared)) +
                                                  " image, but the stream starts with " +
                                                  (hex.empty() ? "nothing" : hex) +
                                                  " at offset 0, no known image magic");
  }
  auto replay = std::make_unique<PrefixedSource>(head, std::move(source));
  switch (format) {
    case DiskFormat::kRaw:
      if (!raw_size) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "disk: raw stream without a size (raw images have no header)");
      }
      return DiskReaderPtr(std::make_unique<RawStreamReader>(std::move(replay), *raw_size));
    case DiskFormat::kVmdkSparse: {
      auto reader = StreamOptimizedVmdk::Open(
          stop, std::move(replay),
          StreamOptimizedOptions{.name = "stream", .inflate_backend = options.inflate_backend});
      if (!reader) {
        return MakeError(reader.error());
      }
      return DiskReaderPtr(std::move(*reader));
    }
    case DiskFormat::kVmdkDescriptor:
    case DiskFormat::kQcow2:
      return MakeError(ErrorCode::kUnsupported,
                       "disk: " + std::string(DiskFormatName(format)) +
                           " needs random access and cannot be decoded from a stream");
    case DiskFormat::kUnsupported: return UnsupportedFormat("stream", head);
  }
  return MakeError(ErrorCode::kInternal, "disk: format out of range");
}

}  // namespace vmimport::disk
