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
//    shut down gracefully.
//  - kube-controller-manager's serviceaccount controller (until the world runs the real one): the
//    ServiceAccount "default" in every namespace, without which the API server's ServiceAccount
//    admission refuses the launcher Pod.
// virt-controller itself makes the VMI and the Pod and owns VirtualMachine.status. Test harness
// only.

#include <atomic>
#include <functional>
#include <string>

#include "core/log.h"
#include "kube/client.h"
#include "kube/informer.h"
#include "world/harvester_sim/sim_util.h"

namespace vmimport::harvester_sim {

class NodeSim {
 public:
  //! Called on the VMI worker once a VMI is reported Running (for the boot check).
  using OnRunning = std::function<void(const Json& vmi)>;

  //! `kube` must outlive the NodeSim; `stop` ends Run.
  NodeSim(kube::Client& kube, core::Logger log, const std::atomic<bool>& stop,
          std::string node_name, OnRunning on_running);
  NodeSim(const NodeSim&) = delete;
  NodeSim& operator=(const NodeSim&) = delete;

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

  kube::Client& kube_;
  core::Logger log_;
  const std::atomic<bool>& stop_;
  const std::string node_;
  OnRunning on_running_;
  kube::Informer pods_;
  kube::Informer vmis_;
  kube::Informer namespaces_;
  KeyQueue pod_queue_;
  KeyQueue vmi_queue_;
  KeyQueue namespace_queue_;
};

}  // namespace vmimport::harvester_sim
