#include "source/libvirt/bounded_call.h"

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>

namespace vmimport::source::libvirt {

namespace {

std::mutex& AbandonedMu() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, int>& AbandonedMap() {
  static std::map<std::string, int> m;
  return m;
}

// Releases still running. Never destroyed: the last release may end after main returns.
struct InFlight {
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;
};
InFlight& Releases() {
  static auto* in_flight = new InFlight;  // NOLINT(cppcoreguidelines-owning-memory)
  return *in_flight;
}

// At exit, libvirt's libraries (libssh2, OpenSSL) tear their state down: a release still inside
// libvirt then crashes. Exit waits for them, up to 10 s (a stalled peer's keepalive ends them).
void WaitForReleasesAtExit() { WaitForBackgroundReleases(std::chrono::seconds(10)); }

}  // namespace

void ReleaseInBackground(std::function<void()> release) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(WaitForReleasesAtExit); });
  InFlight& f = Releases();
  {
    std::lock_guard lock(f.mu);
    f.running++;
  }
  std::thread([release = std::move(release), &f] {
    release();
    {
      std::lock_guard lock(f.mu);
      f.running--;
    }
    f.cv.notify_all();
  }).detach();
}

bool WaitForBackgroundReleases(std::chrono::milliseconds limit) {
  InFlight& f = Releases();
  std::unique_lock lock(f.mu);
  return f.cv.wait_for(lock, limit, [&] { return f.running == 0; });
}

int AbandonedCalls(const std::string& key) {
  std::lock_guard lock(AbandonedMu());
  auto it = AbandonedMap().find(key);
  return it == AbandonedMap().end() ? 0 : it->second;
}

namespace internal {

void Abandoned(const std::string& key) {
  std::lock_guard lock(AbandonedMu());
  AbandonedMap()[key]++;
}

void AbandonedReturned(const std::string& key) {
  std::lock_guard lock(AbandonedMu());
  auto it = AbandonedMap().find(key);
  if (it != AbandonedMap().end() && --it->second <= 0) {
    AbandonedMap().erase(it);
  }
}

std::string Seconds(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

}  // namespace internal
}  // namespace vmimport::source::libvirt
