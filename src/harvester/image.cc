#include "harvester/image.h"

#include <algorithm>
#include <array>

#include "api/names.h"
#include "core/json.h"
#include "core/strings.h"

namespace vmimport::harvester {

using nlohmann::json;

namespace {

constexpr size_t kMaxDisplayName = 63;
constexpr size_t kHashSuffixLength = 9;  // "-" + 8 hex digits

uint32_t Fnv32a(std::string_view s) {
  uint32_t hash = 2166136261U;
  for (char c : s) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 16777619U;
  }
  return hash;
}

std::string Hex8(uint32_t v) {
  static constexpr std::array<char, 16> kDigits{'0', '1', '2', '3', '4', '5', '6', '7',
                                                '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
  std::string out(8, '0');
  for (size_t i = 0; i < 8; ++i) {
    out[7 - i] = kDigits[v & 0xfU];
    v >>= 4U;
  }
  return out;
}

bool IsLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}
bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

core::Status RequireNonEmpty(std::string_view value, std::string_view what) {
  if (value.empty()) {
    return core::MakeError(core::ErrorCode::kInvalidArgument,
                           "virtualmachineimage: " + std::string(what) + " is empty");
  }
  return core::Ok();
}

json OwnerReference(const api::VirtualMachineImport& vm_import) {
  // controller and blockOwnerDeletion stay unset, like the reference: the import's deletion
  // garbage-collects the images, and the reference removes the reference once the VM runs.
  return json::array({{{"apiVersion", std::string(api::kMigrationApiVersion)},
                       {"kind", std::string(api::kVirtualMachineImportKind)},
                       {"name", vm_import.name},
                       {"uid", vm_import.uid}}});
}

}  // namespace

std::string ImageBackendFor(const StorageClassInfo& storage_class) {
  if (storage_class.provisioner != kLonghornProvisioner) {
    return std::string(kBackendCdi);
  }
  auto it = storage_class.parameters.find("dataEngine");
  const bool v1 = it == storage_class.parameters.end() || it->second.empty() || it->second == "v1";
  return std::string(v1 ? kBackendBackingImage : kBackendCdi);
}

std::string ImageDisplayName(std::string_view import_name, std::string_view disk_name) {
  std::string full = "vm-import-";
  full += import_name;
  full += '-';
  full += disk_name;
  if (api::IsValidLabelValue(full)) {
    return full;
  }
  std::string cut = full.substr(0, kMaxDisplayName - kHashSuffixLength);
  for (char& c : cut) {
    if (!IsLabelChar(c)) {
      c = '-';
    }
  }
  // The suffix starts with '-': what precedes it must end alphanumeric ("vm-import-" always has
  // its 'v' left, so the loop stops).
  while (!cut.empty() && !IsAlnum(cut.back())) {
    cut.pop_back();
  }
  return cut + "-" + Hex8(Fnv32a(full));
}

bool IsLonghornChecksum(std::string_view checksum) {
  return checksum.size() == 128 && std::all_of(checksum.begin(), checksum.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

core::Result<json> BuildVirtualMachineImage(const api::VirtualMachineImport& vm_import,
                                            std::string_view disk_name, std::string_view url,
                                            const StorageClassInfo* storage_class,
                                            std::optional<std::string_view> sha512) {
  for (auto [value, what] : {std::pair{std::string_view(vm_import.name), "import name"},
                             {std::string_view(vm_import.namespace_), "import namespace"},
                             {std::string_view(vm_import.uid), "import uid"},
                             {disk_name, "disk name"},
                             {url, "url"}}) {
    if (auto ok = RequireNonEmpty(value, what); !ok) {
      return core::MakeError(ok.error());
    }
  }
  const std::string display_name = ImageDisplayName(vm_import.name, disk_name);
  json metadata = {
      {"generateName", "image-"},
      {"namespace", vm_import.namespace_},
      {"labels",
       {{std::string(kLabelImported), "true"},
        {std::string(kLabelImageDisplayName), display_name}}},
      {"ownerReferences", OwnerReference(vm_import)},
  };
  json spec = {{"displayName", display_name},
               {"url", std::string(url)},
               {"sourceType", "download"},
               {"retry", kImageRetry}};
  if (sha512) {
    const std::string checksum = core::ToLower(*sha512);
    if (!IsLonghornChecksum(checksum)) {
      return core::MakeError(
          core::ErrorCode::kInvalidArgument,
          "image checksum of " + std::string(disk_name) +
              " is not a SHA-512 hex digest (Longhorn would refuse it for ever)");
    }
    spec["checksum"] = checksum;
  }
  if (storage_class != nullptr && !storage_class->name.empty()) {
    metadata["annotations"] = {{std::string(kAnnotationStorageClassName), storage_class->name}};
    spec["targetStorageClassName"] = storage_class->name;
    spec["backend"] = ImageBackendFor(*storage_class);
  }
  return json{{"apiVersion", std::string(kHarvesterApiVersion)},
              {"kind", std::string(kImageKind)},
              {"metadata", std::move(metadata)},
              {"spec", std::move(spec)}};
}

bool ImageNeedsPvc(const json& image) {
  if (!image.is_object()) {
    return false;
  }
  const json* spec = core::JsonMember(image, "spec");
  if (spec == nullptr || !spec->is_object()) {
    return true;
  }
  const std::string backend = core::JsonString(*spec, "backend");
  return backend.empty() || backend == kBackendBackingImage;
}

}  // namespace vmimport::harvester
