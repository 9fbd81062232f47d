#include "source/libvirt/bounded_call.h"

#include <cstdio>
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

}  // namespace

void ReleaseInBackground(std::function<void()> release) {
  std::thread([release = std::move(release)] { release(); }).detach();
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
