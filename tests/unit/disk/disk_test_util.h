#pragma once

// Helpers shared by the disk tests: the qemu-img corpus, hashing a decoded disk, temp dirs and
// running the reference tools.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "disk/disk_reader.h"

namespace vmimport::disk::testing {

struct CorpusImage {
  std::string name;    //!< e.g. "sparse.qcow2-zstd"
  std::string path;    //!< absolute
  std::string sha256;  //!< of `qemu-img convert -O raw`
  uint64_t size = 0;   //!< of the same
};

//! The corpus made by tools/make-disk-corpus.sh at build time (build_paths::DiskCorpus()).
const std::vector<CorpusImage>& Corpus();
const CorpusImage& CorpusEntry(const std::string& name);

struct Decoded {
  std::string sha256;
  uint64_t bytes = 0;
};
//! Reads `reader` to its end in chunks of `chunk` bytes and hashes what it returns.
core::Result<Decoded> DecodeAll(DiskReader& reader, size_t chunk = size_t{1} << 20);

std::string Sha256Hex(const std::vector<std::byte>& bytes);

//! A fresh directory, removed with its contents at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

//! Runs a shell command; returns its stdout, or nullopt when it exits non-zero.
std::optional<std::string> Run(const std::string& command);
//! sha256 (hex) of `qemu-img convert -O raw image`, the reference decoder.
std::string QemuRawSha256(const std::string& image);

std::vector<std::byte> ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::vector<std::byte>& bytes);
std::vector<std::byte> PseudoRandomBytes(size_t n, uint64_t seed);

}  // namespace vmimport::disk::testing
