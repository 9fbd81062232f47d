#include "kube/leader_election.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include "core/json.h"

namespace vmimport::kube {
namespace {

const Resource kLeases{"coordination.k8s.io", "v1", "leases", true};

void SleepFor(std::stop_token stop, std::chrono::milliseconds d) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_for(lock, stop, d, [] { return false; });
}

}  // namespace

LeaderElector::LeaderElector(Client& client, LeaderElectionConfig config, const core::Clock& clock,
                             const core::Logger& log)
    : client_(client),
      config_(std::move(config)),
      clock_(clock),
      log_(log.With({{"lease", config_.lease_namespace + "/" + config_.lease_name},
                     {"identity", config_.identity}})) {}

bool LeaderElector::TryAcquireOrRenew(std::stop_token stop) {
  const std::string now = core::FormatRfc3339Micro(clock_.WallNow());
  auto current = client_.Get(stop, kLeases, config_.lease_namespace, config_.lease_name);
  if (!current) {
    if (!IsNotFound(current.error())) {
      log_.Warn("cannot read lease", {{"error", current.error().message}});
      return false;
    }
    Json lease = {
        {"apiVersion", "coordination.k8s.io/v1"},
        {"kind", "Lease"},
        {"metadata", {{"name", config_.lease_name}, {"namespace", config_.lease_namespace}}},
        {"spec",
         {{"holderIdentity", config_.identity},
          {"leaseDurationSeconds", config_.lease_duration.count()},
          {"acquireTime", now},
          {"renewTime", now},
          {"leaseTransitions", 0}}}};
    auto created = client_.Create(stop, kLeases, config_.lease_namespace, lease);
    if (!created) {
      return false;  // somebody else created it first
    }
    observed_holder_ = config_.identity;
    observed_renew_time_ = now;
    observed_at_ = clock_.Now();
    return true;
  }
  Json lease = *current;
  if (!lease.is_object()) {
    return false;  // not a Lease: nothing to take over
  }
  Json& spec = lease["spec"];
  if (!spec.is_object()) {
    spec = Json::object();
  }
  const std::string holder = core::JsonString(spec, "holderIdentity");
  const std::string renew_time = core::JsonString(spec, "renewTime");
  if (holder != observed_holder_ || renew_time != observed_renew_time_) {
    observed_holder_ = holder;
    observed_renew_time_ = renew_time;
    observed_at_ = clock_.Now();
  }
  const auto duration = std::chrono::seconds(
      core::JsonInt(spec, "leaseDurationSeconds").value_or(config_.lease_duration.count()));
  if (!holder.empty() && holder != config_.identity && clock_.Now() < observed_at_ + duration) {
    return false;  // held by a live leader
  }
  if (holder != config_.identity) {
    spec["acquireTime"] = now;
    spec["leaseTransitions"] = core::JsonInt(spec, "leaseTransitions").value_or(0) + 1;
  }
  spec["holderIdentity"] = config_.identity;
  spec["leaseDurationSeconds"] = config_.lease_duration.count();
  spec["renewTime"] = now;
  auto updated = client_.Update(stop, kLeases, config_.lease_namespace, lease);  // conditional
  if (!updated) {
    if (updated.error().code != core::ErrorCode::kConflict) {
      log_.Warn("cannot update lease", {{"error", updated.error().message}});
    }
    return false;
  }
  observed_holder_ = config_.identity;
  observed_renew_time_ = now;
  observed_at_ = clock_.Now();
  return true;
}

void LeaderElector::Release(std::stop_token stop) {
  auto current = client_.Get(stop, kLeases, config_.lease_namespace, config_.lease_name);
  if (!current ||
      core::JsonString(core::JsonObject(*current, "spec"), "holderIdentity") != config_.identity) {
    return;
  }
  Json lease = *current;
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["renewTime"] = core::FormatRfc3339Micro(clock_.WallNow());
  if (auto r = client_.Update(stop, kLeases, config_.lease_namespace, lease); r) {
    log_.Info("released leadership");
  }
}

bool LeaderElector::Run(std::stop_token stop, const std::function<void(std::stop_token)>& lead) {
  const auto retry = std::chrono::duration_cast<std::chrono::milliseconds>(config_.retry_period);
  log_.Info("waiting for leadership");
  while (!stop.stop_requested() && !TryAcquireOrRenew(stop)) {
    SleepFor(stop, retry);
  }
  if (stop.stop_requested()) {
    return false;
  }
  leader_ = true;
  log_.Info("became leader");
  std::stop_source leading;
  std::stop_callback forward(stop, [&leading] { leading.request_stop(); });
  std::jthread worker([&lead, token = leading.get_token()] { lead(token); });

  auto last_renew = clock_.Now();
  while (!leading.stop_requested()) {
    SleepFor(leading.get_token(), retry);
    if (leading.stop_requested()) {
      break;
    }
    if (TryAcquireOrRenew({})) {
      last_renew = clock_.Now();
      continue;
    }
    if (clock_.Now() - last_renew > config_.renew_deadline) {
      log_.Error("lost leadership: could not renew the lease in time",
                 {{"renew_deadline_s", static_cast<long>(config_.renew_deadline.count())}});
      leading.request_stop();
    }
  }
  worker.join();
  leader_ = false;
  if (stop.stop_requested()) {
    Release({});
  }
  return true;
}

}  // namespace vmimport::kube
