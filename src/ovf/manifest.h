#pragma once

// The OVF manifest (.mf, DSP0243 section 5.1): one digest per file of the package. Checking a
// file's digest happens while its bytes pass (DigestCheckingSource), never on a staged copy.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>

#include "core/result.h"
#include "disk/byte_source.h"
#include "disk/digest.h"

namespace vmimport::ovf {

using disk::DigestAlgorithm;
using disk::DigestAlgorithmName;

struct Digest {
  DigestAlgorithm algorithm = DigestAlgorithm::kSha256;
  std::string hex;  //!< lower-case
};

//! File name (as in the archive) → its digest.
using Manifest = std::map<std::string, Digest>;

//! Parses a manifest. Errors: kCorruptData naming the line for a malformed line or a digest of
//! the wrong length; kUnsupported for an algorithm other than SHA1/SHA256/SHA512.
[[nodiscard]] core::Result<Manifest> ParseManifest(std::string_view text, std::string_view name);

using disk::DigestHasher;
using disk::DigestOf;

//! Decorator: passes a file's bytes through and checks its digest as its last byte passes, in the
//! Read that returns that byte: a mismatch fails that Read (kCorruptData with the file name and
//! both digests) instead of returning the bytes, so a consumer never sees a whole bad file. The
//! file must have exactly `size` bytes: fewer is kCorruptData ("truncated"), and reading stops at
//! `size` (the inner source is not read further).
class DigestCheckingSource final : public disk::CheckedSource {
 public:
  DigestCheckingSource(disk::ByteSourcePtr inner, std::string file_name, uint64_t size,
                       Digest expected);

  // disk::ByteSource
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;
  // disk::CheckedSource
  //! Reads the rest of the file (the decoder may stop at a VMDK's end-of-stream marker).
  core::Status FinishVerification(std::stop_token stop) override;
  //! verifier "ova-manifest".
  std::optional<disk::VerifiedDigest> Verified() const override;

  //! True once the whole file passed and its digest matched.
  bool verified() const { return verified_; }

 private:
  disk::ByteSourcePtr inner_;
  const std::string file_name_;
  const uint64_t size_;
  const Digest expected_;
  DigestHasher hasher_;
  uint64_t position_ = 0;
  bool verified_ = false;
};

}  // namespace vmimport::ovf
