#include "controller/work_queue.h"

#include <algorithm>
#include <cmath>

namespace vmimport::controller {

using std::chrono::nanoseconds;
using std::chrono::steady_clock;

WorkQueue::WorkQueue(const core::Clock& clock, RateLimits limits)
    : clock_(clock),
      limits_(limits),
      tokens_(static_cast<double>(limits.burst)),
      tokens_at_(clock.Now()) {}

void WorkQueue::Add(const std::string& key) {
  std::lock_guard lock(mu_);
  AddLocked(key);
}

void WorkQueue::AddLocked(const std::string& key) {
  if (shutting_down_ || dirty_.contains(key)) {
    return;
  }
  dirty_.insert(key);
  if (processing_.contains(key)) {
    return;  // Done() queues it again
  }
  queue_.push_back(key);
  cv_.notify_one();
}

void WorkQueue::AddAfter(const std::string& key, nanoseconds delay) {
  if (delay <= nanoseconds::zero()) {
    Add(key);
    return;
  }
  std::lock_guard lock(mu_);
  if (shutting_down_) {
    return;
  }
  const steady_clock::time_point ready = clock_.Now() + delay;
  if (auto it = delayed_.find(key); it != delayed_.end()) {
    if (it->second <= ready) {
      return;  // already due earlier
    }
    delayed_by_time_.erase({it->second, key});
    it->second = ready;
  } else {
    delayed_.emplace(key, ready);
  }
  delayed_by_time_.emplace(ready, key);
  cv_.notify_all();  // a waiter may need an earlier wake-up
}

nanoseconds WorkQueue::When(const std::string& key) {
  std::lock_guard lock(mu_);
  // Per-key exponential backoff: base * 2^failures, capped.
  const int failures = failures_[key]++;
  const double exp = static_cast<double>(limits_.base_delay.count()) *
                     std::pow(2.0, static_cast<double>(std::min(failures, 62)));
  const nanoseconds per_key = exp >= static_cast<double>(limits_.max_delay.count())
                                  ? limits_.max_delay
                                  : nanoseconds(static_cast<nanoseconds::rep>(exp));
  // Global token bucket: take a token, wait for it if the bucket is empty.
  const steady_clock::time_point now = clock_.Now();
  const double elapsed = std::chrono::duration<double>(now - tokens_at_).count();
  tokens_ = std::min(static_cast<double>(limits_.burst), tokens_ + elapsed * limits_.qps);
  tokens_at_ = now;
  tokens_ -= 1.0;
  nanoseconds bucket{0};
  if (tokens_ < 0) {
    bucket = std::chrono::duration_cast<nanoseconds>(
        std::chrono::duration<double>(-tokens_ / limits_.qps));
  }
  return std::max(per_key, bucket);
}

void WorkQueue::AddRateLimited(const std::string& key) { AddAfter(key, When(key)); }

void WorkQueue::Forget(const std::string& key) {
  std::lock_guard lock(mu_);
  failures_.erase(key);
}

int WorkQueue::NumRequeues(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

void WorkQueue::PromoteDueLocked() {
  const steady_clock::time_point now = clock_.Now();
  while (!delayed_by_time_.empty() && delayed_by_time_.begin()->first <= now) {
    const std::string key = delayed_by_time_.begin()->second;
    delayed_by_time_.erase(delayed_by_time_.begin());
    delayed_.erase(key);
    AddLocked(key);
  }
}

std::optional<std::string> WorkQueue::Get(std::stop_token stop) {
  std::unique_lock lock(mu_);
  while (true) {
    if (shutting_down_ || stop.stop_requested()) {
      return std::nullopt;
    }
    PromoteDueLocked();
    if (!queue_.empty()) {
      std::string key = std::move(queue_.front());
      queue_.pop_front();
      processing_.insert(key);
      dirty_.erase(key);
      return key;
    }
    if (delayed_by_time_.empty()) {
      cv_.wait(lock, stop, [this] { return shutting_down_ || !queue_.empty(); });
    } else {
      // Wait in real time for as long as the (possibly fake) clock says is left; Tick() and
      // new adds wake us earlier.
      const nanoseconds left = delayed_by_time_.begin()->first - clock_.Now();
      cv_.wait_for(lock, stop, std::max(left, nanoseconds(0)),
                   [this] { return shutting_down_ || !queue_.empty(); });
    }
  }
}

void WorkQueue::Done(const std::string& key) {
  std::lock_guard lock(mu_);
  processing_.erase(key);
  if (dirty_.contains(key) && !shutting_down_) {
    queue_.push_back(key);
    cv_.notify_one();
  }
}

void WorkQueue::ShutDown() {
  std::lock_guard lock(mu_);
  shutting_down_ = true;
  cv_.notify_all();
}

bool WorkQueue::ShuttingDown() const {
  std::lock_guard lock(mu_);
  return shutting_down_;
}

size_t WorkQueue::Len() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

size_t WorkQueue::DelayedLen() const {
  std::lock_guard lock(mu_);
  return delayed_.size();
}

void WorkQueue::Tick() {
  std::lock_guard lock(mu_);
  PromoteDueLocked();
  cv_.notify_all();
}

}  // namespace vmimport::controller
