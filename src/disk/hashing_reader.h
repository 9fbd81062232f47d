#pragma once

// Checksums of the raw disk, computed on the bytes as they pass: Harvester compares them with
// what the storage side computed.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "disk/disk_reader.h"

namespace vmimport::disk {

struct Checksums {
  std::string sha256;  //!< lower-case hex
  std::string sha512;  //!< lower-case hex
  uint64_t bytes = 0;
};

//! Incremental SHA-256 + SHA-512 (OpenSSL) with a byte counter. Not thread-safe.
class Hasher {
 public:
  enum class Digests { kBoth, kSha256Only, kSha512Only };
  explicit Hasher(Digests digests = Digests::kBoth);
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void Update(std::span<const std::byte> data);
  //! The digests of everything passed to Update (empty strings for a digest not computed); the
  //! hasher starts over afterwards.
  Checksums Finish();
  uint64_t bytes() const { return bytes_; }

 private:
  struct State;
  Digests digests_;
  std::unique_ptr<State> state_;
  uint64_t bytes_ = 0;
};

//! Where a HashingReader computes SHA-512, the slower of its two digests.
enum class Sha512Thread {
  kNever,   //!< on the reading thread, after SHA-256
  kAlways,  //!< on a helper thread, over copies of the chunks (a queue of four), while the
            //!< caller decodes the next ones: the stream then costs max(sha512, decode +
            //!< sha256) instead of the sum
  //! on the helper only while at most half the cores have a hashing stream each (counted over
  //! the process's HashingReaders, chunk by chunk): one stream on two cores uses both, four
  //! streams hash on their own threads and spare the copies and hand-offs
  kWhenCoresAreFree,
};

//! Decorator: passes reads through, hashing and counting what they return.
class HashingReader final : public DiskReader {
 public:
  //! `digests`: kBoth, or kSha512Only (what Longhorn can compare: the checksum policy
  //! "verify"); kSha256Only is accepted too. A digest not computed is an empty string.
  explicit HashingReader(DiskReaderPtr inner,
                         Sha512Thread sha512_thread = Sha512Thread::kWhenCoresAreFree,
                         Hasher::Digests digests = Hasher::Digests::kBoth);
  ~HashingReader() override;

  // disk::DiskReader
  uint64_t VirtualSize() const override { return inner_->VirtualSize(); }
  Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;
  std::string_view FormatName() const override { return inner_->FormatName(); }
  std::vector<VerifiedDigest> SourceDigests() const override { return inner_->SourceDigests(); }

  //! Bytes returned so far.
  uint64_t bytes() const { return checksums_ ? checksums_->bytes : bytes_; }
  //! The checksums, once Read has returned 0 (the whole disk passed); nullopt before.
  const std::optional<Checksums>& checksums() const { return checksums_; }

  //! Chunks whose SHA-512 ran on the helper thread so far, and on the reading thread.
  uint64_t sha512_chunks_on_helper() const { return chunks_on_helper_; }
  uint64_t sha512_chunks_inline() const { return chunks_inline_; }
  //! HashingReaders of this process that have not seen their end (nor been destroyed).
  static int ActiveStreams();

 private:
  class Sha512Worker;
  bool UseHelper() const;
  void Done();

  DiskReaderPtr inner_;
  const Sha512Thread sha512_thread_;
  const bool sha256_on_;
  const bool sha512_on_;
  uint64_t bytes_ = 0;
  const unsigned cores_;
  Hasher sha256_{Hasher::Digests::kSha256Only};
  std::unique_ptr<Sha512Worker> sha512_;  // holds the SHA-512 state; its thread starts lazily
  std::optional<Checksums> checksums_;
  bool active_ = true;  // counted in ActiveStreams()
  uint64_t chunks_on_helper_ = 0;
  uint64_t chunks_inline_ = 0;
};

}  // namespace vmimport::disk
