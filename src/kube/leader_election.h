#pragma once

// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: a candidate takes the
// lease when it is free or its holder has not renewed it for lease_duration (judged by the local
// clock from when this candidate last saw the record change, so clock skew between hosts does
// not matter); the leader renews every retry_period and gives up when it could not renew for
// renew_deadline. On a clean stop the leader releases the lease so a successor starts at once.

#include <atomic>
#include <chrono>
#include <functional>
#include <stop_token>
#include <string>

#include "core/clock.h"
#include "core/log.h"
#include "kube/client.h"

namespace vmimport::kube {

struct LeaderElectionConfig {
  std::string lease_namespace;
  std::string lease_name;
  std::string identity;  //!< unique per process, e.g. hostname + "_" + random
  std::chrono::seconds lease_duration{15};
  std::chrono::seconds renew_deadline{10};
  std::chrono::seconds retry_period{2};
};

class LeaderElector {
 public:
  LeaderElector(Client& client, LeaderElectionConfig config, const core::Clock& clock,
                const core::Logger& log);

  //! Campaigns until leadership is won, then calls `lead` with a token that is stopped when
  //! leadership is lost or `stop` is requested, and keeps renewing while `lead` runs on its own
  //! thread. Returns when leadership ends (after releasing the lease on a clean stop).
  //! Returns true if this process led at some point.
  bool Run(std::stop_token stop, const std::function<void(std::stop_token)>& lead);

  bool IsLeader() const { return leader_.load(); }
  //! One acquire-or-renew round (public for tests). True when this candidate holds the lease.
  bool TryAcquireOrRenew(std::stop_token stop);
  //! Gives the lease up if held (holderIdentity cleared, duration 1 s).
  void Release(std::stop_token stop);

 private:
  Client& client_;
  const LeaderElectionConfig config_;
  const core::Clock& clock_;
  core::Logger log_;
  std::atomic<bool> leader_{false};
  // What this candidate last saw, and when (local monotonic clock).
  std::string observed_holder_;
  std::string observed_renew_time_;
  std::chrono::steady_clock::time_point observed_at_{};
};

}  // namespace vmimport::kube
