#include "harvester/backing_image.h"

#include <openssl/evp.h>

#include <algorithm>

#include "core/strings.h"

namespace vmimport::harvester {

using nlohmann::json;

namespace {

std::string Str(const json& j, const char* key) {
  if (!j.is_object()) {
    return "";
  }
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const json& Obj(const json& j, const char* key) {
  static const json kEmpty = json::object();
  if (!j.is_object()) {
    return kEmpty;
  }
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : kEmpty;
}

std::string Sha512Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha512(), nullptr) != 1) {
    // Only without SHA-512 in OpenSSL: never in practice. (Braces would make a 2-char string.)
    return std::string(128, '0');  // NOLINT(modernize-return-braced-init-list)
  }
  return core::HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

}  // namespace

std::string LonghornAutoCorrectName(std::string_view name, size_t max_length) {
  std::string out = core::ToLower(name);
  if (name.size() <= max_length) {
    return out;
  }
  const std::string suffix = "-" + Sha512Hex(name).substr(0, 8);
  std::string prefix = out.substr(0, max_length - suffix.size());
  while (!prefix.empty() && prefix.back() == '-') {
    prefix.pop_back();
  }
  return prefix + suffix;
}

std::vector<std::string> BackingImageNames(const json& virtual_machine_image) {
  const json& meta = Obj(virtual_machine_image, "metadata");
  const std::string ns = Str(meta, "namespace");
  const std::string name = Str(meta, "name");
  const std::string uid = Str(meta, "uid");
  if (ns.empty() || name.empty() || uid.empty()) {
    return {};
  }
  const std::string legacy = ns + "-" + name;
  std::vector<std::string> out = {legacy};
  for (const std::string& n :
       {LonghornAutoCorrectName(legacy), LonghornAutoCorrectName("vmi-" + uid)}) {
    if (std::find(out.begin(), out.end(), n) == out.end()) {
      out.push_back(n);
    }
  }
  return out;
}

BackingImageChecksum ReadBackingImageChecksum(const json& backing_image) {
  BackingImageChecksum out;
  const json& status = Obj(backing_image, "status");
  out.sha512 = core::ToLower(Str(status, "checksum"));
  for (const auto& [disk, file] : Obj(status, "diskFileStatusMap").items()) {
    (void)disk;
    const std::string state = Str(file, "state");
    if (state == "ready") {
      out.ready = true;
    } else if (state == "failed" && out.failed_message.empty()) {
      out.failed_message = Str(file, "message");
    }
  }
  return out;
}

StoredVerdict CompareStoredChecksum(std::string_view served_sha512,
                                    const BackingImageChecksum& stored) {
  if (served_sha512.empty() || stored.sha512.empty()) {
    return StoredVerdict::kUnverifiable;
  }
  return core::ToLower(served_sha512) == stored.sha512 ? StoredVerdict::kVerified
                                                       : StoredVerdict::kMismatch;
}

}  // namespace vmimport::harvester
