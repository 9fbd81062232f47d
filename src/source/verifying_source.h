#pragma once

// A disk stream whose digest the source gives us, now or only at its end, checked over the
// bytes as they arrive (before any decoding):
//  - vSphere: the NFC lease's manifest (HttpNfcLeaseGetManifest) is asked for once the stream
//    ended, so the expected digest is a callback;
//  - Glance: os_hash_value is known when the image is described.
// The last decoded bytes of the disk are held back until the digest matched: source::
// OpenDiskReader calls FinishVerification before it returns them, so a consumer of a tampered
// stream gets a short, failed download, never a whole wrong disk.

#include <functional>
#include <optional>
#include <string>

#include "disk/byte_source.h"
#include "disk/digest.h"
#include "disk/disk_reader.h"

namespace vmimport::source {

//! The digest the source declares for the stream, asked for once the stream ended: nullopt
//! when the source declares none (unverifiable, not an error); an error when asking failed.
using ExpectedDigestFn =
    std::function<core::Result<std::optional<std::string>>(std::stop_token stop)>;

class VerifyingSource final : public disk::CheckedSource {
 public:
  //! `name` names the stream in errors (never a URL); `verifier` goes into the record
  //! (disk::kVerifier...).
  VerifyingSource(disk::ByteSourcePtr inner, disk::DigestAlgorithm algorithm, std::string verifier,
                  std::string name, ExpectedDigestFn expected);

  // disk::ByteSource
  //! At the inner source's end runs the check: a mismatch is kCorruptData instead of 0.
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;
  // disk::CheckedSource
  core::Status FinishVerification(std::stop_token stop) override;
  std::optional<disk::VerifiedDigest> Verified() const override { return verified_; }

  uint64_t bytes() const { return bytes_; }

 private:
  core::Status Check(std::stop_token stop);

  disk::ByteSourcePtr inner_;
  const disk::DigestAlgorithm algorithm_;
  const std::string verifier_;
  const std::string name_;
  ExpectedDigestFn expected_;
  disk::DigestHasher hasher_;
  uint64_t bytes_ = 0;
  bool ended_ = false;  // the inner source returned 0
  std::optional<core::Status> result_;
  std::optional<disk::VerifiedDigest> verified_;
};

//! Wraps the decoded disk of a CheckedSource (`checked` points into the source `reader` owns):
//! the Read that would hand out the disk's last bytes first calls
//! checked->FinishVerification and fails with its error instead; SourceDigests() adds
//! checked->Verified(). OpenDiskReader applies it to every CheckedSource a provider returns.
disk::DiskReaderPtr HoldLastBytesUntilVerified(disk::DiskReaderPtr reader,
                                               disk::CheckedSource* checked);

}  // namespace vmimport::source
