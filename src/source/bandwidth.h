#pragma once

// A bandwidth cap shared by every disk stream of one source (issue 23): unlike
// --stream-rate-limit (each stream on its own), N streams of a source together stay under the
// source's cap, however many imports run. A token bucket in its GCRA form: each read reserves
// its bytes on one timeline (the "theoretical arrival time"), so concurrent streams queue in the
// order they asked and share the cap evenly; a burst of `burst` seconds' worth may pass at once.
//
// Thread-safe. Time comes from an injected Clock and waits from an injected sleeper, so the
// unit tests move time by hand.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>

#include "core/clock.h"
#include "disk/byte_source.h"

namespace vmimport::source {

class SharedBandwidth {
 public:
  //! Waits `d` unless `stop` is requested first.
  using Sleeper = std::function<void(std::stop_token stop, std::chrono::nanoseconds d)>;

  //! `bytes_per_second` <= 0: no cap. `clock` must outlive the limiter; an empty `sleep` sleeps
  //! for real in steps of at most 50 ms that notice stop.
  SharedBandwidth(double bytes_per_second, const core::Clock& clock, Sleeper sleep = {},
                  std::chrono::milliseconds burst = std::chrono::milliseconds(100));

  //! Changes the cap (the source object was edited); reservations already made stand.
  void SetRate(double bytes_per_second);
  double rate() const;

  //! Accounts `bytes` that were read and waits until the cap allows them. False when `stop` was
  //! requested before the wait ended (the bytes still count).
  bool Acquire(std::stop_token stop, uint64_t bytes);

  //! Bytes that passed so far, over every stream.
  uint64_t bytes() const;
  //! Streams reading through the limiter now (see SharedRateLimitedSource).
  int streams() const;
  void AddStream(int delta);

 private:
  const core::Clock& clock_;
  Sleeper sleep_;
  const std::chrono::nanoseconds burst_;
  mutable std::mutex mu_;  // guards the fields below
  double rate_ = 0;
  std::chrono::steady_clock::time_point tat_{};  // theoretical arrival time of the next byte
  uint64_t bytes_ = 0;
  int streams_ = 0;
};

//! Reads `source` through `limiter`, in pieces of at most a twentieth of a second's worth, so
//! that streams interleave finely.
class SharedRateLimitedSource final : public disk::ByteSource {
 public:
  SharedRateLimitedSource(disk::ByteSourcePtr source, std::shared_ptr<SharedBandwidth> limiter);
  ~SharedRateLimitedSource() override;
  SharedRateLimitedSource(const SharedRateLimitedSource&) = delete;
  SharedRateLimitedSource& operator=(const SharedRateLimitedSource&) = delete;

  // disk::ByteSource
  core::Result<size_t> Read(std::stop_token stop, std::span<std::byte> out) override;

 private:
  disk::ByteSourcePtr source_;
  std::shared_ptr<SharedBandwidth> limiter_;
};

//! The limiters of every source, by key ("kind/namespace/name"). Thread-safe.
class BandwidthRegistry {
 public:
  explicit BandwidthRegistry(const core::Clock& clock) : clock_(clock) {}
  //! The limiter of `key` with its cap set to `bytes_per_second`; null when that is <= 0 (no
  //! cap: the streams read freely).
  std::shared_ptr<SharedBandwidth> For(const std::string& key, double bytes_per_second);
  //! Every limiter made so far, for metrics.
  std::map<std::string, std::shared_ptr<SharedBandwidth>> All() const;

 private:
  const core::Clock& clock_;
  mutable std::mutex mu_;  // guards limiters_
  std::map<std::string, std::shared_ptr<SharedBandwidth>> limiters_;
};

}  // namespace vmimport::source
