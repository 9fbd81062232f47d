#pragma once

// Time as a dependency: code that waits or backs off takes a Clock so tests can move time by hand.

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>

namespace vmimport::core {

class Clock {
 public:
  virtual ~Clock() = default;
  //! Monotonic time, for deadlines and backoff.
  virtual std::chrono::steady_clock::time_point Now() const = 0;
  //! Wall-clock time, for timestamps written to objects.
  virtual std::chrono::system_clock::time_point WallNow() const = 0;
};

class SystemClock final : public Clock {
 public:
  // core::Clock
  std::chrono::steady_clock::time_point Now() const override {
    return std::chrono::steady_clock::now();
  }
  std::chrono::system_clock::time_point WallNow() const override {
    return std::chrono::system_clock::now();
  }
};

//! A clock that moves only when told to; thread-safe.
class FakeClock final : public Clock {
 public:
  FakeClock() : wall_(std::chrono::sys_days{std::chrono::year{2026} / 1 / 1}) {}
  // core::Clock
  std::chrono::steady_clock::time_point Now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  std::chrono::system_clock::time_point WallNow() const override {
    std::lock_guard lock(mu_);
    return wall_;
  }
  void Advance(std::chrono::nanoseconds d) {
    std::lock_guard lock(mu_);
    now_ += d;
    wall_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
  }

 private:
  mutable std::mutex mu_;  // guards now_, wall_
  std::chrono::steady_clock::time_point now_{};
  std::chrono::system_clock::time_point wall_;
};

//! RFC 3339 in UTC with seconds ("2026-11-24T05:46:25Z"), as Kubernetes writes metav1.Time.
std::string FormatRfc3339(std::chrono::system_clock::time_point t);
//! RFC 3339 with microseconds ("2026-11-24T05:46:25.123456Z"), as metav1.MicroTime.
std::string FormatRfc3339Micro(std::chrono::system_clock::time_point t);
//! Parses both forms (and a numeric offset); false on anything else.
bool ParseRfc3339(std::string_view text, std::chrono::system_clock::time_point& out);

}  // namespace vmimport::core
