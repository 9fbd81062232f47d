#pragma once

// Digests of byte streams (SHA-1/256/512), and the record of a digest someone checked: what a
// source declared (an OVF manifest, vSphere's NFC manifest, Glance's os_hash_value) compared with
// what passed through us.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/result.h"
#include "disk/byte_source.h"

namespace vmimport::disk {

enum class DigestAlgorithm { kSha1, kSha256, kSha512 };

//! "SHA1", "SHA256", "SHA512" (the OVF manifest spelling).
const char* DigestAlgorithmName(DigestAlgorithm a);
//! "sha1", "sha256", "sha512" (vSphere, Glance and our status spelling).
const char* DigestAlgorithmLowerName(DigestAlgorithm a);
//! Accepts either spelling, any case, with or without a dash ("sha-256"); nullopt otherwise
//! (md5 and others: we do not verify with them).
std::optional<DigestAlgorithm> ParseDigestAlgorithm(std::string_view name);
//! Hex digits of a digest: 40, 64, 128.
size_t DigestHexLength(DigestAlgorithm a);
//! True for a digest of `a`'s length made of hex digits only (either case).
bool IsDigestHex(DigestAlgorithm a, std::string_view hex);

//! Incremental SHA-1/256/512 (OpenSSL EVP). Not thread-safe.
class DigestHasher {
 public:
  explicit DigestHasher(DigestAlgorithm algorithm);
  ~DigestHasher();
  DigestHasher(const DigestHasher&) = delete;
  DigestHasher& operator=(const DigestHasher&) = delete;
  void Update(std::span<const std::byte> data);
  //! Lower-case hex of everything passed to Update.
  std::string Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

//! The digest of `data` in lower-case hex.
std::string DigestOf(DigestAlgorithm algorithm, std::span<const std::byte> data);

//! Who compares a disk's digest: the status vocabulary of issue 16.
inline constexpr std::string_view kVerifierVsphereManifest = "vsphere-manifest";
inline constexpr std::string_view kVerifierOvaManifest = "ova-manifest";
inline constexpr std::string_view kVerifierGlance = "glance";
inline constexpr std::string_view kVerifierLonghorn = "longhorn";

//! A digest that was compared with the bytes that passed, and matched (a mismatch is an error,
//! never a record).
struct VerifiedDigest {
  std::string algorithm;  //!< "sha1", "sha256", "sha512"
  std::string hex;        //!< lower-case
  std::string verifier;   //!< kVerifier...
  uint64_t bytes = 0;     //!< how many bytes the digest covered
};

//! A ByteSource that checks a digest its source declared over every byte it passes. The check
//! happens when the inner source ends, or when FinishVerification asks: a decoder may stop
//! reading before the source's end (a VMDK stream's end-of-stream marker), so whoever hands out
//! the last decoded bytes calls FinishVerification first (source::OpenDiskReader does).
class CheckedSource : public ByteSource {
 public:
  //! Reads what is left of the inner source (hashing it, discarding it) and compares the digest.
  //! kCorruptData naming both digests on a mismatch; the source's errors otherwise. Idempotent:
  //! a second call returns the first one's result.
  [[nodiscard]] virtual core::Status FinishVerification(std::stop_token stop) = 0;
  //! The digest that matched, once FinishVerification (or the end of the data) succeeded;
  //! nullopt before, and when the source declared no digest (unverifiable).
  virtual std::optional<VerifiedDigest> Verified() const = 0;
};

}  // namespace vmimport::disk
