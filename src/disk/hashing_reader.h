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

//! Decorator: passes reads through, hashing and counting what they return.
class HashingReader final : public DiskReader {
 public:
  //! `parallel`: SHA-512, the slower of the two, runs on a helper thread over a copy of each
  //! chunk while the caller decodes the next one (one more chunk of memory, one thread). On two
  //! cores that moves the stream from sha256+sha512 to max(sha512, decode+sha256).
  explicit HashingReader(DiskReaderPtr inner, bool parallel = true);
  ~HashingReader() override;

  // disk::DiskReader
  uint64_t VirtualSize() const override { return inner_->VirtualSize(); }
  Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;
  std::string_view FormatName() const override { return inner_->FormatName(); }

  //! Bytes returned so far.
  uint64_t bytes() const { return checksums_ ? checksums_->bytes : hasher_.bytes(); }
  //! The checksums, once Read has returned 0 (the whole disk passed); nullopt before.
  const std::optional<Checksums>& checksums() const { return checksums_; }

 private:
  class Sha512Worker;
  DiskReaderPtr inner_;
  Hasher hasher_;                         // both digests, or SHA-256 only with a worker
  std::unique_ptr<Sha512Worker> worker_;  // parallel mode
  std::optional<Checksums> checksums_;
};

}  // namespace vmimport::disk
