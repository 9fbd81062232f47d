#pragma once

// Whole-buffer decompression of one compressed grain or cluster:
//  - deflate (RFC 1951), raw or inside a zlib wrapper (RFC 1950): VMDK grains (zlib) and qcow2
//    clusters (raw deflate);
//  - zstd frames: qcow2 clusters with compression_type=zstd.
// Two deflate backends exist so that the choice can be measured (vmimport-bench prints both);
// kDefaultInflateBackend is the winner, see src/disk/README.md for the figures.
// An Inflater keeps its decompressor state between calls; one per stream, not thread-safe.

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "core/result.h"

namespace vmimport::disk {

using core::Result;

enum class InflateBackend { kLibdeflate, kZlib };
inline constexpr InflateBackend kDefaultInflateBackend = InflateBackend::kLibdeflate;
std::string_view InflateBackendName(InflateBackend backend);

enum class DeflateWrapper {
  kRaw,   // bare deflate blocks
  kZlib,  // zlib header + deflate + Adler-32 (checked)
  kAuto,  // zlib when the first two bytes form a valid zlib header, raw otherwise
};

class Inflater {
 public:
  explicit Inflater(InflateBackend backend = kDefaultInflateBackend);
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  //! Decompresses the stream at the start of `in` into `out` and returns the bytes produced
  //! (bytes after the end of the stream are ignored). kCorruptData, with a message that names no
  //! offset (the caller adds it), when the data is invalid, truncated, or would produce more than
  //! out.size() bytes.
  [[nodiscard]] Result<size_t> Inflate(std::span<const std::byte> in, std::span<std::byte> out,
                                       DeflateWrapper wrapper);

  InflateBackend backend() const { return backend_; }

 private:
  struct State;
  InflateBackend backend_;
  std::unique_ptr<State> state_;
};

//! True when `in` starts with a valid zlib (RFC 1950) header using deflate.
bool LooksLikeZlib(std::span<const std::byte> in);

class ZstdDecompressor {
 public:
  ZstdDecompressor();
  ~ZstdDecompressor();
  ZstdDecompressor(const ZstdDecompressor&) = delete;
  ZstdDecompressor& operator=(const ZstdDecompressor&) = delete;

  //! Decompresses frames from `in` until `out` is full (as qcow2 does: trailing padding is
  //! ignored). kCorruptData when the data is invalid, ends before `out` is full, or holds more
  //! than out.size() bytes. The window is capped (8 MiB) so a hostile frame cannot demand more.
  [[nodiscard]] Result<size_t> DecompressExactly(std::span<const std::byte> in,
                                                 std::span<std::byte> out);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vmimport::disk
