#include "source/verifying_source.h"

#include <array>
#include <cctype>

namespace vmimport::source {

using core::ErrorCode;
using core::MakeError;

namespace {

std::string Lower(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

}  // namespace

VerifyingSource::VerifyingSource(disk::ByteSourcePtr inner, disk::DigestAlgorithm algorithm,
                                 std::string verifier, std::string name, ExpectedDigestFn expected)
    : inner_(std::move(inner)),
      algorithm_(algorithm),
      verifier_(std::move(verifier)),
      name_(std::move(name)),
      expected_(std::move(expected)),
      hasher_(algorithm) {}

core::Result<size_t> VerifyingSource::Read(std::stop_token stop, std::span<std::byte> out) {
  if (result_ && !*result_) {
    return MakeError(result_->error());
  }
  if (ended_ || out.empty()) {
    return size_t{0};
  }
  auto n = inner_->Read(stop, out);
  if (!n) {
    return n;
  }
  if (*n > 0) {
    hasher_.Update(out.first(*n));
    bytes_ += *n;
    return n;
  }
  ended_ = true;
  if (auto st = Check(stop); !st) {
    return MakeError(st.error());
  }
  return size_t{0};
}

core::Status VerifyingSource::FinishVerification(std::stop_token stop) {
  std::array<std::byte, size_t{64} * 1024> scratch{};
  while (!ended_) {
    if (result_ && !*result_) {
      return *result_;
    }
    auto n = Read(stop, scratch);
    if (!n) {
      return MakeError(n.error());
    }
  }
  return Check(stop);
}

core::Status VerifyingSource::Check(std::stop_token stop) {
  if (result_) {
    return *result_;
  }
  const std::string actual = hasher_.Finish();
  auto expected = expected_(stop);
  if (!expected) {
    // Asking failed (the transport): not a verdict on the bytes, but this stream is done; the
    // error sticks, like a decoder's (a fresh stream asks again).
    result_ = MakeError(expected.error().Wrap(name_ + ": get the source's digest"));
    return *result_;
  }
  if (!*expected) {
    result_ = core::Ok();  // the source declares nothing: unverifiable
    return *result_;
  }
  const std::string want = Lower(**expected);
  if (want != actual) {
    result_ = MakeError(ErrorCode::kCorruptData,
                        name_ + ": " + disk::DigestAlgorithmLowerName(algorithm_) + " of the " +
                            std::to_string(bytes_) + " bytes received is " + actual + ", " +
                            verifier_ + " declares " + want);
    return *result_;
  }
  verified_ = disk::VerifiedDigest{.algorithm = disk::DigestAlgorithmLowerName(algorithm_),
                                   .hex = actual,
                                   .verifier = verifier_,
                                   .bytes = bytes_};
  result_ = core::Ok();
  return *result_;
}

namespace {

// Holds back the disk's last bytes until the source's digest was checked over the whole source
// stream (CheckedSource::FinishVerification): the decoder may be done before the stream is (a
// VMDK ends at its end-of-stream marker), and a consumer must never get a whole disk whose
// source bytes did not match.
class VerifiedTailReader final : public disk::DiskReader {
 public:
  VerifiedTailReader(disk::DiskReaderPtr reader, disk::CheckedSource* checked)
      : reader_(std::move(reader)), checked_(checked) {}

  // disk::DiskReader
  uint64_t VirtualSize() const override { return reader_->VirtualSize(); }
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override {
    auto n = reader_->Read(stop, out);
    if (!n || *n == 0) {
      return n;
    }
    position_ += *n;
    if (position_ == reader_->VirtualSize()) {
      if (auto st = checked_->FinishVerification(stop); !st) {
        return MakeError(st.error());
      }
    }
    return n;
  }
  std::string_view FormatName() const override { return reader_->FormatName(); }
  std::vector<disk::VerifiedDigest> SourceDigests() const override {
    std::vector<disk::VerifiedDigest> out = reader_->SourceDigests();
    if (auto v = checked_->Verified()) {
      out.push_back(std::move(*v));
    }
    return out;
  }

 private:
  disk::DiskReaderPtr reader_;  // owns the source `checked_` points into
  disk::CheckedSource* checked_;
  uint64_t position_ = 0;
};

}  // namespace

disk::DiskReaderPtr HoldLastBytesUntilVerified(disk::DiskReaderPtr reader,
                                               disk::CheckedSource* checked) {
  return std::make_unique<VerifiedTailReader>(std::move(reader), checked);
}

}  // namespace vmimport::source
