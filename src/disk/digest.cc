#include "disk/digest.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "core/strings.h"

namespace vmimport::disk {

namespace {

const EVP_MD* Md(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::kSha1: return EVP_sha1();
    case DigestAlgorithm::kSha256: return EVP_sha256();
    case DigestAlgorithm::kSha512: return EVP_sha512();
  }
  return EVP_sha256();
}

}  // namespace

const char* DigestAlgorithmName(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::kSha1: return "SHA1";
    case DigestAlgorithm::kSha256: return "SHA256";
    case DigestAlgorithm::kSha512: return "SHA512";
  }
  return "?";
}

const char* DigestAlgorithmLowerName(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::kSha1: return "sha1";
    case DigestAlgorithm::kSha256: return "sha256";
    case DigestAlgorithm::kSha512: return "sha512";
  }
  return "?";
}

std::optional<DigestAlgorithm> ParseDigestAlgorithm(std::string_view name) {
  std::string n;
  for (char c : name) {
    if (c != '-' && c != '_') {
      n.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  if (n == "sha1") {
    return DigestAlgorithm::kSha1;
  }
  if (n == "sha256") {
    return DigestAlgorithm::kSha256;
  }
  if (n == "sha512") {
    return DigestAlgorithm::kSha512;
  }
  return std::nullopt;
}

size_t DigestHexLength(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::kSha1: return 40;
    case DigestAlgorithm::kSha256: return 64;
    case DigestAlgorithm::kSha512: return 128;
  }
  return 0;
}

bool IsDigestHex(DigestAlgorithm a, std::string_view hex) {
  return hex.size() == DigestHexLength(a) && std::all_of(hex.begin(), hex.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c)) != 0;
         });
}

struct DigestHasher::State {
  EVP_MD_CTX* ctx = nullptr;
  ~State() { EVP_MD_CTX_free(ctx); }
};

DigestHasher::DigestHasher(DigestAlgorithm algorithm) : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  if (state_->ctx == nullptr || EVP_DigestInit_ex(state_->ctx, Md(algorithm), nullptr) != 1) {
    std::abort();  // out of memory: nothing sensible to do
  }
}

DigestHasher::~DigestHasher() = default;

void DigestHasher::Update(std::span<const std::byte> data) {
  if (!data.empty() && EVP_DigestUpdate(state_->ctx, data.data(), data.size()) != 1) {
    std::abort();
  }
}

std::string DigestHasher::Finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(state_->ctx, md, &len) != 1) {
    std::abort();
  }
  return core::HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string DigestOf(DigestAlgorithm algorithm, std::span<const std::byte> data) {
  DigestHasher h(algorithm);
  h.Update(data);
  return h.Finish();
}

}  // namespace vmimport::disk
