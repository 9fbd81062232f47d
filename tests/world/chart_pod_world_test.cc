// The Helm chart deployed for real on the test world's node: `helm install` of
// deploy/helm/vm-import-controller with our controller image (world.local/vm-import-controller,
// built without a registry by tests/world/images/images-world.sh and imported into the node's
// containerd), so that the real kube-controller-manager makes the ReplicaSet and Pod, the real
// scheduler binds it, kubelet runs it with the chart's ServiceAccount token, and the controller
// leads (its Lease, written with the chart's RBAC) and reports Ready.
//
// No kube-proxy and an API server on 127.0.0.1: the Pod runs in the node's network namespace
// (hostNetwork), listens on 127.0.0.1 only (listenHost; kubelet probes that address), and
// reaches the API server through KUBERNETES_SERVICE_HOST/PORT set to 127.0.0.1 and its port
// (kubelet's own values name the `kubernetes` Service's ClusterIP, which nothing routes here).

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "kube/client.h"
#include "kube/config.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::RunCommand;
using testing::WorldVar;

const std::string kSourceDir = VMIMPORT_SOURCE_DIR;
const std::string kChart = kSourceDir + "/deploy/helm/vm-import-controller";
const Resource kLeases{"coordination.k8s.io", "v1", "leases", true};
const Resource kPods{"", "v1", "pods", true};
const Resource kNamespaces{"", "v1", "namespaces", false};
//! The Helm release; its objects are named vmic-vm-import-controller.
const std::string kRelease = "vmic";

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

struct CommandResult {
  int rc = -1;
  std::string out;
};
CommandResult Sh(const std::string& command) {
  CommandResult r;
  r.rc = RunCommand(command + " 2>&1", &r.out);
  return r;
}

//! A TCP port free on 127.0.0.1 right now (bound, read, released).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

//! The port of an https://127.0.0.1:PORT URL; "" otherwise.
std::string PortOf(const std::string& url) {
  std::smatch m;
  return std::regex_search(url, m, std::regex(R"(^https://127\.0\.0\.1:(\d+)/?$)")) ? m[1].str()
                                                                                    : "";
}

class ChartPodWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    helm_ = WorldVar("HELM");
    kubectl_ = WorldVar("KUBECTL");
    kubeconfig_ = WorldVar("KUBECONFIG");
    api_port_ = PortOf(WorldVar("KUBE_APISERVER_URL"));
    ASSERT_FALSE(helm_.empty() || kubectl_.empty() || kubeconfig_.empty());
    ASSERT_FALSE(api_port_.empty()) << "the world's API server is not https://127.0.0.1:PORT";
    auto config = LoadKubeconfig(kubeconfig_);
    ASSERT_TRUE(config) << config.error().ToString();
    auto c = Client::Create(*config);
    ASSERT_TRUE(c);
    client_ = std::move(*c);
    ns_ = "chart-pod-" + std::to_string(std::random_device{}() % 1000000);
    ASSERT_TRUE(client_->Create(
        {}, kNamespaces, "",
        {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns_}}}}));
  }

  void TearDown() override {
    if (installed_) {
      (void)Sh(Helm() + " uninstall " + kRelease + " -n " + ns_ + " --wait --timeout 90s");
    }
    (void)client_->Delete({}, kNamespaces, "", ns_);
  }

  std::string Helm() const { return Quote(helm_) + " --kubeconfig " + Quote(kubeconfig_); }
  std::string Kubectl() const {
    return Quote(kubectl_) + " --kubeconfig " + Quote(kubeconfig_) + " -n " + ns_;
  }

  //! The release's Pods (label app.kubernetes.io/instance).
  Json Pods() {
    auto list =
        client_->List({}, kPods, ns_, {.label_selector = "app.kubernetes.io/instance=" + kRelease});
    return list ? (*list)["items"] : Json::array();
  }

  static bool Ready(const Json& pod) {
    for (const Json& c : pod["status"].value("conditions", Json::array())) {
      if (c.value("type", "") == "Ready") {
        return c.value("status", "") == "True";
      }
    }
    return false;
  }

  std::string helm_, kubectl_, kubeconfig_, api_port_, ns_;
  std::unique_ptr<Client> client_;
  bool installed_ = false;
};

TEST_F(ChartPodWorldTest, HelmInstalledControllerRunsOnTheNodeWithTheChartsRbacAndIsReady) {
  const int image_port = FreePort();
  const int health_port = FreePort();
  ASSERT_TRUE(image_port > 0 && health_port > 0 && image_port != health_port);
  const std::string fullname = std::string(kRelease) + "-vm-import-controller";
  const CommandResult install =
      Sh(Helm() + " install " + kRelease + " " + Quote(kChart) + " -n " + ns_ +
         " --skip-crds"
         " --set image.repository=world.local/vm-import-controller --set image.tag=world"
         " --set image.pullPolicy=Never"
         " --set hostNetwork=true --set listenHost=127.0.0.1"
         " --set imageServer.port=" +
         std::to_string(image_port) + " --set health.port=" + std::to_string(health_port) +
         " --set imageServer.url=http://127.0.0.1:" + std::to_string(image_port) +
         " --set controller.watchNamespace=" + ns_ +
         " --set resources.requests.cpu=50m --set resources.requests.memory=64Mi"
         " --set controller.extraEnv[0].name=KUBERNETES_SERVICE_HOST"
         " --set controller.extraEnv[0].value=127.0.0.1"
         " --set controller.extraEnv[1].name=KUBERNETES_SERVICE_PORT"
         " --set-string controller.extraEnv[1].value=" +
         api_port_);
  ASSERT_EQ(install.rc, 0) << install.out;
  installed_ = true;

  // kube-controller-manager makes the ReplicaSet and the Pod, the scheduler binds it, kubelet
  // starts it from the imported image, and it turns Ready once /readyz says it leads.
  Json pod;
  const auto deadline = std::chrono::steady_clock::now() + 180s;
  while (std::chrono::steady_clock::now() < deadline) {
    const Json pods = Pods();
    if (pods.size() == 1 && Ready(pods[0])) {
      pod = pods[0];
      break;
    }
    std::this_thread::sleep_for(500ms);
  }
  const Json pods = Pods();
  ASSERT_FALSE(pod.is_null()) << "no Ready Pod within 180 s; pods: " << pods.dump().substr(0, 3000)
                              << "\n"
                              << Sh(Kubectl() + " describe pods").out
                              << Sh(Kubectl() + " logs -l app.kubernetes.io/instance=" +
                                    std::string(kRelease) + " --tail=40")
                                     .out;
  const std::string pod_name = pod["metadata"].value("name", "");

  // Scheduled by the scheduler onto the world's Node, with the chart's ServiceAccount.
  EXPECT_FALSE(pod["spec"].value("nodeName", "").empty());
  EXPECT_EQ(pod["spec"].value("serviceAccountName", ""), fullname);
  EXPECT_TRUE(pod["spec"].value("hostNetwork", false));
  const Json& status = pod["status"]["containerStatuses"][0];
  EXPECT_EQ(status.value("image", ""), "world.local/vm-import-controller:world");
  EXPECT_EQ(status.value("restartCount", -1), 0) << status.dump();

  // The controller found the in-cluster configuration (the projected token and CA kubelet
  // mounted) and leads: the Lease was written with the ServiceAccount's Role.
  const CommandResult logs = Sh(Kubectl() + " logs " + pod_name);
  EXPECT_EQ(logs.rc, 0) << logs.out;
  EXPECT_NE(logs.out.find("in-cluster service account"), std::string::npos) << logs.out;
  EXPECT_NE(logs.out.find("api_server=https://127.0.0.1:" + api_port_), std::string::npos)
      << logs.out;
  for (const char* word : {"Forbidden", "forbidden", "Unauthorized"}) {
    EXPECT_EQ(logs.out.find(word), std::string::npos) << word << " in:\n" << logs.out;
  }
  auto lease = client_->Get({}, kLeases, ns_, "vm-import-controller");
  ASSERT_TRUE(lease) << lease.error().ToString();
  EXPECT_FALSE((*lease)["spec"].value("holderIdentity", "").empty());
  // Who wrote it: the chart's ServiceAccount (managedFields name the client's user agent only,
  // so ask the API server what that account may do instead: exactly the chart's rights).
  const std::string sa = "system:serviceaccount:" + ns_ + ":" + fullname;
  EXPECT_EQ(Sh(Kubectl() + " auth can-i update leases/vm-import-controller --as " + sa).out,
            "yes\n");
  EXPECT_EQ(Sh(Kubectl() + " auth can-i list pods --as " + sa).out, "no\n");

  // The probes' endpoints answer on 127.0.0.1 only (the node's network namespace).
  EXPECT_EQ(Sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" +
               std::to_string(health_port) + "/readyz")
                .out,
            "200");
  // Every listener on the two ports (ss: "LISTEN 0 4096 127.0.0.1:PORT 0.0.0.0:*") is on
  // 127.0.0.1, and both servers listen.
  std::istringstream listeners(Sh("ss -Hltn").out);
  std::map<int, int> seen;
  for (std::string line; std::getline(listeners, line);) {
    std::istringstream fields(line);
    std::string state, recv_q, send_q, local;
    fields >> state >> recv_q >> send_q >> local;
    const size_t colon = local.rfind(':');
    if (colon == std::string::npos) {
      continue;
    }
    const int port = std::atoi(local.substr(colon + 1).c_str());
    if (port == image_port || port == health_port) {
      ++seen[port];
      EXPECT_EQ(local.substr(0, colon), "127.0.0.1") << "a listener not on 127.0.0.1: " << line;
    }
  }
  EXPECT_EQ(seen[image_port], 1) << "the image server";
  EXPECT_EQ(seen[health_port], 1) << "/healthz, /readyz, /metrics";

  // The Pod deleted (kubelet's SIGTERM): the controller releases its Lease on the way out, so
  // the Pod the ReplicaSet makes instead leads at once rather than after the lease duration.
  const std::string holder = (*lease)["spec"].value("holderIdentity", "");
  const auto deleted_at = std::chrono::steady_clock::now();
  EXPECT_EQ(Sh(Kubectl() + " delete pod " + pod_name + " --wait=false").rc, 0);
  std::string new_holder;
  Json replacement;
  while (std::chrono::steady_clock::now() < deleted_at + 120s) {
    auto l = client_->Get({}, kLeases, ns_, "vm-import-controller");
    new_holder = l ? (*l)["spec"].value("holderIdentity", "") : "";
    for (const Json& p : Pods()) {
      if (p["metadata"].value("name", "") != pod_name && Ready(p)) {
        replacement = p;
      }
    }
    if (!replacement.is_null() && !new_holder.empty() && new_holder != holder) {
      break;
    }
    std::this_thread::sleep_for(250ms);
  }
  ASSERT_FALSE(replacement.is_null()) << Pods().dump().substr(0, 2000);
  EXPECT_NE(new_holder, holder);
  // Without the release the new Pod would wait out the old holder's 15 s lease.
  const auto takeover = std::chrono::steady_clock::now() - deleted_at;
  EXPECT_LT(takeover, 15s) << "the new Pod led after "
                           << std::chrono::duration_cast<std::chrono::seconds>(takeover).count()
                           << " s";

  // helm uninstall: the Deployment, the ServiceAccount and the RBAC go, and with them the Pod.
  const CommandResult uninstall =
      Sh(Helm() + " uninstall " + kRelease + " -n " + ns_ + " --wait --timeout 120s");
  EXPECT_EQ(uninstall.rc, 0) << uninstall.out;
  installed_ = uninstall.rc != 0;
  bool gone = false;
  for (int i = 0; i < 240 && !gone; ++i) {
    gone = Pods().empty();
    if (!gone) {
      std::this_thread::sleep_for(500ms);
    }
  }
  EXPECT_TRUE(gone) << Pods().dump().substr(0, 2000);
}

}  // namespace
}  // namespace vmimport::kube
