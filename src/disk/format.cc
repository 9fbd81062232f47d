#include "disk/format.h"

#include <cstring>

namespace vmimport::disk {

namespace {

bool StartsWith(std::span<const std::byte> head, std::string_view magic) {
  return head.size() >= magic.size() && std::memcmp(head.data(), magic.data(), magic.size()) == 0;
}

constexpr std::string_view kVmdkSparseMagic = "KDMV";
constexpr std::string_view kVmdkDescriptorMagic = "# Disk DescriptorFile";
constexpr std::string_view kQcowMagic{"QFI\xfb", 4};

}  // namespace

std::string_view UnsupportedFormatName(std::span<const std::byte> head) {
  if (StartsWith(head, "COWD")) {
    return "vmdk-vmfsSparse (COWD)";
  }
  if (StartsWith(head, "vhdxfile")) {
    return "vhdx";
  }
  if (StartsWith(head, "conectix")) {
    return "vhd";
  }
  return {};
}

DiskFormat DetectFormat(std::span<const std::byte> head) {
  if (StartsWith(head, kVmdkSparseMagic)) {
    return DiskFormat::kVmdkSparse;
  }
  if (StartsWith(head, kVmdkDescriptorMagic)) {
    return DiskFormat::kVmdkDescriptor;
  }
  if (StartsWith(head, kQcowMagic)) {
    return DiskFormat::kQcow2;
  }
  if (!UnsupportedFormatName(head).empty()) {
    return DiskFormat::kUnsupported;
  }
  return DiskFormat::kRaw;
}

std::string_view DiskFormatName(DiskFormat format) {
  switch (format) {
    case DiskFormat::kRaw: return "raw";
    case DiskFormat::kVmdkSparse: return "vmdk-sparse";
    case DiskFormat::kVmdkDescriptor: return "vmdk-descriptor";
    case DiskFormat::kQcow2: return "qcow2";
    case DiskFormat::kUnsupported: return "unsupported";
  }
  return "unknown";
}

}  // namespace vmimport::disk
