#pragma once

// Blocking libvirt calls with a deadline and a prompt cancel. libvirt's client calls block until
// the peer answers: a libvirtd that accepted TCP and then stalls holds the caller until libvirt's
// keepalive (connection.h) closes the connection, and virConnectOpenAuth has no keepalive at all
// until it returns (its TLS handshake waits for ever). RunBounded runs such a call on a thread of
// its own and waits for it up to a deadline or a stop; a call that does not return in time is
// abandoned: it finishes on its thread, and what it made (a connection, a stream) is released
// there. At most kMaxAbandoned calls per key (a host) are abandoned at once: past that, calls to
// the same host fail at once, so a stalled host costs a bounded number of threads.
//
// ReleaseInBackground runs a release (virStreamAbort, virConnectClose: each a round trip to the
// peer) on a detached thread, so that dropping a handle never blocks the caller on a stalled peer.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

#include "core/result.h"

namespace vmimport::source::libvirt {

inline constexpr int kMaxAbandoned = 4;

//! Runs `release` on a detached thread of its own. Safe from any thread. The process waits for
//! releases still running at exit (up to 10 s).
void ReleaseInBackground(std::function<void()> release);

//! Waits until no release runs, up to `limit`; false when some still run.
bool WaitForBackgroundReleases(std::chrono::milliseconds limit);

//! Calls to `key` abandoned by RunBounded that have not returned yet.
int AbandonedCalls(const std::string& key);

namespace internal {
void Abandoned(const std::string& key);
void AbandonedReturned(const std::string& key);
std::string Seconds(std::chrono::milliseconds d);
}  // namespace internal

//! Runs `fn` on a new thread and returns its result, or: kCancelled when `stop` is requested,
//! kUnavailable "libvirt: <what> timed out after N s" when `timeout` passes first, kUnavailable
//! "... calls have not returned" when `key` has kMaxAbandoned abandoned calls. `fn` must own
//! (capture by value) all it uses: it may outlive the caller. Thread-safe.
template <class T>
core::Result<T> RunBounded(std::stop_token stop, std::chrono::milliseconds timeout,
                           const std::string& key, const std::string& what,
                           std::function<core::Result<T>()> fn) {
  struct State {
    std::mutex mu;
    std::condition_variable_any cv;
    std::optional<core::Result<T>> result;
    bool abandoned = false;
  };
  if (stop.stop_requested()) {
    return core::MakeError(core::ErrorCode::kCancelled, "libvirt: " + what + " cancelled");
  }
  if (AbandonedCalls(key) >= kMaxAbandoned) {
    return core::MakeError(core::ErrorCode::kUnavailable,
                           "libvirt: " + what + ": " + std::to_string(kMaxAbandoned) +
                               " earlier calls to " + key +
                               " have not returned (the peer does not answer)");
  }
  auto state = std::make_shared<State>();
  std::thread([state, key, fn = std::move(fn)]() mutable {
    core::Result<T> r = fn();
    std::lock_guard lock(state->mu);
    if (state->abandoned) {
      internal::AbandonedReturned(key);
      return;  // r (a connection, a stream) is released here, on this thread
    }
    state->result.emplace(std::move(r));
    state->cv.notify_all();
  }).detach();
  std::unique_lock lock(state->mu);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  state->cv.wait_until(lock, stop, deadline, [&] { return state->result.has_value(); });
  if (state->result) {
    return std::move(*state->result);
  }
  internal::Abandoned(key);
  state->abandoned = true;
  if (stop.stop_requested()) {
    return core::MakeError(core::ErrorCode::kCancelled, "libvirt: " + what + " cancelled");
  }
  return core::MakeError(core::ErrorCode::kUnavailable, "libvirt: " + what + " timed out after " +
                                                            internal::Seconds(timeout) + ": " +
                                                            key + " does not answer");
}

}  // namespace vmimport::source::libvirt
