#include "disk/inflate.h"

#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdlib>
#include <limits>

#include "disk/checked_cast.h"

namespace vmimport::disk {

using core::ErrorCode;
using core::MakeError;

namespace {

constexpr int kZstdWindowLogMax = 23;  // 8 MiB; qcow2 clusters are at most 2 MiB

tl::unexpected<core::Error> Corrupt(std::string what) {
  return MakeError(ErrorCode::kCorruptData, std::move(what));
}

}  // namespace

std::string_view InflateBackendName(InflateBackend backend) {
  switch (backend) {
    case InflateBackend::kLibdeflate: return "libdeflate";
    case InflateBackend::kZlib: return "zlib";
  }
  return "unknown";
}

bool LooksLikeZlib(std::span<const std::byte> in) {
  if (in.size() < 2) {
    return false;
  }
  const auto cmf = static_cast<unsigned>(in[0]);
  const auto flg = static_cast<unsigned>(in[1]);
  const bool deflate = (cmf & 0x0fu) == 8u && (cmf >> 4) <= 7u;
  const bool no_dict = (flg & 0x20u) == 0u;
  return deflate && no_dict && ((cmf << 8) | flg) % 31u == 0u;
}

struct Inflater::State {
  libdeflate_decompressor* deflate = nullptr;
  z_stream zlib{};
  bool zlib_ready = false;
  int zlib_window_bits = 0;

  ~State() {
    if (deflate != nullptr) {
      libdeflate_free_decompressor(deflate);
    }
    if (zlib_ready) {
      inflateEnd(&zlib);
    }
  }
};

Inflater::Inflater(InflateBackend backend) : backend_(backend), state_(std::make_unique<State>()) {
  if (backend_ == InflateBackend::kLibdeflate) {
    state_->deflate = libdeflate_alloc_decompressor();
    if (state_->deflate == nullptr) {
      std::abort();  // out of memory
    }
  }
}

Inflater::~Inflater() = default;

Result<size_t> Inflater::Inflate(std::span<const std::byte> in, std::span<std::byte> out,
                                 DeflateWrapper wrapper) {
  bool zlib_wrapped = wrapper == DeflateWrapper::kZlib;
  if (wrapper == DeflateWrapper::kAuto) {
    zlib_wrapped = LooksLikeZlib(in);
  }
  if (backend_ == InflateBackend::kLibdeflate) {
    size_t in_used = 0;
    size_t produced = 0;
    const libdeflate_result r =
        zlib_wrapped
            ? libdeflate_zlib_decompress_ex(state_->deflate, in.data(), in.size(), out.data(),
                                            out.size(), &in_used, &produced)
            : libdeflate_deflate_decompress_ex(state_->deflate, in.data(), in.size(), out.data(),
                                               out.size(), &in_used, &produced);
    switch (r) {
      case LIBDEFLATE_SUCCESS: return produced;
      case LIBDEFLATE_INSUFFICIENT_SPACE:
        return Corrupt("compressed data expands past " + std::to_string(out.size()) + " bytes");
      case LIBDEFLATE_BAD_DATA:
      case LIBDEFLATE_SHORT_OUTPUT: break;
    }
    return Corrupt(zlib_wrapped ? "invalid zlib data" : "invalid deflate data");
  }

  // zlib backend: one z_stream reused through inflateReset2.
  const int window_bits = zlib_wrapped ? 15 : -15;
  z_stream& z = state_->zlib;
  if (!state_->zlib_ready) {
    if (inflateInit2(&z, window_bits) != Z_OK) {
      std::abort();  // out of memory
    }
    state_->zlib_ready = true;
  } else if (inflateReset2(&z, window_bits) != Z_OK) {
    return MakeError(ErrorCode::kInternal, "inflateReset2 failed");
  }
  state_->zlib_window_bits = window_bits;
  // zlib counts in uInt; grains and clusters are far below 4 GiB.
  z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  z.avail_in = CheckedCast<uInt>(std::min<size_t>(in.size(), std::numeric_limits<uInt>::max()));
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = CheckedCast<uInt>(std::min<size_t>(out.size(), std::numeric_limits<uInt>::max()));
  const int r = inflate(&z, Z_FINISH);
  if (r == Z_STREAM_END) {
    return out.size() - z.avail_out;
  }
  if (r == Z_BUF_ERROR && z.avail_out == 0) {
    return Corrupt("compressed data expands past " + std::to_string(out.size()) + " bytes");
  }
  if (r == Z_BUF_ERROR) {
    return Corrupt(zlib_wrapped ? "truncated zlib data" : "truncated deflate data");
  }
  return Corrupt(std::string(zlib_wrapped ? "invalid zlib data" : "invalid deflate data") +
                 (z.msg != nullptr ? std::string(": ") + z.msg : std::string()));
}

struct ZstdDecompressor::State {
  ZSTD_DCtx* dctx = nullptr;
  ~State() { ZSTD_freeDCtx(dctx); }
};

ZstdDecompressor::ZstdDecompressor() : state_(std::make_unique<State>()) {
  state_->dctx = ZSTD_createDCtx();
  if (state_->dctx == nullptr) {
    std::abort();  // out of memory
  }
  ZSTD_DCtx_setParameter(state_->dctx, ZSTD_d_windowLogMax, kZstdWindowLogMax);
}

ZstdDecompressor::~ZstdDecompressor() = default;

Result<size_t> ZstdDecompressor::DecompressExactly(std::span<const std::byte> in,
                                                   std::span<std::byte> out) {
  ZSTD_DCtx_reset(state_->dctx, ZSTD_reset_session_only);
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  ZSTD_outBuffer output{out.data(), out.size(), 0};
  size_t last = 0;
  while (output.pos < output.size) {
    const size_t in_before = input.pos;
    const size_t out_before = output.pos;
    last = ZSTD_decompressStream(state_->dctx, &output, &input);
    if (ZSTD_isError(last) != 0u) {
      return Corrupt(std::string("invalid zstd data: ") + ZSTD_getErrorName(last));
    }
    if (input.pos <= in_before && output.pos <= out_before) {
      return Corrupt("truncated zstd data (" + std::to_string(output.pos) + " of " +
                     std::to_string(out.size()) + " bytes)");
    }
  }
  if (last > 0) {
    // The frame is not finished although the output is full: more data than a cluster.
    return Corrupt("zstd data expands past " + std::to_string(out.size()) + " bytes");
  }
  return output.pos;
}

}  // namespace vmimport::disk
