#include "source/bandwidth.h"

#include <algorithm>
#include <condition_variable>
#include <thread>

namespace vmimport::source {
namespace {

void RealSleep(std::stop_token stop, std::chrono::nanoseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!stop.stop_requested() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        until - std::chrono::steady_clock::now(), std::chrono::milliseconds(50)));
  }
}

}  // namespace

SharedBandwidth::SharedBandwidth(double bytes_per_second, const core::Clock& clock, Sleeper sleep,
                                 std::chrono::milliseconds burst)
    : clock_(clock),
      sleep_(sleep ? std::move(sleep) : Sleeper(RealSleep)),
      burst_(burst),
      rate_(bytes_per_second) {}

void SharedBandwidth::SetRate(double bytes_per_second) {
  std::lock_guard lock(mu_);
  rate_ = bytes_per_second;
}

double SharedBandwidth::rate() const {
  std::lock_guard lock(mu_);
  return rate_;
}

uint64_t SharedBandwidth::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

int SharedBandwidth::streams() const {
  std::lock_guard lock(mu_);
  return streams_;
}

void SharedBandwidth::AddStream(int delta) {
  std::lock_guard lock(mu_);
  streams_ += delta;
}

bool SharedBandwidth::Acquire(std::stop_token stop, uint64_t bytes) {
  std::chrono::steady_clock::time_point due;
  std::chrono::steady_clock::time_point now;
  {
    std::lock_guard lock(mu_);
    bytes_ += bytes;
    if (rate_ <= 0) {
      return true;
    }
    now = clock_.Now();
    // GCRA: the bytes are scheduled after everything reserved before them (or now, when the
    // line is empty); they may pass once their time is at most `burst` ahead of now.
    tat_ = std::max(tat_, now) +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(
               std::chrono::duration<double>(static_cast<double>(bytes) / rate_));
    due = tat_ - burst_;
  }
  if (due > now) {
    sleep_(stop, due - now);
  }
  return !stop.stop_requested();
}

SharedRateLimitedSource::SharedRateLimitedSource(disk::ByteSourcePtr source,
                                                 std::shared_ptr<SharedBandwidth> limiter)
    : source_(std::move(source)), limiter_(std::move(limiter)) {
  limiter_->AddStream(1);
}

SharedRateLimitedSource::~SharedRateLimitedSource() { limiter_->AddStream(-1); }

core::Result<size_t> SharedRateLimitedSource::Read(std::stop_token stop, std::span<std::byte> out) {
  const double rate = limiter_->rate();
  const size_t chunk =
      rate > 0 ? std::max<size_t>(4096, static_cast<size_t>(rate / 20)) : out.size();
  auto n = source_->Read(stop, out.first(std::min(out.size(), chunk)));
  if (!n || *n == 0) {
    return n;
  }
  if (!limiter_->Acquire(stop, *n)) {
    return disk::CancelledError();
  }
  return n;
}

std::shared_ptr<SharedBandwidth> BandwidthRegistry::For(const std::string& key,
                                                        double bytes_per_second) {
  std::lock_guard lock(mu_);
  auto it = limiters_.find(key);
  if (bytes_per_second <= 0) {
    if (it != limiters_.end()) {
      it->second->SetRate(0);  // streams already open read freely from now on
    }
    return nullptr;
  }
  if (it == limiters_.end()) {
    it = limiters_.emplace(key, std::make_shared<SharedBandwidth>(bytes_per_second, clock_)).first;
  } else {
    it->second->SetRate(bytes_per_second);
  }
  return it->second;
}

std::map<std::string, std::shared_ptr<SharedBandwidth>> BandwidthRegistry::All() const {
  std::lock_guard lock(mu_);
  return limiters_;
}

}  // namespace vmimport::source
