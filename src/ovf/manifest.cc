#include "ovf/manifest.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <vector>

#include "core/strings.h"

namespace vmimport::ovf {

// Manifest layout (DSP0243 5.1), one line per file, LF or CRLF line ends:
//   SHA256(disk1.vmdk)= 3f5c...e1        OVF 2.x; OVF 1.x packages use SHA1(...)
//   SHA1(vm.ovf)=d4b0...                 the space after '=' is optional
// <algorithm>(<file name>)= <hex digest>; blank lines are ignored. The file name may contain
// parentheses: the name ends at the last ")=" of the line.
namespace {

using core::ErrorCode;
using core::MakeError;

size_t HexLength(DigestAlgorithm a) { return disk::DigestHexLength(a); }

}  // namespace

core::Result<Manifest> ParseManifest(std::string_view text, std::string_view name) {
  Manifest out;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = core::TrimSpace(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty()) {
      continue;
    }
    const std::string where = std::string(name) + ": line " + std::to_string(line_no);
    const size_t open = line.find('(');
    const size_t close = line.rfind(")=");
    if (open == std::string_view::npos || close == std::string_view::npos || close <= open + 1) {
      return MakeError(ErrorCode::kCorruptData, where + ": expected <algorithm>(<file>)= <digest>");
    }
    const std::string algorithm = core::ToLower(core::TrimSpace(line.substr(0, open)));
    Digest d;
    if (algorithm == "sha1") {
      d.algorithm = DigestAlgorithm::kSha1;
    } else if (algorithm == "sha256") {
      d.algorithm = DigestAlgorithm::kSha256;
    } else if (algorithm == "sha512") {
      d.algorithm = DigestAlgorithm::kSha512;
    } else {
      return MakeError(ErrorCode::kUnsupported,
                       where + ": unsupported digest algorithm \"" + algorithm + "\"");
    }
    const std::string file(line.substr(open + 1, close - open - 1));
    d.hex = core::ToLower(core::TrimSpace(line.substr(close + 2)));
    if (d.hex.size() != HexLength(d.algorithm) ||
        !std::all_of(d.hex.begin(), d.hex.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; })) {
      return MakeError(ErrorCode::kCorruptData, where + ": \"" + d.hex + "\" is not a " +
                                                    DigestAlgorithmName(d.algorithm) + " digest");
    }
    if (out.contains(file)) {
      return MakeError(ErrorCode::kCorruptData, where + ": " + file + " is listed twice");
    }
    out.emplace(file, std::move(d));
  }
  return out;
}

DigestCheckingSource::DigestCheckingSource(disk::ByteSourcePtr inner, std::string file_name,
                                           uint64_t size, Digest expected)
    : inner_(std::move(inner)),
      file_name_(std::move(file_name)),
      size_(size),
      expected_(std::move(expected)),
      hasher_(expected_.algorithm) {}

core::Result<size_t> DigestCheckingSource::Read(std::stop_token stop, std::span<std::byte> out) {
  if (position_ == size_ || out.empty()) {
    return size_t{0};
  }
  const size_t want = static_cast<size_t>(std::min<uint64_t>(out.size(), size_ - position_));
  auto n = inner_->Read(std::move(stop), out.first(want));
  if (!n) {
    return MakeError(n.error());
  }
  if (*n == 0) {
    return MakeError(ErrorCode::kCorruptData, file_name_ + ": truncated: ends after " +
                                                  std::to_string(position_) + " of " +
                                                  std::to_string(size_) + " bytes");
  }
  hasher_.Update(out.first(*n));
  position_ += *n;
  if (position_ == size_) {
    const std::string actual = hasher_.Finish();
    if (actual != expected_.hex) {
      return MakeError(ErrorCode::kCorruptData, file_name_ + ": " +
                                                    DigestAlgorithmName(expected_.algorithm) +
                                                    " digest mismatch: the manifest says " +
                                                    expected_.hex + ", the file has " + actual);
    }
    verified_ = true;
  }
  return *n;
}

core::Status DigestCheckingSource::FinishVerification(std::stop_token stop) {
  std::vector<std::byte> scratch(size_t{64} * 1024);
  while (!verified_) {
    auto n = Read(stop, scratch);
    if (!n) {
      return MakeError(n.error());
    }
    if (*n == 0 && !verified_) {
      return MakeError(ErrorCode::kInternal, file_name_ + ": digest not checked");
    }
  }
  return core::Ok();
}

std::optional<disk::VerifiedDigest> DigestCheckingSource::Verified() const {
  if (!verified_) {
    return std::nullopt;
  }
  return disk::VerifiedDigest{.algorithm = disk::DigestAlgorithmLowerName(expected_.algorithm),
                              .hex = expected_.hex,
                              .verifier = std::string(disk::kVerifierOvaManifest),
                              .bytes = size_};
}

}  // namespace vmimport::ovf
