#include "world/harvester_sim/node_sim.h"

#include <chrono>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace vmimport::harvester_sim {
namespace {

using namespace std::chrono_literals;

const kube::Resource kNodes{"", "v1", "nodes", false};
const kube::Resource kPods{"", "v1", "pods", true};
const kube::Resource kVmis{"kubevirt.io", "v1", "virtualmachineinstances", true};
const kube::Resource kNamespaces{"", "v1", "namespaces", false};
const kube::Resource kServiceAccounts{"", "v1", "serviceaccounts", true};
const kube::Resource kLeases{"coordination.k8s.io", "v1", "leases", true};

// KubeVirt's names (kubevirt.io/api core/v1).
constexpr const char* kAppLabel = "kubevirt.io";                   // = "virt-launcher" on Pods
constexpr const char* kCreatedByLabel = "kubevirt.io/created-by";  // the VMI's uid
constexpr const char* kSchedulableLabel = "kubevirt.io/schedulable";
constexpr const char* kHeartbeatAnnotation = "kubevirt.io/heartbeat";
constexpr auto kHeartbeatEvery = 60s;  // virt-handler's default; virt-controller waits 5 min
// The kubelet's node lease (kube-node-lease/<node>), renewed every 10 s for 40 s as the kubelet
// does: with the world's real node up, kube-controller-manager's node lifecycle controller marks a
// node without a fresh lease NotReady, taints it and evicts its Pods.
constexpr const char* kNodeLeaseNamespace = "kube-node-lease";
constexpr auto kLeaseRenewEvery = 10s;
constexpr int kLeaseDurationSeconds = 40;
// Keeps everything but the launcher Pods (which this node binds itself) off the simulated node
// when the world's real kube-scheduler runs (tools/world.sh node up): they could never run here.
constexpr const char* kSimulatedTaint = "harvester-sim.vm-import.test/simulated";

//! metav1.MicroTime's format (RFC 3339 with 6 fractional digits), which a Lease's times need.
std::string NowMicro() {
  std::string t = Now();
  if (!t.empty() && t.back() == 'Z' && t.find('.') == std::string::npos) {
    t.insert(t.size() - 1, ".000000");
  }
  return t;
}

Json SimulatedTaints() {
  return Json::array({{{"key", kSimulatedTaint}, {"value", "true"}, {"effect", "NoSchedule"}}});
}

//! Sets (or adds) a Pod condition; true when its status changed.
bool SetPodCondition(Json& conditions, const std::string& type, bool value,
                     const std::string& now) {
  const std::string status = value ? "True" : "False";
  for (Json& c : conditions) {
    if (c.value("type", "") == type) {
      if (c.value("status", "") == status) {
        return false;
      }
      c["status"] = status;
      c["lastTransitionTime"] = now;
      return true;
    }
  }
  conditions.push_back({{"type", type}, {"status", status}, {"lastTransitionTime", now}});
  return true;
}

bool ConditionTrue(const Json& conditions, const std::string& type) {
  for (const Json& c : conditions) {
    if (c.value("type", "") == type) {
      return c.value("status", "") == "True";
    }
  }
  return false;
}

}  // namespace

NodeSim::NodeSim(kube::Client& kube, core::Logger log, const std::atomic<bool>& stop,
                 std::string node_name, OnRunning on_running)
    : kube_(kube),
      log_(std::move(log)),
      stop_(stop),
      node_(std::move(node_name)),
      on_running_(std::move(on_running)),
      pods_(kube, kPods, "", log_,
            kube::InformerOptions{.label_selector = std::string(kAppLabel) + "=virt-launcher"}),
      vmis_(kube, kVmis, "", log_),
      namespaces_(kube, kNamespaces, "", log_, kube::InformerOptions{.metadata_only = true}),
      pod_queue_(stop),
      vmi_queue_(stop),
      namespace_queue_(stop) {
  namespaces_.AddHandlers({.on_add = [this](const Json& o) { namespace_queue_.Add(NameOf(o)); }});
  pods_.AddHandlers({.on_add = [this](const Json& o) { pod_queue_.Add(kube::ObjectKeyOf(o)); },
                     .on_update =
                         [this](const Json&, const Json& o) {
                           pod_queue_.Add(kube::ObjectKeyOf(o));
                           EnqueueVmiOf(o);  // the VMI follows its Pod (Ready, gone)
                         },
                     .on_delete = [this](const Json& o) { EnqueueVmiOf(o); }});
  vmis_.AddHandlers(
      {.on_add = [this](const Json& o) { vmi_queue_.Add(kube::ObjectKeyOf(o)); },
       .on_update = [this](const Json&, const Json& o) { vmi_queue_.Add(kube::ObjectKeyOf(o)); }});
}

void NodeSim::Run() {
  RegisterNode();
  pods_.Start();
  vmis_.Start();
  namespaces_.Start();
  {
    std::vector<std::jthread> threads;
    threads.emplace_back([this] {
      std::string ns;
      while (namespace_queue_.Take(ns)) {
        if (!ns.empty()) {
          EnsureDefaultServiceAccount(ns);
          ns.clear();
        }
      }
    });
    threads.emplace_back([this] {
      std::string key;
      while (pod_queue_.Take(key)) {
        if (!key.empty()) {
          SyncPod(key);
          key.clear();
        }
      }
    });
    threads.emplace_back([this] {
      std::string key;
      while (vmi_queue_.Take(key)) {
        if (!key.empty()) {
          SyncVmi(key);
          key.clear();
        }
      }
    });
    threads.emplace_back([this] {
      auto next = std::chrono::steady_clock::now() + kHeartbeatEvery;
      auto next_lease = std::chrono::steady_clock::now() + kLeaseRenewEvery;
      while (!stop_) {
        std::this_thread::sleep_for(200ms);
        if (std::chrono::steady_clock::now() >= next) {
          Heartbeat();
          next = std::chrono::steady_clock::now() + kHeartbeatEvery;
        }
        if (std::chrono::steady_clock::now() >= next_lease) {
          RenewLease();
          next_lease = std::chrono::steady_clock::now() + kLeaseRenewEvery;
        }
      }
    });
  }  // joins once stop_ is set
  pods_.Stop();
  vmis_.Stop();
  namespaces_.Stop();
}

// --- kube-controller-manager: ServiceAccount "default" ------------------------------------------

void NodeSim::EnsureDefaultServiceAccount(const std::string& ns) {
  auto ns_obj = namespaces_.Get(ns);
  if (!ns_obj || IsDeleting(*ns_obj)) {
    return;
  }
  const Json sa = {{"apiVersion", "v1"},
                   {"kind", "ServiceAccount"},
                   {"metadata", {{"name", "default"}, {"namespace", ns}}}};
  auto r = kube_.Create({}, kServiceAccounts, ns, sa);
  if (!r && r.error().code != core::ErrorCode::kAlreadyExists &&
      r.error().code != core::ErrorCode::kPermissionDenied) {  // 403 while the namespace ends
    log_.Warn("creating the default ServiceAccount failed",
              {{"namespace", ns}, {"error", r.error().ToString()}});
    namespace_queue_.AddAfter(ns, 1s);
  }
}

// --- kubelet: the Node ---------------------------------------------------------------------------

void NodeSim::RegisterNode() {
  const Json node = {{"apiVersion", "v1"},
                     {"kind", "Node"},
                     {"metadata",
                      {{"name", node_},
                       {"labels",
                        {{"kubernetes.io/hostname", node_},
                         {"kubernetes.io/os", "linux"},
                         {"kubernetes.io/arch", "amd64"},
                         {kSchedulableLabel, "true"}}},
                       {"annotations", {{kHeartbeatAnnotation, Now()}}}}},
                     {"spec", {{"taints", SimulatedTaints()}}}};
  for (int attempt = 0; !stop_; ++attempt) {
    auto created = kube_.Create({}, kNodes, "", node);
    if (created) {
      break;
    }
    if (created.error().code == core::ErrorCode::kAlreadyExists) {
      // A node an earlier simulator registered: the taints as a new one would have them (this
      // also drops the node lifecycle controller's unreachable taints; it adds them again if the
      // lease stays old).
      if (auto r =
              kube_.MergePatch({}, kNodes, "", node_, {{"spec", {{"taints", SimulatedTaints()}}}});
          !r) {
        log_.Warn("tainting the node failed", {{"node", node_}, {"error", r.error().ToString()}});
      }
      break;
    }
    log_.Warn("registering the node failed",
              {{"node", node_}, {"error", created.error().ToString()}});
    std::this_thread::sleep_for(1s);
  }
  const Json capacity = {{"cpu", "2"},
                         {"memory", "24Gi"},
                         {"pods", "110"},
                         {"ephemeral-storage", "100Gi"},
                         {"devices.kubevirt.io/kvm", "1k"},
                         {"devices.kubevirt.io/tun", "1k"},
                         {"devices.kubevirt.io/vhost-net", "1k"}};
  const std::string now = Now();
  const Json status = {{"status",
                        {{"capacity", capacity},
                         {"allocatable", capacity},
                         {"addresses", {{{"type", "Hostname"}, {"address", node_}}}},
                         {"conditions",
                          {{{"type", "Ready"},
                            {"status", "True"},
                            {"reason", "KubeletReady"},
                            {"message", "harvester-sim plays this node's kubelet"},
                            {"lastHeartbeatTime", now},
                            {"lastTransitionTime", now}}}},
                         {"nodeInfo", {{"operatingSystem", "linux"}, {"architecture", "amd64"}}}}}};
  if (auto r = kube_.MergePatch({}, kNodes, "", node_, status, "status"); !r) {
    log_.Warn("node status failed", {{"node", node_}, {"error", r.error().ToString()}});
  }
  RenewLease();
  log_.Info("node registered", {{"node", node_}});
}

void NodeSim::RenewLease() {
  const std::string now = NowMicro();
  const Json spec = {{"holderIdentity", node_},
                     {"leaseDurationSeconds", kLeaseDurationSeconds},
                     {"renewTime", now}};
  auto r = kube_.MergePatch({}, kLeases, kNodeLeaseNamespace, node_, {{"spec", spec}});
  if (!r && r.error().code == core::ErrorCode::kNotFound) {
    const Json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                        {"kind", "Lease"},
                        {"metadata", {{"name", node_}, {"namespace", kNodeLeaseNamespace}}},
                        {"spec", spec}};
    auto created = kube_.Create({}, kLeases, kNodeLeaseNamespace, lease);
    if (created || created.error().code == core::ErrorCode::kAlreadyExists) {
      return;
    }
    log_.Warn("creating the node lease failed",
              {{"node", node_}, {"error", created.error().ToString()}});
    return;
  }
  if (!r) {
    log_.Warn("renewing the node lease failed", {{"node", node_}, {"error", r.error().ToString()}});
  }
}

// virt-handler: the heartbeat virt-controller's node controller checks (an old one marks the node
// unschedulable and fails its VMIs).
void NodeSim::Heartbeat() {
  const Json patch = {{"metadata",
                       {{"labels", {{kSchedulableLabel, "true"}}},
                        {"annotations", {{kHeartbeatAnnotation, Now()}}}}}};
  if (auto r = kube_.MergePatch({}, kNodes, "", node_, patch); !r) {
    log_.Warn("heartbeat failed", {{"node", node_}, {"error", r.error().ToString()}});
  }
}

// --- kube-scheduler and kubelet: launcher Pods ---------------------------------------------------

Json NodeSim::RunningPodStatus(const Json& pod) const {
  const std::string now = Now();
  Json status = pod.value("status", Json::object());
  status["phase"] = "Running";
  status["hostIP"] = "127.0.0.1";
  status["hostIPs"] = {{{"ip", "127.0.0.1"}}};
  if (!status.contains("startTime")) {
    status["startTime"] = now;
  }
  const Json& spec = Field(pod, "spec");
  Json init_statuses = Json::array();
  for (const Json& c : spec.value("initContainers", Json::array())) {
    // A sidecar (restartPolicy Always, like virt-launcher's guest-console-log) keeps running; a
    // plain init container has completed.
    const bool sidecar = c.value("restartPolicy", "") == "Always";
    Json state = sidecar ? Json{{"running", {{"startedAt", status["startTime"]}}}}
                         : Json{{"terminated", {{"exitCode", 0}, {"reason", "Completed"}}}};
    Json st = {{"name", c.value("name", "")},
               {"image", c.value("image", "")},
               {"imageID", ""},
               {"ready", true},
               {"restartCount", 0},
               {"state", std::move(state)}};
    if (sidecar) {
      st["started"] = true;
      st["containerID"] = "harvester-sim://" + c.value("name", "");
    }
    init_statuses.push_back(std::move(st));
  }
  Json statuses = Json::array();
  for (const Json& c : spec.value("containers", Json::array())) {
    statuses.push_back({{"name", c.value("name", "")},
                        {"image", c.value("image", "")},
                        {"imageID", ""},
                        {"containerID", "harvester-sim://" + c.value("name", "")},
                        {"ready", true},
                        {"started", true},
                        {"restartCount", 0},
                        {"state", {{"running", {{"startedAt", status["startTime"]}}}}}});
  }
  if (!init_statuses.empty()) {
    status["initContainerStatuses"] = init_statuses;
  }
  status["containerStatuses"] = statuses;
  Json& conditions = status["conditions"];
  if (!conditions.is_array()) {
    conditions = Json::array();
  }
  // This node also played the scheduler (the binding sets PodScheduled True; with the world's
  // real kube-scheduler up, its "Unschedulable" verdict on the tainted node may land after it).
  SetPodCondition(conditions, "PodScheduled", true, now);
  SetPodCondition(conditions, "PodReadyToStartContainers", true, now);
  SetPodCondition(conditions, "Initialized", true, now);
  SetPodCondition(conditions, "ContainersReady", true, now);
  // Ready as the kubelet computes it: containers ready and every readiness gate True.
  bool gates = true;
  for (const Json& gate : spec.value("readinessGates", Json::array())) {
    gates = gates && ConditionTrue(conditions, gate.value("conditionType", ""));
  }
  SetPodCondition(conditions, "Ready", gates, now);
  return status;
}

void NodeSim::SyncPod(const std::string& key) {
  auto pod = pods_.Get(key);
  if (!pod) {
    return;
  }
  const auto [ns, name] = SplitKey(key);
  const std::string bound_to = Field(*pod, "spec").value("nodeName", "");
  if (IsDeleting(*pod)) {
    if (bound_to == node_) {
      // The kubelet stopped the containers: it confirms the deletion with a grace period of 0.
      const std::string body =
          R"({"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0})";
      auto r = kube_.Call({}, "DELETE", kPods.Path(ns, name), "application/json", body);
      if (!r && r.error().code != core::ErrorCode::kNotFound) {
        log_.Warn("finishing a pod's deletion failed",
                  {{"pod", key}, {"error", r.error().ToString()}});
        pod_queue_.AddAfter(key, 1s);
        return;
      }
      log_.Info("launcher pod removed", {{"pod", key}});
    }
    return;
  }
  if (bound_to.empty()) {
    const Json binding = {{"apiVersion", "v1"},
                          {"kind", "Binding"},
                          {"metadata", {{"name", name}, {"namespace", ns}}},
                          {"target", {{"apiVersion", "v1"}, {"kind", "Node"}, {"name", node_}}}};
    auto r =
        kube_.Call({}, "POST", kPods.Path(ns, name, "binding"), "application/json", binding.dump());
    if (!r) {
      log_.Warn("binding a pod failed", {{"pod", key}, {"error", r.error().ToString()}});
      pod_queue_.AddAfter(key, 1s);
      return;
    }
    log_.Info("launcher pod scheduled", {{"pod", key}, {"node", node_}});
    return;  // the bound Pod comes back through the informer
  }
  if (bound_to != node_) {
    return;  // another node's (a real kubelet's)
  }
  const Json old_status = pod->value("status", Json::object());
  Json obj = *pod;
  obj["status"] = RunningPodStatus(*pod);
  const Json& new_conditions = obj["status"]["conditions"];
  const Json old_conditions = old_status.value("conditions", Json::array());
  if (old_status.value("phase", "") == "Running" &&
      ConditionTrue(old_conditions, "Ready") == ConditionTrue(new_conditions, "Ready")) {
    return;
  }
  auto r = kube_.UpdateStatus({}, kPods, ns, obj);
  if (!r) {
    log_.Warn("pod status failed", {{"pod", key}, {"error", r.error().ToString()}});
    pod_queue_.AddAfter(key, 1s);
    return;
  }
  log_.Info("launcher pod running",
            {{"pod", key}, {"ready", ConditionTrue(new_conditions, "Ready") ? "true" : "false"}});
}

// --- virt-handler: VMIs --------------------------------------------------------------------------

void NodeSim::EnqueueVmiOf(const Json& pod) {
  const std::string uid = Field(Field(pod, "metadata"), "labels").value(kCreatedByLabel, "");
  for (const Json& vmi : vmis_.List()) {
    if (Field(vmi, "metadata").value("uid", "") == uid) {
      vmi_queue_.Add(kube::ObjectKeyOf(vmi));
    }
  }
}

std::optional<Json> NodeSim::LauncherPodOf(const Json& vmi) const {
  const std::string uid = Field(vmi, "metadata").value("uid", "");
  for (const Json& pod : pods_.List()) {
    if (NamespaceOf(pod) == NamespaceOf(vmi) &&
        Field(Field(pod, "metadata"), "labels").value(kCreatedByLabel, "") == uid) {
      return pod;
    }
  }
  return std::nullopt;
}

void NodeSim::SyncVmi(const std::string& key) {
  auto vmi = vmis_.Get(key);
  if (!vmi) {
    return;
  }
  const auto [ns, name] = SplitKey(key);
  const Json& status = Field(*vmi, "status");
  const std::string phase = status.value("phase", "");
  if (status.value("nodeName", "") != node_ || (phase != "Scheduled" && phase != "Running")) {
    return;  // virt-controller's until it hands the VMI over to this node
  }
  const std::optional<Json> pod = LauncherPodOf(*vmi);
  std::string next;
  if (IsDeleting(*vmi) || !pod || IsDeleting(*pod)) {
    next = "Succeeded";  // the guest was shut down (or its launcher went): the domain is gone
  } else if (phase == "Scheduled") {
    next = "Running";
  } else {
    return;
  }
  Json obj = *vmi;
  Json& s = obj["status"];
  s["phase"] = next;
  if (!s["phaseTransitionTimestamps"].is_array()) {
    s["phaseTransitionTimestamps"] = Json::array();
  }
  s["phaseTransitionTimestamps"].push_back({{"phase", next}, {"phaseTransitionTimestamp", Now()}});
  if (next == "Running") {
    const Json& domain = Field(Field(*vmi, "spec"), "domain");
    Json interfaces = Json::array();
    for (const Json& nic : Field(domain, "devices").value("interfaces", Json::array())) {
      Json i = {{"name", nic.value("name", "")}, {"infoSource", "domain"}};
      if (nic.contains("macAddress")) {
        i["mac"] = nic["macAddress"];
      }
      interfaces.push_back(std::move(i));
    }
    s["interfaces"] = interfaces;
    s["machine"] = {{"type", Field(domain, "machine").value("type", "q35")}};
    s["guestOSInfo"] = Json::object();
  }
  // The VMI CRD has no status subresource: virt-handler updates the whole object.
  auto r = kube_.Update({}, kVmis, ns, obj);
  if (!r) {
    log_.Warn("vmi status failed",
              {{"vmi", key}, {"phase", next}, {"error", r.error().ToString()}});
    vmi_queue_.AddAfter(key, 1s);
    return;
  }
  log_.Info("vmi " + std::string(next == "Running" ? "running" : "stopped"),
            {{"vmi", key}, {"node", node_}});
  if (next == "Running" && on_running_) {
    on_running_(*r);
  }
}

}  // namespace vmimport::harvester_sim
