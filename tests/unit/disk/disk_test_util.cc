#include "disk_test_util.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "build_paths.h"
#include "disk/hashing_reader.h"

namespace vmimport::disk::testing {

const std::vector<CorpusImage>& Corpus() {
  static const std::vector<CorpusImage> corpus = [] {
    std::vector<CorpusImage> images;
    const std::string dir = vmimport::build_paths::DiskCorpus();
    std::ifstream manifest(dir + "/manifest.tsv");
    std::string line;
    while (std::getline(manifest, line)) {
      std::istringstream fields(line);
      CorpusImage image;
      std::string rel;
      std::getline(fields, image.name, '\t');
      std::getline(fields, rel, '\t');
      std::getline(fields, image.sha256, '\t');
      fields >> image.size;
      image.path = dir + "/" + rel;
      images.push_back(std::move(image));
    }
    return images;
  }();
  return corpus;
}

const CorpusImage& CorpusEntry(const std::string& name) {
  for (const auto& image : Corpus()) {
    if (image.name == name) {
      return image;
    }
  }
  ADD_FAILURE() << "no corpus image " << name << " (is " << vmimport::build_paths::DiskCorpus()
                << " built?)";
  static const CorpusImage missing;
  return missing;
}

core::Result<Decoded> DecodeAll(DiskReader& reader, size_t chunk) {
  Hasher hasher;
  std::vector<std::byte> buffer(chunk);
  for (;;) {
    auto n = reader.Read({}, buffer);
    if (!n) {
      return core::MakeError(n.error());
    }
    if (*n == 0) {
      break;
    }
    hasher.Update(std::span<const std::byte>(buffer.data(), *n));
  }
  auto sums = hasher.Finish();
  return Decoded{sums.sha256, sums.bytes};
}

std::string Sha256Hex(const std::vector<std::byte>& bytes) {
  Hasher hasher;
  hasher.Update(bytes);
  return hasher.Finish().sha256;
}

TempDir::TempDir() {
  std::string templ = (std::filesystem::temp_directory_path() / "vmimport-disk-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
  }
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::optional<std::string> Run(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    return std::nullopt;
  }
  std::string out;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) {
    out.append(buf.data(), n);
  }
  const int status = pclose(pipe);
  if (status != 0) {
    ADD_FAILURE() << "command failed (" << status << "): " << command << "\n" << out;
    return std::nullopt;
  }
  return out;
}

std::string QemuRawSha256(const std::string& image) {
  TempDir dir;
  const std::string raw = dir.File("qemu.raw");
  if (!Run("qemu-img convert -O raw '" + image + "' '" + raw + "'")) {
    return "qemu-img failed";
  }
  return Sha256Hex(ReadFile(raw));
}

std::vector<std::byte> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

void WriteFile(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "writing " << path;
}

std::vector<std::byte> PseudoRandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> bytes(n);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t j = 0; j < 8 && i + j < n; ++j) {
      bytes[i + j] = static_cast<std::byte>(v & 0xff);
      v >>= 8;
    }
  }
  return bytes;
}

}  // namespace vmimport::disk::testing
