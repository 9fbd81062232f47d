#pragma once

// The node side of a KubeVirt cluster, which cannot run in the test world (no launcher image, no
// libvirt in a pod), played against the real kube-apiserver and the real virt-controller:
//  - kube-scheduler: binds each virt-launcher Pod virt-controller creates to the one node;
//  - kubelet: registers that Node (tainted harvester-sim.vm-import.test/simulated:NoSchedule, so
//    that the world's real kube-scheduler, when tools/world.sh node runs one, puts nothing there:
//    it binds the launcher Pods itself) and renews its node Lease, reports a bound launcher Pod
//    Running with its containers ready (Ready once every readiness gate virt-controller sets is
//    True, as the kubelet computes it), and finishes the deletion of a launcher Pod (a bound Pod is
//    only removed once its kubelet confirms);
//  - virt-handler: keeps the node's heartbeat and schedulable label, takes a VMI virt-controller
//    handed over (phase Scheduled on this node) to Running with the status virt-handler reports
//    (interfaces, machine), and ends it (Succeeded) when it is deleted or its Pod goes, as a guest
//    shut down gracefully. With a boot check (the simulator's --boot-dir), the VMI is reported
//    Running only once the guest booted (boot_check.h: qemu from the VirtualMachine's spec, the
//    marker on its console); a guest that does not boot leaves the VMI Failed (reason
//    BootFailed) with a Warning Event holding the console's tail. A VM's guest is booted once:
//    the VMIs virt-controller makes again for it (RerunOnFailure) get the same outcome.
//  - kube-controller-manager's serviceaccount controller (until the world runs the real one): the
//    ServiceAccount "default" in every namespace, without which the API server's ServiceAccount
//    admission refuses the launcher Pod.
// virt-controller itself makes the VMI and the Pod and owns VirtualMachine.status. Test harness
// only.

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"
#include "kube/client.h"
#include "kube/informer.h"
#include "world/harvester_sim/sim_util.h"

namespace vmimport::harvester_sim {

class NodeSim {
 public:
  struct BootResult {
    bool booted = false;
    std::string reason;   //!< why not (one line)
    std::string message;  //!< the Event's message: the marker line, or the console's tail
  };
  //! Boots the guest of a Scheduled VMI; runs on a thread of its own, may block for minutes and
  //! must return soon after `stop`. Empty: no boot check (the VMI runs at once).
  using BootCheck = std::function<BootResult(std::stop_token stop, const Json& vmi)>;

  //! `kube` must outlive the NodeSim; `stop` ends Run.
  NodeSim(kube::Client& kube, core::Logger log, const std::atomic<bool>& stop,
          std::string node_name);
  NodeSim(const NodeSim&) = delete;
  NodeSim& operator=(const NodeSim&) = delete;

  //! Turns the boot check on; call before Run.
  void SetBootCheck(BootCheck boot_check) { boot_check_ = std::move(boot_check); }

  //! Registers the node, then plays its parts until `stop`. Blocks.
  void Run();

 private:
  void RegisterNode();
  void Heartbeat();
  //! kube-node-lease/<node>: what kube-controller-manager's node lifecycle controller reads.
  void RenewLease();
  void SyncPod(const std::string& key);
  void SyncVmi(const std::string& key);
  void EnsureDefaultServiceAccount(const std::string& ns);
  //! Queues the VMI a launcher Pod belongs to (virt-handler watches both).
  void EnqueueVmiOf(const Json& pod);
  //! The launcher Pod of `vmi` (label kubevirt.io/created-by = its uid) from the cache, if any.
  std::optional<Json> LauncherPodOf(const Json& vmi) const;
  Json RunningPodStatus(const Json& pod) const;
  //! The boot outcome of `vmi`'s guest: nullopt while it boots (started here on first call).
  std::optional<BootResult> BootOutcomeOf(const Json& vmi, const std::string& key);
  void RecordVmiEvent(const Json& vmi, const std::string& type, const std::string& reason,
                      const std::string& message);

  kube::Client& kube_;
  core::Logger log_;
  const std::atomic<bool>& stop_;
  const std::string node_;
  BootCheck boot_check_;
  kube::Informer pods_;
  kube::Informer vmis_;
  kube::Informer namespaces_;
  KeyQueue pod_queue_;
  KeyQueue vmi_queue_;
  KeyQueue namespace_queue_;
  std::mutex boot_mu_;
  //! Boot outcomes by the VMI's owner (the VirtualMachine's uid); absent = not started, nullopt
  //! = booting. Guarded by boot_mu_.
  std::map<std::string, std::optional<BootResult>> boots_;
  std::vector<std::jthread> boot_threads_;  // last: stopped and joined first
};

}  // namespace vmimport::harvester_sim
