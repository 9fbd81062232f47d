#include "disk/hashing_reader.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "core/strings.h"

namespace vmimport::disk {

namespace {

struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;

EvpMdCtxPtr NewDigest(const EVP_MD* md) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) {
    std::abort();  // out of memory, or an OpenSSL without SHA-2: nothing to recover
  }
  return ctx;
}

std::string FinishHex(EVP_MD_CTX* ctx) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, digest.data(), &len) != 1) {
    std::abort();
  }
  return core::HexEncode(std::string_view(reinterpret_cast<const char*>(digest.data()), len));
}

}  // namespace

struct Hasher::State {
  explicit State(Digests digests)
      : sha256(digests == Digests::kSha512Only ? nullptr : NewDigest(EVP_sha256())),
        sha512(digests == Digests::kSha256Only ? nullptr : NewDigest(EVP_sha512())) {}
  EvpMdCtxPtr sha256;
  EvpMdCtxPtr sha512;
};

Hasher::Hasher(Digests digests) : digests_(digests), state_(std::make_unique<State>(digests)) {}
Hasher::~Hasher() = default;

void Hasher::Update(std::span<const std::byte> data) {
  if (data.empty()) {
    return;
  }
  for (EVP_MD_CTX* ctx : {state_->sha256.get(), state_->sha512.get()}) {
    if (ctx != nullptr && EVP_DigestUpdate(ctx, data.data(), data.size()) != 1) {
      std::abort();
    }
  }
  bytes_ += data.size();
}

Checksums Hasher::Finish() {
  Checksums c;
  c.sha256 = state_->sha256 ? FinishHex(state_->sha256.get()) : std::string();
  c.sha512 = state_->sha512 ? FinishHex(state_->sha512.get()) : std::string();
  c.bytes = bytes_;
  state_ = std::make_unique<State>(digests_);
  bytes_ = 0;
  return c;
}

namespace {
std::atomic<int> g_active_streams{0};
}  // namespace

// The SHA-512 state, and the thread that may run it. Submit copies a chunk into a free slot of a
// queue of kSlots and returns; the thread (started on first use) hashes the slots in order.
// UpdateInline waits for the queue to drain, then hashes on the caller's thread. Either way the
// chunks reach the state in order. One submitter (the reading thread) at a time.
//
// A queue rather than one slot: with one, reader and helper ran in lockstep (the reader waited
// for the previous chunk's hash before handing over the next), so whenever the scheduler ran
// another thread of the pipeline (the download, the source, the consumer) on one of the two
// cores, the other stage waited too. kSlots chunks of slack let either side run ahead.
//
//   slots_: [ free | head_ → queued_ chunks, hashed in order → | free ]   (a ring of kSlots)
class HashingReader::Sha512Worker {
 public:
  static constexpr size_t kSlots = 4;

  ~Sha512Worker() {
    if (thread_.joinable()) {
      thread_.request_stop();
      thread_.join();
    }
  }

  void Submit(std::span<const std::byte> data) {
    std::unique_lock lock(mu_);
    if (!thread_.joinable()) {
      thread_ = std::jthread([this](std::stop_token stop) { Run(std::move(stop)); });
    }
    cv_.wait(lock, [this] { return queued_ < kSlots; });
    // The slot after the queued ones is the submitter's until queued_ counts it: the helper
    // only touches slots_[head_] while queued_ > 0, and popping keeps head_ + queued_ the same.
    std::vector<std::byte>& slot = slots_[(head_ + queued_) % kSlots];
    lock.unlock();
    slot.assign(data.begin(), data.end());
    lock.lock();
    ++queued_;
    cv_.notify_all();
  }
  void UpdateInline(std::span<const std::byte> data) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return queued_ == 0; });
    hasher_.Update(data);
  }
  //! Waits for the queued chunks and returns the digest.
  std::string Finish() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return queued_ == 0; });
    return hasher_.Finish().sha512;
  }

 private:
  void Run(std::stop_token stop) {
    std::unique_lock lock(mu_);
    while (cv_.wait(lock, stop, [this] { return queued_ > 0; })) {
      const std::vector<std::byte>& slot = slots_[head_];
      lock.unlock();
      hasher_.Update(slot);  // slots_[head_] and hasher_ are ours while queued_ > 0
      lock.lock();
      head_ = (head_ + 1) % kSlots;
      --queued_;
      cv_.notify_all();
    }
  }

  Hasher hasher_{Hasher::Digests::kSha512Only};
  std::mutex mu_;  // guards head_ and queued_; hasher_ is the caller's only while queued_ == 0
  std::condition_variable_any cv_;
  std::array<std::vector<std::byte>, kSlots> slots_;
  size_t head_ = 0;
  size_t queued_ = 0;
  std::jthread thread_;  // started by the first Submit
};

HashingReader::HashingReader(DiskReaderPtr inner, Sha512Thread sha512_thread,
                             Hasher::Digests digests)
    : inner_(std::move(inner)),
      sha512_thread_(sha512_thread),
      sha256_on_(digests != Hasher::Digests::kSha512Only),
      sha512_on_(digests != Hasher::Digests::kSha256Only),
      cores_(std::max(1U, std::thread::hardware_concurrency())),
      sha512_(std::make_unique<Sha512Worker>()) {
  g_active_streams.fetch_add(1, std::memory_order_relaxed);
}

HashingReader::~HashingReader() { Done(); }

int HashingReader::ActiveStreams() { return g_active_streams.load(std::memory_order_relaxed); }

void HashingReader::Done() {
  if (active_) {
    active_ = false;
    g_active_streams.fetch_sub(1, std::memory_order_relaxed);
  }
}

bool HashingReader::UseHelper() const {
  switch (sha512_thread_) {
    case Sha512Thread::kNever: return false;
    case Sha512Thread::kAlways: return true;
    case Sha512Thread::kWhenCoresAreFree:
      // Each stream with a helper keeps two cores busy.
      return 2 * static_cast<unsigned>(std::max(1, ActiveStreams())) <= cores_;
  }
  return false;
}

Result<size_t> HashingReader::Read(std::stop_token stop, std::span<std::byte> out) {
  auto n = inner_->Read(stop, out);
  if (!n) {
    return n;
  }
  if (*n == 0) {
    if (!checksums_ && bytes_ == inner_->VirtualSize()) {
      checksums_ = Checksums{};
      checksums_->sha256 = sha256_on_ ? sha256_.Finish().sha256 : std::string();
      checksums_->sha512 = sha512_on_ ? sha512_->Finish() : std::string();
      checksums_->bytes = bytes_;
      Done();
    }
    return n;
  }
  const auto chunk = out.first(*n);
  if (sha512_on_ && UseHelper()) {
    sha512_->Submit(chunk);  // overlaps with the decoding of the next chunk
    ++chunks_on_helper_;
  } else if (sha512_on_) {
    sha512_->UpdateInline(chunk);
    ++chunks_inline_;
  }
  if (sha256_on_) {
    sha256_.Update(chunk);
  }
  bytes_ += *n;
  return n;
}

}  // namespace vmimport::disk
